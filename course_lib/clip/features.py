"""Per-video clip features: sample frames per 2-second clip, encode, pool, cache on disk.

A video of duration ``d`` has ``T = max(1, ceil(d / clip_len))`` clips; clip ``i`` covers
``[i * clip_len, (i + 1) * clip_len)`` (the last one may be shorter; a video shorter than one clip
still gets one clip). A clip's feature is the masked mean of its frames' CLIP features,
L2-normalised - the "video feature = mean of frame features" baseline of CLIP4Clip / UCoFiA.
With a clip encoder (:class:`~course_lib.clip.clip_encoder.VideoClipEncoder`) the sampled frames
are grouped into clips of k frames instead and each clip is encoded as a whole
(:func:`encode_video`).

Features are cached as fp16 ``{entry}.npz`` files with key ``features`` (shape ``(T, D)``), the
moment_detr / QVHighlights release layout (written and read by :mod:`course_lib.datasets.features`),
under ``<cache>/clip_features/<key>/`` where ``<key>`` hashes the encoder identity and the sampling
settings: two encoders never share a cache file.

Entry names (:func:`entry_name`): a toy-world id is its own entry (``toy-val-c0-00001``); a video
file is named by its content identity, ``<stem>-<16 hex>`` with the hex from
:func:`file_identity` (size, modification time and the first and last 64 KiB), so two files with
the same stem never share an entry and a file replaced at the same path is computed again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from course_lib.clip.clip_encoder import VideoClipEncoder
from course_lib.clip.frames import (
    FrameSource,
    clip_timestamps,
    count_clips,
    frame_source,
    is_toy_vid,
)
from course_lib.datasets.safe_read import open_regular_file
from course_lib.errors import DataValidationError, VideoReadError
from course_lib.timeline import CLIP_LEN

_EPS = 1e-6
#: Bytes hashed at each end of a video file for its cache entry (:func:`file_identity`).
IDENTITY_EDGE_BYTES = 64 * 1024


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
    """Encode sampled frames into clip features.

    A frame encoder encodes every frame and the frames are pooled per clip (masked mean,
    :func:`pool_clip_features`); a clip encoder encodes each clip's k frames together
    (:func:`group_clip_frames`, which pads a clip that lost frames with its nearest one).

    Args:
        encoder: a :class:`~course_lib.clip.encoder.ClipEncoder` or a
            :class:`~course_lib.clip.clip_encoder.VideoClipEncoder`.
        frames: (F, H, W, 3) uint8 frames.
        timestamps: (F,) their times in seconds.
        duration: video length in seconds.
        clip_len: clip length in seconds.

    Returns:
        float32 (T, D) L2-normalised clip features, ``T = count_clips(duration, clip_len)``.

    Raises:
        DataValidationError: clip encoder only: a clip without frames, or bad frames.
    """
    if isinstance(encoder, VideoClipEncoder):  # each clip's k frames through the clip tower
        k = encoder.frames_per_clip
        clips = group_clip_frames(frames, timestamps, duration, k, clip_len)
        return encoder.encode_clips(clips).numpy()
    if len(frames) != len(timestamps):
        raise ValueError(f"{len(frames)} frames but {len(timestamps)} timestamps")
    n = count_clips(duration, clip_len)
    if len(frames) == 0:
        raise ValueError("no frames to encode")
    frame_feats = encoder.encode_frames(frames)
    index = torch.from_numpy(assign_clips(timestamps, duration, clip_len))
    return pool_clip_features(frame_feats, index, n_clips=n).numpy()


def group_clip_frames(
    frames: np.ndarray,
    timestamps: np.ndarray,
    duration: float,
    frames_per_clip: int,
    clip_len: float = CLIP_LEN,
) -> np.ndarray:
    """Group sampled frames into clips of exactly k frames (for a clip encoder).

    A frame belongs to clip :func:`assign_clips` gives it. A clip with exactly k frames keeps
    them in time order. A clip with fewer (a frame that could not be decoded) or more frames
    takes, for each of its k sampling times (:func:`~course_lib.clip.frames.clip_timestamps`),
    the available frame nearest in time: missing frames are padded by repeating the nearest
    available frame.

    Args:
        frames: (F, H, W, 3) frames.
        timestamps: (F,) their times in seconds.
        duration: video length in seconds.
        frames_per_clip: k.
        clip_len: clip length in seconds.

    Returns:
        (T, k, H, W, 3) frames, ``T = count_clips(duration, clip_len)``.

    Raises:
        ValueError: ``frames`` and ``timestamps`` differ in length.
        DataValidationError: a clip has no frame at all (names the clip and its time span).
    """
    if len(frames) != len(timestamps):
        raise ValueError(f"{len(frames)} frames but {len(timestamps)} timestamps")
    times = np.asarray(timestamps, dtype=np.float64)
    # 1. each frame's clip, and the k times each clip should have been sampled at
    index = assign_clips(times, duration, clip_len)
    wanted = clip_timestamps(duration, clip_len, frames_per_clip)[0].reshape(-1, frames_per_clip)
    # 2. k frame indices per clip, then one gather
    picks = [
        clip_frame_indices(i, np.flatnonzero(index == i), times, wanted[i], clip_len)
        for i in range(len(wanted))
    ]
    return np.asarray(frames)[np.stack(picks)]


def clip_frame_indices(
    clip: int, available: np.ndarray, times: np.ndarray, wanted: np.ndarray, clip_len: float
) -> np.ndarray:
    """k frame indices of one clip: its frames in time order, else the nearest to each time."""
    if len(available) == 0:
        raise DataValidationError(
            f"clip {clip} ({clip * clip_len:g}-{(clip + 1) * clip_len:g} s) has no frames; "
            f"a clip encoder needs at least one decoded frame per clip"
        )
    available = available[np.argsort(times[available], kind="stable")]
    if len(available) == len(wanted):
        return available
    gaps = np.abs(times[available][None, :] - wanted[:, None])  # (k, available)
    return available[gaps.argmin(axis=1)]


class FeatureCache:
    """On-disk per-video clip features keyed by encoder identity and sampling settings.

    Args:
        encoder: the :class:`~course_lib.clip.encoder.ClipEncoder` (frames, pooled per clip) or
            :class:`~course_lib.clip.clip_encoder.VideoClipEncoder` (k frames per clip) that
            computes features.
        root: base directory; default ``cache_dir("clip_features")``.
        clip_len: clip length in seconds.
        frames_per_clip: frames sampled per clip; default 1 for a frame encoder and k for a
            clip encoder, which accepts no other number.

    Raises:
        ValueError: a clip encoder with ``frames_per_clip`` other than its k.
    """

    def __init__(
        self,
        encoder,
        root: str | os.PathLike | None = None,
        clip_len: float = CLIP_LEN,
        frames_per_clip: int | None = None,
    ) -> None:
        from course_lib.env import cache_dir

        self.encoder = encoder
        self.clip_len = float(clip_len)
        self.frames_per_clip = _frames_per_clip(encoder, frames_per_clip)
        base = Path(root) if root is not None else cache_dir("clip_features")
        self.settings = {
            "encoder": encoder.identity,
            "clip_len": self.clip_len,
            "frames_per_clip": self.frames_per_clip,
        } | self.stream_settings()
        key = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:16]
        self.directory = base / key

    def path(self, vid: str) -> Path:
        """Cache file of one video as it is now (a file's entry follows its content identity)."""
        from course_lib.datasets.features import video_feature_path

        return video_feature_path(self.directory, entry_name(vid))

    def get(self, vid: str, source: FrameSource | None = None, refresh: bool = False) -> np.ndarray:
        """Clip features of ``vid``: from the cache, else computed with ``source`` and stored.

        A file's entry is named after its content identity, read before the frames: when the
        identity differs afterwards (the file changed while it was read), the features are
        returned but not stored, so the cache never keeps features under another content's name.

        Args:
            vid: toy-world video id or a video file path.
            source: frame source; default toy world for ids, PyAV for existing files.
            refresh: recompute even when cached.

        Returns:
            float32 (T, D) clip features.
        """
        from course_lib.datasets.features import (
            load_video_features,
            save_video_features,
            video_feature_path,
        )

        entry = entry_name(vid)
        if not refresh and video_feature_path(self.directory, entry).is_file():
            return load_video_features(self.directory, entry)
        if source is None:
            source = frame_source(vid, self.clip_len, self.frames_per_clip)
        frames, times, duration = source(vid)
        try:
            feats = self.encode(frames, times, duration)
        except DataValidationError as error:  # e.g. a clip without frames: name the video too
            raise DataValidationError(f"video {vid}: {error}") from error
        if entry_name(vid) == entry:  # unchanged while it was read
            self._write_settings()
            save_video_features(self.directory, entry, feats)  # fp16, atomic
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


def _frames_per_clip(encoder, requested: int | None) -> int:
    """Frames sampled per clip: ``requested``, by default 1 (frame encoder) or k (clip encoder).

    Raises:
        ValueError: a clip encoder asked for another number than its k.
    """
    if not isinstance(encoder, VideoClipEncoder):
        return 1 if requested is None else int(requested)
    k = encoder.frames_per_clip
    if requested is not None and int(requested) != k:
        raise ValueError(
            f"frames_per_clip={requested} but the clip encoder {encoder.identity!r} reads "
            f"k = {k} frames per clip; pass frames_per_clip={k} or leave it out"
        )
    return k


def file_identity(path: str | os.PathLike, edge_bytes: int = IDENTITY_EDGE_BYTES) -> str:
    """Content identity of a file: SHA256 of its size, mtime_ns, first and last ``edge_bytes``.

    Cheap at any file size, since it reads at most 128 KiB: measured on a 50 MB file (page
    cache warm, median of 20, this course's 2-core machine) it took 0.08 ms, against 40 ms for a
    SHA256 of the whole file. What it cannot see: a change that keeps the size, the
    modification time (to the nanosecond) and both ends, i.e. an edit in the middle followed by
    resetting the mtime, or another file with the same size, mtime and ends. Writing a file
    normally changes its mtime, so a file replaced at the same path gets a new identity.

    Args:
        path: the file (symbolic links are followed).
        edge_bytes: bytes hashed at each end.

    Returns:
        16 hex digits.

    Raises:
        VideoReadError: the path is not a regular file (a FIFO, a folder, a dangling link ...),
            also when it was swapped for one after the caller checked it: it is opened without
            blocking (:func:`~course_lib.datasets.safe_read.open_regular_file`), never waited on.
    """
    with open_regular_file(path, "video file", VideoReadError) as handle:
        st = os.fstat(handle.fileno())  # the opened file's size and mtime, not another one's
        digest = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}:".encode())
        digest.update(handle.read(edge_bytes))
        if st.st_size > edge_bytes:
            handle.seek(max(edge_bytes, st.st_size - edge_bytes))
            digest.update(handle.read(edge_bytes))
    return digest.hexdigest()[:16]


def entry_name(vid: str) -> str:
    """Cache entry name of a video.

    Args:
        vid: a toy-world id, a video file path, or another id read by a custom frame source.

    Returns:
        A toy id itself; for an existing file ``<stem>-<file_identity>``; for any other id the
        id itself when it is a plain name, else ``<stem>-<hash of the id>``.
    """
    vid = str(vid)
    if is_toy_vid(vid):
        return vid
    if os.path.isfile(vid):
        return f"{_safe_stem(vid)}-{file_identity(vid)}"
    if any(sep in vid for sep in ("/", "\\", "\0")) or vid in {"", ".", ".."}:
        digest = hashlib.sha256(vid.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        return f"{_safe_stem(vid)}-{digest}"
    return vid


def _safe_stem(path: str) -> str:
    """A file's stem reduced to letters, digits, ``-_.`` (at most 60 characters)."""
    stem = Path(path).stem
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:60] or "video"


def video_features(
    encoder, vid: str, source: FrameSource | None = None, **cache_kwargs
) -> np.ndarray:
    """Cached clip features of one video: ``FeatureCache(encoder, **cache_kwargs).get(vid, source)``."""
    return FeatureCache(encoder, **cache_kwargs).get(vid, source)
