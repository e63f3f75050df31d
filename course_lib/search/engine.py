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

    out_dir/manifest.json            encoder identity, settings, source folders, finished /
                                     skipped videos, the index's videos and file checksums
    out_dir/features/<key>.npz       fp16 (T, D) clip features (moment_detr layout)
    out_dir/thumbs/<key>.npz         uint8 (T, h, w, 3) one thumbnail per 2-s clip
    out_dir/segments.faiss(.meta.npz) the segment index
    out_dir/index.lock               the folder's lock (holds the pid of the process writing)

A folder built with one encoder refuses to be searched with another (:class:`IndexMismatchError`).
The encoder is a clip encoder (:class:`~course_lib.clip.clip_encoder.VideoClipEncoder`, e.g.
chapter 1's ``VideoClipEncoder.committed()``, the default, recorded as ``"video"``), which embeds
each 2-s clip from its k frames, or a frame encoder (:class:`~course_lib.clip.encoder.ClipEncoder`,
e.g. the committed tiny CLIP); queries are embedded with ``encoder.encode_text`` either way. The
stage-2 localiser defaults to chapter 5's COREBA when it was trained on the encoder's features.

Several processes may use one folder at once. Writers (``build``, ``add``) merge their videos into
the manifest under the folder's lock, and write the segment index and its manifest record under
that lock too; ``load`` reads manifest and index files under the lock, so it always gets files
that belong together (a consistent snapshot), never a half-updated pair. A process waits at most
``lock_timeout`` seconds (:data:`~course_lib.search.build.LOCK_TIMEOUT_S` by default), then fails
with :class:`~course_lib.errors.LockTimeoutError` naming the folder and the holder's pid.

The index is built over every finished video of the folder, whatever source folder it came
from; ids are unique across source folders (:func:`~course_lib.search.build.vid_for_path`). The
manifest records the SHA256 of ``segments.faiss`` and its metadata file: a file changed after it
was written (e.g. edited vectors) is noticed on load and the index is rebuilt from the stored
features, with a warning that names the file. The record also keeps each video's stamp, so an
index that still holds the old vectors of a video recomputed since (a build killed between
recording the video and rebuilding the index) is rebuilt too.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from course_lib.corpus.index import IndexConfig, SegmentIndex, checksum_mismatch, index_checksums
from course_lib.corpus.search import CoarseToFineSearch, SegmentVideoScorer
from course_lib.datasets.safe_read import short_repr
from course_lib.datasets.validate import text_problem
from course_lib.errors import CourseError, DataValidationError
from course_lib.files import folder_lock
from course_lib.localisers import (
    Localiser,
    Query,
    committed_localiser,
    localise_long,
    saliency_curve,
)
from course_lib.search.build import (
    CLIP_LEN,
    DEFAULT_FPS,
    DEFAULT_THUMB_SIDE,
    FEATURES_DIR,
    LOCK_TIMEOUT_S,
    THUMBS_DIR,
    BuildSummary,
    NothingIndexedError,
    VideoItem,
    check_compatible,
    clip_encoder_fps,
    clip_frames,
    discover_videos,
    encoder_from_spec,
    extract_all,
    extract_with_settings,
    manifest_path,
    manifest_roots,
    new_manifest,
    read_manifest,
    register_root,
    remove_stray_temporaries,
    source_path,
    source_root,
    write_manifest,
)

INDEX_FILE = "segments.faiss"
#: Default stage-1 weight: the best top-3 hit rate of {0, .25, .5, .75, .9, 1} on 60 validation
#: videos with the default encoder and localiser (the committed video encoder and the COREBA
#: trained on it; ``benchmarks/bench_search.py --split val --videos 60 --threads 1
#: --alpha-sweep``: 0.750 vs 0.683 at 0.5; 1.0 ties and ties go to the smaller alpha, which
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


class StaleSnapshotError(CourseError):
    """A video was recomputed (or dropped) by another process after this engine loaded the index:
    its stored files no longer belong to the engine's snapshot (names the video and the folder)."""


class MomentSearch:
    """Search a collection of videos for the moments a sentence describes.

    Create one with :meth:`build` (index a source) or :meth:`load` (open an index folder).

    Args:
        out_dir: the index folder.
        encoder: frame or clip encoder (same identity as the folder's manifest).
        index: the segment index.
        manifest: the folder's manifest.
        localiser: stage-2 moment localiser (default
            :func:`~course_lib.localisers.committed_localiser`: chapter 5's COREBA when it was
            trained on ``encoder``'s features, else the training-free :class:`BaselineLocaliser`).
        top_k_videos: videos passed from stage 1 to stage 2.
        alpha: weight of the stage-1 (video) score in the final score (:data:`DEFAULT_ALPHA`).
        moments_per_video: at most this many moments of one video in the results.
        cache_videos: clip features / thumbnails of this many videos are kept in memory.
        lock_timeout: seconds to wait for another process's lock on the folder (``add``).
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
        lock_timeout: float = LOCK_TIMEOUT_S,
    ) -> None:
        _check_top_k_videos(top_k_videos)
        self.out_dir = Path(out_dir)
        self.encoder = encoder
        self.index = index
        self.manifest = manifest
        self.localiser = localiser if localiser is not None else committed_localiser(encoder)
        self.top_k_videos = top_k_videos
        self.alpha = alpha
        self.moments_per_video = moments_per_video
        self.summary: BuildSummary | None = None
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._cache_size = cache_videos
        self.lock_timeout = lock_timeout
        self._on_disk: tuple[tuple[int, ...], dict] | None = None  # (file identity, manifest)

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
        lock_timeout: float = LOCK_TIMEOUT_S,
        **engine_kwargs: Any,
    ) -> MomentSearch:
        """Index a source (resumable: re-running skips finished videos).

        Other processes may build into (or read) the same folder at the same time: every
        video is merged into the manifest under the folder's lock, and at the end the segment
        index covers every finished video of the folder, this source's and others' (built anew
        when a video was added or recomputed, or ``index_config`` differs; kept otherwise).

        Args:
            source: folder of video files, list of files / toy-world ids, or a toy corpus dict.
            out_dir: index folder (created; an existing one is resumed).
            encoder: frame encoder (``ClipEncoder``) or clip encoder (``VideoClipEncoder``);
                default chapter 1's committed video encoder (``VideoClipEncoder.committed``).
            localiser: stage-2 localiser; default ``committed_localiser(encoder)``.
            index_config: faiss index settings; default exact (flat), 4-s segments.
            fps: frame encoder: frames sampled per second (>= one per 2-s clip). A clip encoder
                samples its k frames per clip (``k / 2`` per second) instead: the default is
                replaced, any other value refused.
            batch_size: frames per encoder pass (bounds memory; a clip encoder gets
                ``batch_size // k`` clips per pass).
            thumb_side: longer side of the stored per-clip thumbnails (pixels).
            progress: tqdm progress bar.
            lock_timeout: seconds to wait for another process's lock on ``out_dir``.
            **engine_kwargs: ``top_k_videos``, ``alpha``, ``moments_per_video``.

        Returns:
            The engine; ``engine.summary`` lists computed, reused and skipped videos.

        Raises:
            ValueError: ``fps`` below one frame per clip, or (clip encoder) another rate than
                its k frames per clip.
            IndexMismatchError: ``out_dir`` holds an index of another encoder / settings.
            NothingIndexedError: no video of the source could be read.
            LockTimeoutError: another process held the folder's lock too long.
        """
        from course_lib.clip import VideoClipEncoder

        encoder = encoder if encoder is not None else VideoClipEncoder.committed(progress=False)
        out_dir = Path(out_dir)
        settings = _settings(encoder, _sampling_fps(encoder, fps), thumb_side)
        manifest = _open_manifest(out_dir, encoder, settings, source_root(source), lock_timeout)
        items, ignored, _ = discover_videos(source, roots=manifest_roots(manifest))
        remove_stray_temporaries(out_dir)
        summary = BuildSummary(ignored=ignored)
        extract_all(items, encoder, out_dir, manifest, batch_size, progress, summary, lock_timeout)
        if not any(it.vid in manifest["videos"] for it in items):
            raise NothingIndexedError(
                f"no video of {source!s:.200} could be indexed\n{summary.format()}", summary
            )
        config = index_config or IndexConfig(kind="flat")
        index, manifest = _sync_index(out_dir, config, lock_timeout, changed=summary.computed)
        engine = cls(
            out_dir, encoder, index, manifest, localiser, lock_timeout=lock_timeout, **engine_kwargs
        )
        engine.summary = summary
        return engine

    @classmethod
    def load(
        cls,
        out_dir: str | os.PathLike,
        encoder=None,
        localiser: Localiser | None = None,
        lock_timeout: float = LOCK_TIMEOUT_S,
        **engine_kwargs: Any,
    ) -> MomentSearch:
        """Open an index folder written by :meth:`build`.

        Manifest and index files are read together under the folder's lock, so a build running
        at the same time never hands over a manifest of one state and index files of another.
        Index files that differ from the checksums in the manifest (or are missing) are rebuilt
        from the stored features, with a warning that names the file.

        Args:
            out_dir: the index folder.
            encoder: the frame or clip encoder; default: recreated from the manifest (tiny,
                video or pretrained).
            localiser: stage-2 localiser; default ``committed_localiser(encoder)``.
            lock_timeout: seconds to wait while another process writes the folder.

        Raises:
            FileNotFoundError: no manifest in ``out_dir``.
            DataValidationError: a manifest that is not one (not a JSON object, a missing or
                mistyped field; names the file and field).
            IndexMismatchError: ``encoder`` is not the one the index was built with.
            OfflineError: the manifest names pretrained weights that cannot be downloaded.
            CheckpointError: the manifest names a committed checkpoint that is missing.
            LockTimeoutError: another process held the folder's lock too long.
        """
        out_dir = Path(out_dir)
        manifest = read_manifest(out_dir)  # None only when nothing is at its path
        if manifest is None:
            raise FileNotFoundError(
                f"{out_dir} is not a search index (no manifest.json); build one with "
                "`python -m course_lib.search index VIDEO_DIR --out INDEX_DIR`"
            )
        encoder = encoder if encoder is not None else _manifest_encoder(manifest, out_dir)
        check_compatible(manifest, encoder, None, out_dir)
        index, manifest = _load_index(out_dir, lock_timeout)
        return cls(
            out_dir, encoder, index, manifest, localiser, lock_timeout=lock_timeout, **engine_kwargs
        )

    def add(
        self,
        paths: Iterable[str | os.PathLike],
        batch_size: int = 64,
        progress: bool = True,
    ) -> BuildSummary:
        """Index new videos (files or toy ids) incrementally; already indexed ones are skipped.

        A file inside one of the index's source folders gets the id it would get there
        (:func:`~course_lib.search.build.vid_for_path`), any other file its absolute path. The
        engine then holds the folder's newest state, including videos other processes added.

        Returns:
            The :class:`BuildSummary` of this addition (also in ``self.summary``).
        """
        manifest = read_manifest(self.out_dir) or self.manifest  # the newest source folders
        items, _, _ = discover_videos([os.fspath(p) for p in paths], roots=manifest_roots(manifest))
        summary = BuildSummary()
        extract_all(
            items,
            self.encoder,
            self.out_dir,
            manifest,
            batch_size,
            progress,
            summary,
            self.lock_timeout,
        )
        index, manifest = _sync_index(
            self.out_dir,
            self.index.config,
            self.lock_timeout,
            incremental=True,
            changed=summary.computed,
        )
        self._adopt(index, manifest)
        self.summary = summary
        return summary

    def _adopt(self, index: SegmentIndex, manifest: dict) -> None:
        """Use a new index and manifest (and forget cached arrays that may be outdated)."""
        self.index, self.manifest = index, manifest
        self._cache.clear()

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
        # read under the lock (writers store a video's files and its entry under it), and only
        # while the folder still records the video as this engine's snapshot does
        with folder_lock(self.out_dir, self.lock_timeout, required=False):
            self._check_snapshot(vid)
            if kind == "features":
                value = load_video_features(self.out_dir / FEATURES_DIR, key)
            else:
                value = _read_thumbnails(self.out_dir / THUMBS_DIR, key)
        self._cache[(kind, vid)] = value
        while len(self._cache) > 2 * self._cache_size:
            self._cache.popitem(last=False)
        return value

    def _check_snapshot(self, vid: str) -> None:
        """Refuse to read a video's stored files when the folder records it otherwise than the
        engine's snapshot (the manifest it loaded) does: recomputed or dropped since.

        Raises:
            StaleSnapshotError: names the video and the folder, and says to reload.
        """
        current = self._manifest_on_disk()
        if current is None or current["videos"].get(vid) == self.manifest["videos"].get(vid):
            return
        raise StaleSnapshotError(
            f"video {vid!r} of index {self.out_dir} was recomputed or removed by another process "
            "after this engine loaded the index, so its stored features no longer match the "
            "index's vectors: call engine.reload() or MomentSearch.load() again"
        )

    def _manifest_on_disk(self) -> dict | None:
        """The folder's manifest as it is now (parsed again only when its file was replaced)."""
        path = manifest_path(self.out_dir)
        try:
            st = os.stat(path)
        except OSError:
            return None  # a folder without its manifest any more: nothing to compare with
        identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if self._on_disk is None or self._on_disk[0] != identity:
            self._on_disk = (identity, read_manifest(self.out_dir))
        return self._on_disk[1]

    def reload(self) -> None:
        """Load the folder's newest consistent snapshot (index and manifest) into this engine."""
        index, manifest = _load_index(self.out_dir, self.lock_timeout)
        self._adopt(index, manifest)

    def features(self, vid: str) -> np.ndarray:
        """float32 (T, D) clip features of an indexed video.

        Raises:
            StaleSnapshotError: another process recomputed the video since the engine loaded the
                index (see :meth:`reload`).
        """
        return self._cached("features", vid)

    def thumbnails(self, vid: str) -> np.ndarray:
        """uint8 (T, h, w, 3) per-clip thumbnails of an indexed video.

        Raises:
            DataValidationError: the thumbnail file is missing, not an npz archive, or holds
                another array (names the file; see :func:`_read_thumbnails`).
            StaleSnapshotError: another process recomputed the video since the engine loaded the
                index (see :meth:`reload`).
        """
        return self._cached("thumbs", vid)

    def frames(self, vid: str, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
        """Thumbnails of the clips overlapping ``[start, end)`` and their clip start times."""
        thumbs = self.thumbnails(vid)
        a = int(np.clip(np.floor(start / CLIP_LEN), 0, len(thumbs) - 1))
        b = int(np.clip(np.ceil(end / CLIP_LEN), a + 1, len(thumbs)))
        return thumbs[a:b], np.arange(a, b) * CLIP_LEN

    # ------------------------------------------------------------------ searching
    def encode_query(self, text: str) -> Query:
        """Embed a query once (validated by the encoder's tokenizer).

        Args:
            text: the query.

        Returns:
            The :class:`Query` holding the text and its embedding.

        Raises:
            DataValidationError: the query is empty, whitespace only or not a string (the
                message never echoes more than 200 characters of it).
        """
        problem = text_problem(text)
        if problem:
            raise DataValidationError(f"the query is {problem}; a query needs words")
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
            top_k_videos: videos localised in stage 2 (default ``self.top_k_videos``; an explicit
                number must be >= 1, 0 is refused, never replaced by the default).
            moments_per_video: cap per video (default ``self.moments_per_video``; None = no cap).
            thumbnails: add a ``thumbnail`` column (uint8 (h, w, 3), the moment's most salient
                clip).

        Returns:
            ``pandas.DataFrame`` with columns rank, vid, path, start, end, score, video_score,
            moment_score, thumbnail (best first). When another process recomputed a video since
            the engine loaded the index, the engine first loads the newest snapshot
            (:meth:`reload`) and answers from it.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        top_k_videos = self.top_k_videos if top_k_videos is None else top_k_videos
        _check_top_k_videos(top_k_videos)
        q = self.encode_query(query)
        per_video = self.moments_per_video if moments_per_video == -1 else moments_per_video
        try:
            return self._search(q, k, top_k_videos, per_video, thumbnails)
        except StaleSnapshotError:  # a video's stored files are newer than our index vectors
            self.reload()
            return self._search(q, k, top_k_videos, per_video, thumbnails)

    def _search(self, q: Query, k: int, top_k_videos: int, per_video: int | None, thumbnails: bool):
        """:meth:`search` with a checked, embedded query, on the engine's snapshot.

        Raises:
            StaleSnapshotError: a video of the results was recomputed since the engine loaded.
        """
        pipeline = CoarseToFineSearch(
            SegmentVideoScorer(self.index, lambda qq: qq.embedding),
            self.localise,
            top_k_videos=top_k_videos,
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


# ----------------------------------------------------------------------------- audit
@dataclass
class AuditReport:
    """What :func:`audit_index` checked and what it found wrong.

    Attributes:
        checked: one line per check (what, and how many items).
        problems: one line per violation; empty when the folder is sound.
    """

    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not self.problems


def audit_index(
    out_dir: str | os.PathLike,
    files: Iterable[str | os.PathLike],
    encoder=None,
    atol: float = 2e-3,
) -> AuditReport:
    """Check that an index folder holds every given video file once, with its own features.

    Checks: the index loads without being rebuilt (its files match their checksums); every file
    has exactly one id and no id names another file; the segment index holds exactly the
    finished videos, with the vectors of their stored features (an exact, flat index scores
    every segment as one built afresh from the stored features does); each video's stored
    features equal those of its own file computed afresh (with the folder's settings, up to
    ``atol``: the store keeps fp16).

    Args:
        out_dir: the index folder.
        files: the video files it should hold (all of them, nothing else).
        encoder: the folder's encoder; default recreated from the manifest.
        atol: feature tolerance.

    Returns:
        The :class:`AuditReport`.
    """
    report = AuditReport()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = MomentSearch.load(out_dir, encoder=encoder)
    report.checked.append("the saved index loads as written (checksums match)")
    report.problems += [str(w.message) for w in caught if "rebuilding" in str(w.message)]
    expected = {source_path(f) for f in files}
    ids: dict[str, list[str]] = {}
    for vid, info in engine.manifest["videos"].items():
        if info["path"] is not None:  # toy-world videos have no file
            ids.setdefault(info["path"], []).append(vid)
    report.checked.append(f"{len(expected)} video files have one id each ({len(ids)} indexed)")
    report.problems += [f"{p} is not indexed" for p in sorted(expected - set(ids))]
    report.problems += [f"{p} is indexed {len(v)} times: {v}" for p, v in ids.items() if len(v) > 1]
    report.problems += [
        f"{v} names {p}, not a given file" for p, v in ids.items() if p not in expected
    ]
    report.checked.append(f"the segment index holds the {len(engine.manifest['videos'])} videos")
    if sorted(engine.vids) != sorted(engine.manifest["videos"]):
        report.problems.append("the segment index and the manifest list different videos")
    if engine.index.config.kind == "flat":  # approximate kinds score only roughly alike
        report.checked.append("the segment index scores segments as their stored features do")
        report.problems += _index_vector_problems(engine)
    settings = engine.manifest["settings"]
    report.checked.append(f"{len(engine.vids)} videos have the features of their own file")
    for vid in engine.vids:
        path = engine.video_info(vid)["path"]
        own, _ = extract_with_settings(VideoItem(vid, "", path), engine.encoder, settings)
        if not np.allclose(engine.features(vid), own.features, atol=atol):
            report.problems.append(f"the features of {vid} are not those of {path}")
    return report


def _index_vector_problems(engine: MomentSearch, query: str = "a red circle moves left") -> list:
    """Videos whose segments the loaded (flat) index scores otherwise than an index built afresh
    from the stored features does (e.g. it kept the old vectors of a recomputed video).

    Returns:
        One problem line per such video (or one line when the segments themselves differ).
    """
    # 1. an index built afresh from the stored features, with the loaded one's settings
    fresh = SegmentIndex.build({v: engine.features(v) for v in engine.vids}, engine.index.config)
    # 2. every segment's score for one query, in both
    embedding = engine.encode_query(query).embedding
    loaded, expected = (_segment_scores(index, embedding) for index in (engine.index, fresh))
    # 3. the videos whose segments or scores differ
    if not loaded.index.equals(expected.index):
        return ["the segment index holds other segments than the stored features give"]
    differ = ~np.isclose(loaded.to_numpy(), expected.to_numpy(), atol=1e-4)
    bad = sorted(set(loaded.index[differ].get_level_values("vid")))
    return [f"the segment index holds other vectors of {v} than its stored features" for v in bad]


def _segment_scores(index: SegmentIndex, embedding: np.ndarray):
    """Score of every segment of an index for one query embedding, by (vid, start, end)."""
    table = index.search_segments(embedding, k=index.ntotal)
    return table.set_index(["vid", "start", "end"])["score"].sort_index()


# ----------------------------------------------------------------------------- helpers
def _settings(encoder, fps: float, thumb_side: int) -> dict:
    """Sampling settings stored in (and checked against) the manifest.

    Args:
        encoder: the frame or clip encoder.
        fps: frames sampled per second (:func:`_sampling_fps`).
        thumb_side: longer side of the per-clip thumbnails.

    Returns:
        ``clip_len``, ``fps``, ``thumb_side``, ``max_side``, and for a clip encoder its
        ``frames_per_clip``.
    """
    settings = {
        "clip_len": float(CLIP_LEN),
        "fps": float(fps),
        "thumb_side": int(thumb_side),
        "max_side": max(256, 2 * int(encoder.image_size)),
    }
    k = clip_frames(encoder)
    if k is not None:  # a clip encoder: its k is part of what the features mean
        settings["frames_per_clip"] = k
    return settings


def _sampling_fps(encoder, fps: float) -> float:
    """Frames sampled per second: ``fps`` for a frame encoder, k per clip for a clip encoder.

    Args:
        encoder: the frame or clip encoder.
        fps: the rate asked for (:data:`DEFAULT_FPS` when the caller gave none).

    Returns:
        The rate extraction uses.

    Raises:
        ValueError: ``fps`` below one frame per clip; or a clip encoder and a rate other than
            the default and its own ``k / clip_len``.
    """
    k = clip_frames(encoder)
    if k is None:
        if not fps * CLIP_LEN >= 1.0 - 1e-9:
            raise ValueError(f"fps must be at least one frame per {CLIP_LEN:g}-s clip, got {fps}")
        return float(fps)
    own = clip_encoder_fps(k, CLIP_LEN)
    if fps not in (DEFAULT_FPS, own):
        raise ValueError(
            f"fps={fps:g} but the clip encoder reads k = {k} frames per {CLIP_LEN:g}-s clip, "
            f"i.e. {own:g} frames per second; leave fps out (or pass {own:g})"
        )
    return own


def _check_top_k_videos(top_k_videos: int) -> None:
    """Refuse a stage-2 video count below 1 (0 would localise nothing)."""
    if isinstance(top_k_videos, bool) or not isinstance(top_k_videos, (int, np.integer)):
        raise ValueError(f"top_k_videos must be an integer >= 1, got {top_k_videos!r}")
    if top_k_videos < 1:
        raise ValueError(
            f"top_k_videos must be >= 1 (videos localised in stage 2), got {top_k_videos}"
        )


def _read_thumbnails(folder: Path, key: str) -> np.ndarray:
    """The uint8 ``(T, h, w, 3)`` thumbnails ``<folder>/<key>.npz["thumbs"]`` of one video.

    The array's header is checked before it is read
    (:func:`~course_lib.datasets.safe_read.load_npz_array`: at most ``MAX_ARRAY_BYTES``).

    Raises:
        DataValidationError: not a regular file, not an npz archive, no ``thumbs`` array, another
            dtype or shape, or too large (names the file).
    """
    from course_lib.datasets.features import store_path
    from course_lib.datasets.safe_read import load_npz_array

    path = store_path(folder, key, "thumbnails")  # refuses keys with path separators
    thumbs = load_npz_array(path, "thumbs", "thumbnail file", DataValidationError, (np.uint8,), 4)
    if len(thumbs) == 0 or thumbs.shape[-1] != 3:
        raise DataValidationError(
            f"{path}: array 'thumbs' has shape {thumbs.shape}, expected (T, h, w, 3) with T >= 1"
        )
    return thumbs


def _manifest_encoder(manifest: dict, out_dir: Path):
    """The encoder a manifest names (tiny or pretrained); CourseError when it names none."""
    spec = manifest["encoder"].get("spec")
    if spec is None:
        raise CourseError(
            f"index {out_dir} was built with encoder {manifest['encoder']['identity']!r} "
            "that cannot be recreated by name: pass it as encoder="
        )
    return encoder_from_spec(spec, progress=False)


def _open_manifest(
    out_dir: Path, encoder, settings: dict, root: Path | None, lock_timeout: float
) -> dict:
    """The folder's manifest (checked against encoder and settings) or a new one, with ``root``
    registered as a source folder; read and written under the folder's lock."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(out_dir, lock_timeout):
        manifest = read_manifest(out_dir)
        if manifest is None:
            manifest = new_manifest(encoder, settings, root)
        else:
            check_compatible(manifest, encoder, settings, out_dir)
            if root is not None:
                register_root(manifest, root)
        write_manifest(out_dir, manifest)
    return manifest


def _stored_features(out_dir: Path, manifest: dict, vids: Iterable[str]) -> dict[str, np.ndarray]:
    """Stored (fp16 -> fp32) clip features of some finished videos, by vid."""
    from course_lib.datasets.features import load_video_features

    return {
        v: load_video_features(out_dir / FEATURES_DIR, manifest["videos"][v]["key"]) for v in vids
    }


def _build_index(
    out_dir: Path, manifest: dict, vids: list[str], config: IndexConfig, save: bool = True
) -> SegmentIndex:
    """Segment index over the stored features of ``vids``, saved (the caller holds the lock)."""
    index = SegmentIndex.build(_stored_features(out_dir, manifest, vids), config)
    if save:
        _save_index(out_dir, manifest, index)
    return index


def _save_index(out_dir: Path, manifest: dict, index: SegmentIndex) -> None:
    """Save the index files, then record them (videos, config, checksums) in the manifest.

    The record also keeps the stamp each video's entry had (:func:`_outdated_vids`). The caller
    holds the folder's lock, so readers see the files and their record together.
    """
    index.save(out_dir / INDEX_FILE)
    manifest["index"] = {
        "file": INDEX_FILE,
        "vids": index.vids,
        "config": asdict(index.config),
        "sha256": index_checksums(out_dir / INDEX_FILE),
        "stamps": {vid: manifest["videos"][vid].get("stamp") for vid in index.vids},
    }
    write_manifest(out_dir, manifest)


def _outdated_vids(manifest: Mapping[str, Any]) -> set[str]:
    """Videos the saved index holds with the features of an older content of their file.

    A build records a recomputed video (new features, new stamp) before it rebuilds the index;
    killed in between, it leaves an index whose vectors of that video are the old ones. The
    index record's stamps tell: they differ from the video entries' stamps.

    Returns:
        The indexed vids whose entry's stamp differs from the one recorded with the index
        (none for an index recorded before stamps were).
    """
    recorded = (manifest.get("index") or {}).get("stamps") or {}
    videos = manifest["videos"]
    return {v for v, stamp in recorded.items() if v in videos and videos[v].get("stamp") != stamp}


def _read_index(out_dir: Path, manifest: dict) -> tuple[SegmentIndex | None, str]:
    """The saved index if its files are intact and match the manifest, else (None, why).

    Returns:
        ``(index, "")``, or ``(None, reason)`` with a reason that names the bad file.
    """
    info = manifest.get("index") or {}
    path = out_dir / info.get("file", INDEX_FILE)
    if info.get("sha256"):  # indexes written before checksums were recorded have none
        mismatch = checksum_mismatch(path, info["sha256"])
        if mismatch:
            return None, mismatch
    try:
        index = SegmentIndex.load(path)
    except (FileNotFoundError, DataValidationError) as exc:
        return None, str(exc)
    if sorted(index.vids) != sorted(info.get("vids", [])):
        return None, f"the videos of {path} differ from the manifest's"
    return index, ""


def _rebuild_warning(out_dir: Path, reason: str) -> None:
    """Warn that the segment index is rebuilt from the stored features, and why (names the file)."""
    warnings.warn(
        f"rebuilding the segment index of {out_dir} from the stored features: {reason}",
        stacklevel=4,
    )


def _load_index(out_dir: Path, lock_timeout: float) -> tuple[SegmentIndex, dict]:
    """Manifest and saved index read together under the lock; a damaged index is rebuilt.

    A folder that cannot be locked (read-only) is read without the lock; a rebuilt index is
    then kept in memory only.
    """
    with folder_lock(out_dir, lock_timeout, required=False) as locked:
        manifest = read_manifest(out_dir)
        index, reason = _read_index(out_dir, manifest)
        # an index holding a video the manifest no longer lists (a build dropped its unreadable
        # file, and has not rebuilt the index yet) would fail at query time: rebuild without it
        gone = sorted(set(index.vids) - set(manifest["videos"])) if index is not None else []
        if gone:
            index, reason = None, f"it holds videos the manifest does not list: {short_repr(gone)}"
        # an index holding old vectors of a recomputed video (a build killed before its index)
        outdated = sorted(_outdated_vids(manifest)) if index is not None else []
        if outdated:
            index, reason = None, f"videos recomputed since it was built: {short_repr(outdated)}"
        if index is not None:
            return index, manifest
        info = manifest.get("index") or {}
        vids = sorted(v for v in info.get("vids", manifest["videos"]) if v in manifest["videos"])
        if not vids:
            raise CourseError(f"index {out_dir} holds no finished video; build it again")
        _rebuild_warning(out_dir, reason)
        config = _index_config(info, out_dir)
        return _build_index(out_dir, manifest, vids, config, save=locked), manifest


def _index_config(info: Mapping[str, Any], out_dir: Path) -> IndexConfig:
    """The config of the saved index from its manifest record (flat when it records none).

    Raises:
        DataValidationError: the record's ``config`` is not an :class:`IndexConfig` (names the
            manifest, the field and the reason).
    """
    if not info.get("config"):
        return IndexConfig(kind="flat")
    try:
        return IndexConfig(**info["config"])
    except (TypeError, ValueError) as exc:  # an unknown field, or a value IndexConfig refuses
        raise DataValidationError(
            f"index manifest {manifest_path(out_dir)}: field 'index.config' is not an index "
            f"config ({exc})"
        ) from None


def _sync_index(
    out_dir: Path,
    config: IndexConfig,
    lock_timeout: float,
    incremental: bool = False,
    changed: Iterable[str] = (),
) -> tuple[SegmentIndex, dict]:
    """Bring the saved index up to date with every finished video of the folder (under the lock).

    An intact saved index that already holds exactly the finished videos (none of them
    recomputed) is kept as it is, when it has ``config`` or ``incremental`` is set. Otherwise
    ``incremental`` adds the missing videos to it, and a full build over all finished videos
    happens when that is not possible (no intact index, a video to drop or to replace) or not
    asked for.

    Args:
        out_dir: the index folder.
        config: index settings of a new index.
        lock_timeout: seconds to wait for another process's lock.
        incremental: add missing videos to the saved index instead of building a new one.
        changed: videos whose features were recomputed (the index must not keep their old ones;
            those recomputed by a run killed before its index are found by
            :func:`_outdated_vids`).

    Returns:
        ``(index, manifest)`` as saved.
    """
    with folder_lock(out_dir, lock_timeout):
        manifest = read_manifest(out_dir)
        wanted = sorted(manifest["videos"])
        index, reason = _read_index(out_dir, manifest)
        if index is None and manifest.get("index"):
            _rebuild_warning(out_dir, reason)
        held = set(index.vids) if index is not None else set()
        stale = bool(held - set(wanted) or held & (set(changed) | _outdated_vids(manifest)))
        if index is not None and not stale and held == set(wanted):
            if incremental or index.config == config:
                return index, manifest
        if index is None or stale or not incremental:
            return _build_index(out_dir, manifest, wanted, config), manifest
        index.add_videos(_stored_features(out_dir, manifest, [v for v in wanted if v not in held]))
        _save_index(out_dir, manifest, index)
        return index, manifest
