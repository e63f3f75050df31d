"""Resumable, streaming clip-feature extraction for the moment search engine (capstone).

A *source* is a folder of video files (any container PyAV reads), a list of video files or
toy-world ids, or a toy-world corpus dict. Each video is processed on its own:

1. **stream** frames at the sampling rate (``fps``, default one frame per 2-s clip, taken at the
   centre of each sampling interval) with :func:`course_lib.video.iter_frames`; only one batch of
   frames is ever held in memory;
2. **encode** each full batch with the CLIP image encoder (``encode_frames``);
3. **pool** the frame features into 2-s clip features (masked mean, L2-normalised;
   :func:`course_lib.clip.pool_clip_features`) and keep one small thumbnail per clip;

   with a clip encoder (:class:`~course_lib.clip.clip_encoder.VideoClipEncoder`, k frames per
   clip) steps 1-3 instead stream k frames per clip at the times
   :class:`~course_lib.clip.features.FeatureCache` samples (``fps = k / clip_len``), group each
   clip's frames to exactly k as :func:`~course_lib.clip.features.group_clip_frames` does, and
   encode batches of clips (``encode_clips``): the features are FeatureCache's for that file;
4. **store** ``thumbs/<key>.npz`` then ``features/<key>.npz`` (fp16, moment_detr layout), both
   written atomically (temporary file + rename), and finally record the video in
   ``manifest.json`` (also atomic).

Resumability: the manifest is the only truth about what is finished. A crash or Ctrl-C loses at
most the video being processed; a re-run skips every video the manifest lists as done (and whose
source file is unchanged: same size and modification time), and never reads a stray temporary
file, because readers open the final names only and those appear by atomic rename. A file that
cannot be indexed (unreadable or not a video, a FIFO, a dangling link or a link loop, a name that
is not valid UTF-8) is skipped and named in the summary, never fatal.

Concurrency: every change of the manifest happens under the folder's lock
(:func:`course_lib.files.folder_lock`, lock file ``index.lock``) as read - change - write
(:func:`update_manifest`), so two processes that index into one folder merge their videos instead
of overwriting each other's. A video's feature and thumbnail files are written and recorded under
that lock too, and only while its source file still has the stamp it had when it was read: a
file replaced during a build never gets the features of its former content. Temporary files carry their writer's pid; only those of dead
processes are removed (:func:`remove_stray_temporaries`).

Video ids (:func:`vid_for_path`): a file's id is its path relative to the first source folder
(*root*) of the index that contains it. The first folder ever indexed has an empty tag, so its ids
are plain relative paths (``sub/a.mp4``; indexes built before tags existed keep their ids); every
further folder gets a tag ``<folder name>@<6 hex of its path>`` that prefixes its ids
(``holiday@3fa2c1/a.mp4``). A second folder's ``a.mp4`` therefore never replaces the first's.
Files outside every root are named by their absolute path, toy-world videos by their id.

Imports: :mod:`course_lib.clip` (torch, open_clip, PyAV) is imported inside the functions that
list, decode or encode videos, so reading a manifest (or ``python -m course_lib.search --help``)
does not load them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import stat
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from course_lib.datasets.safe_read import json_type_problem, read_json_file, short_repr
from course_lib.errors import CourseError, DataValidationError, VideoReadError, printable
from course_lib.timeline import CLIP_LEN

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
FEATURES_DIR = "features"
THUMBS_DIR = "thumbs"
DEFAULT_FPS = 0.5  # one frame per 2-s clip
DEFAULT_THUMB_SIDE = 48  # pixels, longer side of the stored per-clip thumbnails
#: Seconds a process waits for another one's lock on an index folder before giving up.
LOCK_TIMEOUT_S = 300.0
VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .ts .mts .m2ts .flv .wmv .ogv .3gp .gif".split()
)
_EPS = 1e-6
#: Why a build did not record a file that changed while it was read (BuildSummary.skipped).
CHANGED_WHILE_READ = "the file changed while it was read; run the build again to index it"


class IndexMismatchError(CourseError, ValueError):
    """An index folder was built with another encoder or other sampling settings."""


class NothingIndexedError(CourseError):
    """Not a single video of the source could be read; ``.summary`` says why."""

    def __init__(self, message: str, summary: BuildSummary | None = None) -> None:
        super().__init__(message)
        self.summary = summary


# ----------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class VideoItem:
    """One video to index.

    Attributes:
        vid: display id: the path relative to its source folder (see :func:`vid_for_path`), or a
            toy-world id.
        key: file-name-safe store name of its feature and thumbnail files.
        path: absolute file path (a symbolic link stays the link), or ``None`` for a toy-world
            video rendered on the fly.
    """

    vid: str
    key: str
    path: str | None


#: One source folder of an index: ``{"tag": "", "path": "/abs/folder"}`` (see the module doc).
Root = Mapping[str, str]


def store_key(vid: str) -> str:
    """A safe, unique file name for a video id (readable name + short hash of the id).

    Ids of files whose names are not valid UTF-8 carry surrogate escapes; they are hashed as the
    original bytes.
    """
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(vid).name)
    digest = hashlib.sha1(vid.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"{name[:80]}-{digest}"


def source_path(path: str | os.PathLike) -> str:
    """Absolute path of a source file: its folders resolved, the file itself not followed.

    A symbolic link is named by its own path (never by its target), and a link loop cannot make
    this fail: only the parent folder is resolved, and a folder that cannot be (a loop among the
    folders) is kept as given.
    """
    p = Path(os.path.abspath(os.fspath(path)))
    try:
        return str(p.parent.resolve() / p.name)
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop among the folders (< 3.13)
        return str(p)


def vid_for_path(path: str, roots: Sequence[Root]) -> str:
    """Id of a file: its path relative to the first root containing it, behind that root's tag.

    Args:
        path: :func:`source_path` of the file.
        roots: the index's source folders in registration order.

    Returns:
        ``rel/path.mp4`` (untagged root), ``tag/rel/path.mp4``, or ``path`` itself when no root
        contains it.
    """
    for root in roots:
        try:
            rel = Path(path).relative_to(root["path"]).as_posix()
        except ValueError:
            continue
        return f"{root['tag']}/{rel}" if root["tag"] else rel
    return path


def file_item(path: str | os.PathLike, roots: Sequence[Root] = ()) -> VideoItem:
    """The :class:`VideoItem` of a file, its id relative to ``roots`` (:func:`vid_for_path`)."""
    p = source_path(path)
    vid = vid_for_path(p, roots)
    return VideoItem(vid, store_key(vid), p)


def source_root(source: object) -> Path | None:
    """The resolved folder of a folder source, None for any other source."""
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        return Path(source).resolve()
    return None


def discover_videos(
    source: str | os.PathLike | Sequence[str] | Mapping[str, Any],
    extensions: Iterable[str] = VIDEO_EXTENSIONS,
    roots: Sequence[Root] | None = None,
) -> tuple[list[VideoItem], list[str], Path | None]:
    """List the videos of a source.

    Args:
        source: a folder (searched recursively, hidden files ignored), one video file, a list
            of files and/or toy-world ids, or a toy-world corpus dict (``{"videos": [...]}``).
        extensions: file suffixes (lower case, with the dot) that count as videos in a folder.
        roots: the source folders ids are relative to (:func:`vid_for_path`); default: the
            folder of a folder source, untagged.

    Returns:
        ``(items, ignored, root)``: videos sorted by vid, files of a folder that were ignored
        (no video suffix), and the folder of a folder source (None for lists).
    """
    from course_lib.clip.frames import is_toy_vid  # imports torch: only when videos are listed

    exts = {e.lower() for e in extensions}
    if isinstance(source, Mapping):  # a toy-world corpus
        vids = [v["vid"] if isinstance(v, Mapping) else v for v in source.get("videos", [])]
        return [VideoItem(v, v, None) for v in sorted(set(vids))], [], None
    root = source_root(source)
    if root is not None:
        roots = roots if roots is not None else [{"tag": "", "path": str(root)}]
        items, ignored = _walk_folder(root, exts, roots)
        return sorted(items, key=lambda it: it.vid), ignored, root
    if isinstance(source, (str, os.PathLike)):
        source = [os.fspath(source)]
    items = []
    for name in source:
        name = os.fspath(name)
        items.append(
            VideoItem(name, name, None) if is_toy_vid(name) else file_item(name, roots or ())
        )
    unique = {it.vid: it for it in items}
    return sorted(unique.values(), key=lambda it: it.vid), [], None


def _walk_folder(
    root: Path, exts: set[str], roots: Sequence[Root]
) -> tuple[list[VideoItem], list[str]]:
    """Video files (by suffix; links, FIFOs and all) and ignored files of a folder tree."""
    items, ignored = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue  # hidden files, our own temporary files
            p = Path(dirpath) / name
            if p.suffix.lower() in exts:
                items.append(file_item(p, roots))
            else:
                ignored.append(p.relative_to(root).as_posix())
    return items, ignored


def check_source_file(path: str) -> os.stat_result:
    """Refuse a source file that cannot be indexed, before anything opens it.

    Args:
        path: :func:`source_path` of the file.

    Returns:
        Its ``os.stat`` (links followed), the stamp recorded in the manifest.

    Raises:
        VideoReadError: the name is not valid UTF-8, the file is a dangling link or a link
            loop, or it is not a regular file (FIFO, socket, device, folder); the message says
            which.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise VideoReadError(
            "the file name (or a folder name on its path) is not valid UTF-8; rename it to index it"
        ) from None
    try:
        st = os.stat(path)
    except OSError as exc:
        raise VideoReadError(_stat_failure(path, exc)) from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a folder, device or socket"
        raise VideoReadError(f"not a regular file ({kind})")
    return st


