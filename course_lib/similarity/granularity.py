"""The three UCoFiA granularities: video-sentence, frame-sentence and patch-word similarity.

All functions take *features* (any encoder) and return a ``(Q, V)`` matrix: one row per text,
one column per video. Features are L2-normalised inside (cosine similarity), as in UCoFiA.

An *aggregator* is any callable ``agg(sims, mask) -> sims.sum(-1)``-shaped tensor that reduces the
last dimension while respecting a boolean mask: :func:`~course_lib.similarity.isa.masked_mean`,
an :class:`~course_lib.similarity.isa.ISA` module or a
:class:`~course_lib.similarity.isa.MeanAggregation` module.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from course_lib.errors import DataValidationError
from course_lib.similarity.isa import masked_mean

Aggregator = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def _check(t: torch.Tensor, ndim: int, name: str) -> None:
    """Raise a DataValidationError naming ``name`` when ``t`` does not have ``ndim`` dims."""
    if not isinstance(t, torch.Tensor) or t.ndim != ndim:
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise DataValidationError(f"{name} must be a {ndim}-D tensor, got shape {shape}")


def _check_dims(a: torch.Tensor, b: torch.Tensor, na: str, nb: str) -> None:
    """Raise when the feature dimensions (last axes) of ``a`` and ``b`` differ."""
    if a.shape[-1] != b.shape[-1]:
        raise DataValidationError(
            f"feature dimension mismatch: {na} has D={a.shape[-1]}, {nb} has D={b.shape[-1]}"
        )


def video_sentence_similarity(
    video_feats: torch.Tensor, sentence_feats: torch.Tensor
) -> torch.Tensor:
    """Coarse level: cosine similarity of one feature per video and one per sentence.

    Args:
        video_feats: ``(V, D)`` video-level features (e.g. temporally pooled frames).
        sentence_feats: ``(Q, D)`` sentence features.

    Returns:
        ``(Q, V)`` cosine similarities.
    """
    _check(video_feats, 2, "video_feats")
    _check(sentence_feats, 2, "sentence_feats")
    _check_dims(video_feats, sentence_feats, "video_feats", "sentence_feats")
    return F.normalize(sentence_feats, dim=-1) @ F.normalize(video_feats, dim=-1).T


def frame_sentence_similarity(
    frame_feats: torch.Tensor,
    sentence_feats: torch.Tensor,
    frame_mask: torch.Tensor | None = None,
    aggregator: Aggregator = masked_mean,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Middle level: sentence-to-frame similarities aggregated over frames (UCoFiA, ISA).

    Args:
        frame_feats: ``(V, F, D)`` frame features.
        sentence_feats: ``(Q, D)`` sentence features.
        frame_mask: ``(V, F)`` boolean, True for real (non-padded) frames.
        aggregator: reduces the frame axis, e.g. an ``ISA(F)`` module.
        chunk_size: process at most this many texts at once (bounds the ``(Q, V, F)`` tensor).

    Returns:
        ``(Q, V)`` aggregated similarities.
    """
    _check(frame_feats, 3, "frame_feats")
    _check(sentence_feats, 2, "sentence_feats")
    _check_dims(frame_feats, sentence_feats, "frame_feats", "sentence_feats")
    s = F.normalize(sentence_feats, dim=-1)
    f = F.normalize(frame_feats, dim=-1)
    mask = None if frame_mask is None else frame_mask.to(torch.bool)[None]  # (1, V, F)
    if chunk_size is not None and chunk_size < 1:
        raise DataValidationError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    step = chunk_size or max(1, s.shape[0])
    # per text block: (q, V, F) frame similarities, aggregated over frames
    parts = [
        aggregator(torch.einsum("qd,vfd->qvf", s[i : i + step], f), mask)
        for i in range(0, s.shape[0], step)
    ]
    return torch.cat(parts) if parts else s.new_zeros((0, f.shape[0]))


