"""Read and write video files with PyAV (FFmpeg bindings that ship their own FFmpeg).

Every reader here is defensive: a missing file, a dangling link, a FIFO or other special file
(never opened), a file that is not a video, an audio-only file, a video with no decodable frame
or a decode that runs past ``timeout_s`` raises :class:`course_lib.errors.VideoReadError` with a
message that names the file. Nothing hangs and nothing returns silent garbage.

Behaviour on damaged files:

* **Truncated / corrupt files.** Frames are decoded up to the first unrecoverable error; the
  frames decoded so far are used and a :class:`RuntimeWarning` naming the file says where
  decoding stopped. If *no* frame could be decoded, :class:`VideoReadError` is raised. (An mp4
  written without "faststart" keeps its index at the end, so cutting it off usually leaves
  nothing decodable; :func:`write_video` writes the index first, so a cut-off file stays
  readable up to the cut.)
* **Variable frame rate.** Frames are resampled by presentation time, not by frame count:
  for each target time ``k / fps`` the reader returns the last frame shown at or before it.
* **Huge resolutions.** Frames are downscaled during decoding (aspect kept) so that the
  larger side is at most ``max_side``.

Timestamps are in seconds, relative to the first decoded frame.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from course_lib.datasets.safe_read import check_regular_file, open_regular_file
from course_lib.errors import VideoReadError
from course_lib.files import atomic_path

DEFAULT_MAX_SIDE = 1024  # frames larger than this (on the longer side) are downscaled
DEFAULT_TIMEOUT_S = 600.0  # decode-time budget per file; None disables it
_TIME_EPS = 1e-4  # seconds; absorbs float rounding of pts * time_base
_TEXT_FORMATS = {"tty"}  # FFmpeg's demuxer for plain text / ANSI art
_CONTAINER_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a video without decoding it.

    Attributes:
        duration: length in seconds (stream duration, else container duration, else the
            last packet's end time).
        fps: average frame rate (frames per second); 0.0 when the file does not say.
        width: frame width in pixels (as stored, before any downscaling).
        height: frame height in pixels.
        n_frames: number of frames, from the header when present, else ``round(duration*fps)``.
        codec: decoder name, e.g. ``"h264"``.
    """

    duration: float
    fps: float
    width: int
    height: int
    n_frames: int
    codec: str


def _import_av():
    """Import PyAV lazily so ``import course_lib.video`` stays cheap."""
    import av

    return av


