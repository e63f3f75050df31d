"""Text-to-video and video-to-text retrieval metrics: R@1/5/10, median and mean rank.

Ranks are 1-based. The rank of a query is ``1 + (number of wrong candidates scoring at least as
high as the best correct one)``: ties are counted **pessimistically** (against the query) by
default, so a model that outputs constant similarities gets the worst rank, not a perfect one.
The MSR-VTT code used by CLIP4Clip / X-CLIP / UCoFiA finds the rank by sorting each row and
locating the ground-truth score; for float similarities without ties (the normal case) it gives
exactly these ranks. ``ties="optimistic"`` counts only strictly higher wrong candidates.

Values follow the usual conventions: R@K in percent (0-100), median rank ``MedR`` and mean rank
``MeanR`` as plain floats.
"""

from __future__ import annotations

import numpy as np
import torch

from course_lib.errors import MetricInputError

KS = (1, 5, 10)


def _to_numpy(sims: torch.Tensor | np.ndarray) -> np.ndarray:
    """Validate a 2-D finite similarity matrix and return it as float64 numpy."""
    arr = (
        sims.detach().cpu().double().numpy()
        if isinstance(sims, torch.Tensor)
        else np.asarray(sims, dtype=np.float64)
    )
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise MetricInputError(
            f"similarity matrix must be 2-D and non-empty, got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise MetricInputError(
            f"similarity matrix has a NaN/inf value at (text, video) = {tuple(bad)}"
        )
    return arr


def _gt_index(
    n_texts: int, n_videos: int, gt: torch.Tensor | np.ndarray | list[int] | None
) -> np.ndarray:
    """Ground-truth video index per text (the diagonal when ``gt`` is None)."""
    if gt is None:
        if n_texts != n_videos:
            raise MetricInputError(
                f"without gt the matrix must be square (diagonal ground truth), got {n_texts} x {n_videos}"
            )
        return np.arange(n_texts)
    idx = np.asarray(gt.detach().cpu() if isinstance(gt, torch.Tensor) else gt)
    if idx.shape != (n_texts,) or not np.issubdtype(idx.dtype, np.integer):
        raise MetricInputError(
            f"gt must hold one integer video index per text ({n_texts}), got shape {idx.shape}"
        )
    if idx.min() < 0 or idx.max() >= n_videos:
        bad = int(np.flatnonzero((idx < 0) | (idx >= n_videos))[0])
        raise MetricInputError(f"gt[{bad}] = {idx[bad]} is not a video index in [0, {n_videos})")
    return idx.astype(np.int64)


def ranks_from_positives(
    scores: np.ndarray, positive: np.ndarray, ties: str = "pessimistic"
) -> np.ndarray:
    """1-based rank of the best positive candidate in every row.

    Args:
        scores: ``(n_queries, n_candidates)`` scores.
        positive: boolean ``(n_queries, n_candidates)``; every row needs a True.
        ties: ``"pessimistic"`` (wrong candidates with an equal score rank first) or
            ``"optimistic"``.

    Returns:
        ``(n_queries,)`` integer ranks, 1 = a correct candidate is on top.
    """
    if ties not in ("pessimistic", "optimistic"):
        raise MetricInputError(f"ties must be 'pessimistic' or 'optimistic', got {ties!r}")
    best_pos = np.where(positive, scores, -np.inf).max(axis=1, keepdims=True)
    beats = scores >= best_pos if ties == "pessimistic" else scores > best_pos
    return 1 + (beats & ~positive).sum(axis=1)


def metrics_from_ranks(ranks: np.ndarray) -> dict[str, float]:
    """R@1/5/10 (percent), median rank and mean rank of 1-based ``ranks``."""
    out = {f"R{k}": float(100.0 * np.mean(ranks <= k)) for k in KS}
    out["MedR"] = float(np.median(ranks))
    out["MeanR"] = float(np.mean(ranks))
    return out


def retrieval_metrics(
    sims: torch.Tensor | np.ndarray,
    gt: torch.Tensor | np.ndarray | list[int] | None = None,
    ties: str = "pessimistic",
) -> dict[str, dict[str, float]]:
    """Retrieval metrics in both directions from a (texts x videos) similarity matrix.

    Args:
        sims: ``(Q, V)`` similarities.
        gt: ground-truth video index for each text; None means the diagonal (``Q == V``).
            Several texts may share a video; for video-to-text any of its texts counts as
            correct, and videos without any text are skipped.
        ties: see :func:`ranks_from_positives`.

    Returns:
        ``{"t2v": {...}, "v2t": {...}}`` with keys ``R1, R5, R10, MedR, MeanR``.

    Raises:
        MetricInputError: malformed matrix or ground truth.
    """
    arr = _to_numpy(sims)
    n_q, n_v = arr.shape
    idx = _gt_index(n_q, n_v, gt)
    positive = np.zeros((n_q, n_v), dtype=bool)
    positive[np.arange(n_q), idx] = True
    t2v = ranks_from_positives(arr, positive, ties)
    has_text = positive.any(axis=0)  # videos with at least one caption
    v2t = ranks_from_positives(arr.T[has_text], positive.T[has_text], ties)
    return {"t2v": metrics_from_ranks(t2v), "v2t": metrics_from_ranks(v2t)}
