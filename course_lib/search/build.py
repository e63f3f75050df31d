"""Resumable, streaming clip-feature extraction for the moment search engine (capstone).

A *source* is a folder of video files (any container PyAV reads), a list of video files or
toy-world ids, or a toy-world corpus dict. Each video is processed on its own:

1. **stream** frames at the sampling rate (``fps``, default one frame per 2-s clip, taken at the
   centre of each sampling interval) with :func:`course_lib.video.iter_frames`; only one batch of
   frames is ever held in memory;
2. **encode** each full batch with the CLIP image encoder (``encode_frames``);
3. **pool** the frame features into 2-s clip features (masked mean, L2-normalised;
   :func:`course_lib.clip.pool_clip_features`) and keep one small thumbnail per clip;
4. **store** ``thumbs/<key>.npz`` then ``features/<key>.npz`` (fp16, moment_detr layout), both
   written atomically (temporary file + rename), and finally record the video in
   ``manifest.json`` (also atomic).

Resumability: the manifest is the only truth about what is finished. A crash or Ctrl-C loses at
most the video being processed; a re-run skips every video the manifest lists as done (and whose
source file is unchanged: same size and modification time), and never reads a stray temporary
file, because readers open the final names only and those appear by atomic rename. Unreadable
files (:class:`~course_lib.errors.VideoReadError`) are skipped and reported, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from course_lib.clip.frames import is_toy_vid, stream_frames, video_duration
from course_lib.errors import CourseError, VideoReadError
from course_lib.timeline import CLIP_LEN

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
FEATURES_DIR = "features"
THUMBS_DIR = "thumbs"
DEFAULT_FPS = 0.5  # one frame per 2-s clip
DEFAULT_THUMB_SIDE = 48  # pixels, longer side of the stored per-clip thumbnails
VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .ts .mts .m2ts .flv .wmv .ogv .3gp .gif".split()
)
_EPS = 1e-6


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
        vid: display id: the path relative to the source folder, or a toy-world id.
        key: file-name-safe store name of its feature and thumbnail files.
        path: absolute file path, or ``None`` for a toy-world video rendered on the fly.
    """

    vid: str
    key: str
    path: str | None


def store_key(vid: str) -> str:
    """A safe, unique file name for a video id (readable name + short hash of the id)."""
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(vid).name)
    digest = hashlib.sha1(vid.encode("utf-8")).hexdigest()[:10]
    return f"{name[:80]}-{digest}"


def file_item(path: str | os.PathLike, root: str | os.PathLike | None = None) -> VideoItem:
    """The :class:`VideoItem` of a file: vid = path relative to ``root`` (if inside it)."""
    p = Path(path).resolve()
    vid = p.as_posix()
    if root is not None:
        try:
            vid = p.relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass  # outside the root: keep the absolute path
    return VideoItem(vid, store_key(vid), str(p))