def _check_exists(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path, or raise VideoReadError if it is not a readable file.

    Nothing is opened here: a dangling symbolic link is named by its own path (and its missing
    target), and a folder, FIFO, socket or device is named as such (opening a FIFO would block).
    """
    p = check_regular_file(path, "video file", VideoReadError)
    if p.stat().st_size == 0:
        raise VideoReadError(f"video file is empty (0 bytes): {p}")
    return p


@contextlib.contextmanager
def _opened_input(p: Path, timeout_s: float | None) -> Iterator:
    """Open ``p`` for reading with PyAV; map every FFmpeg failure to VideoReadError.

    The file is opened by :func:`~course_lib.datasets.safe_read.open_regular_file` (without
    blocking, the opened descriptor checked with ``fstat``) and PyAV reads that handle, so a path
    swapped for a FIFO after :func:`_check_exists` is refused by name instead of blocking FFmpeg's
    own ``open``. Container and handle are closed on exit.

    Yields:
        The open PyAV input container (at least one video stream, not a text file).
    """
    av = _import_av()
    kwargs = {} if timeout_s is None else {"timeout": (float(timeout_s), float(timeout_s))}
    with open_regular_file(p, "video file", VideoReadError) as handle:
        # 1. FFmpeg reads the checked handle
        try:
            container = av.open(handle, mode="r", **kwargs)
        except av.error.ExitError as exc:  # the open timeout interrupted FFmpeg
            raise VideoReadError(
                f"timeout while opening video {p} (timeout_s={timeout_s})"
            ) from exc
        except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
            raise VideoReadError(
                f"cannot open {p} as a video ({type(exc).__name__}: {_ffmpeg_reason(exc)})"
            ) from exc
        # 2. refuse what FFmpeg opens but is no video
        try:
            if not container.streams.video:
                raise VideoReadError(
                    f"no video stream in {p} (audio-only, data file or cut-off header?)"
                )
            if container.format.name in _TEXT_FORMATS:  # FFmpeg renders text as "ANSI art"
                raise VideoReadError(f"not a video: {p} looks like a text file")
            yield container
        finally:
            container.close()


def _ffmpeg_reason(exc: Exception) -> str:
    """FFmpeg's reason without the input's name (a handle's name is its descriptor number)."""
    reason = getattr(exc, "strerror", None)
    return str(reason) if reason else str(exc)


def _scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Output size that keeps the aspect ratio and caps the longer side at ``max_side``."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def probe(path: str | os.PathLike, timeout_s: float | None = 30.0) -> VideoInfo:
    """Read a video's header (duration, frame rate, size, frame count, codec).

    Args:
        path: video file.
        timeout_s: wall-clock limit for opening (and, if the header has no duration,
            for scanning packets).

    Returns:
        A :class:`VideoInfo`.

    Raises:
        VideoReadError: missing file, not a video, no video stream, or timeout.
    """
    p = _check_exists(path)
    with _opened_input(p, timeout_s) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        # duration: stream header, then container header, then scan packets
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000  # AV_TIME_BASE is microseconds
        else:
            duration = _scan_duration(container, stream, p, timeout_s)
        n_frames = int(stream.frames) if stream.frames else int(round(duration * fps))
        codec = stream.codec_context.name
        return VideoInfo(duration, fps, stream.width, stream.height, n_frames, codec)


def _scan_duration(container, stream, p: Path, timeout_s: float | None) -> float:
    """Duration from packet timestamps (demux only, no decoding) when headers lack it."""
    av = _import_av()
    start, first, end = time.monotonic(), None, 0.0
    try:
        for packet in container.demux(stream):
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                raise VideoReadError(f"timeout while probing {p} (timeout_s={timeout_s})")
            if packet.pts is None or packet.time_base is None:
                continue
            t0 = float(packet.pts * packet.time_base)
            first = t0 if first is None else min(first, t0)
            end = max(end, t0 + float((packet.duration or 0) * packet.time_base))
    except av.error.FFmpegError:
        pass  # a damaged tail: keep what was scanned
    return 0.0 if first is None else end - first


def _decoded_frames(container, p: Path, timeout_s: float | None) -> Iterator[tuple[float, object]]:
    """Yield ``(time_s, av.VideoFrame)`` in presentation order, checking the time budget.

    Only time spent inside this generator counts towards ``timeout_s`` (a slow consumer does
    not trigger it). A packet that fails to decode is skipped (the decoder resynchronises at
    the next keyframe); a read error (truncated file) ends decoding after flushing the
    decoder. Either case warns once; if no frame decodes at all, VideoReadError is raised.
    """
    av = _import_av()
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame + slice threads: faster on real videos
    rate = stream.average_rate or stream.guessed_rate
    step = 1.0 / float(rate) if rate else 0.0
    spent, last_t, n_ok, first_error = 0.0, None, 0, None
    packets = container.demux(stream)
    while True:
        tick = time.monotonic()
        frames, error, done = _decode_next(av, packets, stream, p, timeout_s)
        spent += time.monotonic() - tick
        if timeout_s is not None and spent > timeout_s:
            raise VideoReadError(f"timeout while decoding {p}: over timeout_s={timeout_s} s")
        if error is not None and first_error is None:
            first_error = error
            warnings.warn(
                f"{p}: {error}; the file is probably truncated or corrupt, "
                "using the frames that decode",
                RuntimeWarning,
                stacklevel=4,
            )
        for frame in frames:
            # pts may be missing in broken streams: continue from the previous frame
            t = frame.time if frame.time is not None else (last_t or 0.0) + step
            last_t, n_ok = t, n_ok + 1
            yield float(t), frame
        if done:
            break
    if n_ok == 0 and first_error is not None:
        raise VideoReadError(f"cannot decode any frame of {p} ({first_error})")
    _warn_if_short(stream, p, last_t, step)


def _warn_if_short(stream, p: Path, last_t: float | None, step: float) -> None:
    """Warn when decoding ended well before the duration the header announces."""
    if last_t is None or stream.duration is None or stream.time_base is None:
        return
    start = float((stream.start_time or 0) * stream.time_base)
    expected_end = start + float(stream.duration * stream.time_base)
    if last_t + step < expected_end - max(2 * step, 0.5):
        warnings.warn(
            f"{p}: frames end at {last_t - start:.2f} s but the header says "
            f"{expected_end - start:.2f} s; the file is probably truncated",
            RuntimeWarning,
            stacklevel=4,
        )


def _decode_next(av, packets, stream, p: Path, timeout_s: float | None):
    """Read and decode one packet: returns ``(frames, error message or None, done)``."""
    try:
        packet = next(packets, None)  # demux ends with an empty packet that flushes
    except av.error.ExitError as exc:
        raise VideoReadError(f"timeout while reading {p} (timeout_s={timeout_s})") from exc
    except (av.error.FFmpegError, EOFError, ValueError) as exc:
        # unreadable rest of file: flush the frames the decoder still holds, then stop
        return _flush(av, stream), f"read error ({type(exc).__name__}: {exc})", True
    if packet is None:
        return [], None, True
    try:
        return packet.decode(), None, False
    except av.error.ExitError as exc:
        raise VideoReadError(f"timeout while decoding {p} (timeout_s={timeout_s})") from exc
    except (av.error.FFmpegError, ValueError) as exc:
        return [], f"packet skipped ({type(exc).__name__}: {exc})", False


def _flush(av, stream) -> list:
    """Drain the decoder (frames delayed by reordering or threads); [] if that fails too."""
    try:
        return list(stream.codec_context.decode(None))
    except (av.error.FFmpegError, ValueError):
        return []


def _to_rgb(frame, size: tuple[int, int]) -> np.ndarray:
    """Convert (and maybe downscale) one decoded frame to uint8 RGB ``(H, W, 3)``."""
    width, height = size
    return frame.reformat(width=width, height=height, format="rgb24").to_ndarray()


def _check_fps(fps: float) -> float:
    """Validate a sampling rate (frames per second)."""
    if (
        isinstance(fps, bool)
        or not isinstance(fps, numbers.Real)
        or not math.isfinite(fps)
        or fps <= 0
    ):
        raise ValueError(f"fps must be a positive finite number, got {fps!r}")
    return float(fps)


def iter_frames(
    path: str | os.PathLike,
    fps: float,
    max_side: int | None = DEFAULT_MAX_SIDE,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    offset: float = 0.0,
) -> Iterator[tuple[float, np.ndarray]]:
    """Stream frames resampled to ``fps``, holding only the current frame in memory.

    For each target time ``t_k = offset + k / fps`` (k = 0, 1, ...) the frame returned is the
    last decoded frame whose presentation time is ``<= t_k`` (so variable-frame-rate files are
    sampled by time). Targets run while ``t_k`` is before the end of the last frame (its time
    plus its duration); a video shorter than ``offset`` still gives its last frame at ``t_0``.

    Args:
        path: video file.
        fps: sampling rate in frames per second (e.g. 0.5 = one frame per 2-s clip).
        max_side: downscale (keeping the aspect ratio) so the longer side is at most this;
            ``None`` keeps the stored size.
        timeout_s: decode-time budget in seconds (time spent in this generator only);
            ``None`` disables it.
        offset: time of the first target in seconds, in ``[0, 1 / fps)``; ``0.5 / fps``
            samples the centre of every interval (the centre of each 2-s clip at 0.5 fps).

    Returns:
        An iterator of ``(t_k, frame)``: target time in seconds and a uint8 RGB array
        ``(H, W, 3)`` (a fresh array each time). Close it (or exhaust it) to release the file.

    Raises:
        ValueError: bad ``fps`` or ``max_side`` (at the call).
        VideoReadError: missing file at the call; other problems (not a video, no frames,
            timeout ...) when iterating. Messages name the file.
    """
    # argument and file checks run now, at the call; decoding starts at the first next()
    fps = _check_fps(fps)
    if max_side is not None and (not isinstance(max_side, numbers.Integral) or max_side < 2):
        raise ValueError(f"max_side must be an int >= 2 or None, got {max_side!r}")
    if not 0.0 <= float(offset) < 1.0 / fps:
        raise ValueError(f"offset must be in [0, 1/fps) = [0, {1.0 / fps:g}), got {offset!r}")
    return _iter_frames(_check_exists(path), fps, max_side, timeout_s, float(offset))


def _iter_frames(
    p: Path, fps: float, max_side: int | None, timeout_s: float | None, offset: float
) -> Iterator[tuple[float, np.ndarray]]:
    """The generator behind :func:`iter_frames` (closes the file when done or abandoned)."""
    with _opened_input(p, timeout_s) as container:
        stream = container.streams.video[0]
        size = _scaled_size(stream.width, stream.height, max_side)
        yield from _resample(_decoded_frames(container, p, timeout_s), fps, size, p, offset)


def _resample(
    decoded, fps: float, size, p: Path, offset: float = 0.0
) -> Iterator[tuple[float, np.ndarray]]:
    """Apply the "last frame at or before offset + k/fps" rule to a stream of decoded frames."""
    k, origin, prev, prev_t, prev_rgb, gap = 0, None, None, 0.0, None, 0.0

    def target(k: int) -> float:
        return offset + k / fps

    for t_abs, frame in decoded:
        origin = t_abs if origin is None else origin  # timestamps start at the first frame
        t = t_abs - origin
        # every target strictly before this frame's time is served by the previous frame
        while prev is not None and target(k) < t - _TIME_EPS:
            prev_rgb = _to_rgb(prev, size) if prev_rgb is None else prev_rgb.copy()
            yield target(k), prev_rgb
            k += 1
        if prev is not None and t > prev_t:
            gap = t - prev_t  # remember the latest frame interval for the last frame
        prev, prev_t, prev_rgb = frame, t, None
    if prev is None:
        raise VideoReadError(f"no decodable video frames in {p}")
    # the last frame is shown until its end: its own duration, else the last interval
    duration = _frame_duration(prev) or gap
    end = prev_t + max(duration, 0.0)
    while target(k) < end - _TIME_EPS or target(k) <= prev_t + _TIME_EPS or k == 0:
        prev_rgb = _to_rgb(prev, size) if prev_rgb is None else prev_rgb.copy()
        yield target(k), prev_rgb
        k += 1


def _frame_duration(frame) -> float:
    """Duration of a decoded frame in seconds, or 0.0 when the stream does not say."""
    dur, tb = getattr(frame, "duration", None), frame.time_base
    return float(dur * tb) if dur and tb is not None else 0.0


def read_frames(
    path: str | os.PathLike,
    fps: float,
    max_side: int | None = DEFAULT_MAX_SIDE,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    offset: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode a whole video at ``fps`` (built on :func:`iter_frames`).

    Args:
        path: video file.
        fps: sampling rate in frames per second.
        max_side: longest side after downscaling (``None`` = keep size).
        timeout_s: decode-time budget in seconds (``None`` = no limit).
        offset: time of the first sample (see :func:`iter_frames`).

    Returns:
        ``frames`` uint8 ``(T, H, W, 3)`` and ``timestamps`` float64 ``(T,)`` in seconds.

    Raises:
        VideoReadError: missing / non-video / audio-only / undecodable file, or timeout.
    """
    times, frames = [], []
    for t, frame in iter_frames(path, fps, max_side=max_side, timeout_s=timeout_s, offset=offset):
        times.append(t)
        frames.append(frame)
    return np.stack(frames), np.asarray(times, dtype=np.float64)


def _as_frame(frame, index: int, shape: tuple[int, ...] | None) -> np.ndarray:
    """Check one frame for :func:`write_video`: uint8 ``(H, W, 3)``, same shape as the first."""
    arr = np.asarray(frame)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(
            f"frame {index}: expected uint8 array (H, W, 3), got {arr.dtype} {arr.shape}"
        )
    if shape is not None and arr.shape != shape:
        raise ValueError(f"frame {index}: shape {arr.shape} differs from frame 0 {shape}")
    return arr


def _pad_even(arr: np.ndarray) -> np.ndarray:
    """Pad an odd height/width by repeating the last row/column (yuv420p needs even sizes)."""
    pad_h, pad_w = arr.shape[0] % 2, arr.shape[1] % 2
    if pad_h or pad_w:
        arr = np.pad(arr, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(arr)


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float,
    crf: int = 18,
) -> Path:
    """Encode frames as an H.264 (libx264, yuv420p) video, written atomically.

    The video is encoded to a temporary file in the target's directory and renamed over
    ``path`` only when complete, so a crash never leaves half a video. Odd widths or heights
    are **padded** to the next even number by repeating the last row/column (yuv420p stores
    colour at half resolution), so a 63x47 input reads back as 64x48 with the original
    pixels in the top-left corner. The mp4/mov index is written first ("faststart").

    Args:
        path: output file; ``.mp4`` / ``.m4v`` / ``.mov`` / ``.mkv`` (others are written as mp4).
        frames: uint8 RGB array ``(T, H, W, 3)`` or an iterable of ``(H, W, 3)`` frames.
        fps: frame rate (any positive number, e.g. 0.5 or 29.97).
        crf: x264 quality (0 = lossless, 18 = visually lossless, 23 = default, 51 = worst).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: bad fps/crf, frames that are not uint8 ``(H, W, 3)``, or no frames.
    """
    fps = _check_fps(fps)
    if not 0 <= int(crf) <= 51:
        raise ValueError(f"crf must be in 0..51, got {crf!r}")
    target = Path(path)
    fmt = _CONTAINER_FORMATS.get(target.suffix.lower(), "mp4")
    # a temporary file renamed into place (atomic_write's handle would not do: faststart re-reads)
    with atomic_path(target) as tmp:
        _encode(tmp, fmt, frames, fps, int(crf))
    return target


def _encode(tmp: str, fmt: str, frames, fps: float, crf: int) -> None:
    """Encode ``frames`` into the file ``tmp`` with container format ``fmt``."""
    av = _import_av()
    options = {"movflags": "+faststart"} if fmt in {"mp4", "mov"} else {}
    with av.open(tmp, mode="w", format=fmt, container_options=options) as container:
        stream = None
        shape = None
        for i, frame in enumerate(frames):
            arr = _as_frame(frame, i, shape)
            if stream is None:  # the first frame fixes the size
                shape = arr.shape
                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                stream.height, stream.width = (
                    arr.shape[0] + arr.shape[0] % 2,
                    arr.shape[1] + arr.shape[1] % 2,
                )
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf)}
                # one encoder thread: the same frames always give the same file (toy videos,
                # tests and notebook outputs must be reproducible on a loaded machine)
                stream.codec_context.thread_count = 1
            video_frame = av.VideoFrame.from_ndarray(_pad_even(arr), format="rgb24")
            container.mux(stream.encode(video_frame))
        if stream is None:
            raise ValueError("write_video got no frames")
        container.mux(stream.encode(None))  # flush the encoder's delayed frames