def _stat_failure(path: str, exc: OSError) -> str:
    """Why ``os.stat`` of a source file failed, in words."""
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOENT and os.path.islink(path):
        return f"dangling symbolic link (its target {printable(os.readlink(path))} does not exist)"
    return f"cannot read the file ({exc.strerror or exc})"


# ----------------------------------------------------------------------------- frames
def iter_sampled_frames(
    item: VideoItem,
    fps: float = DEFAULT_FPS,
    max_side: int | None = 256,
    timeout_s: float | None = 600.0,
    toy_size: int = 64,
) -> Iterator[tuple[float, np.ndarray]]:
    """Stream ``(t, frame)`` of an item at times ``(k + 0.5) / fps`` (one frame in memory).

    See :func:`course_lib.clip.frames.stream_frames`: files are decoded, toy videos rendered.
    """
    from course_lib.clip.frames import stream_frames

    yield from stream_frames(item.path or item.vid, fps, max_side, timeout_s, toy_size)


def make_thumbnail(frame: np.ndarray, side: int = DEFAULT_THUMB_SIDE) -> np.ndarray:
    """Downscale a uint8 (H, W, 3) frame so its longer side is ``side`` (aspect kept)."""
    from PIL import Image

    h, w = frame.shape[:2]
    scale = side / max(h, w)
    if scale >= 1.0:
        return np.ascontiguousarray(frame)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))


# ----------------------------------------------------------------------------- one video
@dataclass
class VideoFeatures:
    """What extraction produces for one video.

    Attributes:
        features: float32 (T, D) L2-normalised 2-s clip features.
        thumbs: uint8 (T, h, w, 3) first sampled frame of each clip, downscaled.
        duration: seconds covered (``<= T * clip_len``).
        n_frames: frames sampled and encoded.
    """

    features: np.ndarray
    thumbs: np.ndarray
    duration: float
    n_frames: int


def _probe_duration(item: VideoItem) -> float:
    """Header duration of a file (0 when unknown), or a toy video's duration."""
    from course_lib.clip.frames import video_duration

    return video_duration(item.path or item.vid)