def discover_videos(
    source: str | os.PathLike | Sequence[str] | Mapping[str, Any],
    extensions: Iterable[str] = VIDEO_EXTENSIONS,
) -> tuple[list[VideoItem], list[str], Path | None]:
    """List the videos of a source.

    Args:
        source: a folder (searched recursively, hidden files ignored), one video file, a list
            of files and/or toy-world ids, or a toy-world corpus dict (``{"videos": [...]}``).
        extensions: file suffixes (lower case, with the dot) that count as videos in a folder.

    Returns:
        ``(items, ignored, root)``: videos sorted by vid, files of a folder that were ignored
        (no video suffix), and the folder that vids are relative to (None for lists).
    """
    exts = {e.lower() for e in extensions}
    if isinstance(source, Mapping):  # a toy-world corpus
        vids = [v["vid"] if isinstance(v, Mapping) else v for v in source.get("videos", [])]
        return [VideoItem(v, v, None) for v in sorted(set(vids))], [], None
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        root = Path(source).resolve()
        items, ignored = [], []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue  # hidden files, our own temporary files
                p = Path(dirpath) / name
                if p.suffix.lower() in exts:
                    items.append(file_item(p, root))
                else:
                    ignored.append(p.relative_to(root).as_posix())
        return sorted(items, key=lambda it: it.vid), ignored, root
    if isinstance(source, (str, os.PathLike)):
        source = [os.fspath(source)]
    items = []
    for name in source:
        name = os.fspath(name)
        items.append(VideoItem(name, name, None) if is_toy_vid(name) else file_item(name))
    unique = {it.vid: it for it in items}
    return sorted(unique.values(), key=lambda it: it.vid), [], None


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

    Raises:
        VideoReadError: the file cannot be opened or decoded (message names it).
    """
    import torch

    from course_lib.clip.features import pool_clip_features

    probed = _probe_duration(item)  # fails fast on non-videos
    batch: list[np.ndarray] = []
    feats: list[np.ndarray] = []
    clip_ids: list[int] = []
    thumbs: dict[int, np.ndarray] = {}

    def flush() -> None:
        # 2. encode one batch of frames, keep only their (B, D) features
        feats.append(encoder.encode_frames(np.stack(batch)).numpy().astype(np.float32))
        batch.clear()

    # 1. stream frames; remember each clip's first frame as its thumbnail
    for t, frame in iter_sampled_frames(item, fps, max_side, timeout_s):
        clip = int(math.floor(t / clip_len + _EPS))
        thumbs.setdefault(clip, make_thumbnail(frame, thumb_side))
        batch.append(frame)
        clip_ids.append(clip)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    if not clip_ids:
        raise VideoReadError(f"no frames sampled from {item.path or item.vid}")
    # 3. pool frames into clips; a clip without frames repeats its predecessor's thumbnail
    n_clips = max(clip_ids) + 1
    pooled = pool_clip_features(
        torch.from_numpy(np.concatenate(feats)), torch.as_tensor(clip_ids), n_clips=n_clips
    ).numpy()
    strip, last = [], thumbs[min(thumbs)]
    for c in range(n_clips):
        last = thumbs.get(c, last)
        strip.append(last)
    duration = n_clips * clip_len if probed <= 0 else min(probed, n_clips * clip_len)
    return VideoFeatures(pooled, np.stack(strip), float(duration), len(clip_ids))


# ----------------------------------------------------------------------------- manifest
def encoder_spec(encoder) -> str | None:
    """How to recreate an encoder from the manifest: ``"tiny"``, ``"NAME:TAG"`` or None.

    ``"tiny"`` means the committed checkpoint ``data/tiny_clip.safetensors``: the encoder's
    weights hash equals the hash in that checkpoint's manifest.
    """
    if str(encoder.weights_id) == committed_tiny_hash():
        return "tiny"
    if str(encoder.weights_id).startswith("random") or len(str(encoder.weights_id)) == 64:
        return None  # random weights or a local weights file: the caller must pass it
    return f"{encoder.name}:{encoder.weights_id}"


def committed_tiny_hash() -> str | None:
    """SHA256 of the committed tiny CLIP from its manifest (None when the file is absent)."""
    from course_lib.clip.checkpoint import manifest_path, read_manifest
    from course_lib.clip.encoder import TINY_CHECKPOINT
    from course_lib.env import data_dir

    checkpoint = data_dir() / TINY_CHECKPOINT
    return read_manifest(checkpoint) if manifest_path(checkpoint).is_file() else None


def encoder_from_spec(spec: str, **kwargs):
    """Recreate an encoder from :func:`encoder_spec`'s string (may raise OfflineError)."""
    from course_lib.clip import ClipEncoder

    if spec == "tiny":
        return ClipEncoder.tiny(**kwargs)
    name, _, weights = spec.partition(":")
    return ClipEncoder.pretrained(name, weights or "openai", **kwargs)


def manifest_path(out_dir: str | os.PathLike) -> Path:
    """``<out_dir>/manifest.json``."""
    return Path(out_dir) / MANIFEST_NAME


def read_manifest(out_dir: str | os.PathLike) -> dict | None:
    """The manifest of an index folder, or None if there is none yet."""
    path = manifest_path(out_dir)
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CourseError(f"index manifest {path} is unreadable: {exc}") from exc
    if manifest.get("format") != FORMAT_VERSION:
        raise CourseError(
            f"index manifest {path} has format {manifest.get('format')!r}, "
            f"this course_lib reads format {FORMAT_VERSION}"
        )
    return manifest


