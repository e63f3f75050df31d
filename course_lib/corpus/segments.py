"""Fixed-length segments of a video and their pooled embeddings (SPR sec. 3.1).

SPR ("A Flexible and Scalable Framework for Video Moment Search") cuts every video of the
collection into fixed-length, non-overlapping segments, embeds each segment once, and indexes
the segment embeddings. Here a video is given as per-clip features ``(T, D)`` (one row per
2-second clip); a segment groups ``clips_per_segment`` consecutive clips (4 s = 2 clips by
default), the last segment may be shorter, and its embedding is the mean of its clip features,
optionally passed through a learned projector, then L2-normalised.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from course_lib.errors import DataValidationError
from course_lib.timeline import CLIP_LEN

#: a learned projector: any callable mapping (N, D) float32 to (N, D') float32
Projector = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SegmentTable:
    """Segment embeddings of one or many videos plus their columnar metadata.

    Attributes:
        embeddings: float32 (N, D') L2-normalised segment embeddings.
        vids: unicode (N,) video id of each segment.
        starts: float64 (N,) segment start in seconds.
        ends: float64 (N,) segment end in seconds (``start + len * CLIP_LEN``, shorter at the end).
    """

    embeddings: np.ndarray
    vids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation in float32 (rows of zeros stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32, copy=False)


def segment_bounds(n_clips: int, clips_per_segment: int = 2) -> np.ndarray:
    """Clip-index bounds ``[start, end)`` of the fixed-length segments of a video.

    Args:
        n_clips: number of 2-s clips T of the video (>= 1).
        clips_per_segment: segment length in clips (>= 1); the last segment keeps the remainder.

    Returns:
        int64 (S, 2) array with ``S = ceil(T / clips_per_segment)``.
    """
    if clips_per_segment < 1:
        raise ValueError(f"clips_per_segment must be >= 1, got {clips_per_segment}")
    starts = np.arange(0, n_clips, clips_per_segment, dtype=np.int64)
    ends = np.minimum(starts + clips_per_segment, n_clips)
    return np.stack([starts, ends], axis=1)


def pool_segments(clip_feats: np.ndarray, clips_per_segment: int = 2) -> np.ndarray:
    """Mean-pool clip features into segment features (not normalised).

    Args:
        clip_feats: float (T, D) features of the 2-s clips of one video.
        clips_per_segment: segment length in clips.

    Returns:
        float32 (S, D) mean of each segment's clip features.
    """
    feats = np.asarray(clip_feats, dtype=np.float32)
    bounds = segment_bounds(feats.shape[0], clips_per_segment)
    # reduceat sums each [start, next start) block; divide by the block length for the mean
    sums = np.add.reduceat(feats, bounds[:, 0], axis=0)
    return sums / (bounds[:, 1] - bounds[:, 0])[:, None].astype(np.float32)


def _check_clip_feats(vid: str, feats: np.ndarray, dim: int | None) -> np.ndarray:
    """Validate one video's clip features: 2-D, non-empty, finite, expected width."""
    feats = np.asarray(feats)
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise DataValidationError(
            f"features of video {vid!r} must have shape (T>=1, D), got {feats.shape}"
        )
    if dim is not None and feats.shape[1] != dim:
        raise DataValidationError(
            f"features of video {vid!r} have dimension {feats.shape[1]}, expected {dim}"
        )
    if not np.isfinite(feats).all():
        raise DataValidationError(f"features of video {vid!r} contain NaN or inf")
    return feats.astype(np.float32, copy=False)


def segment_videos(
    features_by_vid: Mapping[str, np.ndarray],
    clips_per_segment: int = 2,
    projector: Projector | None = None,
    clip_len: float = CLIP_LEN,
) -> SegmentTable:
    """Segment, pool, project and L2-normalise the clip features of many videos.

    Args:
        features_by_vid: video id -> float (T, D) clip features (same D for every video).
        clips_per_segment: segment length in clips (2 clips = 4 s by default).
        projector: optional learned map (N, D) -> (N, D') applied to the pooled features.
        clip_len: seconds per clip.

    Returns:
        A :class:`SegmentTable` with one row per segment, videos in the mapping's order.
    """
    pooled, vids, starts, ends = [], [], [], []
    dim = None
    for vid, feats in features_by_vid.items():
        feats = _check_clip_feats(vid, feats, dim)
        dim = feats.shape[1]
        bounds = segment_bounds(feats.shape[0], clips_per_segment)
        pooled.append(pool_segments(feats, clips_per_segment))
        vids.extend([vid] * len(bounds))
        starts.append(bounds[:, 0] * clip_len)
        ends.append(bounds[:, 1] * clip_len)
    if not pooled:
        raise DataValidationError("no videos given: features_by_vid is empty")
    emb = np.concatenate(pooled, axis=0)
    if projector is not None:
        # the hook for a learned segment projector (e.g. a linear layer trained with InfoNCE)
        emb = np.asarray(projector(emb), dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(vids):
            raise DataValidationError(
                f"projector must map (N, D) to (N, D'), got {emb.shape} for N={len(vids)}"
            )
    return SegmentTable(
        embeddings=l2_normalize(emb),
        vids=np.asarray(vids, dtype=np.str_),
        starts=np.concatenate(starts).astype(np.float64),
        ends=np.concatenate(ends).astype(np.float64),
    )
