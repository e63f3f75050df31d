"""MomentSearch: a moment search engine over a folder of video files (capstone).

Pipeline (chapters 1, 3 and 6 put together):

* **build** - streaming, resumable clip-feature extraction (:mod:`course_lib.search.build`), then
  a faiss segment index over all videos (:class:`course_lib.corpus.SegmentIndex`);
* **search** - coarse-to-fine (CFAN / SPR): the segment index ranks videos by their best segment
  (stage 1); the pluggable moment localiser runs on the top videos' clip features, with sliding
  windows on long videos (stage 2); the final score is
  ``alpha * minmax(stage1) + (1 - alpha) * minmax(stage2)`` over the query's candidates
  (:func:`course_lib.corpus.search.rank_candidates`).

Index folder layout::

    out_dir/manifest.json            encoder identity, settings, finished / skipped videos
    out_dir/features/<key>.npz       fp16 (T, D) clip features (moment_detr layout)
    out_dir/thumbs/<key>.npz         uint8 (T, h, w, 3) one thumbnail per 2-s clip
    out_dir/segments.faiss(.meta.npz) the segment index

A folder built with one encoder refuses to be searched with another (:class:`IndexMismatchError`).
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from course_lib.corpus.index import IndexConfig, SegmentIndex
from course_lib.corpus.search import CoarseToFineSearch, SegmentVideoScorer
from course_lib.errors import CourseError, DataValidationError
from course_lib.localisers import (
    BaselineLocaliser,
    Localiser,
    Query,
    localise_long,
    saliency_curve,
)
from course_lib.search.build import (
    CLIP_LEN,
    DEFAULT_FPS,
    DEFAULT_THUMB_SIDE,
    FEATURES_DIR,
    THUMBS_DIR,
    BuildSummary,
    NothingIndexedError,
    VideoItem,
    check_compatible,
    discover_videos,
    encoder_from_spec,
    extract_all,
    file_item,
    new_manifest,
    read_manifest,
    remove_stray_temporaries,
    write_manifest,
)

INDEX_FILE = "segments.faiss"
#: Default stage-1 weight: the best top-3 hit rate of {0, .25, .5, .75, .9, 1} on 60 validation
#: videos with the committed tiny CLIP (``benchmarks/bench_search.py --split val --videos 60
#: --alpha-sweep``: 0.700 vs 0.483 at 0.5; 1.0 ties and ties go to the smaller alpha, which
#: keeps the localiser's score in the ranking). Refit it when the encoder or localiser changes.
DEFAULT_ALPHA = 0.9
RESULT_COLUMNS = [
    "rank",
    "vid",
    "path",
    "start",
    "end",
    "score",
    "video_score",
    "moment_score",
    "thumbnail",
]


class MomentSearch:
    """Search a collection of videos for the moments a sentence describes.

    Create one with :meth:`build` (index a source) or :meth:`load` (open an index folder).

    Args:
        out_dir: the index folder.
        encoder: CLIP encoder (same identity as the folder's manifest).
        index: the segment index.
        manifest: the folder's manifest.
        localiser: stage-2 moment localiser (default :class:`BaselineLocaliser`).
        top_k_videos: videos passed from stage 1 to stage 2.
        alpha: weight of the stage-1 (video) score in the final score (:data:`DEFAULT_ALPHA`).
        moments_per_video: at most this many moments of one video in the results.
        cache_videos: clip features / thumbnails of this many videos are kept in memory.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        encoder,
        index: SegmentIndex,
        manifest: dict,
        localiser: Localiser | None = None,
        top_k_videos: int = 10,
        alpha: float = DEFAULT_ALPHA,
        moments_per_video: int | None = 1,
        cache_videos: int = 64,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.encoder = encoder
        self.index = index
        self.manifest = manifest
        self.localiser = localiser if localiser is not None else BaselineLocaliser()
        self.top_k_videos = top_k_videos
        self.alpha = alpha
        self.moments_per_video = moments_per_video
        self.summary: BuildSummary | None = None
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._cache_size = cache_videos

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        source: str | os.PathLike | Sequence[str] | Mapping[str, Any],
        out_dir: str | os.PathLike,
        encoder=None,
        localiser: Localiser | None = None,
        index_config: IndexConfig | None = None,
        fps: float = DEFAULT_FPS,
        batch_size: int = 64,
        thumb_side: int = DEFAULT_THUMB_SIDE,
        progress: bool = True,
        **engine_kwargs: Any,
    ) -> MomentSearch:
        """Index a source (resumable: re-running skips finished videos).

        Args:
            source: folder of video files, list of files / toy-world ids, or a toy corpus dict.
            out_dir: index folder (created; an existing one is resumed).
            encoder: CLIP encoder; default the committed tiny CLIP.
            localiser: stage-2 localiser; default the training-free baseline.
            index_config: faiss index settings; default exact (flat), 4-s segments.
            fps: frames sampled per second (>= one per 2-s clip).
            batch_size: frames per encoder pass (bounds memory).
            thumb_side: longer side of the stored per-clip thumbnails (pixels).
            progress: tqdm progress bar.
            **engine_kwargs: ``top_k_videos``, ``alpha``, ``moments_per_video``.

        Returns:
            The engine; ``engine.summary`` lists computed, reused and skipped videos.

        Raises:
            IndexMismatchError: ``out_dir`` holds an index of another encoder / settings.
            NothingIndexedError: no video of the source could be read.
        """
        from course_lib.clip import ClipEncoder

        if not fps * CLIP_LEN >= 1.0 - 1e-9:
            raise ValueError(f"fps must be at least one frame per {CLIP_LEN:g}-s clip, got {fps}")
        encoder = encoder if encoder is not None else ClipEncoder.tiny(progress=False)
        out_dir = Path(out_dir)
        items, ignored, root = discover_videos(source)
        settings = _settings(encoder, fps, thumb_side)
        manifest = _open_manifest(out_dir, encoder, settings, root)
        remove_stray_temporaries(out_dir)
        summary = BuildSummary(ignored=ignored)
        extract_all(items, encoder, out_dir, manifest, batch_size, progress, summary)
        vids = sorted(it.vid for it in items if it.vid in manifest["videos"])
        if not vids:
            raise NothingIndexedError(
                f"no video of {source!s:.200} could be indexed\n{summary.format()}", summary
            )
        config = index_config or IndexConfig(kind="flat")
        index = _build_index(out_dir, manifest, vids, config)
        engine = cls(out_dir, encoder, index, manifest, localiser, **engine_kwargs)
        engine.summary = summary
        return engine

    @classmethod
    def load(
        cls,
        out_dir: str | os.PathLike,
        encoder=None,
        localiser: Localiser | None = None,
        **engine_kwargs: Any,
    ) -> MomentSearch:
        """Open an index folder written by :meth:`build`.

        Args:
            out_dir: the index folder.
            encoder: the CLIP encoder; default: recreated from the manifest (tiny or pretrained).
            localiser: stage-2 localiser; default the training-free baseline.

        Raises:
            FileNotFoundError: no manifest in ``out_dir``.
            IndexMismatchError: ``encoder`` is not the one the index was built with.
            OfflineError: the manifest names pretrained weights that cannot be downloaded.
        """
        out_dir = Path(out_dir)
        manifest = read_manifest(out_dir)
        if manifest is None:
            raise FileNotFoundError(
                f"{out_dir} is not a search index (no manifest.json); build one with "
                "`python -m course_lib.search index VIDEO_DIR --out INDEX_DIR`"
            )
        if encoder is None:
            spec = manifest["encoder"].get("spec")
            if spec is None:
                raise CourseError(
                    f"index {out_dir} was built with encoder {manifest['encoder']['identity']!r} "
                    "that cannot be recreated by name: pass it as encoder="
                )
            encoder = encoder_from_spec(spec, progress=False)
        check_compatible(manifest, encoder, None, out_dir)
        index = _load_index(out_dir, manifest)
        return cls(out_dir, encoder, index, manifest, localiser, **engine_kwargs)

    def add(
        self,
        paths: Iterable[str | os.PathLike],
        batch_size: int = 64,
        progress: bool = True,
    ) -> BuildSummary:
        """Index new videos (files or toy ids) incrementally; already indexed ones are skipped.

        Returns:
            The :class:`BuildSummary` of this addition (also in ``self.summary``).
        """
        root = self.manifest.get("source_root")
        items = [_item(p, root) for p in paths]
        items = list({it.vid: it for it in items}.values())
        summary = BuildSummary()
        new_items = [it for it in items if it.vid not in set(self.index.vids)]
        summary.reused += [it.vid for it in items if it.vid in set(self.index.vids)]
        extract_all(
            new_items, self.encoder, self.out_dir, self.manifest, batch_size, progress, summary
        )
        fresh = [v for v in summary.done if v not in set(self.index.vids)]
        if fresh:
            self.index.add_videos({v: self.features(v) for v in fresh})
            _save_index(self.out_dir, self.manifest, self.index)
        self.summary = summary
        return summary

    # ------------------------------------------------------------------ data access
    @property
    def vids(self) -> list[str]:
        """Indexed video ids."""
        return self.index.vids

    def video_info(self, vid: str) -> dict:
        """Manifest entry of a video (key, path, duration, n_clips, ...)."""
        try:
            return self.manifest["videos"][vid]
        except KeyError:
            raise DataValidationError(f"video {vid!r} is not in index {self.out_dir}") from None

    def _cached(self, kind: str, vid: str) -> np.ndarray:
        """Features or thumbnails of a video through a small LRU cache."""
        from course_lib.datasets.features import load_video_features

        hit = self._cache.get((kind, vid))
        if hit is not None:
            self._cache.move_to_end((kind, vid))
            return hit
        key = self.video_info(vid)["key"]
        if kind == "features":
            value = load_video_features(self.out_dir / FEATURES_DIR, key)
        else:
            with np.load(self.out_dir / THUMBS_DIR / f"{key}.npz", allow_pickle=False) as data:
                value = data["thumbs"]
        self._cache[(kind, vid)] = value
        while len(self._cache) > 2 * self._cache_size:
            self._cache.popitem(last=False)
        return value

    def features(self, vid: str) -> np.ndarray:
        """float32 (T, D) clip features of an indexed video."""
        return self._cached("features", vid)

    def thumbnails(self, vid: str) -> np.ndarray:
        """uint8 (T, h, w, 3) per-clip thumbnails of an indexed video."""
        return self._cached("thumbs", vid)

    def frames(self, vid: str, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
        """Thumbnails of the clips overlapping ``[start, end)`` and their clip start times."""
        thumbs = self.thumbnails(vid)
        a = int(np.clip(np.floor(start / CLIP_LEN), 0, len(thumbs) - 1))
        b = int(np.clip(np.ceil(end / CLIP_LEN), a + 1, len(thumbs)))
        return thumbs[a:b], np.arange(a, b) * CLIP_LEN

    # ------------------------------------------------------------------ searching
    def encode_query(self, text: str) -> Query:
        """Embed a query once (validated by the encoder's tokenizer)."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"query must be a non-empty string, got {text!r}")
        emb = self.encoder.encode_text([text])[0].numpy().astype(np.float32)
        return Query(text, emb, self.encoder)

    def localise(self, vid: str, query: Query) -> list[tuple[float, float, float]]:
        """Stage 2 on one video: the localiser over sliding windows, merged by NMS."""
        info = self.video_info(vid)
        return localise_long(self.localiser, self.features(vid), query, float(info["duration"]))

    def saliency(self, vid: str, query: str | Query) -> np.ndarray:
        """(T,) per-clip saliency of a video for a query (the widget's score curve)."""
        query = self.encode_query(query) if isinstance(query, str) else query
        info = self.video_info(vid)
        return saliency_curve(self.localiser, self.features(vid), query, float(info["duration"]))

    def search(
        self,
        query: str,
        k: int = 10,
        top_k_videos: int | None = None,
        moments_per_video: int | None = -1,
        thumbnails: bool = True,
    ):
        """The ``k`` best moments for a sentence.

        Args:
            query: the sentence.
            k: moments returned.
            top_k_videos: videos localised in stage 2 (default ``self.top_k_videos``).
            moments_per_video: cap per video (default ``self.moments_per_video``; None = no cap).
            thumbnails: add a ``thumbnail`` column (uint8 (h, w, 3), the moment's most salient
                clip).

        Returns:
            ``pandas.DataFrame`` with columns rank, vid, path, start, end, score, video_score,
            moment_score, thumbnail (best first).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = self.encode_query(query)
        per_video = self.moments_per_video if moments_per_video == -1 else moments_per_video
        pipeline = CoarseToFineSearch(
            SegmentVideoScorer(self.index, lambda qq: qq.embedding),
            self.localise,
            top_k_videos=top_k_videos or self.top_k_videos,
            alpha=self.alpha,
            moments_per_video=per_video,
        )
        res = pipeline.search(q, top_n=k)
        res = res.rename(columns={"stage1_score": "video_score", "stage2_score": "moment_score"})
        res["path"] = [self.video_info(v).get("path") for v in res["vid"]]
        res["thumbnail"] = (
            [self._thumbnail(r.vid, r.start, r.end, q) for r in res.itertuples()]
            if thumbnails
            else None
        )
        return res[RESULT_COLUMNS]

    def _thumbnail(self, vid: str, start: float, end: float, query: Query) -> np.ndarray:
        """Thumbnail of the most salient clip inside a moment."""
        thumbs, times = self.frames(vid, start, end)
        sal = self.saliency(vid, query)
        a = int(round(times[0] / CLIP_LEN))
        return thumbs[int(np.argmax(sal[a : a + len(thumbs)]))]

    def __repr__(self) -> str:
        return (
            f"MomentSearch({str(self.out_dir)!r}, videos={len(self.vids)}, "
            f"segments={self.index.ntotal}, encoder={self.encoder.identity!r})"
        )


# ----------------------------------------------------------------------------- helpers
def _settings(encoder, fps: float, thumb_side: int) -> dict:
    """Sampling settings stored in (and checked against) the manifest."""
    return {
        "clip_len": float(CLIP_LEN),
        "fps": float(fps),
        "thumb_side": int(thumb_side),
        "max_side": max(256, 2 * int(encoder.image_size)),
    }


def _open_manifest(out_dir: Path, encoder, settings: dict, root: Path | None) -> dict:
    """The existing manifest (checked against encoder and settings) or a new one."""
    manifest = read_manifest(out_dir)
    if manifest is None:
        out_dir.mkdir(parents=True, exist_ok=True)
        manifest = new_manifest(encoder, settings, root)
        write_manifest(out_dir, manifest)
        return manifest
    check_compatible(manifest, encoder, settings, out_dir)
    if root is not None:
        manifest["source_root"] = str(root)
    return manifest


def _item(path: str | os.PathLike, root: str | None) -> VideoItem:
    """VideoItem of a path (relative to the index's source root) or of a toy id."""
    items, _, _ = discover_videos([os.fspath(path)])
    it = items[0]
    return file_item(it.path, root) if it.path is not None else it


def _build_index(out_dir: Path, manifest: dict, vids: list[str], config: IndexConfig):
    """Segment index over the stored (fp16 -> fp32) features of ``vids``, saved to out_dir."""
    from course_lib.datasets.features import load_video_features

    feats = {
        v: load_video_features(out_dir / FEATURES_DIR, manifest["videos"][v]["key"]) for v in vids
    }
    index = SegmentIndex.build(feats, config)
    _save_index(out_dir, manifest, index)
    return index


def _save_index(out_dir: Path, manifest: dict, index: SegmentIndex) -> None:
    """Save the index, then record it in the manifest (both atomic)."""
    index.save(out_dir / INDEX_FILE)
    manifest["index"] = {
        "file": INDEX_FILE,
        "vids": index.vids,
        "config": asdict(index.config),
    }
    write_manifest(out_dir, manifest)


def _load_index(out_dir: Path, manifest: dict) -> SegmentIndex:
    """Load the saved index; rebuild it from the features if it is missing or stale."""
    info = manifest.get("index") or {}
    path = out_dir / INDEX_FILE
    try:
        index = SegmentIndex.load(path)
        if sorted(index.vids) == sorted(info.get("vids", [])):
            return index
        reason = "its videos differ from the manifest"
    except (FileNotFoundError, DataValidationError) as exc:
        reason = str(exc)
    vids = sorted(v for v in info.get("vids", manifest["videos"]) if v in manifest["videos"])
    if not vids:
        raise CourseError(f"index {out_dir} holds no finished video; build it again")
    warnings.warn(f"rebuilding the segment index of {out_dir}: {reason}", stacklevel=3)
    config = IndexConfig(**info["config"]) if info.get("config") else IndexConfig(kind="flat")
    return _build_index(out_dir, manifest, vids, config)
