"""A trainable UCoFiA-style retrieval head on top of frozen (CLIP) features.

Inputs are features, not pixels: frame features ``(B, F, D)`` (the frame CLS embeddings), patch
tokens ``(B, F, P, D)`` (CLS excluded, same space as the frames), sentence features ``(B, D)``
and word tokens ``(B, L, D)`` with a padding mask. The head adds what UCoFiA trains on top of
CLIP: identity-initialised projections per granularity, a small temporal transformer for the
video-level feature, a patch saliency scorer that keeps CLS + top-k patches per frame, ISA
modules and a logit scale. :meth:`UCoFiA.similarity` returns one ``(Q, V)`` matrix per
granularity; the training logits are their average times the logit scale, trained with a
symmetric cross-entropy (InfoNCE in both directions), as in UCoFiA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.errors import DataValidationError
from course_lib.similarity.granularity import (
    frame_sentence_similarity,
    patch_word_similarity,
    select_patches,
    video_sentence_similarity,
)
from course_lib.similarity.isa import ISA, MeanAggregation, masked_mean

GRANULARITIES = ("video", "frame", "patch")


@dataclass
class UCoFiAConfig:
    """Hyper-parameters of :class:`UCoFiA` (defaults follow the paper where it fixes them).

    Attributes:
        dim: feature dimension ``D`` of all inputs.
        n_frames: frames per video ``F`` (shorter videos are padded and masked).
        max_words: word tokens per text ``L`` (padding masked).
        top_k: patches kept per frame besides its CLS token (3 in UCoFiA).
        granularities: any non-empty subset of ``("video", "frame", "patch")``.
        aggregation: ``"isa"`` (UCoFiA) or ``"mean"`` (ablation).
        isa_tau: ISA temperature (0.01 in UCoFiA).
        temporal: ``"transformer"`` (residual temporal transformer) or ``"mean"``.
        n_layers, n_heads: temporal transformer size.
        patch_scorer: ``"learned"`` (MLP on [patch, CLS]) or ``"cls"`` (cosine to the CLS).
        logit_scale_init: initial log of the logit scale (CLIP's ``log(1/0.07)``).
        chunk_size: text/video block size for the patch-word level (None: no chunking).
    """

    dim: int = 512
    n_frames: int = 12
    max_words: int = 32
    top_k: int = 3
    granularities: tuple[str, ...] = GRANULARITIES
    aggregation: str = "isa"
    isa_tau: float = 0.01
    temporal: str = "transformer"
    n_layers: int = 1
    n_heads: int = 4
    patch_scorer: str = "learned"
    logit_scale_init: float = math.log(1 / 0.07)
    chunk_size: int | None = None

    def validate(self) -> None:
        """Raise DataValidationError naming the first bad field."""
        bad = [g for g in self.granularities if g not in GRANULARITIES]
        if bad or not self.granularities:
            raise DataValidationError(
                f"granularities must be a non-empty subset of {GRANULARITIES}, got {self.granularities}"
            )
        choices = {
            "aggregation": ("isa", "mean"),
            "temporal": ("transformer", "mean"),
            "patch_scorer": ("learned", "cls"),
        }
        for field, allowed in choices.items():
            if getattr(self, field) not in allowed:
                raise DataValidationError(
                    f"UCoFiAConfig.{field} must be one of {allowed}, got {getattr(self, field)!r}"
                )


class VideoEmbeddings(NamedTuple):
    """Video side after the head: video ``(V, D)``, frames ``(V, F, D)``, patches ``(V, N, D)``."""

    video: torch.Tensor
    frames: torch.Tensor
    frame_mask: torch.Tensor
    patches: torch.Tensor | None
    patch_mask: torch.Tensor | None


class TextEmbeddings(NamedTuple):
    """Text side after the head: sentence ``(Q, D)``, words ``(Q, L, D)``, word mask ``(Q, L)``."""

    sentence: torch.Tensor
    sentence_local: torch.Tensor
    words: torch.Tensor
    word_mask: torch.Tensor


class UCoFiAOutput(NamedTuple):
    """Per-granularity ``(Q, V)`` similarities (cosine scale) and the averaged, scaled logits."""

    sims: dict[str, torch.Tensor]
    logits: torch.Tensor


def _identity_linear(dim: int) -> nn.Linear:
    """A bias-free linear layer initialised to the identity (UCoFiA's ``torch.eye`` weights)."""
    layer = nn.Linear(dim, dim, bias=False)
    nn.init.eye_(layer.weight)
    return layer


class PatchScorer(nn.Module):
    """Saliency of each patch given its frame CLS token: ``tanh(MLP([patch, CLS]))`` (TS2-Net)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.inp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim // 2), nn.GELU())
        self.out = nn.Sequential(
            nn.Linear(2 * (dim // 2), dim // 2), nn.GELU(), nn.Linear(dim // 2, 1), nn.Tanh()
        )

    def forward(self, cls_feats: torch.Tensor, patch_tokens: torch.Tensor) -> torch.Tensor:
        """Scores ``(V, F, P)`` for ``cls_feats (V, F, D)`` and ``patch_tokens (V, F, P, D)``."""
        p = self.inp(patch_tokens)
        c = self.inp(cls_feats)[:, :, None].expand_as(p)
        return self.out(torch.cat([p, c], dim=-1)).squeeze(-1)


class TemporalTransformer(nn.Module):
    """Residual temporal transformer over frame features, then masked mean (CLIP4Clip seqTransf)."""

    def __init__(self, dim: int, n_frames: int, n_layers: int, n_heads: int) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(n_frames, dim))
        layer = nn.TransformerEncoderLayer(
            dim, n_heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)

    def forward(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """``(V, F, D)`` frames -> ``(V, D)`` video features."""
        x = frames + self.pos[: frames.shape[1]]
        x = frames + self.encoder(x, src_key_padding_mask=~frame_mask)  # residual, as UCoFiA
        return masked_mean(F.normalize(x, dim=-1).transpose(1, 2), frame_mask[:, None])


class UCoFiA(nn.Module):
    """UCoFiA-style head: video-sentence, frame-sentence and patch-word similarity with ISA.

    Args:
        config: a :class:`UCoFiAConfig`.
    """

    def __init__(self, config: UCoFiAConfig) -> None:
        super().__init__()
        config.validate()
        self.config = c = config
        n_patch_units = c.n_frames * (c.top_k + 1)
        self.proj_sentence = _identity_linear(c.dim)  # video-sentence level, text side
        self.proj_video = _identity_linear(c.dim)  # video-sentence level, video side
        self.proj_word = _identity_linear(c.dim)  # patch-word level, text side
        self.proj_patch = _identity_linear(c.dim)  # patch-word level, video side
        self.temporal = (
            TemporalTransformer(c.dim, c.n_frames, c.n_layers, c.n_heads)
            if c.temporal == "transformer"
            else None
        )
        self.scorer = PatchScorer(c.dim) if c.patch_scorer == "learned" else None

        def agg(n: int) -> nn.Module:
            return ISA(n, c.isa_tau) if c.aggregation == "isa" else MeanAggregation()

        self.agg_frames = agg(c.n_frames)
        self.agg_pw = nn.ModuleDict(
            {
                "over_words": agg(c.max_words),
                "then_over_patches": agg(n_patch_units),
                "over_patches": agg(n_patch_units),
                "then_over_words": agg(c.max_words),
            }
        )
        self.logit_scale = nn.Parameter(torch.tensor(float(c.logit_scale_init)))

    def encode_videos(
        self,
        frame_feats: torch.Tensor,
        patch_tokens: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
    ) -> VideoEmbeddings:
        """Video side: ``frame_feats (V, F, D)``, ``patch_tokens (V, F, P, D)``, ``frame_mask (V, F)``."""
        c = self.config
        frame_mask = _sequence_mask(frame_feats, frame_mask, c.n_frames, c.dim, "frame_feats")
        # video level: temporal context, pooled over real frames
        if self.temporal is not None:
            video = self.temporal(frame_feats, frame_mask)
        else:
            video = masked_mean(
                F.normalize(frame_feats, dim=-1).transpose(1, 2), frame_mask[:, None]
            )
        patches = patch_mask = None
        if "patch" in c.granularities:
            patches, patch_mask = self._select(frame_feats, patch_tokens, frame_mask)
        return VideoEmbeddings(self.proj_video(video), frame_feats, frame_mask, patches, patch_mask)

    def _select(
        self, frame_feats: torch.Tensor, patch_tokens: torch.Tensor | None, frame_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """CLS + top-k patches per frame, flattened to ``(V, F * (k + 1), D)`` with a mask."""
        if patch_tokens is None:
            raise DataValidationError(
                "patch_tokens are required when the 'patch' granularity is used"
            )
        k = self.config.top_k
        scores = None if self.scorer is None else self.scorer(frame_feats, patch_tokens)
        tokens, index = select_patches(frame_feats, patch_tokens, k, scores)
        if scores is not None:
            # straight-through gate: value 1, gradient reaches the scorer (replaces perturbed top-k)
            s = torch.gather(scores, 2, index)
            gate = torch.cat([torch.ones_like(s[..., :1]), 1.0 + s - s.detach()], dim=-1)
            tokens = tokens * gate[..., None]
        n_videos, n_frames = frame_feats.shape[:2]
        patches = self.proj_patch(tokens.reshape(n_videos, n_frames * (k + 1), -1))
        return patches, frame_mask.repeat_interleave(k + 1, dim=1)

    def encode_texts(
        self,
        sentence_feats: torch.Tensor,
        word_tokens: torch.Tensor,
        word_mask: torch.Tensor | None = None,
    ) -> TextEmbeddings:
        """Text side: ``sentence_feats (Q, D)``, ``word_tokens (Q, L, D)``, ``word_mask (Q, L)``."""
        c = self.config
        word_mask = _sequence_mask(word_tokens, word_mask, c.max_words, c.dim, "word_tokens")
        return TextEmbeddings(
            self.proj_sentence(sentence_feats),
            sentence_feats,
            self.proj_word(word_tokens),
            word_mask,
        )

    def similarity(
        self, texts: TextEmbeddings, videos: VideoEmbeddings, chunk_size: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-granularity ``(Q, V)`` cosine-scale similarities for the configured granularities."""
        out: dict[str, torch.Tensor] = {}
        g = self.config.granularities
        if "video" in g:
            out["video"] = video_sentence_similarity(videos.video, texts.sentence)
        if "frame" in g:
            out["frame"] = frame_sentence_similarity(
                videos.frames, texts.sentence_local, videos.frame_mask, self.agg_frames
            )
        if "patch" in g:
            out["patch"] = patch_word_similarity(
                videos.patches, texts.words, texts.word_mask, videos.patch_mask,
                **self.agg_pw, chunk_size=chunk_size or self.config.chunk_size,
            )  # fmt: skip
        return out

    def forward(
        self,
        frame_feats: torch.Tensor,
        patch_tokens: torch.Tensor | None,
        sentence_feats: torch.Tensor,
        word_tokens: torch.Tensor,
        word_mask: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
    ) -> UCoFiAOutput:
        """All-pairs similarities of a batch of texts and videos; logits = scale * mean level."""
        videos = self.encode_videos(frame_feats, patch_tokens, frame_mask)
        texts = self.encode_texts(sentence_feats, word_tokens, word_mask)
        sims = self.similarity(texts, videos)
        scale = self.logit_scale.exp().clamp(max=100.0)
        return UCoFiAOutput(sims, scale * torch.stack(list(sims.values())).mean(0))

    @staticmethod
    def loss(logits: torch.Tensor) -> torch.Tensor:
        """Symmetric cross-entropy over ``(B, B)`` logits with matching pairs on the diagonal."""
        return symmetric_ce_loss(logits)


def symmetric_ce_loss(logits: torch.Tensor) -> torch.Tensor:
    """``(CE(logits, diag) + CE(logits^T, diag)) / 2`` (UCoFiA / CLIP4Clip training loss).

    Args:
        logits: ``(B, B)`` text x video logits; pair i is (text i, video i).

    Returns:
        Scalar loss.
    """
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise DataValidationError(f"logits must be square (B, B), got {tuple(logits.shape)}")
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def _sequence_mask(
    feats: torch.Tensor, mask: torch.Tensor | None, max_len: int, dim: int, name: str
) -> torch.Tensor:
    """Check a ``(B, L<=max_len, dim)`` batch of sequences; return its bool mask (all True if None).

    Raises:
        DataValidationError: naming ``name`` and the shape, when the shape is wrong.
    """
    if feats.ndim != 3 or feats.shape[1] > max_len or feats.shape[2] != dim:
        raise DataValidationError(
            f"{name} must be (B, L<={max_len}, {dim}), got {tuple(feats.shape)}"
        )
    if mask is None:
        return torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device)
    return mask.to(torch.bool)
