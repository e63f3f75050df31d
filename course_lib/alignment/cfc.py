"""The Coarse-to-Fine Cross-modal interaction block (COREBA eqs. 2-5).

With projected video ``F'_v (T, d)`` and balanced text ``F~_t (L + L_b, d)`` (eq. 1):

    F_vt  = VT(F'_v, F~_t)        video queries, balanced-text keys/values   (eq. 2, coarse)
    F_tv  = TV(F~_t, F'_v)        text queries, video keys/values            (eq. 2)
    F~_vt = (F_vt + SA(F_vt)) / 2                                            (eq. 3)
    F~_tv = (F_tv + SA(F_tv)) / 2  same SA weights for both streams          (eq. 4)
    F_fine = VT(F~_vt, F~_tv)     the SAME VT-block again, fine alignment    (eq. 5)

Each of VT, TV and SA is an :class:`~course_lib.alignment.attention.AttentionBlock`
(attention + residual + LayerNorm + FFN), so the residual path from the block input is inside
the block and eqs. 3-4 average the cross-attended and self-attended features.

Ablation switches (one change each): ``use_tv_block=False`` replaces ``TV`` by the identity
(``F_tv = F~_t``); ``use_fine_alignment=False`` skips eq. 5 (``F_fine = F~_vt``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from course_lib.alignment.attention import AttentionBlock, self_attention


class CFCOutput(NamedTuple):
    """Outputs of one CFC block.

    Attributes:
        vt: F~_vt (B, T, d), coarse video stream after the shared self-attention (eq. 3).
        tv: F~_tv (B, L + L_b, d), text stream after the shared self-attention (eq. 4).
        fine: F_fine (B, T, d), the fine alignment (eq. 5).
        attention: weights (B, H, Lq, Lk) of each sub-block: keys ``"vt_coarse"``, ``"tv"``,
            ``"sa_video"``, ``"sa_text"``, ``"vt_fine"`` (missing for disabled sub-blocks;
            empty when the weights were not asked for).
    """

    vt: torch.Tensor
    tv: torch.Tensor
    fine: torch.Tensor
    attention: dict[str, torch.Tensor]


class CFCBlock(nn.Module):
    """One Coarse-to-Fine Cross-modal interaction block (COREBA eqs. 2-5).

    Args:
        d: model width.
        n_heads: attention heads.
        dim_feedforward: FFN hidden width.
        dropout: dropout inside every sub-block.
        use_tv_block: keep the text-queries TV-block (else identity).
        use_fine_alignment: apply the VT-block a second time (eq. 5).
    """

    def __init__(
        self,
        d: int,
        n_heads: int,
        dim_feedforward: int,
        dropout: float = 0.1,
        use_tv_block: bool = True,
        use_fine_alignment: bool = True,
    ) -> None:
        super().__init__()
        self.vt_block = AttentionBlock(d, n_heads, dim_feedforward, dropout)
        self.tv_block = (
            AttentionBlock(d, n_heads, dim_feedforward, dropout) if use_tv_block else None
        )
        # one module, used for the video stream AND the text stream (eqs. 3-4)
        self.self_attention = AttentionBlock(d, n_heads, dim_feedforward, dropout)
        self.use_fine_alignment = use_fine_alignment

    def forward(
        self,
        video: torch.Tensor,
        video_mask: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        need_weights: bool = True,
    ) -> CFCOutput:
        """Run eqs. 2-5 once.

        Args:
            video: F'_v (B, T, d), zero at padded clips.
            video_mask: (B, T) bool, True = real clip.
            text: F~_t (B, L + L_b, d), balanced text, zero at padded words.
            text_mask: (B, L + L_b) bool, True = real word or balance token.
            need_weights: return every sub-block's attention weights (explicit path); False
                runs the fused kernel and leaves ``attention`` empty.

        Returns:
            :class:`CFCOutput`; padded positions of every output are 0.
        """
        att: dict[str, torch.Tensor | None] = {}
        # eq. 2: coarse cross-modal alignment in both directions
        f_vt, att["vt_coarse"] = self.vt_block(
            video, video_mask, text, text_mask, need_weights=need_weights
        )
        if self.tv_block is not None:
            f_tv, att["tv"] = self.tv_block(
                text, text_mask, video, video_mask, need_weights=need_weights
            )
        else:
            f_tv = text
        # eqs. 3-4: one shared self-attention for both streams, averaged with its input
        sa_v, att["sa_video"] = self_attention(
            self.self_attention, f_vt, video_mask, need_weights=need_weights
        )
        sa_t, att["sa_text"] = self_attention(
            self.self_attention, f_tv, text_mask, need_weights=need_weights
        )
        vt, tv = 0.5 * (f_vt + sa_v), 0.5 * (f_tv + sa_t)
        # eq. 5: the same VT-block aligns the refined streams again (fine alignment)
        if self.use_fine_alignment:
            fine, att["vt_fine"] = self.vt_block(
                vt, video_mask, tv, text_mask, need_weights=need_weights
            )
        else:
            fine = vt
        # keep the weights that were computed (none on the fused path)
        return CFCOutput(vt, tv, fine, {k: a for k, a in att.items() if a is not None})