def select_patches(
    cls_feats: torch.Tensor,
    patch_tokens: torch.Tensor,
    k: int,
    scores: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the frame CLS token plus the ``k`` most salient patches of every frame.

    UCoFiA keeps, per frame, the CLS token and the top-``k`` (``k = 3``) patch tokens ranked by a
    learned saliency MLP that sees each patch together with its frame's CLS token (borrowed from
    TS2-Net, made differentiable with perturbed top-k). Without learned ``scores`` this function
    ranks patches by their cosine similarity to the frame CLS token, a parameter-free proxy of
    the same idea ("which patches carry what the frame is about").

    Args:
        cls_feats: ``(V, F, D)`` frame CLS / frame features.
        patch_tokens: ``(V, F, P, D)`` patch tokens (CLS excluded).
        k: number of patches kept per frame (``1 <= k <= P``).
        scores: optional ``(V, F, P)`` saliency scores (e.g. from a learned scorer).

    Returns:
        ``(tokens, index)``: tokens ``(V, F, k + 1, D)`` with the CLS token first, and the
        chosen patch indices ``(V, F, k)``.
    """
    _check(cls_feats, 3, "cls_feats")
    _check(patch_tokens, 4, "patch_tokens")
    _check_dims(cls_feats, patch_tokens, "cls_feats", "patch_tokens")
    if patch_tokens.shape[:2] != cls_feats.shape[:2]:
        raise DataValidationError(
            f"patch_tokens {tuple(patch_tokens.shape)} and cls_feats {tuple(cls_feats.shape)} "
            "disagree on (V, F)"
        )
    n_patches = patch_tokens.shape[2]
    if not 1 <= k <= n_patches:
        raise DataValidationError(f"select_patches: k={k} must be in [1, {n_patches}]")
    if scores is None:
        # saliency = cosine similarity of each patch to its frame's CLS token
        scores = torch.einsum(
            "vfpd,vfd->vfp", F.normalize(patch_tokens, dim=-1), F.normalize(cls_feats, dim=-1)
        )
    index = scores.topk(k, dim=-1).indices.sort(dim=-1).values  # keep spatial order
    picked = torch.gather(
        patch_tokens, 2, index[..., None].expand(-1, -1, -1, patch_tokens.shape[-1])
    )
    return torch.cat([cls_feats[:, :, None], picked], dim=2), index


def _patch_word_block(
    patches: torch.Tensor,
    words: torch.Tensor,
    patch_mask: torch.Tensor,
    word_mask: torch.Tensor,
    aggs: tuple[Aggregator, Aggregator, Aggregator, Aggregator],
) -> torch.Tensor:
    """Patch-word similarity for one block of texts x videos (normalised inputs)."""
    over_words, then_over_patches, over_patches, then_over_words = aggs
    sims = torch.einsum("qld,vnd->qvnl", words, patches)  # (q, v, N, L)
    wmask = word_mask[:, None, None, :]  # (q, 1, 1, L)
    pmask = patch_mask[None, :, None, :]  # (1, v, 1, N)
    # direction 1: each patch finds its words, then the patches are aggregated
    per_patch = over_words(sims, wmask)  # (q, v, N)
    score_1 = then_over_patches(per_patch, pmask[:, :, 0])  # (q, v)
    # direction 2: each word finds its patches, then the words are aggregated
    per_word = over_patches(sims.transpose(-1, -2), pmask)  # (q, v, L)
    score_2 = then_over_words(per_word, wmask[:, :, 0])  # (q, v)
    return 0.5 * (score_1 + score_2)


def patch_word_similarity(
    patch_feats: torch.Tensor,
    word_feats: torch.Tensor,
    word_mask: torch.Tensor | None = None,
    patch_mask: torch.Tensor | None = None,
    over_words: Aggregator = masked_mean,
    then_over_patches: Aggregator = masked_mean,
    over_patches: Aggregator = masked_mean,
    then_over_words: Aggregator = masked_mean,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Fine level: patch-word similarity matrices aggregated in both directions (UCoFiA).

    For each (text, video) pair the ``(N patches x L words)`` cosine matrix is reduced
    (1) over words then over patches and (2) over patches then over words; the two scores are
    averaged, as in UCoFiA. With ``chunk_size`` the texts and videos are processed in blocks of
    at most ``chunk_size`` each, so the peak extra memory is ``chunk_size^2 * N * L`` floats
    instead of ``Q * V * N * L``; the result is identical.

    Args:
        patch_feats: ``(V, N, D)`` selected patch tokens (e.g. ``F * (k + 1)`` per video).
        word_feats: ``(Q, L, D)`` word tokens.
        word_mask: ``(Q, L)`` boolean, True for real words (padding False).
        patch_mask: ``(V, N)`` boolean, True for real patches.
        over_words, then_over_patches, over_patches, then_over_words: aggregators of the
            four reductions (mean pooling by default, ISA modules in UCoFiA).
        chunk_size: block size over texts and videos; None processes everything at once.

    Returns:
        ``(Q, V)`` similarities.
    """
    _check(patch_feats, 3, "patch_feats")
    _check(word_feats, 3, "word_feats")
    _check_dims(patch_feats, word_feats, "patch_feats", "word_feats")
    n_q, n_v = word_feats.shape[0], patch_feats.shape[0]
    if word_mask is None:
        word_mask = torch.ones(word_feats.shape[:2], dtype=torch.bool, device=word_feats.device)
    if patch_mask is None:
        patch_mask = torch.ones(patch_feats.shape[:2], dtype=torch.bool, device=patch_feats.device)
    if tuple(word_mask.shape) != tuple(word_feats.shape[:2]):
        raise DataValidationError(
            f"word_mask shape {tuple(word_mask.shape)} != word_feats (Q, L) {tuple(word_feats.shape[:2])}"
        )
    if tuple(patch_mask.shape) != tuple(patch_feats.shape[:2]):
        raise DataValidationError(
            f"patch_mask shape {tuple(patch_mask.shape)} != patch_feats (V, N) {tuple(patch_feats.shape[:2])}"
        )
    if chunk_size is not None and chunk_size < 1:
        raise DataValidationError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    words, patches = F.normalize(word_feats, dim=-1), F.normalize(patch_feats, dim=-1)
    word_mask, patch_mask = word_mask.to(torch.bool), patch_mask.to(torch.bool)
    aggs = (over_words, then_over_patches, over_patches, then_over_words)
    if n_q == 0 or n_v == 0:
        return word_feats.new_zeros((n_q, n_v))
    step_q, step_v = chunk_size or n_q, chunk_size or n_v
    rows = []
    for q0 in range(0, n_q, step_q):
        q = slice(q0, q0 + step_q)
        row = [
            _patch_word_block(
                patches[v0 : v0 + step_v],
                words[q],
                patch_mask[v0 : v0 + step_v],
                word_mask[q],
                aggs,
            )
            for v0 in range(0, n_v, step_v)
        ]
        rows.append(torch.cat(row, dim=1))
    return torch.cat(rows, dim=0)