def write_manifest(out_dir: str | os.PathLike, manifest: dict) -> None:
    """Write the manifest atomically (never half a file)."""
    from course_lib.files import atomic_write

    with atomic_write(manifest_path(out_dir), "w") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)


def new_manifest(encoder, settings: dict, root: Path | None) -> dict:
    """An empty manifest for ``encoder`` and sampling ``settings``."""
    return {
        "format": FORMAT_VERSION,
        "encoder": {
            "identity": encoder.identity,
            "spec": encoder_spec(encoder),
            "embed_dim": int(encoder.embed_dim),
        },
        "settings": settings,
        "source_root": str(root) if root is not None else None,
        "videos": {},
        "skipped": {},
        "index": None,
    }


def check_compatible(manifest: dict, encoder, settings: dict | None, where: Path) -> None:
    """Refuse an encoder (or sampling settings) other than the ones the folder was built with.

    Raises:
        IndexMismatchError: names both encoders / settings and what to do.
    """
    built = manifest["encoder"]["identity"]
    if encoder.identity != built:
        raise IndexMismatchError(
            f"index {where} was built with encoder {built!r}, but encoder {encoder.identity!r} "
            "was given: its features live in another space. Use the same encoder, or rebuild "
            "into a new folder (python -m course_lib.search index VIDEO_DIR --out NEW_DIR)."
        )
    if settings is not None:
        old = {k: manifest["settings"].get(k) for k in settings}
        if old != settings:
            raise IndexMismatchError(
                f"index {where} was built with sampling settings {manifest['settings']}, "
                f"not {settings}; rebuild into a new folder"
            )


def _file_stamp(path: str | None) -> dict:
    """Size and modification time of a source file (to notice changed files)."""
    if path is None:
        return {}
    st = os.stat(path)
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


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
    """Delete temporary files left by a killed run (``.name.XXXX.tmp``); they are never read."""
    n = 0
    for sub in (FEATURES_DIR, THUMBS_DIR, "."):
        folder = out_dir / sub
        if folder.is_dir():
            for p in folder.glob(".*.tmp"):
                p.unlink(missing_ok=True)
                n += 1
    return n


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
        lines += [f"  skipped {path}: {reason}" for path, reason in sorted(self.skipped.items())]
        for vid, msgs in sorted(self.warnings.items()):
            lines += [f"  warning {vid}: {m}" for m in msgs[:2]]
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
) -> BuildSummary:
    """Extract every unfinished video, recording each one in the manifest as soon as it is done.

    Args:
        items: videos to process (finished ones are skipped).
        encoder: the CLIP encoder (its identity must match the manifest).
        out_dir: the index folder.
        manifest: the folder's manifest (updated in place and on disk).
        batch_size: frames per encoder forward pass (bounds memory).
        progress: show a tqdm bar.
        summary: a summary to fill (default: a new one).

    Returns:
        The :class:`BuildSummary`. Exceptions other than VideoReadError (a crash, Ctrl-C)
        propagate; everything finished before them is kept.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    summary = summary or BuildSummary()
    start = time.perf_counter()
    settings = manifest["settings"]
    bar = tqdm(items, desc="index", unit="video", disable=not progress, dynamic_ncols=True)
    for item in bar:
        bar.set_postfix_str(item.vid[-40:], refresh=False)
        if is_done(manifest, item, out_dir):
            summary.reused.append(item.vid)
            manifest["skipped"].pop(item.vid, None)
            continue
        try:
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
        except VideoReadError as exc:
            summary.skipped[item.path or item.vid] = str(exc)
            manifest["videos"].pop(item.vid, None)
            manifest["skipped"][item.vid] = {"path": item.path, "reason": str(exc)}
            write_manifest(out_dir, manifest)
            continue
        msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        if msgs:
            summary.warnings[item.vid] = msgs
        _save_video(out_dir, item, vf)
        manifest["skipped"].pop(item.vid, None)
        manifest["videos"][item.vid] = {
            "key": item.key,
            "path": item.path,
            "duration": vf.duration,
            "n_clips": int(len(vf.features)),
            "n_frames": vf.n_frames,
            "stamp": _file_stamp(item.path),
        }
        write_manifest(out_dir, manifest)  # the video counts as done from here on
        summary.computed.append(item.vid)
        summary.video_seconds += vf.duration
    summary.seconds += time.perf_counter() - start
    return summary