def extract_video(
    item: VideoItem,
    encoder,
    fps: float = DEFAULT_FPS,
    batch_size: int = 64,
    thumb_side: int = DEFAULT_THUMB_SIDE,
    clip_len: float = CLIP_LEN,
    max_side: int | None = 256,
    timeout_s: float | None = 600.0,
) -> VideoFeatures:
    """Stream, encode in batches and pool one video into clip features (memory: one batch).

    A frame encoder gets the frames sampled at ``fps`` (mean of each clip's frame features); a
    clip encoder gets each clip's k frames sampled as
    :class:`~course_lib.clip.features.FeatureCache` samples them (``fps`` is then ignored:
    :func:`clip_encoder_fps`), so the features equal ``FeatureCache(encoder).get(path)``.

    Args:
        item: the video.
        encoder: a :class:`~course_lib.clip.encoder.ClipEncoder` (frames) or a
            :class:`~course_lib.clip.clip_encoder.VideoClipEncoder` (clips of k frames).
        fps: frame encoder: frames sampled per second.
        batch_size: frames per encoder pass (a clip encoder gets ``batch_size // k`` clips,
            at least one).
        thumb_side: longer side of the per-clip thumbnails (pixels).
        clip_len: clip length in seconds.
        max_side: files: downscale decoded frames so their longer side is at most this.
        timeout_s: files: give up decoding after this many seconds.

    Returns:
        The video's :class:`VideoFeatures`.

    Raises:
        VideoReadError: the file cannot be opened or decoded, gives no frames, or (clip encoder)
            has no known duration or a clip without frames (message names it).
    """
    name = item.path or item.vid
    with _reading(name):
        probed = _probe_duration(item)  # fails fast on non-videos
    k = clip_frames(encoder)
    # 1. stream the sampled frames (a clip encoder's k per clip at FeatureCache's times)
    rate = fps if k is None else clip_encoder_fps(k, clip_len)
    frames = _checked(iter_sampled_frames(item, rate, max_side, timeout_s), name)
    # 2. encode them in batches: frames pooled per clip, or clips of k frames
    if k is None:
        feats, thumbs, n_frames = _encode_frame_stream(
            frames, encoder, batch_size, thumb_side, clip_len, name
        )
    else:
        feats, thumbs, n_frames = _encode_clip_stream(
            frames, encoder, probed, batch_size, thumb_side, clip_len, name
        )
    # 3. one thumbnail per clip, and the duration the clips cover
    return _video_features(feats, thumbs, n_frames, probed, clip_len)


def clip_frames(encoder) -> int | None:
    """Frames per clip k of a clip encoder (``VideoClipEncoder``); None for a frame encoder."""
    from course_lib.clip.clip_encoder import VideoClipEncoder

    return int(encoder.frames_per_clip) if isinstance(encoder, VideoClipEncoder) else None


def clip_encoder_fps(frames_per_clip: int, clip_len: float = CLIP_LEN) -> float:
    """Sampling rate of a clip encoder: k frames per clip, as FeatureCache's frame source reads."""
    return frames_per_clip / clip_len


class _Batches:
    """Arrays collected into batches and encoded batch by batch (one batch in memory).

    Args:
        encode: ``encoder.encode_frames`` or ``encoder.encode_clips``: stacked batch -> (B, D).
        size: arrays per batch.
        name: the video, for the message when nothing was encoded.
    """

    def __init__(self, encode: Callable[[np.ndarray], Any], size: int, name: str) -> None:
        self._encode, self._size, self._name = encode, max(1, int(size)), name
        self._batch: list[np.ndarray] = []
        self._outputs: list[np.ndarray] = []

    def add(self, item: np.ndarray) -> None:
        """Queue one array; encode the batch once it is full."""
        self._batch.append(item)
        if len(self._batch) >= self._size:
            self.flush()

    def flush(self) -> None:
        """Encode the queued arrays, keep only their float32 (B, D) features."""
        if self._batch:
            features = self._encode(np.stack(self._batch)).numpy().astype(np.float32)
            self._outputs.append(features)
            self._batch.clear()

    def result(self) -> np.ndarray:
        """All features in input order, (N, D).

        Raises:
            VideoReadError: nothing was added (no frames sampled).
        """
        self.flush()
        if not self._outputs:
            raise VideoReadError(f"no frames sampled from {self._name}")
        return np.concatenate(self._outputs)


def _encode_frame_stream(
    frames: Iterable[tuple[float, np.ndarray]],
    encoder,
    batch_size: int,
    thumb_side: int,
    clip_len: float,
    name: str,
) -> tuple[np.ndarray, dict[int, np.ndarray], int]:
    """Frame encoder: encode frames in batches, pool them per clip (masked mean).

    Args:
        frames: ``(t, frame)`` in time order.
        encoder: the frame encoder (``encode_frames``).
        batch_size: frames per encoder pass.
        thumb_side: thumbnail side.
        clip_len: clip length in seconds.
        name: the video, for messages.

    Returns:
        ``(features (T, D), {clip: thumbnail of its first frame}, frames sampled)``.

    Raises:
        VideoReadError: no frames.
    """
    import torch

    from course_lib.clip.features import pool_clip_features

    batches = _Batches(encoder.encode_frames, batch_size, name)
    clip_ids: list[int] = []
    thumbs: dict[int, np.ndarray] = {}
    # 1. each frame's clip; each clip's first frame is its thumbnail
    for t, frame in frames:
        clip = int(math.floor(t / clip_len + _EPS))
        thumbs.setdefault(clip, make_thumbnail(frame, thumb_side))
        batches.add(frame)
        clip_ids.append(clip)
    # 2. pool the frame features into clips
    frame_feats = torch.from_numpy(batches.result())
    n_clips = max(clip_ids) + 1
    pooled = pool_clip_features(frame_feats, torch.as_tensor(clip_ids), n_clips=n_clips)
    return pooled.numpy(), thumbs, len(clip_ids)


