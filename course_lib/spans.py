"""Temporal spans: coding, IoU, generalized IoU, NMS and 2-second clip ids.

A *span* (or *window*) is a time interval ``[st, ed]``. Models predict spans as
``(center, width)`` normalised by the video duration (Moment-DETR, QD-DETR); metrics and
submission files use ``(start, end)`` in seconds.

Backends: every array function here takes **either** numpy arrays **or** torch tensors
(``*_torch`` variants are not needed): the function looks at its first argument and uses the
matching library, and returns the same type. Gradients flow through the torch path, so the
losses in :mod:`course_lib.grounding.losses` use these very functions.

IoU arithmetic follows moment_detr's ``standalone_eval`` exactly
(``inter = max(0, min(ed) - max(st))``, ``union = len1 + len2 - inter``, ``iou = inter / union``),
so thresholds such as 0.7 are decided bit-for-bit as in the official evaluation. Where the union is
0 (two empty spans) the IoU is defined as 0 instead of NaN.

Clips: clip ``i`` covers ``[2i, 2i + 2)`` seconds. A window ``[st, ed]`` covers clip ids
``floor(st / 2) .. ceil(ed / 2) - 1``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from course_lib.timeline import CLIP_LEN

Array = Any  # np.ndarray or torch.Tensor: the backend follows the first argument


# ----------------------------------------------------------------------------- backend helpers
def _is_torch(x: Array) -> bool:
    return isinstance(x, torch.Tensor)


def _as_array(x: Array, like: Array) -> Array:
    """Convert ``x`` to the backend of ``like`` (numpy float64 or a tensor on like's device)."""
    if _is_torch(like):
        return torch.as_tensor(x, dtype=like.dtype, device=like.device)
    return np.asarray(x, dtype=np.float64)


def _check_spans(spans: Array, name: str) -> Array:
    """Return ``spans`` as an array of shape (N, 2); raise ValueError for other shapes."""
    if not _is_torch(spans):
        spans = np.asarray(spans, dtype=np.float64)
    if spans.ndim == 1 and spans.shape[0] == 2:
        spans = spans[None]
    if spans.ndim != 2 or spans.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {tuple(spans.shape)}")
    return spans


def _maximum(a: Array, b: Array) -> Array:
    return torch.maximum(a, b) if _is_torch(a) else np.maximum(a, b)


def _minimum(a: Array, b: Array) -> Array:
    return torch.minimum(a, b) if _is_torch(a) else np.minimum(a, b)


def _clamp_min0(a: Array) -> Array:
    return a.clamp(min=0) if _is_torch(a) else np.clip(a, 0, None)


def _safe_divide(num: Array, den: Array) -> Array:
    """``num / den`` where ``den != 0``, else 0 (keeps gradients on the torch path)."""
    if _is_torch(num):
        safe_den = torch.where(den != 0, den, torch.ones_like(den))
        return torch.where(den != 0, num / safe_den, torch.zeros_like(num))
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _stack_last(parts: Sequence[Array]) -> Array:
    return torch.stack(list(parts), dim=-1) if _is_torch(parts[0]) else np.stack(parts, axis=-1)


# ----------------------------------------------------------------------------- span coding
def span_xx_to_cxw(spans: Array) -> Array:
    """``(..., 2)`` spans ``[start, end]`` -> ``[center, width]`` (same units, same backend)."""
    start, end = spans[..., 0], spans[..., 1]
    return _stack_last([(start + end) * 0.5, end - start])


def span_cxw_to_xx(spans: Array) -> Array:
    """``(..., 2)`` spans ``[center, width]`` -> ``[start, end]`` (same units, same backend)."""
    center, width = spans[..., 0], spans[..., 1]
    return _stack_last([center - 0.5 * width, center + 0.5 * width])


def normalize_spans(spans: Array, duration: float) -> Array:
    """Seconds -> fractions of the video: divide every coordinate by ``duration`` (> 0)."""
    if not duration > 0:
        raise ValueError(f"duration must be > 0, got {duration}")
    return spans / duration


def denormalize_spans(spans: Array, duration: float) -> Array:
    """Fractions of the video -> seconds: multiply every coordinate by ``duration`` (> 0)."""
    if not duration > 0:
        raise ValueError(f"duration must be > 0, got {duration}")
    return spans * duration


def cxw_to_seconds(spans_cxw: Array, duration: float) -> Array:
    """Model output ``(center, width)`` in [0, 1] -> ``[start, end]`` in seconds, clipped to the video."""
    xx = denormalize_spans(span_cxw_to_xx(spans_cxw), duration)
    return xx.clamp(0, duration) if _is_torch(xx) else np.clip(xx, 0, duration)


def seconds_to_cxw(spans_xx: Array, duration: float) -> Array:
    """``[start, end]`` in seconds -> ``(center, width)`` normalised by ``duration``."""
    return span_xx_to_cxw(normalize_spans(spans_xx, duration))


# ----------------------------------------------------------------------------- IoU
def temporal_iou(spans1: Array, spans2: Array) -> Array:
    """All-pairs temporal IoU.

    Args:
        spans1: (N, 2) ``[start, end]`` spans (numpy or torch).
        spans2: (M, 2) spans in the same units and backend.

    Returns:
        (N, M) IoU matrix, ``|a ∩ b| / |a ∪ b|`` in [0, 1] (0 where the union is empty).
    """
    spans1, spans2 = _check_spans(spans1, "spans1"), _check_spans(spans2, "spans2")
    spans2 = _as_array(spans2, spans1)
    # lengths of every span
    len1 = spans1[:, 1] - spans1[:, 0]
    len2 = spans2[:, 1] - spans2[:, 0]
    # intersection of every pair: overlap of [max(st), min(ed)], never negative
    left = _maximum(spans1[:, None, 0], spans2[None, :, 0])
    right = _minimum(spans1[:, None, 1], spans2[None, :, 1])
    inter = _clamp_min0(right - left)
    union = len1[:, None] + len2[None, :] - inter
    return _safe_divide(inter, union)


def paired_temporal_iou(spans1: Array, spans2: Array) -> Array:
    """Element-wise temporal IoU of two (N, 2) span arrays -> (N,)."""
    spans1, spans2 = _check_spans(spans1, "spans1"), _check_spans(spans2, "spans2")
    spans2 = _as_array(spans2, spans1)
    if spans1.shape != spans2.shape:
        raise ValueError(f"paired spans need equal shapes, got {spans1.shape} and {spans2.shape}")
    inter = _clamp_min0(_minimum(spans1[:, 1], spans2[:, 1]) - _maximum(spans1[:, 0], spans2[:, 0]))
    union = (spans1[:, 1] - spans1[:, 0]) + (spans2[:, 1] - spans2[:, 0]) - inter
    return _safe_divide(inter, union)


def generalized_temporal_iou(spans1: Array, spans2: Array) -> Array:
    """All-pairs generalized temporal IoU (GIoU, Rezatofighi et al. 2019, eq. 1 in 1-D).

    ``giou = iou - (|C| - |a ∪ b|) / |C|`` with ``C`` the smallest interval enclosing both spans.

    Args:
        spans1: (N, 2) ``[start, end]`` spans (numpy or torch), ``end >= start``.
        spans2: (M, 2) spans, same backend.

    Returns:
        (N, M) values in [-1, 1]; 1 only for identical spans, -> -1 for far-apart short spans.
    """
    spans1, spans2 = _check_spans(spans1, "spans1"), _check_spans(spans2, "spans2")
    spans2 = _as_array(spans2, spans1)
    iou = temporal_iou(spans1, spans2)
    # union again (temporal_iou keeps it internal)
    len1 = spans1[:, 1] - spans1[:, 0]
    len2 = spans2[:, 1] - spans2[:, 0]
    inter = _clamp_min0(
        _minimum(spans1[:, None, 1], spans2[None, :, 1])
        - _maximum(spans1[:, None, 0], spans2[None, :, 0])
    )
    union = len1[:, None] + len2[None, :] - inter
    # enclosing interval C
    enclosing = _clamp_min0(
        _maximum(spans1[:, None, 1], spans2[None, :, 1])
        - _minimum(spans1[:, None, 0], spans2[None, :, 0])
    )
    return iou - _safe_divide(enclosing - union, enclosing)


def paired_generalized_temporal_iou(spans1: Array, spans2: Array) -> Array:
    """Element-wise generalized temporal IoU of two (N, 2) span arrays -> (N,)."""
    spans1, spans2 = _check_spans(spans1, "spans1"), _check_spans(spans2, "spans2")
    spans2 = _as_array(spans2, spans1)
    if spans1.shape != spans2.shape:
        raise ValueError(f"paired spans need equal shapes, got {spans1.shape} and {spans2.shape}")
    iou = paired_temporal_iou(spans1, spans2)
    inter = _clamp_min0(_minimum(spans1[:, 1], spans2[:, 1]) - _maximum(spans1[:, 0], spans2[:, 0]))
    union = (spans1[:, 1] - spans1[:, 0]) + (spans2[:, 1] - spans2[:, 0]) - inter
    enclosing = _clamp_min0(
        _maximum(spans1[:, 1], spans2[:, 1]) - _minimum(spans1[:, 0], spans2[:, 0])
    )
    return iou - _safe_divide(enclosing - union, enclosing)


# ----------------------------------------------------------------------------- NMS
def temporal_nms(
    windows: Sequence[Sequence[float]] | np.ndarray,
    iou_threshold: float = 0.7,
    max_keep: int | None = None,
) -> list[list[float]]:
    """Greedy temporal non-maximum suppression.

    Windows are visited by score, highest first (ties: earlier in the input first); a window is
    dropped when its IoU with an already kept window is **greater than** ``iou_threshold``
    (the usual NMS convention, as in torchvision's ``nms``).

    Args:
        windows: (N, 3) rows ``[st, ed, score]``.
        iou_threshold: suppression threshold in [0, 1].
        max_keep: keep at most this many windows (None: no limit).

    Returns:
        Kept windows as ``[[st, ed, score], ...]`` (python floats), sorted by score descending.
    """
    arr = np.asarray(windows, dtype=np.float64).reshape(-1, 3)
    # stable sort by descending score
    order = np.argsort(-arr[:, 2], kind="stable")
    arr = arr[order]
    ious = temporal_iou(arr[:, :2], arr[:, :2]) if len(arr) else np.zeros((0, 0))
    kept: list[int] = []
    for i in range(len(arr)):
        if max_keep is not None and len(kept) >= max_keep:
            break
        # keep i unless it overlaps a kept window too much
        if all(ious[i, j] <= iou_threshold for j in kept):
            kept.append(i)
    return [[float(v) for v in arr[i]] for i in kept]


# ----------------------------------------------------------------------------- clips <-> windows
def num_clips(duration: float, clip_len: float = CLIP_LEN) -> int:
    """Number of clips of a video, ``int(duration / clip_len)`` as in moment_detr's evaluation."""
    return int(duration / clip_len)


def window_to_clip_ids(window: Sequence[float], clip_len: float = CLIP_LEN) -> list[int]:
    """Clip ids covered by one window ``[st, ed]``: ``floor(st/2) .. ceil(ed/2) - 1``."""
    st, ed = float(window[0]), float(window[1])
    if not ed > st:
        raise ValueError(f"window must have st < ed, got {list(window)}")
    return list(range(math.floor(st / clip_len), math.ceil(ed / clip_len)))


def windows_to_clip_ids(
    windows: Iterable[Sequence[float]], clip_len: float = CLIP_LEN
) -> list[int]:
    """Sorted unique clip ids covered by any of ``windows``."""
    ids: set[int] = set()
    for window in windows:
        ids.update(window_to_clip_ids(window, clip_len))
    return sorted(ids)


def clip_ids_to_windows(
    clip_ids: Iterable[int], clip_len: float = CLIP_LEN, duration: float | None = None
) -> list[list[float]]:
    """Group clip ids into maximal runs of consecutive ids and return one window per run.

    Args:
        clip_ids: clip indices (any order, duplicates allowed).
        clip_len: clip length in seconds.
        duration: if given, window ends are clipped to it (a last partial clip).

    Returns:
        ``[[st, ed], ...]`` in seconds, sorted by start. ``[3, 4, 5, 9]`` -> ``[[6, 12], [18, 20]]``.
    """
    ids = sorted(set(int(i) for i in clip_ids))
    if ids and ids[0] < 0:
        raise ValueError(f"clip ids must be >= 0, got {ids[0]}")
    windows: list[list[float]] = []
    for cid in ids:
        if windows and windows[-1][1] == cid * clip_len:
            windows[-1][1] = (cid + 1) * clip_len  # extend the current run
        else:
            windows.append([cid * clip_len, (cid + 1) * clip_len])  # start a new run
    if duration is not None:
        windows = [[st, min(ed, float(duration))] for st, ed in windows]
    return windows
