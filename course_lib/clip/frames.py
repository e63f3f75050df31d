"""Where a video's frames come from: a toy-world id (rendered) or a video file (decoded).

This module is the one place that tells a toy-world video id (``toy-test-m0-00012``, rendered on
the fly by :mod:`course_lib.toyworld`) from a path to a video file (decoded with PyAV by
:mod:`course_lib.video`): :func:`is_toy_vid`. Everything that needs frames, the clip-feature
cache of chapter 1 and the search engine's index builder of chapter 7, asks here.

Frames are sampled on the clip grid (:mod:`course_lib.timeline`): ``frames_per_clip`` frames at
the centres of equal parts of every 2-s clip (:func:`clip_timestamps`), so a toy video and its
mp4 file give the same frames.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator

import numpy as np

from course_lib.timeline import CLIP_LEN

_EPS = 1e-6

#: a frame source maps a video id/path to (frames uint8 (F, H, W, 3), timestamps (F,), duration)
FrameSource = Callable[[str], tuple[np.ndarray, np.ndarray, float]]


# ----------------------------------------------------------------------------- sampling times
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



# ----------------------------------------------------------------------------- toy id or file
def is_toy_vid(name: str) -> bool:
    """Whether ``name`` is a toy-world video id (and not an existing file).

    An existing file always wins, so a video file named like a toy id is decoded, not rendered.
    """
    from course_lib.toyworld import ToyWorldError, parse_vid

    if os.path.exists(name):
        return False
    try:
        parse_vid(name)
    except (ToyWorldError, ValueError):
        return False
    return True


def video_duration(name: str) -> float:
    """Duration in seconds: a toy video's scripted length, or a file's header duration (0 if unknown).

    Raises:
        VideoReadError: ``name`` is not a toy id and not a readable video file.
    """
    if is_toy_vid(name):
        from course_lib.toyworld import video_spec

        return float(video_spec(name).duration)
    from course_lib.video import probe

    return float(probe(name).duration or 0.0)


def frame_source(name: str, clip_len: float = CLIP_LEN, frames_per_clip: int = 1) -> FrameSource:
    """The frame source that reads ``name``: :func:`toy_frame_source` or :func:`file_frame_source`."""
    maker = toy_frame_source if is_toy_vid(name) else file_frame_source
    return maker(clip_len, frames_per_clip)


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


def stream_frames(
    name: str,
    fps: float,
    max_side: int | None = 256,
    timeout_s: float | None = 600.0,
    toy_size: int = 64,
) -> Iterator[tuple[float, np.ndarray]]:
    """Stream ``(t, frame)`` of a toy id or a file at times ``(k + 0.5) / fps``, one frame at a time.

    Files are decoded with :func:`course_lib.video.iter_frames` at ``fps`` with a half-interval
    offset (so with ``fps = 0.5`` each 2-s clip is seen at its centre); toy videos are rendered
    frame by frame at ``toy_size`` pixels.

    Args:
        name: toy-world video id or video file path.
        fps: frames per second.
        max_side: files: downscale frames so their longer side is at most this.
        timeout_s: files: give up decoding after this many seconds.
        toy_size: toy videos: frame side in pixels.
    """
    if is_toy_vid(name):
        from course_lib.toyworld import render_frame, video_spec

        duration = float(video_spec(name).duration)
        k = 0
        while (k + 0.5) / fps < duration:
            t = (k + 0.5) / fps
            yield t, render_frame(name, t, size=toy_size)
            k += 1
        return
    from course_lib.video import iter_frames

    frames = iter_frames(name, fps, max_side=max_side, timeout_s=timeout_s, offset=0.5 / fps)
    try:
        for t, frame in frames:
            yield float(t), frame
    finally:
        frames.close()