def _encode_clip_stream(
    frames: Iterable[tuple[float, np.ndarray]],
    encoder,
    duration: float,
    batch_size: int,
    thumb_side: int,
    clip_len: float,
    name: str,
) -> tuple[np.ndarray, dict[int, np.ndarray], int]:
    """Clip encoder: group the stream into clips of exactly k frames, encode clips in batches.

    Frames are assigned to clips and padded to k per clip exactly as
    :func:`~course_lib.clip.features.group_clip_frames` does for the whole video; only one
    clip's frames and one batch of clips are in memory. Clips after the last decoded frame
    (a truncated file) are left out, as the frame path leaves them out.

    Args:
        frames: ``(t, frame)`` in time order, sampled at :func:`clip_encoder_fps`.
        encoder: the clip encoder (``frames_per_clip``, ``encode_clips``).
        duration: the header duration in seconds (the clips' sampling times depend on it).
        batch_size: frames per encoder pass (``batch_size // k`` clips, at least one).
        thumb_side: thumbnail side.
        clip_len: clip length in seconds.
        name: the video, for messages.

    Returns:
        ``(features (T, D), {clip: thumbnail of its first frame}, frames sampled)``.

    Raises:
        VideoReadError: unknown duration, no frames, or a clip without frames.
    """
    from course_lib.clip.frames import clip_timestamps

    k = encoder.frames_per_clip
    if not duration > 0:
        raise VideoReadError(
            f"the duration of {printable(name)} is unknown (not in its header); a clip encoder "
            f"needs it to place each clip's {k} frames"
        )
    # 1. the k times FeatureCache samples each clip at
    wanted = clip_timestamps(duration, clip_len, k)[0].reshape(-1, k)
    batches = _Batches(encoder.encode_clips, batch_size // k, name)
    thumbs: dict[int, np.ndarray] = {}
    n_frames = 0
    # 2. per clip: its thumbnail, its k frames queued for the encoder
    for clip, group, times in _frames_by_clip(frames, duration, clip_len):
        picks = _pick_clip_frames(clip, times, wanted[clip], clip_len, name)
        thumbs[clip] = make_thumbnail(group[0], thumb_side)
        batches.add(np.stack([group[i] for i in picks]))
        n_frames += len(group)
    return batches.result(), thumbs, n_frames


def _frames_by_clip(
    frames: Iterable[tuple[float, np.ndarray]], duration: float, clip_len: float
) -> Iterator[tuple[int, list[np.ndarray], np.ndarray]]:
    """Group a time-ordered frame stream by clip, one clip in memory.

    Frames go to the clip :func:`~course_lib.clip.features.assign_clips` gives them. Every clip
    from 0 to the last one with frames is yielded, a clip that got none with an empty group.

    Yields:
        ``(clip, frames, times float64 (n,))`` in clip order.
    """
    from course_lib.clip.features import assign_clips

    current, group, times = 0, [], []
    for t, frame in frames:
        clip = int(assign_clips(np.array([t]), duration, clip_len)[0])
        # finish the clips before this frame's (empty ones included)
        while current < clip:
            yield current, group, np.asarray(times, dtype=np.float64)
            current, group, times = current + 1, [], []
        group.append(frame)
        times.append(t)
    if group:
        yield current, group, np.asarray(times, dtype=np.float64)


def _pick_clip_frames(
    clip: int, times: np.ndarray, wanted: np.ndarray, clip_len: float, name: str
) -> np.ndarray:
    """Indices of one clip's k frames (:func:`~course_lib.clip.features.clip_frame_indices`).

    Raises:
        VideoReadError: the clip has no frames (names the video and the clip's time span).
    """
    from course_lib.clip.features import clip_frame_indices

    try:
        return clip_frame_indices(clip, np.arange(len(times)), times, wanted, clip_len)
    except DataValidationError as exc:
        raise VideoReadError(f"cannot index {printable(name)}: {exc}") from None


def _video_features(
    feats: np.ndarray,
    thumbs: Mapping[int, np.ndarray],
    n_frames: int,
    probed: float,
    clip_len: float,
) -> VideoFeatures:
    """:class:`VideoFeatures` from clip features and thumbnails.

    A clip without a thumbnail repeats its predecessor's; the duration is the header's, at most
    the clips' span (the clips' span when the header has none).
    """
    n_clips = len(feats)
    strip, last = [], thumbs[min(thumbs)]
    for c in range(n_clips):
        last = thumbs.get(c, last)
        strip.append(last)
    duration = n_clips * clip_len if probed <= 0 else min(probed, n_clips * clip_len)
    return VideoFeatures(feats, np.stack(strip), float(duration), n_frames)


@contextlib.contextmanager
def _reading(name: str) -> Iterator[None]:
    """Turn an OS or format error of reading a source file into a VideoReadError naming it."""
    try:
        yield
    except (OSError, ValueError, UnicodeError) as exc:
        raise VideoReadError(
            f"cannot read {printable(name)} ({type(exc).__name__}: {exc})"
        ) from exc


def _checked(frames: Iterator[tuple[float, np.ndarray]], name: str) -> Iterator:
    """The frames of a reader, its failures reported as VideoReadError (the encoder's are not)."""
    while True:
        with _reading(name):
            nxt = next(frames, None)
        if nxt is None:
            return
        yield nxt


# ----------------------------------------------------------------------------- manifest
def encoder_spec(encoder) -> str | None:
    """How to recreate an encoder from the manifest: ``"tiny"``, ``"video"``, ``"NAME:TAG"`` or None.

    ``"tiny"`` means the committed checkpoint ``data/tiny_clip.safetensors``: the encoder's
    weights hash equals the hash in that checkpoint's manifest. ``"video"`` means the committed
    video-text checkpoint ``data/video_clip.safetensors`` (a clip encoder whose weights hash is
    the one in ``data/video_clip.sha256``); any other clip encoder (e.g. frame pooling over the
    tiny CLIP) gets None, since its name alone would recreate a frame encoder.

    Args:
        encoder: a frame or clip encoder.

    Returns:
        The spec :func:`encoder_from_spec` reads, or None when the caller must pass the encoder.
    """
    weights = str(encoder.weights_id)
    # 1. a clip encoder: only the committed video-text checkpoint has a name
    if clip_frames(encoder) is not None:
        return "video" if weights == committed_video_hash() else None
    # 2. a frame encoder: the committed tiny CLIP, or open_clip pretrained weights by tag
    if weights == committed_tiny_hash():
        return "tiny"
    if weights.startswith("random") or len(weights) == 64:
        return None  # random weights or a local weights file: the caller must pass it
    return f"{encoder.name}:{encoder.weights_id}"


def committed_tiny_hash() -> str | None:
    """SHA256 of the committed tiny CLIP from its manifest (None when the file is absent)."""
    from course_lib.clip.encoder import TINY_CHECKPOINT

    return _committed_hash(TINY_CHECKPOINT)


def committed_video_hash() -> str | None:
    """SHA256 of the committed video-text encoder from ``data/video_clip.sha256`` (None if absent)."""
    from course_lib.clip.clip_encoder import VIDEO_CHECKPOINT

    return _committed_hash(VIDEO_CHECKPOINT)


def _committed_hash(file_name: str) -> str | None:
    """SHA256 recorded in the manifest of checkpoint ``data/<file_name>`` (None when absent)."""
    from course_lib.clip.checkpoint import manifest_path, read_manifest
    from course_lib.env import data_dir

    checkpoint = data_dir() / file_name
    return read_manifest(checkpoint) if manifest_path(checkpoint).is_file() else None


def encoder_from_spec(spec: str, **kwargs):
    """Recreate an encoder from :func:`encoder_spec`'s string.

    Args:
        spec: ``"tiny"``, ``"video"`` or ``"NAME:TAG"``.
        **kwargs: ``device``, ``batch_size``, ``progress``.

    Returns:
        ``ClipEncoder.tiny``, ``VideoClipEncoder.committed`` or ``ClipEncoder.pretrained``.

    Raises:
        OfflineError: pretrained weights that cannot be downloaded.
        CheckpointError: a committed checkpoint is missing or fails its hash check.
    """
    from course_lib.clip import ClipEncoder
    from course_lib.clip.clip_encoder import COMMITTED_ENCODERS, committed_encoder

    if spec in COMMITTED_ENCODERS:  # "tiny" / "video": the committed checkpoints
        return committed_encoder(spec, **kwargs)
    name, _, weights = spec.partition(":")
    return ClipEncoder.pretrained(name, weights or "openai", **kwargs)


def manifest_path(out_dir: str | os.PathLike) -> Path:
    """``<out_dir>/manifest.json``."""
    return Path(out_dir) / MANIFEST_NAME


def read_manifest(out_dir: str | os.PathLike) -> dict | None:
    """The manifest of an index folder, or None if there is none yet.

    Args:
        out_dir: the index folder.

    Returns:
        The manifest, checked by :func:`check_manifest`; None when nothing is at its path.

    Raises:
        DataValidationError: ``manifest.json`` is not a regular file (a dangling link, a FIFO
            ...), not UTF-8 JSON (names the line), not a JSON object, or not a manifest (names
            the field).
        CourseError: a manifest of another format version.
    """
    path = manifest_path(out_dir)
    if not os.path.lexists(path):
        return None
    manifest = read_json_file(path, "index manifest", DataValidationError, expect=dict)
    if manifest.get("format") != FORMAT_VERSION:
        raise CourseError(
            f"index manifest {path} has format {short_repr(manifest.get('format'))}, "
            f"this course_lib reads format {FORMAT_VERSION}"
        )
    check_manifest(manifest, path)
    return manifest


def check_manifest(manifest: dict, path: str | os.PathLike) -> None:
    """Refuse a manifest whose fields the readers could not use (a missing ``encoder`` ...).

    Checks the JSON type of every field the library reads: ``encoder`` (a string ``identity``,
    a string or null ``spec``), the sampling ``settings`` (numbers; ``frames_per_clip``, only
    recorded for a clip encoder, an integer), ``videos`` (entries with a
    string ``key`` and a number ``duration``), ``skipped``, and, where present, ``roots``,
    ``source_root`` and the ``index`` record (its ``file`` a plain file name inside the folder,
    its checksums strings).

    Args:
        manifest: the parsed ``manifest.json``.
        path: its file, for the message.

    Raises:
        DataValidationError: names the file and the first bad field.
    """
    problem = _manifest_problem(manifest)
    if problem:
        raise DataValidationError(
            f"index manifest {path}: {problem}; it was not written by this course_lib (or was "
            "edited): rebuild the index into a new folder"
        )


#: Fields of a format-1 manifest and their JSON types; a name ending in ``?`` may be absent (in
#: manifests written before it existed).
_MANIFEST_FIELDS = {
    "encoder": dict,
    "settings": dict,
    "videos": dict,
    "skipped": dict,
    "roots?": list,
    "source_root?": (str, type(None)),
    "index?": (dict, type(None)),
}
_ENCODER_FIELDS = {"identity": str, "spec?": (str, type(None))}
_SETTINGS_FIELDS = dict.fromkeys(("clip_len", "fps", "thumb_side", "max_side"), (int, float)) | {
    "frames_per_clip?": int  # clip encoders only
}
_VIDEO_FIELDS = {"key": str, "path?": (str, type(None)), "duration": (int, float)}
_ROOT_FIELDS = {"tag": str, "path": str}
_INDEX_FIELDS = {"file?": str, "vids?": list, "config?": dict, "sha256?": dict, "stamps?": dict}


def _manifest_problem(manifest: dict) -> str | None:
    """The first field of a manifest that its readers could not use, in words (None: fine)."""
    index = manifest.get("index") or {}  # read by the last checks, once its type is checked
    checks = (  # in order: each check relies on the fields the previous ones checked
        lambda: _fields_problem(manifest, _MANIFEST_FIELDS),
        lambda: _fields_problem(manifest["encoder"], _ENCODER_FIELDS, "encoder."),
        lambda: _fields_problem(manifest["settings"], _SETTINGS_FIELDS, "settings."),
        lambda: _entries_problem(manifest["videos"].items(), "videos", _VIDEO_FIELDS),
        lambda: _entries_problem(enumerate(manifest.get("roots", [])), "roots", _ROOT_FIELDS),
        lambda: _fields_problem(index, _INDEX_FIELDS, "index."),
        lambda: _file_name_problem(index.get("file"), "index.file"),
        lambda: _strings_problem(enumerate(index.get("vids", [])), "index.vids"),
        lambda: _strings_problem((index.get("sha256") or {}).items(), "index.sha256"),
    )
    return next((problem for problem in (check() for check in checks) if problem), None)


def _fields_problem(
    record: Mapping[str, Any], spec: Mapping[str, Any], prefix: str = ""
) -> str | None:
    """The first field of ``record`` that is missing or of another JSON type than ``spec`` says.

    Args:
        record: a JSON object.
        spec: field name -> accepted type(s); a name ending in ``?`` may be absent.
        prefix: where ``record`` sits in the manifest (``"encoder."``), for the message.

    Returns:
        ``"field 'encoder.identity' is missing"``-like words, or None.
    """
    for name, kinds in spec.items():
        key = name.rstrip("?")
        if key not in record:
            if name.endswith("?"):
                continue
            return f"field '{prefix}{key}' is missing"
        problem = json_type_problem(record[key], kinds)
        if problem:
            return f"field '{prefix}{key}' is {problem}"
    return None


def _file_name_problem(name: str | None, field_name: str) -> str | None:
    """Why a file name recorded in the manifest is not a plain name inside the index folder
    (``index.file``): a path separator, ``..`` or ``.``, empty, or a NUL byte (None: fine or
    absent). Such a name could make a reader open a file outside the folder.

    Args:
        name: the recorded name (already checked to be a string or absent).
        field_name: the field, for the message.

    Returns:
        ``"field 'index.file' is '../x.faiss', ..."``-like words, or None.
    """
    if name is None:
        return None
    separators = {"/", "\\", "\0", os.sep, os.altsep} - {None}
    if name in {"", ".", ".."} or any(sep in name for sep in separators):
        return (
            f"field '{field_name}' is {short_repr(name)}, not a plain file name inside the index "
            "folder (no path separator, no '..')"
        )
    return None


def _strings_problem(entries: Iterable[tuple[Any, Any]], field_name: str) -> str | None:
    """The first item of a list or object field that is not a string (``index.vids``, the
    checksums ``index.sha256``); ``entries`` are its ``(index or name, value)`` pairs."""
    for name, value in entries:
        problem = json_type_problem(value, str)
        if problem:
            return f"field '{field_name}[{short_repr(name)}]' is {problem}"
    return None


def _entries_problem(
    entries: Iterable[tuple[Any, Any]], field_name: str, spec: Mapping[str, Any]
) -> str | None:
    """The first entry of a collection field (``videos``, ``roots``) that breaks ``spec``."""
    for name, entry in entries:
        where = f"{field_name}[{short_repr(name)}]"
        problem = json_type_problem(entry, dict)
        if problem:
            return f"field '{where}' is {problem}"
        problem = _fields_problem(entry, spec, f"{where}.")
        if problem:
            return problem
    return None


def write_manifest(out_dir: str | os.PathLike, manifest: dict) -> None:
    """Write the manifest atomically (never half a file)."""
    from course_lib.files import atomic_write

    with atomic_write(manifest_path(out_dir), "w") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)


