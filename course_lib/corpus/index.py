"""A faiss index over fixed-length video segments (SPR sec. 3.1, CFAN coarse stage).

:class:`SegmentIndex` holds the L2-normalised segment embeddings of a video collection in a
faiss index (inner product = cosine similarity) plus columnar metadata (video id, start, end
of every segment), and searches it with query embeddings. Index kinds (:class:`IndexConfig`):

* ``"flat"``  exact search (``IndexFlatIP`` inside ``IndexIDMap2``).
* ``"ivf"``   inverted file: k-means into ``nlist`` cells, search ``nprobe`` of them.
* ``"ivfpq"`` IVF with product-quantised codes (``pq_m`` sub-vectors of ``pq_bits`` bits).
* ``"hnsw"``  graph search (``hnsw_m`` links per node, ``ef_search`` candidates).

Semantics worth knowing:

* **Training.** IVF/IVFPQ are trained once, on the vectors given at build time (or on the
  explicit ``train_features``), subsampled to ``max_train``. Later :meth:`SegmentIndex.add_videos`
  calls only assign vectors to the existing cells, so an incremental index equals a
  from-scratch build exactly when both were trained on the same training vectors.
* **Incremental adds.** Flat: identical to a from-scratch build. HNSW: the graph depends on
  how vectors were batched (faiss inserts each batch level by level), so results are the same
  when ``ef_search`` covers the collection and statistically equivalent otherwise.
* **Deletion.** :meth:`SegmentIndex.remove_videos` works for flat / ivf / ivfpq (faiss
  ``remove_ids``); HNSW graphs cannot delete nodes, so it raises
  :class:`UnsupportedIndexOperation` (rebuild the index without the video instead).
* **Files.** ``save(path)`` writes the faiss index to ``path`` and the metadata to
  ``path + ".meta.npz"``, both atomically; ``load`` checks version, dimension, metric and size.
  :func:`index_checksums` gives the SHA256 of both files, and :func:`checksum_mismatch` names
  the file that no longer matches recorded checksums (an index edited after it was saved: the
  size checks of ``load`` cannot see changed vectors).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from course_lib.corpus.segments import Projector, SegmentTable, l2_normalize, segment_videos
from course_lib.datasets.safe_read import load_npz_arrays, open_regular_file
from course_lib.errors import CourseError, DataValidationError
from course_lib.files import atomic_path, atomic_save_npz, sha256_file

INDEX_FORMAT_VERSION = 1
#: Largest segment-index metadata :meth:`SegmentIndex.load` reads (all its arrays together, in
#: bytes, 1 GiB): a million segments with 64-character video ids take about 280 MB. A header
#: declaring more is refused before anything is allocated; change it here for larger indexes.
MAX_METADATA_BYTES = 2**30
METRIC = "inner_product"
INDEX_KINDS = ("flat", "ivf", "ivfpq", "hnsw")


class UnsupportedIndexOperation(CourseError, NotImplementedError):
    """The chosen index kind cannot do this (e.g. deleting from an HNSW graph)."""


@dataclass
class IndexConfig:
    """Which faiss index to build and how to search it.

    Attributes:
        kind: one of ``"flat"``, ``"ivf"``, ``"ivfpq"``, ``"hnsw"``.
        clips_per_segment: segment length in 2-s clips (2 = 4 s).
        nlist: IVF cells (reduced to the number of training vectors if larger).
        nprobe: IVF cells visited per query.
        pq_m: PQ sub-vectors (must divide the dimension).
        pq_bits: bits per PQ code (needs >= 2**pq_bits training vectors).
        hnsw_m: HNSW links per node.
        ef_construction: HNSW candidate list size while building.
        ef_search: HNSW candidate list size while searching.
        max_train: at most this many (seeded random) vectors train IVF / PQ; None = all.
        seed: seed of the training subsample.
        use_gpu: move flat / IVF indexes to the GPU for search when faiss sees one.
    """

    kind: str = "flat"
    clips_per_segment: int = 2
    nlist: int = 256
    nprobe: int = 16
    pq_m: int = 16
    pq_bits: int = 8
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    max_train: int | None = 100_000
    seed: int = 0
    use_gpu: bool = True

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"IndexConfig.kind must be one of {INDEX_KINDS}, got {self.kind!r}")
        for name in ("clips_per_segment", "nlist", "nprobe", "pq_m", "pq_bits", "hnsw_m"):
            if getattr(self, name) < 1:
                raise ValueError(f"IndexConfig.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def trained(self) -> bool:
        """Whether this kind needs training (IVF / IVFPQ)."""
        return self.kind in ("ivf", "ivfpq")


def _faiss():
    """Import faiss lazily (keeps ``import course_lib.corpus`` cheap)."""
    import faiss

    return faiss


def gpu_available() -> bool:
    """True when the installed faiss has GPU support and sees at least one GPU."""
    faiss = _faiss()
    try:
        return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except Exception:  # a broken CUDA setup must not break CPU search
        return False


def make_faiss_index(config: IndexConfig, dim: int, n_train: int | None = None):
    """Create an empty faiss index (with id support) for ``config``.

    Args:
        config: index kind and parameters.
        dim: vector dimension.
        n_train: number of training vectors (caps ``nlist`` for IVF kinds).

    Returns:
        A faiss index using inner product; IVF kinds still need ``train``.
    """
    faiss = _faiss()
    ip = faiss.METRIC_INNER_PRODUCT
    if config.kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if config.kind == "hnsw":
        graph = faiss.IndexHNSWFlat(dim, config.hnsw_m, ip)
        graph.hnsw.efConstruction = config.ef_construction
        graph.hnsw.efSearch = config.ef_search
        return faiss.IndexIDMap(graph)
    nlist = config.nlist if n_train is None else min(config.nlist, n_train)
    if nlist < config.nlist:
        warnings.warn(f"only {n_train} training vectors: using nlist={nlist}", stacklevel=2)
    quantizer = faiss.IndexFlatIP(dim)
    if config.kind == "ivf":
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, ip)
    else:
        if dim % config.pq_m:
            raise DataValidationError(f"pq_m={config.pq_m} must divide the dimension {dim}")
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, config.pq_m, config.pq_bits, ip)
    index.nprobe = config.nprobe
    return index


def set_search_params(index, nprobe: int | None = None, ef_search: int | None = None) -> None:
    """Set ``nprobe`` (IVF) or ``efSearch`` (HNSW) on a (possibly id-wrapped) faiss index."""
    faiss = _faiss()
    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else index
    if nprobe is not None and hasattr(inner, "nprobe"):
        inner.nprobe = nprobe
    if ef_search is not None and hasattr(inner, "hnsw"):
        inner.hnsw.efSearch = ef_search


def _subsample(vectors: np.ndarray, max_n: int | None, seed: int) -> np.ndarray:
    """At most ``max_n`` rows of ``vectors``, chosen with a seeded generator."""
    if max_n is None or len(vectors) <= max_n:
        return vectors
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), max_n, replace=False))
    return vectors[rows]


def metadata_path(path: str | os.PathLike) -> Path:
    """Where the metadata of the index file ``path`` lives (``<path>.meta.npz``)."""
    path = Path(path)
    return path.with_name(path.name + ".meta.npz")


class SegmentIndex:
    """Segment embeddings of a video collection in a faiss index, plus their metadata.

    Args:
        config: index kind and parameters (default: exact flat index, 4-s segments).
        projector: optional learned map (N, D) -> (N, D') applied to pooled segment features;
            pass the same one again to :meth:`load`.
        first_id: id of the first segment added (later ones count up from it); shards of one
            collection built apart take disjoint ranges (:mod:`course_lib.corpus.shards`).

    Example:
        >>> index = SegmentIndex.build({"v1": feats1, "v2": feats2}, IndexConfig(kind="hnsw"))
        >>> index.search_segments(query_embedding, k=10)   # DataFrame of the best segments
    """

    def __init__(
        self,
        config: IndexConfig | None = None,
        projector: Projector | None = None,
        first_id: int = 0,
    ):
        if (
            isinstance(first_id, bool)
            or not isinstance(first_id, (int, np.integer))
            or first_id < 0
        ):
            raise DataValidationError(f"first_id must be an integer >= 0, got {first_id!r}")
        self.config = config or IndexConfig()
        self.projector = projector
        self._index = None  # created on first train / add (IVF needs the training size)
        self._gpu_index = None  # search copy on the GPU, rebuilt lazily after changes
        self._dim: int | None = None
        self._input_dim: int | None = None
        self._next_id = int(first_id)
        self._ids = np.zeros(0, np.int64)  # segment ids, increasing
        self._vids = np.zeros(0, np.str_)
        self._starts = np.zeros(0, np.float64)
        self._ends = np.zeros(0, np.float64)
        self._vid_set: set[str] = set()

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int | None:
        """Dimension of the indexed (projected) vectors; None before the first add."""
        return self._dim

    @property
    def ntotal(self) -> int:
        """Number of indexed segments."""
        return int(len(self._ids))

    @property
    def next_id(self) -> int:
        """Id the next added segment gets (ids count up from ``first_id``)."""
        return self._next_id

    @property
    def vids(self) -> list[str]:
        """Indexed video ids, in order of first appearance."""
        return list(dict.fromkeys(self._vids.tolist()))

    @property
    def segment_table(self) -> dict[str, np.ndarray]:
        """Columnar metadata: ``ids``, ``vids``, ``starts``, ``ends`` (one row per segment)."""
        return {"ids": self._ids, "vids": self._vids, "starts": self._starts, "ends": self._ends}

    @property
    def faiss_index(self):
        """The underlying CPU faiss index (None before the first add)."""
        return self._index

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        features_by_vid: Mapping[str, np.ndarray],
        config: IndexConfig | None = None,
        projector: Projector | None = None,
        train_features: Mapping[str, np.ndarray] | np.ndarray | None = None,
        first_id: int = 0,
    ) -> SegmentIndex:
        """Segment, embed, (train and) index a collection of videos.

        Args:
            features_by_vid: video id -> float (T, D) clip features.
            config: index kind and parameters.
            projector: optional learned segment projector.
            train_features: what IVF / PQ train on; default the built videos themselves.
                Either clip features by video (segmented like the corpus) or an array of
                already embedded segment vectors (N, D').
            first_id: id of the first segment (the videos' segments are numbered from it).

        Returns:
            The filled :class:`SegmentIndex`.
        """
        index = cls(config, projector, first_id)
        if not features_by_vid:
            raise DataValidationError("cannot build a segment index from an empty corpus")
        table = index._embed(features_by_vid)
        if index.config.trained:
            if train_features is None:
                train = table.embeddings
            elif isinstance(train_features, Mapping):
                train = index._embed(train_features).embeddings
            else:
                train = l2_normalize(train_features)
            index.train(train)
        index._add_table(table)
        return index

    def _embed(self, features_by_vid: Mapping[str, np.ndarray]) -> SegmentTable:
        """Segment table of some videos, checking the input feature dimension."""
        table = segment_videos(features_by_vid, self.config.clips_per_segment, self.projector)
        first = np.asarray(next(iter(features_by_vid.values())))
        if self._input_dim is not None and first.shape[1] != self._input_dim:
            raise DataValidationError(
                f"clip features have dimension {first.shape[1]}, "
                f"the index was built from dimension {self._input_dim}"
            )
        self._input_dim = int(first.shape[1])
        return table

    def train(self, vectors: np.ndarray) -> None:
        """Train the IVF / PQ quantisers on (N, D') segment embeddings (no-op for flat/HNSW)."""
        vectors = l2_normalize(vectors)
        self._ensure_index(vectors.shape[1], n_train=len(vectors))
        if not self.config.trained:
            return
        if self._index.is_trained:
            raise DataValidationError("the segment index is already trained; build a new one")
        if self.config.kind == "ivfpq" and len(vectors) < 2**self.config.pq_bits:
            raise DataValidationError(
                f"IVFPQ with pq_bits={self.config.pq_bits} needs at least "
                f"{2**self.config.pq_bits} training vectors, got {len(vectors)}"
            )
        self._index.train(_subsample(vectors, self.config.max_train, self.config.seed))

    def _ensure_index(self, dim: int, n_train: int | None = None) -> None:
        """Create the faiss index on first use; check the dimension afterwards."""
        if self._index is None:
            self._index = make_faiss_index(self.config, dim, n_train)
            self._dim = int(dim)
        elif dim != self._dim:
            raise DataValidationError(f"vectors have dimension {dim}, the index has {self._dim}")

    def add_videos(self, features_by_vid: Mapping[str, np.ndarray]) -> np.ndarray:
        """Add new videos (segmented and embedded like the rest of the index).

        An untrained IVF / IVFPQ index is first trained on these videos. Video ids already in
        the index are rejected.

        Args:
            features_by_vid: video id -> float (T, D) clip features.

        Returns:
            int64 ids of the new segments.
        """
        if not features_by_vid:
            raise DataValidationError("add_videos got no videos (empty mapping)")
        for vid in features_by_vid:
            if not isinstance(vid, str) or not vid:
                raise DataValidationError(f"video ids must be non-empty strings, got {vid!r}")
            if vid in self._vid_set:
                raise DataValidationError(f"video id {vid!r} is already in the segment index")
        table = self._embed(features_by_vid)
        if self.config.trained and (self._index is None or not self._index.is_trained):
            self.train(table.embeddings)
        return self._add_table(table)

    def _add_table(self, table: SegmentTable) -> np.ndarray:
        """Add embedded segments to faiss and append their metadata."""
        self._ensure_index(table.embeddings.shape[1])
        ids = np.arange(self._next_id, self._next_id + len(table), dtype=np.int64)
        self._index.add_with_ids(table.embeddings, ids)
        self._next_id += len(table)
        self._ids = np.concatenate([self._ids, ids])
        self._vids = np.concatenate([self._vids, table.vids])
        self._starts = np.concatenate([self._starts, table.starts])
        self._ends = np.concatenate([self._ends, table.ends])
        self._vid_set.update(table.vids.tolist())
        self._gpu_index = None
        return ids

    def remove_videos(self, vids: Iterable[str]) -> int:
        """Delete every segment of the given videos (flat / ivf / ivfpq only).

        Args:
            vids: video ids to delete; each must be in the index.

        Returns:
            Number of segments removed.
        """
        vids = list(vids)
        if self.config.kind == "hnsw":
            raise UnsupportedIndexOperation(
                "HNSW graphs cannot delete segments (faiss remove_ids is not implemented for "
                "IndexHNSWFlat); rebuild the index without these videos: " + ", ".join(vids)
            )
        for vid in vids:
            if vid not in self._vid_set:
                raise DataValidationError(f"video id {vid!r} is not in the segment index")
        mask = np.isin(self._vids, np.asarray(vids, dtype=np.str_))
        removed = int(self._index.remove_ids(self._ids[mask]))
        for name in ("_ids", "_vids", "_starts", "_ends"):
            setattr(self, name, getattr(self, name)[~mask])
        self._vid_set.difference_update(vids)
        self._gpu_index = None
        return removed

    # ------------------------------------------------------------------ searching
    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Change ``nprobe`` (IVF kinds) or ``ef_search`` (HNSW) for later searches."""
        if nprobe is not None:
            self.config.nprobe = nprobe
        if ef_search is not None:
            self.config.ef_search = ef_search
        if self._index is not None:
            set_search_params(self._index, nprobe, ef_search)
        self._gpu_index = None

    def _searchable(self):
        """The index to search: a GPU copy when available and allowed, else the CPU index."""
        if not (self.config.use_gpu and self.config.kind != "hnsw" and gpu_available()):
            return self._index
        if self._gpu_index is None:
            self._gpu_index = _faiss().index_cpu_to_all_gpus(self._index)
            set_search_params(self._gpu_index, nprobe=self.config.nprobe)
        return self._gpu_index

    def search(self, queries: np.ndarray, k: int = 100) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` segments for each query by cosine similarity.

        Args:
            queries: float (D',) or (Q, D') query embeddings (L2-normalised here).
            k: segments per query (capped at the index size).

        Returns:
            ``(scores, ids)``: float32 (Q, k) similarities and int64 (Q, k) segment ids
            (``-1`` where an approximate index found fewer than k).
        """
        if self.ntotal == 0:
            raise DataValidationError("the segment index is empty: add videos before searching")
        queries = np.asarray(queries, dtype=np.float32)
        queries = queries[None] if queries.ndim == 1 else queries
        if queries.ndim != 2 or queries.shape[1] != self._dim:
            raise DataValidationError(
                f"queries have shape {queries.shape}, expected (Q, {self._dim}) for this index"
            )
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        scores, ids = self._searchable().search(l2_normalize(queries), min(k, self.ntotal))
        return scores, ids

    def segments(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Metadata (``vids``, ``starts``, ``ends``) of segment ids (must be present)."""
        ids = np.asarray(ids, dtype=np.int64)
        rows = np.searchsorted(self._ids, ids)
        ok = (rows < len(self._ids)) & (self._ids[np.minimum(rows, len(self._ids) - 1)] == ids)
        if not ok.all():
            raise DataValidationError(f"unknown segment ids: {ids[~ok][:5].tolist()}")
        return {"vids": self._vids[rows], "starts": self._starts[rows], "ends": self._ends[rows]}

    def search_segments(self, query: np.ndarray, k: int = 100):
        """Top-``k`` segments of one query as a DataFrame.

        Returns:
            ``pandas.DataFrame`` with columns rank, segment_id, vid, start, end, score.
        """
        return segments_frame(self, query, k)

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write the faiss index to ``path`` and metadata to ``<path>.meta.npz`` (atomically).

        Returns:
            The metadata path.
        """
        if self._index is None:
            raise DataValidationError("cannot save an empty segment index (no videos added)")
        path = Path(path)
        # faiss writes by file name: a temporary file in the same directory, renamed on success
        with atomic_path(path) as tmp:
            _faiss().write_index(self._index, tmp)
        meta = metadata_path(path)
        atomic_save_npz(
            meta,
            version=np.int64(INDEX_FORMAT_VERSION),
            dim=np.int64(self._dim),
            input_dim=np.int64(self._input_dim if self._input_dim is not None else -1),
            metric=np.str_(METRIC),
            config=np.str_(json.dumps(asdict(self.config))),
            next_id=np.int64(self._next_id),
            ids=self._ids,
            vids=self._vids.astype(np.str_),
            starts=self._starts,
            ends=self._ends,
        )
        return meta

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        projector: Projector | None = None,
        expected_dim: int | None = None,
        expected_metric: str | None = METRIC,
    ) -> SegmentIndex:
        """Load an index written by :meth:`save`, checking version, dimension, metric, size.

        Args:
            path: the faiss index file (metadata is read from ``<path>.meta.npz``).
            projector: the projector used at build time, if any.
            expected_dim: dimension the caller's queries have (checked when given).
            expected_metric: metric the caller expects (``"inner_product"``).

        Returns:
            The loaded :class:`SegmentIndex`.
        """
        path, meta_file = Path(path), metadata_path(path)
        meta = _read_metadata(meta_file)
        faiss_index = _read_faiss(path)
        faiss_metric = "inner_product" if faiss_index.metric_type == 0 else "l2"
        _check_equal(path, "dimension", int(meta["dim"]), int(faiss_index.d), "metadata", "index")
        _check_equal(path, "metric", str(meta["metric"]), faiss_metric, "metadata", "index")
        _check_equal(path, "size", len(meta["ids"]), int(faiss_index.ntotal), "metadata", "index")
        if expected_dim is not None:
            _check_equal(path, "dimension", expected_dim, int(faiss_index.d), "expected", "file")
        if expected_metric is not None:
            _check_equal(path, "metric", expected_metric, faiss_metric, "expected", "file")
        index = cls(_index_config(meta_file, str(meta["config"])), projector)
        index._index, index._dim = faiss_index, int(faiss_index.d)
        index._input_dim = int(meta["input_dim"]) if int(meta["input_dim"]) >= 0 else None
        index._next_id = int(meta["next_id"])
        index._ids, index._vids = meta["ids"].astype(np.int64), meta["vids"]
        index._starts, index._ends = meta["starts"], meta["ends"]
        index._vid_set = set(index._vids.tolist())
        set_search_params(faiss_index, index.config.nprobe, index.config.ef_search)
        return index


def segments_frame(index, query: np.ndarray, k: int = 100):
    """Top-``k`` segments of one query as a DataFrame, for any index with ``search`` and
    ``segments`` (a :class:`SegmentIndex` or a :class:`~course_lib.corpus.shards.ShardedSegmentIndex`).

    Args:
        index: the index to search.
        query: float (D',) query embedding.
        k: segments wanted.

    Returns:
        ``pandas.DataFrame`` with columns rank, segment_id, vid, start, end, score (empty slots
        of an approximate search left out).
    """
    import pandas as pd

    # search, drop the empty slots (-1), look up the found segments' metadata
    scores, ids = index.search(np.asarray(query).reshape(1, -1), k)
    keep = ids[0] >= 0
    meta = index.segments(ids[0][keep])
    return pd.DataFrame(
        {
            "rank": np.arange(1, int(keep.sum()) + 1),
            "segment_id": ids[0][keep],
            "vid": meta["vids"],
            "start": meta["starts"],
            "end": meta["ends"],
            "score": scores[0][keep],
        }
    )


_META_KEYS = {
    "version",
    "dim",
    "input_dim",
    "metric",
    "config",
    "next_id",
    "ids",
    "vids",
    "starts",
    "ends",
}


def index_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """The two files :meth:`SegmentIndex.save` writes: the faiss index and its metadata."""
    return Path(path), metadata_path(path)


def index_checksums(path: str | os.PathLike) -> dict[str, str]:
    """SHA256 of the index file ``path`` and of its metadata file, by file name.

    Args:
        path: the faiss index file written by :meth:`SegmentIndex.save`.

    Returns:
        ``{"segments.faiss": hex, "segments.faiss.meta.npz": hex}`` for ``path = segments.faiss``.
    """
    return {p.name: sha256_file(p) for p in index_files(path)}


def checksum_mismatch(path: str | os.PathLike, expected: Mapping[str, str]) -> str | None:
    """Which index file differs from the checksums recorded when it was saved.

    Args:
        path: the faiss index file.
        expected: :func:`index_checksums` as recorded at save time.

    Returns:
        None when both files match, else a reason naming the first file that is missing or
        whose SHA256 differs.
    """
    for p in index_files(path):
        want = expected.get(p.name)
        if want is None:
            return f"segment index file {str(p)!r} has no recorded checksum"
        if not p.is_file():
            return f"segment index file {str(p)!r} does not exist"
        actual = sha256_file(p)
        if actual != want:
            return (
                f"segment index file {str(p)!r} was modified after it was saved "
                f"(SHA256 {actual[:12]}..., recorded {want[:12]}...)"
            )
    return None


def _check_equal(path: Path, what: str, a, b, a_name: str, b_name: str) -> None:
    """Raise a DataValidationError naming the file and both values when ``a != b``."""
    if a != b:
        raise DataValidationError(
            f"segment index {str(path)!r}: {what} mismatch ({a_name} {a!r} vs {b_name} {b!r})"
        )


def _read_metadata(meta_file: Path) -> dict[str, np.ndarray]:
    """Read and version-check the metadata npz.

    Read by :func:`~course_lib.datasets.safe_read.load_npz_arrays`: every array header is
    checked before any data is read (no pickles, at most :data:`MAX_METADATA_BYTES` in all), so a
    header declaring a huge shape is a :class:`DataValidationError` naming the file and array,
    never a ``MemoryError``.

    Raises:
        FileNotFoundError: no metadata file.
        DataValidationError: a special file, not an npz archive, missing arrays (named), a
            declared size over the limit, damaged data, or another format version.
    """
    if not meta_file.exists():
        raise FileNotFoundError(f"segment index metadata {str(meta_file)!r} does not exist")
    meta = load_npz_arrays(
        meta_file,
        sorted(_META_KEYS),
        "segment index metadata",
        DataValidationError,
        max_bytes=MAX_METADATA_BYTES,
        limit_name="course_lib.corpus.index.MAX_METADATA_BYTES",
    )
    version = int(meta["version"])
    if version != INDEX_FORMAT_VERSION:
        raise DataValidationError(
            f"segment index metadata {str(meta_file)!r} has version {version}, "
            f"this course_lib reads version {INDEX_FORMAT_VERSION}"
        )
    return meta


def _index_config(meta_file: Path, text: str) -> IndexConfig:
    """The :class:`IndexConfig` stored as JSON in the metadata, or an error naming the file."""
    try:
        fields = json.loads(text)
        if not isinstance(fields, dict):
            raise TypeError(f"expected a JSON object, got {type(fields).__name__}")
        return IndexConfig(**fields)
    except (ValueError, TypeError, RecursionError) as exc:
        raise DataValidationError(
            f"segment index metadata {str(meta_file)!r}: field 'config' is not a valid "
            f"IndexConfig ({str(exc)[:200]})"
        ) from None


def _read_faiss(path: Path):
    """``faiss.read_index`` of a regular file; every failure names the file.

    The file is opened by :func:`~course_lib.datasets.safe_read.open_regular_file` (a FIFO, or a
    path swapped for one, is refused instead of blocking the reader) and faiss reads it through
    that handle.

    Raises:
        FileNotFoundError: nothing at ``path``.
        DataValidationError: not a regular file, or a file faiss cannot read (truncated, random
            bytes, a damaged header; whatever exception faiss raises for it).
    """
    if not path.exists():
        raise FileNotFoundError(f"segment index file {str(path)!r} does not exist")
    faiss = _faiss()
    with open_regular_file(path, "segment index file", DataValidationError) as handle:
        try:
            return faiss.read_index(faiss.PyCallbackIOReader(handle.read))
        except Exception as exc:  # noqa: BLE001 (faiss's C++ errors arrive as several types)
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise DataValidationError(
                f"segment index file {str(path)!r} is truncated or not a faiss index: "
                f"{reason[:200]}"
            ) from exc


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of each query's exact top-k ids that were found (order ignored).

    Args:
        found: int (Q, k') ids returned by an approximate search (-1 = empty slot).
        exact: int (Q, k) ids of the exact search.
    """
    found, exact = np.asarray(found), np.asarray(exact)
    if found.shape[0] != exact.shape[0]:
        raise ValueError(f"found has {found.shape[0]} queries, exact has {exact.shape[0]}")
    return float(
        np.mean([len(np.intersect1d(f[f >= 0], e)) / e.shape[0] for f, e in zip(found, exact)])
    )


def choose_nprobe(
    index: SegmentIndex,
    queries: np.ndarray,
    target_recall: float = 0.95,
    k: int = 100,
    candidates: Iterable[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
) -> tuple[int, float]:
    """Smallest nprobe of an IVF index whose recall@k reaches ``target_recall``.

    Recall is measured against probing every cell (``nprobe = nlist``), which is exact for
    ``ivf`` and the best this quantiser can do for ``ivfpq``. Leaves the index set to the answer.

    Returns:
        ``(nprobe, recall)``; the largest tried value if none reaches the target.
    """
    if not index.config.trained:
        raise DataValidationError(
            f"choose_nprobe needs an IVF index, got kind {index.config.kind!r}"
        )
    nlist = index.faiss_index.nlist
    index.set_search_params(nprobe=nlist)
    _, exact = index.search(queries, k)
    tried = [p for p in sorted(set(candidates)) if p < nlist] + [nlist]
    for nprobe in tried:
        index.set_search_params(nprobe=nprobe)
        recall = recall_at_k(index.search(queries, k)[1], exact)
        if recall >= target_recall:
            break
    return nprobe, recall
