"""QD-DETR-style text-to-video encoder: the baseline that COREBA's ablations start from.

QD-DETR (Moon et al., CVPR 2023) stacks cross-attention layers whose queries are video clips
and whose keys/values are text tokens ("T2V encoder"); there is no text-side update, no shared
self-attention and no recurrence. Balance tokens (eq. 1) can still be appended by the model
(COREBA's "+BAT" ablation) because this encoder only sees a text sequence and its mask.
"""

from __future__ import annotations

import torch
from torch import nn

from course_lib.alignment.attention import AttentionBlock


class T2VEncoder(nn.Module):
    """Stack of text-to-video cross-attention blocks (QD-DETR's T2V encoder).

    Args:
        n_layers: number of cross-attention layers (2 in QD-DETR).
        d, n_heads, dim_feedforward, dropout: see :class:`AttentionBlock`.
    """

    def __init__(
        self, n_layers: int, d: int, n_heads: int, dim_feedforward: int, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            AttentionBlock(d, n_heads, dim_feedforward, dropout) for _ in range(n_layers)
        )

    def forward(
        self,
        video: torch.Tensor,
        video_mask: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        need_weights: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, torch.Tensor]]]:
        """Video clips attend to text tokens, layer after layer.

        Args:
            video: (B, T, d); video_mask (B, T) True = real clip.
            text: (B, L + L_b, d); text_mask (B, L + L_b) True = real token.
            need_weights: return the attention weights (explicit path); False = fused kernel.

        Returns:
            video (B, T, d), the unchanged text, and per layer ``{"vt_coarse": weights}``
            (same key as the CFC block so demos work for both encoders; ``{}`` when the
            weights were not asked for).
        """
        attentions = []
        for layer in self.layers:
            video, weights = layer(video, video_mask, text, text_mask, need_weights=need_weights)
            attentions.append({} if weights is None else {"vt_coarse": weights})
        return video, text, attentions