def update_manifest(
    out_dir: str | os.PathLike,
    change: Callable[[dict], object],
    lock_timeout: float = LOCK_TIMEOUT_S,
) -> dict:
    """Change the manifest on disk: under the folder's lock, re-read it, apply ``change``, write.

    Re-reading under the lock is what merges concurrent writers: each applies only its own
    change to the newest manifest, so nobody's videos are lost (no last writer wins).

    Args:
        out_dir: the index folder.
        change: edits the manifest dict in place.
        lock_timeout: seconds to wait for another process's lock.

    Returns:
        The manifest as written.

    Raises:
        CourseError: the folder has no manifest.
        LockTimeoutError: another process held the lock too long (names folder and pid).
    """
    from course_lib.files import folder_lock

    with folder_lock(out_dir, lock_timeout):
        manifest = read_manifest(out_dir)
        if manifest is None:
            raise CourseError(f"index folder {out_dir} has no {MANIFEST_NAME} any more")
        change(manifest)
        write_manifest(out_dir, manifest)
    return manifest


def new_manifest(encoder, settings: dict, root: Path | None) -> dict:
    """An empty manifest for ``encoder``, sampling ``settings`` and first source folder ``root``."""
    manifest = {
        "format": FORMAT_VERSION,
        "encoder": {
            "identity": encoder.identity,
            "spec": encoder_spec(encoder),
            "embed_dim": int(encoder.embed_dim),
        },
        "settings": settings,
        "source_root": None,
        "roots": [],
        "videos": {},
        "skipped": {},
        "index": None,
    }
    if root is not None:
        register_root(manifest, root)
    return manifest


