"""Per-video clip features: sample frames per 2-second clip, encode, pool, cache on disk.

A video of duration ``d`` has ``T = max(1, ceil(d / clip_len))`` clips; clip ``i`` covers
``[i * clip_len, (i + 1) * clip_len)`` (the last one may be shorter; a video shorter than one clip
still gets one clip). A clip's feature is the masked mean of its frames' CLIP features,
L2-normalised - the "video feature = mean of frame features" baseline of CLIP4Clip / UCoFiA.

Features are cached as fp16 ``{vid}.npz`` files with key ``features`` (shape ``(T, D)``), the
moment_detr / QVHighlights release layout (written and read by :mod:`course_lib.datasets.features`), under ``<cache>/clip_features/<key>/`` where ``<key>``
hashes the encoder identity and the sampling settings: two encoders never share a cache file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from course_lib.spans import CLIP_LEN

_EPS = 1e-6

# a frame source maps a video id/path to (frames uint8 (F, H, W, 3), timestamps (F,), duration)
FrameSource = Callable[[str], tuple[np.ndarray, np.ndarray, float]]


def count_clips(duration: float, clip_len: float = CLIP_LEN) -> int:
    """Number of feature clips covering ``[0, duration)``: ``max(1, ceil(duration / clip_len))``.

    This equals :func:`course_lib.spans.num_clips` (``floor``, moment_detr's evaluation) whenever
    the duration is a multiple of ``clip_len``, as in the toy world; features cover a trailing
    partial clip and very short videos too.
    """
    if not duration > 0 or not math.isfinite(duration):
        raise ValueError(f"duration must be a positive number of seconds, got {duration}")
    if not clip_len > 0:
        raise ValueError(f"clip_len must be positive, got {clip_len}")
    return max(1, math.ceil(duration / clip_len - _EPS))


def clip_timestamps(
    duration: float, clip_len: float = CLIP_LEN, frames_per_clip: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Times at which to sample frames: ``frames_per_clip`` evenly spaced inside each clip.

    Frame ``j`` of clip ``i`` sits at the centre of the j-th of ``k`` equal parts of the clip's
    visible span ``[i * clip_len, min((i + 1) * clip_len, duration))``; with ``k = 1`` that is the
    clip centre. A video shorter than one clip gets one clip sampled inside ``[0, duration)``.

    Args:
        duration: video length in seconds (> 0).
        clip_len: clip length in seconds.
        frames_per_clip: frames per clip (``k >= 1``).

    Returns:
        ``(timestamps float64 (T*k,), clip_index int64 (T*k,))``, sorted by time.
    """
    if frames_per_clip < 1:
        raise ValueError(f"frames_per_clip must be >= 1, got {frames_per_clip}")
    n = count_clips(duration, clip_len)
    # 1. each clip's visible span
    starts = np.arange(n) * clip_len
    ends = np.minimum(starts + clip_len, duration)
    # 2. centres of k equal parts of every span
    parts = (np.arange(frames_per_clip) + 0.5) / frames_per_clip
    times = starts[:, None] + parts[None, :] * (ends - starts)[:, None]
    clip_index = np.repeat(np.arange(n), frames_per_clip)
    return times.reshape(-1).astype(np.float64), clip_index.astype(np.int64)


def assign_clips(timestamps: np.ndarray, duration: float, clip_len: float = CLIP_LEN) -> np.ndarray:
    """Clip index of each frame time: ``floor(t / clip_len)``, clamped to ``[0, T-1]``."""
    n = count_clips(duration, clip_len)
    index = np.floor(np.asarray(timestamps, dtype=np.float64) / clip_len + _EPS).astype(np.int64)
    return np.clip(index, 0, n - 1)


def pool_clip_features(
    frame_feats: torch.Tensor,
    clip_index: torch.Tensor,
    mask: torch.Tensor | None = None,
    n_clips: int | None = None,
) -> torch.Tensor:
    """Masked mean of frame features per clip, then L2-normalised.

    ``c_i = normalize( sum_f m_f [idx_f = i] x_f / sum_f m_f [idx_f = i] )``.

    Args:
        frame_feats: (F, D) frame features.
        clip_index: (F,) clip index of each frame (integers in ``[0, n_clips)``).
        mask: (F,) bool, True for frames to use (e.g. decoded successfully); default all.
        n_clips: number of clips; default ``clip_index.max() + 1``.

    Returns:
        (n_clips, D) clip features; a clip without any valid frame is all zeros.
    """
    frame_feats = torch.as_tensor(frame_feats, dtype=torch.float32)
    clip_index = torch.as_tensor(clip_index, dtype=torch.long)
    if frame_feats.ndim != 2 or clip_index.shape != frame_feats.shape[:1]:
        raise ValueError(
            f"frame_feats {tuple(frame_feats.shape)} must be (F, D) and clip_index "
            f"{tuple(clip_index.shape)} must be (F,)"
        )
    mask = torch.ones_like(clip_index, dtype=torch.bool) if mask is None else torch.as_tensor(mask)
    n = int(clip_index.max()) + 1 if n_clips is None else int(n_clips)
    if len(clip_index) and (clip_index.min() < 0 or clip_index.max() >= n):
        raise ValueError(
            f"clip_index must lie in [0, {n}), got [{clip_index.min()}, {clip_index.max()}]"
        )
    # 1. masked sums and counts per clip
    weights = mask.to(frame_feats.dtype)
    sums = torch.zeros(n, frame_feats.shape[1]).index_add_(
        0, clip_index, frame_feats * weights[:, None]
    )
    counts = torch.zeros(n).index_add_(0, clip_index, weights)
    # 2. mean where a clip has frames (zeros elsewhere), then unit length
    mean = sums / counts.clamp(min=1.0)[:, None]
    return F.normalize(mean, dim=-1)


def encode_video(
    encoder,
    frames: np.ndarray,
    timestamps: np.ndarray,
    duration: float,
    clip_len: float = CLIP_LEN,
) -> np.ndarray:
    """Encode sampled frames and pool them into clip features.

    Args:
        encoder: a :class:`~course_lib.clip.encoder.ClipEncoder`.
        frames: (F, H, W, 3) uint8 frames.
        timestamps: (F,) their times in seconds.
        duration: video length in seconds.
        clip_len: clip length in seconds.

    Returns:
        float32 (T, D) L2-normalised clip features, ``T = count_clips(duration, clip_len)``.
    """
    if len(frames) != len(timestamps):
        raise ValueError(f"{len(frames)} frames but {len(timestamps)} timestamps")
    n = count_clips(duration, clip_len)
    if len(frames) == 0:
        raise ValueError("no frames to encode")
    frame_feats = encoder.encode_frames(frames)
    index = torch.from_numpy(assign_clips(timestamps, duration, clip_len))
    return pool_clip_features(frame_feats, index, n_clips=n).numpy()


def toy_frame_source(clip_len: float = CLIP_LEN, frames_per_clip: int = 1) -> FrameSource:
    """Frames of a toy-world video rendered exactly at :func:`clip_timestamps`."""

    def source(vid: str) -> tuple[np.ndarray, np.ndarray, float]:
        from course_lib.toyworld import render_frame, video_spec

        duration = float(video_spec(vid).duration)
        times, _ = clip_timestamps(duration, clip_len, frames_per_clip)
        frames = np.stack([render_frame(vid, float(t)) for t in times])
        return frames, times, duration

    return source


def file_frame_source(
    clip_len: float = CLIP_LEN, frames_per_clip: int = 1, **read_kwargs
) -> FrameSource:
    """Frames of a real video file at :func:`clip_timestamps`' times (PyAV, ``k / clip_len`` fps).

    Frames are sampled at the centres of ``frames_per_clip`` equal parts of every clip, like
    :func:`toy_frame_source`, so a toy video and its mp4 file give the same features.
    """

    def source(path: str) -> tuple[np.ndarray, np.ndarray, float]:
        from course_lib import video

        duration = float(video.probe(path).duration)
        fps = frames_per_clip / clip_len
        frames, times = video.read_frames(path, fps=fps, offset=0.5 / fps, **read_kwargs)
        return frames, times, duration

    return source


class FeatureCache:
    """On-disk per-video clip features keyed by encoder identity and sampling settings.

    Args:
        encoder: the :class:`~course_lib.clip.encoder.ClipEncoder` that computes features.
        root: base directory; default ``cache_dir("clip_features")``.
        clip_len: clip length in seconds.
        frames_per_clip: frames sampled per clip.
    """

    def __init__(
        self,
        encoder,
        root: str | os.PathLike | None = None,
        clip_len: float = CLIP_LEN,
        frames_per_clip: int = 1,
    ) -> None:
        from course_lib.env import cache_dir

        self.encoder = encoder
        self.clip_len = float(clip_len)
        self.frames_per_clip = int(frames_per_clip)
        base = Path(root) if root is not None else cache_dir("clip_features")
        self.settings = {
            "encoder": encoder.identity,
            "clip_len": self.clip_len,
            "frames_per_clip": self.frames_per_clip,
        } | self.stream_settings()
        key = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:16]
        self.directory = base / key

    def path(self, vid: str) -> Path:
        """Cache file of one video (``vid`` may be a file path: its stem names the entry)."""
        from course_lib.datasets.features import video_feature_path

        return video_feature_path(self.directory, _entry_name(vid))

    def get(self, vid: str, source: FrameSource | None = None, refresh: bool = False) -> np.ndarray:
        """Clip features of ``vid``: from the cache, else computed with ``source`` and stored.

        Args:
            vid: toy-world video id or a video file path.
            source: frame source; default toy world for ids, PyAV for existing files.
            refresh: recompute even when cached.

        Returns:
            float32 (T, D) clip features.
        """
        from course_lib.datasets.features import load_video_features, save_video_features

        if self.path(vid).is_file() and not refresh:
            return load_video_features(self.directory, _entry_name(vid))
        if source is None:
            maker = file_frame_source if os.path.isfile(vid) else toy_frame_source
            source = maker(self.clip_len, self.frames_per_clip)
        frames, times, duration = source(vid)
        feats = self.encode(frames, times, duration)
        self._write_settings()
        save_video_features(self.directory, _entry_name(vid), feats)  # fp16, atomic
        # return what is stored: a miss and a later hit give the very same (fp16-rounded) values
        return feats.astype(np.float16).astype(np.float32)

    def stream_settings(self) -> dict:
        """Settings a subclass adds to the cache key (none here: plain CLIP clip features)."""
        return {}

    def encode(self, frames: np.ndarray, timestamps: np.ndarray, duration: float) -> np.ndarray:
        """Features of one video's sampled frames: :func:`encode_video` (the mean of CLIP frames)."""
        return encode_video(self.encoder, frames, timestamps, duration, self.clip_len)

    def _write_settings(self) -> None:
        """Write ``settings.json`` (what this directory holds) once, atomically."""
        from course_lib.files import atomic_write

        target = self.directory / "settings.json"
        if not target.is_file():
            with atomic_write(target, "w") as handle:
                json.dump(self.settings, handle, indent=2)


def _entry_name(vid: str) -> str:
    """Store name of a video: the id itself, or the stem of a file path."""
    return Path(vid).stem if (os.sep in str(vid) or os.path.isfile(vid)) else str(vid)


def video_features(
    encoder, vid: str, source: FrameSource | None = None, **cache_kwargs
) -> np.ndarray:
    """Cached clip features of one video: ``FeatureCache(encoder, **cache_kwargs).get(vid, source)``."""
    return FeatureCache(encoder, **cache_kwargs).get(vid, source)
