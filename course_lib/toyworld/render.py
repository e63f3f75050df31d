"""Rendering: turn a video id into RGB frames with numpy only.

A frame is the cached scene background with each visible object alpha-blended on top from
its cached mask (:func:`~course_lib.toyworld.shapes.shape_mask`). Frames are sampled at the
centres of ``1 / fps``-second steps, so at the default 0.5 fps there is exactly one frame per
2-second clip, at ``t = 1, 3, 5, ...``.
"""

from __future__ import annotations

import math

import numpy as np

from course_lib.toyworld.motion import BASE_DIAMETER, Tracks, check_time, object_tracks
from course_lib.toyworld.scenes import scene_background
from course_lib.toyworld.script import VideoSpec, video_spec
from course_lib.toyworld.shapes import ANGLE_STEP, shape_mask
from course_lib.toyworld.spec import ToyWorldError

MIN_SIZE, MAX_SIZE = 16, 1024


def check_size(size: int) -> int:
    """Return ``size`` if it is an int in [16, 1024], else raise naming it."""
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ToyWorldError(f"size must be an int in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")
    return size


def frame_times(duration: float, fps: float) -> np.ndarray:
    """Timestamps (s) of the frames sampled from a video: ``(k + 0.5) / fps``.

    Args:
        duration: Video length in seconds.
        fps: Frames per second (> 0).

    Returns:
        float64 array (T,), ``T = max(1, floor(duration * fps))``.
    """
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < math.inf:
        raise ToyWorldError(f"fps must be a positive finite number, got {fps!r}")
    n = max(1, int(math.floor(duration * fps + 1e-9)))
    return (np.arange(n, dtype=np.float64) + 0.5) / fps


def _draw(canvas: np.ndarray, spec: VideoSpec, tr: Tracks, i: int) -> None:
    """Blend every visible object of time step ``i`` onto ``canvas`` (float32, in place)."""
    size = canvas.shape[0]
    for k, obj in enumerate(spec.objects):
        a = float(tr.alpha[k, i])
        if a <= 0.0:
            continue
        diameter = max(2, int(round(BASE_DIAMETER * size * tr.scale[k, i])))
        angle_bin = int(round(tr.angle[k, i] / ANGLE_STEP)) % (360 // ANGLE_STEP)
        alpha, weight = shape_mask(obj.shape, diameter, angle_bin)
        m = alpha.shape[0]
        x0 = int(round(tr.x[k, i] * size - m / 2.0))
        y0 = int(round(tr.y[k, i] * size - m / 2.0))
        # crop the mask where it leaves the frame
        cx0, cy0 = max(0, -x0), max(0, -y0)
        cx1, cy1 = min(m, size - x0), min(m, size - y0)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        region = canvas[y0 + cy0 : y0 + cy1, x0 + cx0 : x0 + cx1]
        al = alpha[cy0:cy1, cx0:cx1]
        wt = weight[cy0:cy1, cx0:cx1]
        rgb = tr.rgb[k, i].astype(np.float32)
        region *= 1.0 - a * al
        region += (a * wt) * rgb


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    """Round float frames in [0, 255] to uint8."""
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def render(vid: str, fps: float = 0.5, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Render a toy video from its id.

    Args:
        vid: A toy-world video id, e.g. ``"toy-test-m0-00042"``.
        fps: Frames per second to sample (default 0.5: one frame per 2-s clip).
        size: Frame side in pixels (objects and textures scale with it).

    Returns:
        ``(frames, timestamps)``: uint8 (T, size, size, 3) and float64 (T,) in seconds.
        Bit-identical for the same arguments in every process.
    """
    spec = video_spec(vid)
    check_size(size)
    times = frame_times(spec.duration, fps)
    tracks = object_tracks(spec, times)
    frames = np.empty((times.size, size, size, 3), dtype=np.float32)
    frames[:] = scene_background(spec.scene, size)
    for i in range(times.size):
        _draw(frames[i], spec, tracks, i)
    return _to_uint8(frames), times


def render_frame(vid: str, t: float, size: int = 64) -> np.ndarray:
    """Render the single frame of a toy video at time ``t``.

    Args:
        vid: A toy-world video id.
        t: Time in seconds, ``0 <= t <= duration``.
        size: Frame side in pixels.

    Returns:
        uint8 array (size, size, 3); equal to the matching frame of :func:`render`.
    """
    spec = video_spec(vid)
    check_size(size)
    if not isinstance(t, (int, float, np.floating, np.integer)):
        raise ToyWorldError(f"time must be a number, got {t!r}")
    tracks = object_tracks(spec, np.array([check_time(spec, t)]))
    canvas = np.array(scene_background(spec.scene, size), dtype=np.float32)
    _draw(canvas, spec, tracks, 0)
    return _to_uint8(canvas)