def manifest_roots(manifest: Mapping[str, Any]) -> list[dict]:
    """The source folders of an index, in the order they were first indexed.

    A manifest written before several folders were supported has only ``source_root``: that
    folder is its one, untagged root.
    """
    if "roots" in manifest:
        return list(manifest["roots"])
    legacy = manifest.get("source_root")
    return [{"tag": "", "path": legacy}] if legacy else []


def register_root(manifest: dict, root: Path) -> str:
    """Record a source folder in the manifest (if new) and return its tag.

    The first folder gets the empty tag (its ids are plain relative paths), later ones
    ``<name>@<hex>`` (:func:`root_tag`).
    """
    roots = manifest_roots(manifest)
    for known in roots:
        if known["path"] == str(root):
            manifest["roots"] = roots
            return known["tag"]
    tag = root_tag(root, roots) if roots else ""
    roots.append({"tag": tag, "path": str(root)})
    manifest["roots"] = roots
    if not tag:
        manifest["source_root"] = str(root)  # what readers of format 1 without roots use
    return tag


def root_tag(root: Path, roots: Sequence[Root]) -> str:
    """A tag for a further source folder: ``<folder name>@<hex of its path>``, unused so far.

    The tag is neither another root's tag nor the name of an entry at the top of an earlier
    root, so a tagged id cannot equal an id of an earlier root.
    """
    name = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in root.name)[:24] or "root"
    digest = hashlib.sha1(str(root).encode("utf-8", "surrogateescape")).hexdigest()
    taken = {r["tag"] for r in roots}
    for n in range(6, len(digest) + 1):
        tag = f"{name}@{digest[:n]}"
        if tag not in taken and not any(os.path.lexists(Path(r["path"]) / tag) for r in roots):
            return tag
    raise CourseError(f"no free tag for source folder {root}")  # 35 hash lengths all taken


