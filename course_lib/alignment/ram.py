"""Recurrent Alignment Mechanism, RAM (COREBA Algorithm 1) and its MOD_N ablation.

Algorithm 1 (REC_N, weights shared across turns)::

    for n in 1 .. N_r:
        F~_vt, F~_tv, F_fine = CFC(F'_v, F~_t)
        F'_v  <- F'_v + F_fine
        F~_t  <- F~_t + F~_tv
    return F'_v, F~_t

MOD_N stacks N *different* CFC blocks (no weight sharing) in the same loop, so it has N times
the CFC parameters of REC_N while REC_N has exactly the parameters of REC_1.
"""

from __future__ import annotations

import torch
from torch import nn

from course_lib.alignment.cfc import CFCBlock


class RecurrentAlignment(nn.Module):
    """Apply CFC blocks ``n_turns`` times with residual updates (COREBA Algorithm 1).

    Args:
        n_turns: number of recurrent turns ``N_r``.
        share_weights: True = REC_N (one block reused), False = MOD_N (one block per turn).
        **block_kwargs: arguments of :class:`~course_lib.alignment.cfc.CFCBlock`.
    """

    def __init__(self, n_turns: int, share_weights: bool = True, **block_kwargs) -> None:
        super().__init__()
        if n_turns < 1:
            raise ValueError(f"n_turns must be >= 1, got {n_turns}")
        self.n_turns = n_turns
        n_blocks = 1 if share_weights else n_turns
        self.blocks = nn.ModuleList(CFCBlock(**block_kwargs) for _ in range(n_blocks))

    def block_for_turn(self, turn: int) -> CFCBlock:
        """The CFC block used at ``turn`` (0-based): always block 0 when weights are shared."""
        return self.blocks[turn % len(self.blocks)]

    def forward(
        self,
        video: torch.Tensor,
        video_mask: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        need_weights: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, torch.Tensor]]]:
        """Run Algorithm 1.

        Args:
            video: F'_v (B, T, d); video_mask (B, T) True = real clip.
            text: F~_t (B, L + L_b, d); text_mask (B, L + L_b) True = real token.
            need_weights: return the attention weights (explicit path); False = fused kernel.

        Returns:
            final F'_v (B, T, d), final F~_t (B, L + L_b, d) and, per turn, the attention
            weights of the CFC sub-blocks (empty dicts when not asked for).
        """
        attentions = []
        for turn in range(self.n_turns):
            block = self.block_for_turn(turn)
            out = block(video, video_mask, text, text_mask, need_weights=need_weights)
            # residual updates between turns (Algorithm 1)
            video = video + out.fine
            text = text + out.tv
            attentions.append(out.attention)
        return video, text, attentions
