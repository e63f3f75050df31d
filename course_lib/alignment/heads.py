"""Prediction heads as in QD-DETR: saliency encoder (COREBA eq. 7) and DAB-DETR moment decoder.

* :class:`SaliencyEncoder` runs a small transformer encoder over ``[t_s ; F_v]`` (saliency
  token + aligned video) and scores every clip by
  ``S(x) = (F_x w_f) . (t_s w_s) / sqrt(d)`` (COREBA eq. 7 with QD-DETR's code's sqrt(d) scaling,
  where the paper prints d).
* :class:`MomentDecoder` is a DAB-DETR decoder: ``N_q`` learnable anchors ``(center, width)``,
  conditional positional queries from the anchors (sine embedding + MLP), cross-attention to
  the encoded video, and layer-by-layer anchor refinement in inverse-sigmoid space.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from course_lib.alignment.attention import (
    AttentionBlock,
    AttentionSublayer,
    FeedForward,
    self_attention,
)


class MLP(nn.Module):
    """``n_layers`` Linear layers with ReLU in between (DETR's box-head MLP)."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, n_layers: int) -> None:
        super().__init__()
        widths = [d_in] + [d_hidden] * (n_layers - 1) + [d_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., d_out)."""
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else torch.relu(layer(x))
        return x


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``log(x / (1 - x))`` with clamping so that 0 and 1 stay finite (DAB-DETR)."""
    x = x.clamp(0.0, 1.0)
    return torch.log(x.clamp(min=eps) / (1.0 - x).clamp(min=eps))


def sine_embedding(x: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Sine/cosine embedding of normalised coordinates (DAB-DETR ``gen_sineembed_for_position``).

    Args:
        x: (..., k) coordinates in [0, 1].
        dim: embedding width per coordinate (even).
        temperature: frequency base.

    Returns:
        (..., k * dim); for each coordinate ``[sin(2 pi x / T^(2i/dim)), cos(...)]`` interleaved.
    """
    if dim % 2:
        raise ValueError(f"sine embedding width must be even, got {dim}")
    i = torch.arange(dim, dtype=x.dtype, device=x.device)
    freq = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / dim)
    angles = x[..., None] * (2 * math.pi) / freq  # (..., k, dim)
    emb = torch.stack([angles[..., 0::2].sin(), angles[..., 1::2].cos()], dim=-1)
    return emb.flatten(-2).flatten(-2)


def clip_positions(video_mask: torch.Tensor) -> torch.Tensor:
    """Normalised clip centres ``(i + 0.5) / n_real`` (0 at padded clips), shape (B, T).

    Depends only on the number of real clips, so padding never changes the positions.
    """
    n_real = video_mask.sum(dim=1, keepdim=True).clamp(min=1)
    index = torch.arange(video_mask.shape[1], device=video_mask.device)[None]
    return ((index + 0.5) / n_real).masked_fill(~video_mask, 0.0)


class SaliencyEncoder(nn.Module):
    """Transformer encoder over ``[saliency token ; video]`` and the saliency score (eq. 7).

    The saliency token is a learnable vector plus the masked mean of the video clips
    (QD-DETR's input-adaptive saliency token).

    Args:
        d, n_heads, dim_feedforward, dropout: transformer sizes.
        n_layers: encoder layers (2 in QD-DETR).
    """

    def __init__(
        self, d: int, n_heads: int, dim_feedforward: int, dropout: float = 0.1, n_layers: int = 2
    ) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.randn(d) * 0.02)
        self.layers = nn.ModuleList(
            AttentionBlock(d, n_heads, dim_feedforward, dropout) for _ in range(n_layers)
        )
        self.w_f, self.w_s = nn.Linear(d, d), nn.Linear(d, d)
        self.d = d

    def forward(
        self, video: torch.Tensor, video_mask: torch.Tensor, pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode the aligned video and score every clip.

        Args:
            video: (B, T, d) aligned video, 0 at padded clips.
            video_mask: (B, T) bool, True = real clip.
            pos: (B, T, d) positional embedding of the clips.

        Returns:
            memory (B, T, d) (0 at padded clips) and saliency scores (B, T) (0 at padded clips,
            don't-care: losses must mask them).
        """
        b = video.shape[0]
        # 1. input-adaptive saliency token: learnable vector + mean of the real clips
        n_real = video_mask.sum(dim=1, keepdim=True).clamp(min=1)
        token = self.token + video.sum(dim=1) / n_real
        # 2. encoder over [token ; video]; the token is always real and has no position
        x = torch.cat([token[:, None], video], dim=1)
        real = torch.ones(b, 1, dtype=torch.bool, device=video_mask.device)
        mask = torch.cat([real, video_mask], dim=1)
        pos = torch.cat([torch.zeros_like(pos[:, :1]), pos], dim=1)
        for layer in self.layers:  # the weights are never returned: fused path
            x, _ = self_attention(layer, x, mask, pos, need_weights=False)
        t_s, memory = x[:, 0], x[:, 1:]
        # 3. eq. 7: S(x) = (F_x w_f) . (t_s w_s) / sqrt(d)
        scores = (self.w_f(memory) * self.w_s(t_s)[:, None]).sum(-1) / math.sqrt(self.d)
        return memory, scores.masked_fill(~video_mask, 0.0)


class DecoderLayer(nn.Module):
    """DAB-DETR decoder layer: query self-attention, conditional cross-attention, FFN."""

    def __init__(self, d: int, n_heads: int, dim_feedforward: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.self_attn = AttentionSublayer(d, n_heads, dropout)
        self.cross_attn = AttentionSublayer(d, n_heads, dropout)
        self.ffn = FeedForward(d, dim_feedforward, dropout)

    def forward(
        self,
        tgt: torch.Tensor,
        query_pos: torch.Tensor,
        cross_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        memory_pos: torch.Tensor,
        need_weights: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Update content queries ``tgt`` (B, Nq, d); returns them and cross-attention weights.

        The weights are None when ``need_weights`` is False (fused path).
        """
        all_real = torch.ones(tgt.shape[:2], dtype=torch.bool, device=tgt.device)
        # 1. query self-attention (weights never returned: fused path)
        tgt, _ = self.self_attn(tgt, tgt, all_real, query_pos, query_pos, need_weights=False)
        # 2. cross-attention to the video, then the FFN
        tgt, weights = self.cross_attn(
            tgt, memory, memory_mask, cross_pos, memory_pos, need_weights=need_weights
        )
        return self.ffn(tgt), weights


class MomentDecoder(nn.Module):
    """DAB-DETR moment decoder with learnable (center, width) anchors.

    Args:
        d, n_heads, dim_feedforward, dropout: transformer sizes.
        n_layers: decoder layers (2 in QD-DETR).
        n_queries: number of anchors ``N_q`` (10 in QD-DETR).
    """

    def __init__(
        self,
        d: int,
        n_heads: int,
        dim_feedforward: int,
        dropout: float = 0.1,
        n_layers: int = 2,
        n_queries: int = 10,
    ) -> None:
        super().__init__()
        if d % 4:
            raise ValueError(f"d must be divisible by 4 for 2-D sine anchors, got {d}")
        # anchors stored in inverse-sigmoid space; centres spread over the video
        centres = (torch.arange(n_queries) + 0.5) / n_queries
        init = torch.stack([centres, torch.full_like(centres, 0.2)], dim=-1)
        self.anchors = nn.Parameter(inverse_sigmoid(init))
        self.layers = nn.ModuleList(
            DecoderLayer(d, n_heads, dim_feedforward, dropout) for _ in range(n_layers)
        )
        self.ref_point_head = MLP(d, d, d, 2)  # sine(anchor) -> positional query
        self.query_scale = MLP(d, d, d, 2)  # content -> scale of the positional query
        self.norm = nn.LayerNorm(d)
        self.span_head = MLP(d, d, 2, 3)  # offsets in inverse-sigmoid space
        self.class_head = nn.Linear(d, 2)  # foreground / background
        nn.init.zeros_(self.span_head.layers[-1].weight)
        nn.init.zeros_(self.span_head.layers[-1].bias)
        self.d = d

    def forward(
        self,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        memory_pos: torch.Tensor,
        need_weights: bool = True,
    ) -> list[dict[str, torch.Tensor]]:
        """Decode moments layer by layer.

        Args:
            memory: (B, T, d) encoded video; memory_mask (B, T) True = real clip;
            memory_pos: (B, T, d) clip positional embedding.
            need_weights: return the cross-attention weights (explicit path); False runs the
                fused kernel and leaves ``cross_attention`` out.

        Returns:
            one dict per layer with ``pred_spans`` (B, Nq, 2) (center, width) in (0, 1),
            ``pred_logits`` (B, Nq, 2) (index 0 = foreground) and, when asked for,
            ``cross_attention`` (B, H, Nq, T).
        """
        b = memory.shape[0]
        ref = self.anchors.sigmoid()[None].expand(b, -1, -1)
        tgt = memory.new_zeros(b, ref.shape[1], self.d)
        outputs = []
        for i, layer in enumerate(self.layers):
            # 1. conditional positional queries from the current anchors
            sine = sine_embedding(ref, self.d // 2)  # (B, Nq, d)
            query_pos = self.ref_point_head(sine)
            scale = 1.0 if i == 0 else self.query_scale(tgt)
            tgt, weights = layer(
                tgt, query_pos, sine * scale, memory, memory_mask, memory_pos, need_weights
            )
            # 2. heads on the normalised content; refine anchors in inverse-sigmoid space
            hidden = self.norm(tgt)
            spans = (self.span_head(hidden) + inverse_sigmoid(ref)).sigmoid()
            outputs.append({"pred_spans": spans, "pred_logits": self.class_head(hidden)})
            if weights is not None:
                outputs[-1]["cross_attention"] = weights
            ref = spans.detach()  # DAB-DETR: no gradient through the anchor chain
        return outputs