def check_compatible(manifest: dict, encoder, settings: dict | None, where: Path) -> None:
    """Refuse an encoder (or sampling settings) other than the ones the folder was built with.

    The encoder must have the folder's identity and its kind: a frame encoder for a folder whose
    settings record no ``frames_per_clip``, a clip encoder reading that many frames per clip
    otherwise. ``settings`` (when given) must equal the folder's on every key it has; the
    settings of a clip encoder include ``frames_per_clip``.

    Args:
        manifest: the folder's manifest.
        encoder: the encoder that is to add or search videos.
        settings: the sampling settings of a build, or None (searching only).
        where: the index folder, for the message.

    Raises:
        IndexMismatchError: names both encoders (and their kinds) or both settings, and what to
            do.
    """
    built = manifest["encoder"]["identity"]
    built_k, given_k = manifest["settings"].get("frames_per_clip"), clip_frames(encoder)
    # 1. the same encoder, reading as many frames per clip
    if encoder.identity != built or given_k != built_k:
        raise IndexMismatchError(
            f"index {where} was built with encoder {built!r} ({_encoder_kind(built_k)}), but "
            f"encoder {encoder.identity!r} ({_encoder_kind(given_k)}) was given: its features "
            "live in another space. Use the same encoder, or rebuild into a new folder "
            "(python -m course_lib.search index VIDEO_DIR --out NEW_DIR)."
        )
    # 2. the same sampling settings
    if settings is not None:
        old = {k: manifest["settings"].get(k) for k in settings}
        if old != settings:
            raise IndexMismatchError(
                f"index {where} was built with sampling settings {manifest['settings']}, "
                f"not {settings}; rebuild into a new folder"
            )


def _encoder_kind(frames_per_clip: int | None) -> str:
    """An encoder's kind in words: a frame encoder, or a clip encoder of k frames per clip."""
    if frames_per_clip is None:
        return "a frame encoder"
    return f"a clip encoder, {frames_per_clip} frames per clip"


