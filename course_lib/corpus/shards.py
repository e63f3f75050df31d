"""A segment index split into shards and searched as one (one index per worker or source folder).

:class:`ShardedSegmentIndex` holds N named :class:`~course_lib.corpus.index.SegmentIndex` shards
with disjoint video sets and disjoint segment id ranges. A search asks every shard for its top
``k`` and merges them; the metadata of a segment id is looked up in the shard whose range holds
it. Shards can be built in one process (:meth:`ShardedSegmentIndex.build` numbers the segments
contiguously in shard order, so the ids are those of one index built over the union in the same
order) or apart, one per worker, each with its own ``first_id`` (e.g. ``worker * 2**40``).

**Exactness.** For flat shards the merged top-k equals the top-k of one flat index over the
union: the same ids, the same scores (each score is computed once, in the shard that holds the
vector), in the same order. Equal scores are listed as faiss lists them, the larger id first.
Only segments whose scores tie *exactly* across the k-th place (duplicated vectors, e.g. the
same static video indexed twice) may differ: which of them one faiss index keeps depends on the
order its heap (``k <= 100``) or reservoir (``k > 100``) met them, which no merge can replay;
the merge keeps the smaller ids among those the shards returned, deterministically, and every
score is the same. Approximate shards (IVF, HNSW) are each approximate on their own: their merge
is as good as the shards, not equal to one approximate index (each IVF shard trains its own
quantiser on its own vectors).

**Why a merge of per-shard searches, not faiss ``IndexShards``.** Measured by hand with faiss
1.15.1 on one thread: 10^5 segments (1,000 random videos of 200 clips, d = 256) in 4 flat shards
of 25,000, k = 100, best of 5. 100 queries took 396 ms with ``IndexShards(threaded=False)`` over
the shards' faiss indexes, 401 ms with :meth:`ShardedSegmentIndex.search` and 693 ms with one
flat index; one query 7.4 ms, 7.9 ms and 8.0 ms. Both sharded searches returned the one index's
ids and scores, so speed does not decide (the merge costs about 1 %). The merge is chosen
because it is simpler to own: ``IndexShards`` merges tied scores by shard order (six equal
vectors in two shards, k = 4: ids 5, 4, 3, 2, where one index gives 3, 2, 1, 0), it cannot be
written by ``faiss.write_index`` (the shards would be saved one by one anyway), and it knows
only faiss ids; the merge keeps each shard a plain :class:`SegmentIndex` with its metadata, GPU
copy, save/load checks, and errors that name the shard.

**Files.** :meth:`ShardedSegmentIndex.save` writes a folder: each shard's two files
(``<name>.faiss`` and ``<name>.faiss.meta.npz``, see :meth:`SegmentIndex.save`), then the small
manifest ``shards.json`` (format version, dimension, metric, and per shard its name, size, next
id, config and the SHA256 of both files), every file atomically. :meth:`ShardedSegmentIndex.load`
checks each shard's files against the manifest before reading them, so a shard file changed,
truncated or replaced after the save (or a save interrupted between shard files and manifest) is
an error naming that file. A shard with no segments has no files; the manifest keeps its config.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from course_lib.corpus.index import (
    METRIC,
    IndexConfig,
    SegmentIndex,
    checksum_mismatch,
    index_checksums,
    segments_frame,
)
from course_lib.corpus.segments import Projector
from course_lib.datasets.safe_read import json_type_problem, read_json_file
from course_lib.errors import DataValidationError
from course_lib.files import atomic_write

SHARDS_FORMAT_VERSION = 1
MANIFEST_NAME = "shards.json"
#: Largest manifest :meth:`ShardedSegmentIndex.load` reads (bytes); a shard record is ~400 bytes.
MAX_MANIFEST_BYTES = 16 * 2**20
#: Shard names become file names: letters, digits, ``_``, ``.`` and ``-``, no leading dot.
SHARD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
#: Manifest fields of one shard and their JSON types.
_SHARD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "ntotal": int,
    "next_id": int,
    "config": dict,
    "sha256": (dict, type(None)),
}


def shard_path(folder: str | os.PathLike, name: str) -> Path:
    """The faiss file of shard ``name`` in a sharded index folder (``<folder>/<name>.faiss``)."""
    return Path(folder) / f"{name}.faiss"


class ShardedSegmentIndex:
    """Named :class:`SegmentIndex` shards searched as one index.

    Args:
        shards: shard name -> segment index. Names are file names (:data:`SHARD_NAME`); the
            shards must share the vector dimension and segment length, and hold disjoint
            videos and disjoint segment id ranges. Add no videos to a shard afterwards (wrap
            the shards again instead): the checks run here.

    Raises:
        DataValidationError: no shard, a bad name, or shards that do not fit together (names
            the shard).

    Example:
        >>> index = ShardedSegmentIndex.build({"folder_a": feats_a, "folder_b": feats_b})
        >>> index.search_segments(query_embedding, k=10)   # as SegmentIndex.search_segments
    """

    def __init__(self, shards: Mapping[str, SegmentIndex]) -> None:
        self._shards = dict(shards)
        _check_shards(self._shards)

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        features_by_shard: Mapping[str, Mapping[str, np.ndarray]],
        config: IndexConfig | None = None,
        projector: Projector | None = None,
    ) -> ShardedSegmentIndex:
        """One segment index per shard, segment ids numbered on across the shards in order.

        Args:
            features_by_shard: shard name -> (video id -> float (T, D) clip features); a shard
                may have no videos.
            config: index kind and parameters of every shard (each gets its own copy).
            projector: optional learned segment projector.

        Returns:
            The :class:`ShardedSegmentIndex`.

        Raises:
            DataValidationError: no shards, or a shard's videos cannot be indexed (names it).
        """
        if not features_by_shard:
            raise DataValidationError("a sharded segment index needs at least one shard, got none")
        shards: dict[str, SegmentIndex] = {}
        next_id = 0
        # build the shards in order, each numbering its segments on from the previous one
        for name, features in features_by_shard.items():
            shards[name] = _build_shard(name, features, config or IndexConfig(), projector, next_id)
            next_id = shards[name].next_id
        return cls(shards)

    # ------------------------------------------------------------------ properties
    @property
    def shards(self) -> dict[str, SegmentIndex]:
        """Shard name -> segment index (a new dict; the indexes themselves are shared)."""
        return dict(self._shards)

    @property
    def dim(self) -> int | None:
        """Dimension of the indexed vectors; None while every shard is empty."""
        return next((s.dim for s in self._shards.values() if s.dim is not None), None)

    @property
    def ntotal(self) -> int:
        """Number of indexed segments in all shards."""
        return sum(s.ntotal for s in self._shards.values())

    @property
    def vids(self) -> list[str]:
        """Indexed video ids, shard by shard."""
        return [vid for shard in self._shards.values() for vid in shard.vids]

    @property
    def config(self) -> IndexConfig:
        """The first shard's config (all shards have its segment length)."""
        return next(iter(self._shards.values())).config

    # ------------------------------------------------------------------ searching
    def search(self, queries: np.ndarray, k: int = 100) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` segments of all shards for each query, as one index would return them.

        Args:
            queries: float (D',) or (Q, D') query embeddings (L2-normalised by the shards).
            k: segments per query (capped at the total size).

        Returns:
            ``(scores, ids)``: float32 (Q, k) similarities and int64 (Q, k) segment ids
            (``-1`` where approximate shards found fewer than k).
        """
        if self.ntotal == 0:
            raise DataValidationError(
                "the sharded segment index is empty: add videos to a shard before searching"
            )
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        # each non-empty shard's own top k, then the best k of their union
        found = [s.search(queries, k) for s in self._shards.values() if s.ntotal > 0]
        return merge_top_k([f[0] for f in found], [f[1] for f in found], min(k, self.ntotal))

    def segments(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Metadata (``vids``, ``starts``, ``ends``) of segment ids, from the shards holding them.

        Args:
            ids: int segment ids (each must be in some shard).

        Returns:
            ``{"vids", "starts", "ends"}`` arrays in the order of ``ids``.
        """
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) == 0:
            return {"vids": np.zeros(0, np.str_), "starts": np.zeros(0), "ends": np.zeros(0)}
        owner = self._owners(ids)
        # look every shard's ids up at once, then put the rows back in the order asked
        order = np.argsort(owner, kind="stable")
        parts = [
            shard.segments(ids[owner == i])
            for i, shard in enumerate(self._shards.values())
            if np.any(owner == i)
        ]
        back = np.argsort(order, kind="stable")
        return {key: np.concatenate([p[key] for p in parts])[back] for key in parts[0]}

    def _owners(self, ids: np.ndarray) -> np.ndarray:
        """Position (in shard order) of the shard whose id range holds each id.

        Raises:
            DataValidationError: an id outside every shard's range (the first five named).
        """
        ranges = np.array(_id_ranges(self._shards), np.int64).reshape(-1, 3)
        # the last range starting at or before each id must also end at or after it
        slot = np.maximum(np.searchsorted(ranges[:, 0], ids, side="right") - 1, 0)
        if len(ranges) == 0:
            ok = np.zeros(ids.shape, bool)
        else:
            ok = (ids >= ranges[slot, 0]) & (ids <= ranges[slot, 1])
        if not ok.all():
            raise DataValidationError(f"unknown segment ids: {ids[~ok][:5].tolist()}")
        return ranges[slot, 2]

    def search_segments(self, query: np.ndarray, k: int = 100):
        """Top-``k`` segments of one query as a DataFrame (as :meth:`SegmentIndex.search_segments`).

        Returns:
            ``pandas.DataFrame`` with columns rank, segment_id, vid, start, end, score.
        """
        return segments_frame(self, query, k)

    # ------------------------------------------------------------------ files
    def save(self, folder: str | os.PathLike) -> Path:
        """Write every shard's files, then the manifest ``shards.json`` (all atomically).

        Args:
            folder: the folder (created if missing); files of shards with other names are left.

        Returns:
            The manifest's path.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # shard files first: a manifest never names files that are not written yet
        records = [_save_shard(folder, name, shard) for name, shard in self._shards.items()]
        manifest = {
            "version": SHARDS_FORMAT_VERSION,
            "dim": self.dim,
            "metric": METRIC,
            "shards": records,
        }
        path = folder / MANIFEST_NAME
        with atomic_write(path, "w") as handle:
            json.dump(manifest, handle, indent=1)
        return path

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike,
        projector: Projector | None = None,
        expected_dim: int | None = None,
    ) -> ShardedSegmentIndex:
        """Load a folder written by :meth:`save`, checking every shard file's SHA256 first.

        Args:
            folder: the sharded index folder.
            projector: the projector used at build time, if any.
            expected_dim: dimension the caller's queries have (checked when given).

        Returns:
            The loaded :class:`ShardedSegmentIndex`.

        Raises:
            FileNotFoundError: no manifest in ``folder``.
            DataValidationError: a damaged manifest, or a shard file that is missing, changed
                since the save or unreadable (names the file).
        """
        folder = Path(folder)
        manifest = _read_manifest(folder / MANIFEST_NAME)
        shards = {
            record["name"]: _load_shard(folder, record, projector, expected_dim)
            for record in manifest["shards"]
        }
        return cls(shards)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={s.ntotal}" for name, s in self._shards.items())
        return f"ShardedSegmentIndex({sizes})"


# ----------------------------------------------------------------------------- merging
def merge_top_k(
    scores: list[np.ndarray], ids: list[np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of several (Q, k_i) search results, ordered as one faiss index orders them.

    Args:
        scores: float (Q, k_i) similarities of each part (higher is better).
        ids: int64 (Q, k_i) segment ids of each part (``-1`` = empty slot, sorted last).
        k: results kept per query.

    Returns:
        ``(scores, ids)`` float32 / int64 (Q, k): the k best by score (the smaller ids kept
        among equal scores at the cut), best first, the larger id first among equal scores.
    """
    all_scores, all_ids = np.concatenate(scores, axis=1), np.concatenate(ids, axis=1)
    key = np.where(all_ids >= 0, all_scores, -np.inf)
    # keep: best score first, the smaller id first among equal scores (a deterministic cut)
    keep = np.lexsort((all_ids, -key), axis=-1)[:, :k]
    top_scores, top_ids, top_key = (
        np.take_along_axis(a, keep, 1) for a in (all_scores, all_ids, key)
    )
    # list: best score first, the larger id first among equal scores (faiss's heap order)
    order = np.lexsort((-top_ids, -top_key), axis=-1)
    return (
        np.take_along_axis(top_scores, order, 1).astype(np.float32),
        np.take_along_axis(top_ids, order, 1).astype(np.int64),
    )


# ----------------------------------------------------------------------------- checks
def _check_shards(shards: Mapping[str, SegmentIndex]) -> None:
    """Refuse shards that cannot be searched as one index (the message names the shard)."""
    if not shards:
        raise DataValidationError("a sharded segment index needs at least one shard, got none")
    for name, shard in shards.items():
        _check_name(name)
        if not isinstance(shard, SegmentIndex):
            raise DataValidationError(
                f"shard {name!r} is {type(shard).__name__}, expected a SegmentIndex"
            )
    _check_same(shards, "vector dimension", lambda s: s.dim)
    _check_same(shards, "segment length (clips_per_segment)", lambda s: s.config.clips_per_segment)
    _check_disjoint_videos(shards)
    _check_disjoint_ids(shards)


def _check_name(name: Any) -> None:
    """A shard name must be a plain file name (see :data:`SHARD_NAME`)."""
    if not isinstance(name, str) or not SHARD_NAME.fullmatch(name):
        raise DataValidationError(
            f"shard name {name!r} is not a plain file name (letters, digits, '_', '.', '-'; "
            "not starting with '.'; at most 100 characters)"
        )


def _check_same(shards: Mapping[str, SegmentIndex], what: str, value) -> None:
    """Every shard with a value (not None) has the first such shard's value."""
    first: tuple[str, Any] | None = None
    for name, shard in shards.items():
        v = value(shard)
        if v is None:
            continue
        if first is None:
            first = (name, v)
        elif v != first[1]:
            raise DataValidationError(
                f"shard {name!r} has {what} {v}, shard {first[0]!r} has {first[1]}"
            )


def _check_disjoint_videos(shards: Mapping[str, SegmentIndex]) -> None:
    """No video is in two shards."""
    owner: dict[str, str] = {}
    for name, shard in shards.items():
        for vid in shard.vids:
            if owner.setdefault(vid, name) != name:
                raise DataValidationError(
                    f"video {vid!r} is in shard {owner[vid]!r} and in shard {name!r}; "
                    "shards must hold disjoint videos"
                )


def _id_ranges(shards: Mapping[str, SegmentIndex]) -> list[tuple[int, int, int]]:
    """``(first id, last id, shard position)`` of the non-empty shards, by first id."""
    return sorted(
        (int(s.segment_table["ids"][0]), int(s.segment_table["ids"][-1]), i)
        for i, s in enumerate(shards.values())
        if s.ntotal > 0
    )


def _check_disjoint_ids(shards: Mapping[str, SegmentIndex]) -> None:
    """The segment id ranges of the non-empty shards do not overlap."""
    names, ranges = list(shards), _id_ranges(shards)
    for (lo_a, hi_a, i), (lo_b, hi_b, j) in zip(ranges, ranges[1:]):
        a, b = names[i], names[j]
        if lo_b <= hi_a:
            raise DataValidationError(
                f"shard {b!r} has segment ids {lo_b}..{hi_b}, overlapping shard {a!r} "
                f"({lo_a}..{hi_a}); build shards with disjoint first_id ranges"
            )


# ----------------------------------------------------------------------------- shard helpers
def _build_shard(
    name: str,
    features: Mapping[str, np.ndarray],
    config: IndexConfig,
    projector: Projector | None,
    first_id: int,
) -> SegmentIndex:
    """One shard (empty when it has no videos); errors name the shard."""
    shard_config = replace(config)  # search settings may change per shard later
    if not features:
        return SegmentIndex(shard_config, projector, first_id)
    try:
        return SegmentIndex.build(features, shard_config, projector, first_id=first_id)
    except DataValidationError as exc:
        raise DataValidationError(f"shard {name!r}: {exc}") from exc


def _save_shard(folder: Path, name: str, shard: SegmentIndex) -> dict[str, Any]:
    """Write one shard's files (none for a shard never filled) and return its manifest record."""
    checksums = None
    if shard.faiss_index is not None:
        shard.save(shard_path(folder, name))
        checksums = index_checksums(shard_path(folder, name))
    return {
        "name": name,
        "ntotal": shard.ntotal,
        "next_id": shard.next_id,
        "config": asdict(shard.config),
        "sha256": checksums,
    }


def _load_shard(
    folder: Path, record: dict[str, Any], projector: Projector | None, expected_dim: int | None
) -> SegmentIndex:
    """One shard from its manifest record: checksums checked before the files are read."""
    name = record["name"]
    if record["sha256"] is None:  # saved with no segments: no files
        return SegmentIndex(_shard_config(folder, record), projector, record["next_id"])
    path = shard_path(folder, name)
    mismatch = checksum_mismatch(path, record["sha256"])
    if mismatch:
        raise DataValidationError(f"shard {name!r} of {folder}: {mismatch}")
    shard = SegmentIndex.load(path, projector, expected_dim)
    if shard.ntotal != record["ntotal"]:  # files intact but not the ones the record describes
        raise DataValidationError(
            f"shard {name!r}: {path} holds {shard.ntotal} segments, the manifest says "
            f"{record['ntotal']}"
        )
    return shard


def _shard_config(folder: Path, record: dict[str, Any]) -> IndexConfig:
    """The :class:`IndexConfig` of a shard record, or an error naming manifest and shard."""
    try:
        return IndexConfig(**record["config"])
    except (TypeError, ValueError) as exc:
        raise DataValidationError(
            f"{folder / MANIFEST_NAME}: shard {record['name']!r} has an invalid config ({exc})"
        ) from None


def _read_manifest(path: Path) -> dict[str, Any]:
    """Read and check ``shards.json`` (version, shard records with their fields and names).

    Raises:
        FileNotFoundError: no manifest.
        DataValidationError: not JSON, another version, or a bad shard record (names the file
            and the field).
    """
    if not path.exists():
        raise FileNotFoundError(f"sharded index manifest {str(path)!r} does not exist")
    manifest = read_json_file(
        path, "sharded index manifest", DataValidationError, dict, MAX_MANIFEST_BYTES
    )
    problem = _manifest_problem(manifest)
    if problem:
        raise DataValidationError(f"sharded index manifest {str(path)!r}: {problem}")
    return manifest


def _manifest_problem(manifest: dict[str, Any]) -> str | None:
    """What is wrong with a parsed manifest, or None."""
    if manifest.get("version") != SHARDS_FORMAT_VERSION:
        return (
            f"version {manifest.get('version')!r}, this course_lib reads version "
            f"{SHARDS_FORMAT_VERSION}"
        )
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not shards:
        return "field 'shards' must be a non-empty list"
    for i, record in enumerate(shards):
        problem = _record_problem(record)
        if problem:
            return f"shards[{i}]: {problem}"
    return None


def _record_problem(record: Any) -> str | None:
    """What is wrong with one shard record, or None."""
    if not isinstance(record, dict):
        return f"is {json_type_problem(record, dict)}"
    for field_name, expect in _SHARD_FIELDS.items():
        if field_name not in record:
            return f"field {field_name!r} is missing"
        problem = json_type_problem(record[field_name], expect)
        if problem:
            return f"field {field_name!r} is {problem}"
    if not SHARD_NAME.fullmatch(record["name"]):
        return f"field 'name' {record['name']!r} is not a plain file name"
    return None
