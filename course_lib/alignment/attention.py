"""Masked multi-head attention and the post-norm transformer block used by every COREBA part.

Mask convention: ``True`` = real position (the opposite of ``nn.MultiheadAttention``'s
``key_padding_mask``). Padded keys get attention weight exactly 0 and their values are zeroed
before use; outputs at padded *query* positions are set to 0 by :class:`AttentionBlock`.

Two paths compute the same attention: :func:`masked_attention` writes the softmax out and
returns the weights (``need_weights=True``, the default of every module here, as in
``nn.MultiheadAttention``); with ``need_weights=False`` the modules run
:func:`~course_lib.alignment.fused_attention.fused_masked_attention` (PyTorch's fused kernel)
and return ``None`` for the weights. ``with explicit_attention():`` forces the explicit path.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.alignment.fused_attention import fused_attention_enabled, fused_masked_attention


def masked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor,
    dropout: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention that ignores padded keys.

    ``A = softmax(Q K^T / sqrt(d_h) + M)``, with ``M = -inf`` at padded keys, output ``A V``.

    Args:
        q: (B, H, Lq, d_h) queries.
        k: (B, H, Lk, d_h) keys.
        v: (B, H, Lk, d_h) values.
        key_mask: (B, Lk) bool, True = real key; every row needs at least one real key.
        dropout: dropout probability on the attention weights (0 in eval mode).

    Returns:
        output (B, H, Lq, d_h) and attention weights (B, H, Lq, Lk) (before dropout).
    """
    keep = key_mask[:, None, None, :]
    # 1. similarity of every query with every key, scaled by sqrt(d_h)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    # 2. padded keys get -inf, so softmax gives them weight exactly 0
    weights = scores.masked_fill(~keep, float("-inf")).softmax(dim=-1)
    # 3. zero padded values too, so garbage (even NaN) there cannot leak through 0 * NaN
    v = v.masked_fill(~key_mask[:, None, :, None], 0.0)
    out = F.dropout(weights, p=dropout) @ v
    return out, weights


class MaskedMultiHeadAttention(nn.Module):
    """Multi-head attention with a True-=-real key mask that can return its weights.

    Weights asked for: explicit softmax (:func:`masked_attention`); not asked for: the fused
    kernel (:func:`~course_lib.alignment.fused_attention.fused_masked_attention`), unless inside
    :func:`~course_lib.alignment.fused_attention.explicit_attention`.

    Args:
        d: model width.
        n_heads: number of heads (must divide ``d``).
        dropout: attention-weight dropout.
    """

    def __init__(self, d: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d % n_heads:
            raise ValueError(f"d={d} is not divisible by n_heads={n_heads}")
        self.n_heads, self.dropout = n_heads, dropout
        self.q_proj, self.k_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.v_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, d) -> (B, H, N, d/H)."""
        b, n, d = x.shape
        return x.view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_mask: torch.Tensor,
        need_weights: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``query`` (B, Lq, d) to ``key``/``value`` (B, Lk, d).

        Args:
            query: (B, Lq, d); key, value: (B, Lk, d).
            key_mask: (B, Lk) bool, True = real key.
            need_weights: return the weights ``A = softmax(Q K^T / sqrt(d_h) + M)`` (explicit
                path); False runs the fused kernel and returns None.

        Returns:
            output (B, Lq, d) and weights (B, H, Lq, Lk), or None when not asked for.
        """
        # 1. project and split into heads
        q, k = self._split(self.q_proj(query)), self._split(self.k_proj(key))
        v = self._split(self.v_proj(value))
        p = self.dropout if self.training else 0.0
        # 2. explicit softmax when the weights are wanted (or forced), else the fused kernel
        if need_weights or not fused_attention_enabled():
            out, weights = masked_attention(q, k, v, key_mask, dropout=p)
        else:
            out, weights = fused_masked_attention(q, k, v, key_mask, dropout=p), None
        # 3. merge the heads and mix them
        b, _, lq, _ = out.shape
        out = self.out_proj(out.transpose(1, 2).reshape(b, lq, -1))
        return out, weights if need_weights else None


class AttentionSublayer(nn.Module):
    """``LayerNorm(x + Dropout(MHA(x + x_pos, c + c_pos, c)))`` (post-norm, as DETR).

    Positional embeddings, when given, are added to queries and keys only (DETR convention).
    """

    def __init__(self, d: int, n_heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.attn = MaskedMultiHeadAttention(d, n_heads, dropout)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        context_mask: torch.Tensor,
        x_pos: torch.Tensor | None = None,
        context_pos: torch.Tensor | None = None,
        need_weights: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the updated ``x`` (B, Lq, d) and the attention weights (B, H, Lq, Lk).

        The weights are None when ``need_weights`` is False (fused path).
        """
        q = x if x_pos is None else x + x_pos
        k = context if context_pos is None else context + context_pos
        out, weights = self.attn(q, k, context, context_mask, need_weights)
        return self.norm(x + self.dropout(out)), weights


class FeedForward(nn.Module):
    """``LayerNorm(x + Dropout(W2 Dropout(ReLU(W1 x))))`` (post-norm FFN sublayer)."""

    def __init__(self, d: int, dim_feedforward: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d, dim_feedforward),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(dim_feedforward, d),
        )
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, d) -> (B, N, d)."""
        return self.norm(x + self.dropout(self.net(x)))


class AttentionBlock(nn.Module):
    """Masked cross- (or self-) attention + residual + LayerNorm + FFN.

    With ``context is x`` this is a self-attention block; otherwise a cross-attention block
    (queries from ``x``, keys/values from ``context``).

    Args:
        d: model width.
        n_heads: attention heads.
        dim_feedforward: FFN hidden width.
        dropout: dropout on attention weights, residual branches and FFN.
    """

    def __init__(self, d: int, n_heads: int, dim_feedforward: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.attention = AttentionSublayer(d, n_heads, dropout)
        self.ffn = FeedForward(d, dim_feedforward, dropout)

    def forward(
        self,
        x: torch.Tensor,
        x_mask: torch.Tensor,
        context: torch.Tensor,
        context_mask: torch.Tensor,
        x_pos: torch.Tensor | None = None,
        context_pos: torch.Tensor | None = None,
        need_weights: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Update ``x`` (B, Lq, d) by attending to ``context`` (B, Lk, d).

        Args:
            x_mask: (B, Lq) bool, True = real query; padded outputs are set to 0.
            context_mask: (B, Lk) bool, True = real key.
            x_pos, context_pos: optional positional embeddings added to queries / keys.
            need_weights: return the attention weights (explicit path); False = fused kernel.

        Returns:
            new x (B, Lq, d) and attention weights (B, H, Lq, Lk) (None when not asked for).
        """
        y, weights = self.attention(x, context, context_mask, x_pos, context_pos, need_weights)
        y = self.ffn(y)
        return y.masked_fill(~x_mask[..., None], 0.0), weights


def self_attention(
    block: AttentionBlock,
    x: torch.Tensor,
    mask: torch.Tensor,
    pos: torch.Tensor | None = None,
    need_weights: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run ``block`` as a self-attention block over ``x`` (B, N, d) with mask (B, N).

    ``need_weights=False`` takes the fused path and returns None for the weights.
    """
    return block(x, mask, x, mask, x_pos=pos, context_pos=pos, need_weights=need_weights)