def _stamp(st: os.stat_result | None) -> dict:
    """Size and modification time of a source file (to notice changed files); {} for toy videos."""
    return {} if st is None else {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _file_stamp(path: str | None) -> dict:
    """:func:`_stamp` of a source file by path (raises OSError when it cannot be read)."""
    return _stamp(None if path is None else os.stat(path))


def _file_changed(item: VideoItem, st: os.stat_result | None) -> bool:
    """Whether a source file no longer has the stamp ``st`` it had when it was read (or is gone)."""
    try:
        return item.path is not None and _file_stamp(item.path) != _stamp(st)
    except OSError:
        return True


def is_done(manifest: dict, item: VideoItem, out_dir: Path) -> bool:
    """Whether ``item`` is finished: listed as done, source unchanged, both files present."""
    entry = manifest["videos"].get(item.vid)
    if entry is None or entry.get("key") != item.key:
        return False
    if item.path is not None:
        try:
            if _file_stamp(item.path) != entry.get("stamp"):
                return False
        except OSError:
            return False
    return (out_dir / FEATURES_DIR / f"{item.key}.npz").is_file() and (
        out_dir / THUMBS_DIR / f"{item.key}.npz"
    ).is_file()


def remove_stray_temporaries(out_dir: Path) -> int:
    """Delete temporary files left by killed runs; they are never read.

    Only temporaries whose writer is gone are deleted (:func:`course_lib.files.temporary_is_stale`):
    those of a build running at the same time are about to be renamed into place.

    Returns:
        Number of files deleted.
    """
    from course_lib.files import remove_stale_temporaries

    return sum(
        len(remove_stale_temporaries(out_dir / sub)) for sub in (FEATURES_DIR, THUMBS_DIR, ".")
    )


# ----------------------------------------------------------------------------- many videos
@dataclass
class BuildSummary:
    """What a build (or add) did.

    Attributes:
        computed: vids whose features were computed in this run.
        reused: vids found finished from an earlier run.
        skipped: ``{path or vid: reason}`` of unreadable videos.
        ignored: files of the folder without a video suffix.
        warnings: ``{vid: [message, ...]}`` decode warnings (e.g. truncated files).
        seconds: wall time of the run.
        video_seconds: total duration of the videos computed in this run.
    """

    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    video_seconds: float = 0.0

    @property
    def done(self) -> list[str]:
        """Every usable video of this run (computed now or reused)."""
        return sorted(self.computed + self.reused)

    def format(self) -> str:
        """A short human-readable report (what the CLI prints)."""
        lines = [
            f"indexed {len(self.done)} videos ({len(self.computed)} computed, "
            f"{len(self.reused)} reused from an earlier run) in {self.seconds:.1f} s; "
            f"skipped {len(self.skipped)}"
        ]
        lines += [
            f"  skipped {printable(path)}: {printable(reason)}"
            for path, reason in sorted(self.skipped.items())
        ]
        for vid, msgs in sorted(self.warnings.items()):
            lines += [f"  warning {printable(vid)}: {m}" for m in msgs[:2]]
        if self.ignored:
            lines.append(f"  ignored {len(self.ignored)} files without a video suffix")
        return "\n".join(lines)


def _save_video(out_dir: Path, item: VideoItem, vf: VideoFeatures) -> None:
    """Thumbnails, then features, each atomically (the manifest entry comes last)."""
    from course_lib.datasets.features import save_video_features
    from course_lib.files import atomic_write

    with atomic_write(out_dir / THUMBS_DIR / f"{item.key}.npz", "wb") as handle:
        np.savez_compressed(handle, thumbs=vf.thumbs)
    save_video_features(out_dir / FEATURES_DIR, item.key, vf.features)  # fp16, atomic


def extract_all(
    items: Sequence[VideoItem],
    encoder,
    out_dir: str | os.PathLike,
    manifest: dict,
    batch_size: int = 64,
    progress: bool = True,
    summary: BuildSummary | None = None,
    lock_timeout: float = LOCK_TIMEOUT_S,
) -> BuildSummary:
    """Extract every unfinished video, recording each one in the manifest as soon as it is done.

    Args:
        items: videos to process (finished ones are skipped).
        encoder: the frame or clip encoder (its identity must match the manifest).
        out_dir: the index folder.
        manifest: the folder's manifest; replaced in place by the newest one on disk after
            every record (records are merged under the folder's lock: :func:`update_manifest`).
        batch_size: frames per encoder forward pass (bounds memory; a clip encoder gets
            ``batch_size // k`` clips per pass).
        progress: show a tqdm bar.
        summary: a summary to fill (default: a new one).
        lock_timeout: seconds to wait for another process's lock on the folder.

    Returns:
        The :class:`BuildSummary`. A file that cannot be indexed is skipped and named there
        (by its own path), and so is a file that changed while it was read (its features are
        not stored: :data:`CHANGED_WHILE_READ`); other exceptions (the encoder failing, a full
        disk, Ctrl-C) propagate, and everything finished before them is kept.
    """
    from tqdm.auto import tqdm

    from course_lib.files import folder_lock

    out_dir = Path(out_dir)
    summary = summary or BuildSummary()
    start = time.perf_counter()

    def record(change: Callable[[dict], object]) -> None:
        # merge our change into the newest manifest; keep the caller's dict in step with it
        fresh = update_manifest(out_dir, change, lock_timeout)
        manifest.clear()
        manifest.update(fresh)

    bar = tqdm(items, desc="index", unit="video", disable=not progress, dynamic_ncols=True)
    for item in bar:
        bar.set_postfix_str(printable(item.vid[-40:]), refresh=False)
        if is_done(manifest, item, out_dir):
            summary.reused.append(item.vid)
            if item.vid in manifest["skipped"]:
                record(lambda m, vid=item.vid: m["skipped"].pop(vid, None))
            continue
        try:
            st = _preflight(item, manifest)
            vf, messages = extract_with_settings(item, encoder, manifest["settings"], batch_size)
        except VideoReadError as exc:
            summary.skipped[item.path or item.vid] = str(exc)
            record(_skipped_change(item, str(exc)))
            continue
        if messages:
            summary.warnings[item.vid] = messages
        # files and record under one lock, and only while the file still has the stamp it had
        # when it was read: a concurrent build of a newer content never ends up with our features
        with folder_lock(out_dir, lock_timeout):
            if _file_changed(item, st):
                summary.skipped[item.path] = CHANGED_WHILE_READ
                continue
            _save_video(out_dir, item, vf)
            record(_done_change(item, vf, st))  # the video counts as done from here on
        summary.computed.append(item.vid)
        summary.video_seconds += vf.duration
    summary.seconds += time.perf_counter() - start
    return summary


def _preflight(item: VideoItem, manifest: Mapping[str, Any]) -> os.stat_result | None:
    """Checks before a video is read: a usable source file, and an id that is not another file's.

    Returns:
        The file's stat (None for a toy video).

    Raises:
        VideoReadError: the file cannot be indexed (:func:`check_source_file`), or its id
            already names another existing file in the index.
    """
    if item.path is None:
        return None
    st = check_source_file(item.path)
    other = manifest["videos"].get(item.vid, {}).get("path")
    if other and other != item.path and os.path.exists(other):
        with contextlib.suppress(OSError):
            if not os.path.samefile(other, item.path):
                raise VideoReadError(
                    f"its id {item.vid!r} already names {printable(other)} in this index"
                )
    return st


def extract_with_settings(
    item: VideoItem, encoder, settings: Mapping[str, Any], batch_size: int = 64
) -> tuple[VideoFeatures, list[str]]:
    """:func:`extract_video` with an index folder's sampling settings (``manifest["settings"]``).

    Returns:
        ``(features, warnings)``: what the folder stores for the video, and its decode warnings.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        vf = extract_video(
            item,
            encoder,
            fps=settings["fps"],
            batch_size=batch_size,
            thumb_side=settings["thumb_side"],
            clip_len=settings["clip_len"],
            max_side=settings["max_side"],
        )
    return vf, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def _done_change(
    item: VideoItem, vf: VideoFeatures, st: os.stat_result | None
) -> Callable[[dict], None]:
    """Manifest change recording a finished video (with the stamp its file had when read)."""
    entry = {
        "key": item.key,
        "path": item.path,
        "duration": vf.duration,
        "n_clips": int(len(vf.features)),
        "n_frames": vf.n_frames,
        "stamp": _stamp(st),
    }

    def change(manifest: dict) -> None:
        manifest["skipped"].pop(item.vid, None)
        manifest["videos"][item.vid] = entry

    return change


def _skipped_change(item: VideoItem, reason: str) -> Callable[[dict], None]:
    """Manifest change recording a video that could not be indexed, and why."""

    def change(manifest: dict) -> None:
        if manifest["videos"].get(item.vid, {}).get("path") == item.path:
            del manifest["videos"][item.vid]  # its file is unreadable now (never another's entry)
        manifest["skipped"][item.vid] = {"path": item.path, "reason": reason}

    return change
