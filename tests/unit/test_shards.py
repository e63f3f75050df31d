"""Tests for course_lib.corpus.shards: a sharded segment index searched as one flat index."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from course_lib.corpus.index import IndexConfig, SegmentIndex
from course_lib.corpus.shards import MANIFEST_NAME, ShardedSegmentIndex, merge_top_k, shard_path
from course_lib.errors import DataValidationError

DIM = 16
FLAT = IndexConfig(kind="flat", use_gpu=False)


def _videos(prefix: str, n: int, seed: int, dim: int = DIM) -> dict[str, np.ndarray]:
    """``n`` videos of 3-17 random clip features each (so shards get different sizes)."""
    rng = np.random.default_rng(seed)
    return {
        f"{prefix}{i}": rng.standard_normal((int(rng.integers(3, 18)), dim)).astype(np.float32)
        for i in range(n)
    }


@pytest.fixture(scope="module")
def parts() -> dict[str, dict[str, np.ndarray]]:
    """Four shards: different sizes, one of them empty."""
    return {"a": _videos("a", 2, 0), "empty": {}, "b": _videos("b", 9, 1), "c": _videos("c", 4, 2)}


def _union(parts: dict[str, dict[str, np.ndarray]]) -> SegmentIndex:
    """One flat index over all shards' videos, in shard order."""
    return SegmentIndex.build({v: f for p in parts.values() for v, f in p.items()}, FLAT)


def _queries(n: int, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _assert_same_results(sharded, single, queries: np.ndarray, k: int) -> None:
    scores, ids = sharded.search(queries, k)
    want_scores, want_ids = single.search(queries, k)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want_scores)


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("n_queries", [3, 25], ids=["few-queries", "blas-path"])
def test_flat_shards_equal_one_index_over_the_union(parts, n_queries: int) -> None:
    sharded, single = ShardedSegmentIndex.build(parts, FLAT), _union(parts)
    assert sharded.ntotal == single.ntotal and sharded.vids == single.vids
    smallest = min(s.ntotal for s in sharded.shards.values() if s.ntotal)
    # k = 1, inside every shard, larger than the smallest shard, the whole index, beyond it
    for k in (1, 3, smallest + 2, single.ntotal, single.ntotal + 10):
        _assert_same_results(sharded, single, _queries(n_queries), k)


def test_ties_keep_the_scores_and_the_order_of_one_index() -> None:
    # every video has the same features: all segments of a clip position tie exactly
    same = np.random.default_rng(3).standard_normal((6, DIM)).astype(np.float32)
    parts = {name: {f"{name}{i}": same for i in range(4)} for name in ("x", "y", "z")}
    sharded, single = ShardedSegmentIndex.build(parts, FLAT), _union(parts)
    for k in (1, 2, 5, 13, 36):  # cuts inside groups of equal scores
        scores, ids = sharded.search(same[:3], k)
        want_scores, want_ids = single.search(same[:3], k)
        np.testing.assert_array_equal(scores, want_scores)
        # above the k-th score: the same ids; at it: some of the tied segments (faiss's choice
        # in one index depends on its scan order), listed larger id first as faiss lists them
        above = scores > scores[:, -1:]
        np.testing.assert_array_equal(ids[above], want_ids[above])
        assert all(np.all(np.diff(row[s == s[-1]]) < 0) for row, s in zip(ids, scores))
        assert sharded.search(same[:3], k)[1].tolist() == ids.tolist()  # deterministic


def test_search_segments_frame_equals_one_index(parts) -> None:
    sharded, single = ShardedSegmentIndex.build(parts, FLAT), _union(parts)
    query = _queries(1)[0]
    pd.testing.assert_frame_equal(
        sharded.search_segments(query, 20), single.search_segments(query, 20)
    )


def test_shards_built_apart_with_their_own_id_ranges(parts) -> None:
    # two workers that never talk: worker w numbers its segments from w * 2**40
    workers = {
        f"w{w}": SegmentIndex.build(parts[name], FLAT, first_id=w * 2**40)
        for w, name in enumerate(("b", "c"))
    }
    sharded, single = ShardedSegmentIndex(workers), _union({"b": parts["b"], "c": parts["c"]})
    scores, ids = sharded.search(_queries(4), 30)
    want_scores, want_ids = single.search(_queries(4), 30)
    np.testing.assert_array_equal(scores, want_scores)
    # the same segments: map the worker ids back to positions in the union
    offset = workers["w0"].ntotal
    as_union = np.where(ids >= 2**40, ids - 2**40 + offset, ids)
    np.testing.assert_array_equal(as_union, want_ids)
    np.testing.assert_array_equal(
        sharded.segments(ids[0])["vids"], single.segments(want_ids[0])["vids"]
    )


def test_segments_follow_the_order_asked(parts) -> None:
    sharded, single = ShardedSegmentIndex.build(parts, FLAT), _union(parts)
    ids = np.array([single.ntotal - 1, 0, 5, single.ntotal - 1, 2])
    got, want = sharded.segments(ids), single.segments(ids)
    for key in ("vids", "starts", "ends"):
        np.testing.assert_array_equal(got[key], want[key])
    assert len(sharded.segments(np.zeros(0, np.int64))["vids"]) == 0
    with pytest.raises(DataValidationError, match=str(single.ntotal + 3)):
        sharded.segments([0, single.ntotal + 3])


def test_merge_puts_empty_slots_last() -> None:
    scores = [np.array([[0.9, -3.4e38]], np.float32), np.array([[0.5, 0.95]], np.float32)]
    ids = [np.array([[4, -1]]), np.array([[7, 9]])]
    got_scores, got_ids = merge_top_k(scores, ids, 4)
    assert got_ids.tolist() == [[9, 4, 7, -1]]
    assert got_scores.dtype == np.float32 and got_scores[0, 0] == np.float32(0.95)


# ----------------------------------------------------------------------------- files
def test_save_load_round_trip(parts, tmp_path) -> None:
    sharded = ShardedSegmentIndex.build(parts, FLAT)
    manifest = sharded.save(tmp_path / "shards")
    assert manifest.name == MANIFEST_NAME and shard_path(tmp_path / "shards", "b").is_file()
    assert not shard_path(tmp_path / "shards", "empty").exists()  # an empty shard has no files
    loaded = ShardedSegmentIndex.load(tmp_path / "shards", expected_dim=DIM)
    assert list(loaded.shards) == list(parts) and loaded.vids == sharded.vids
    assert loaded.shards["empty"].next_id == sharded.shards["empty"].next_id
    for k in (1, 7, sharded.ntotal + 1):
        _assert_same_results(loaded, sharded, _queries(5), k)


@pytest.mark.parametrize("suffix", ["", ".meta.npz"], ids=["faiss-file", "metadata-file"])
def test_a_tampered_shard_file_is_named(parts, tmp_path, suffix: str) -> None:
    ShardedSegmentIndex.build(parts, FLAT).save(tmp_path)
    target = shard_path(tmp_path, "c").with_name("c.faiss" + suffix)
    data = bytearray(target.read_bytes())
    data[-20] ^= 0xFF  # one flipped byte that the size checks of SegmentIndex.load cannot see
    target.write_bytes(bytes(data))
    with pytest.raises(DataValidationError, match=rf"shard 'c'.*c\.faiss{suffix}.*modified"):
        ShardedSegmentIndex.load(tmp_path)


def test_a_missing_shard_file_is_named(parts, tmp_path) -> None:
    ShardedSegmentIndex.build(parts, FLAT).save(tmp_path)
    shard_path(tmp_path, "a").unlink()
    with pytest.raises(DataValidationError, match=r"a\.faiss.*does not exist"):
        ShardedSegmentIndex.load(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(version=99), "version 99"),
        (lambda m: m["shards"][1].pop("next_id"), r"shards\[1\]: field 'next_id' is missing"),
        (lambda m: m["shards"][2].update(name="../b"), "not a plain file name"),
        (lambda m: m["shards"][0].update(ntotal="3"), "field 'ntotal' is a string"),
    ],
    ids=["version", "missing-field", "path-name", "mistyped-field"],
)
def test_a_damaged_manifest_is_named(parts, tmp_path, change, message: str) -> None:
    ShardedSegmentIndex.build(parts, FLAT).save(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    change(manifest)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(DataValidationError, match=rf"{MANIFEST_NAME}.*{message}"):
        ShardedSegmentIndex.load(tmp_path)


def test_no_manifest_is_file_not_found(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=MANIFEST_NAME):
        ShardedSegmentIndex.load(tmp_path)


# ----------------------------------------------------------------------------- bad inputs
def test_dimension_mismatch_names_the_shard(parts) -> None:
    shards = {
        "a": SegmentIndex.build(parts["a"], FLAT),
        "wide": SegmentIndex.build(_videos("w", 2, 5, dim=DIM + 4), FLAT, first_id=1000),
    }
    with pytest.raises(DataValidationError, match=r"shard 'wide' has vector dimension 20.*'a'"):
        ShardedSegmentIndex(shards)


def test_overlapping_ids_name_both_shards(parts) -> None:
    shards = {name: SegmentIndex.build(parts[name], FLAT) for name in ("b", "c")}  # both from 0
    with pytest.raises(DataValidationError, match=r"shard '[bc]' has segment ids .* shard '[bc]'"):
        ShardedSegmentIndex(shards)


def test_a_video_in_two_shards_is_named(parts) -> None:
    first = SegmentIndex.build(parts["a"], FLAT)
    again = SegmentIndex.build(parts["a"], FLAT, first_id=first.next_id)
    with pytest.raises(
        DataValidationError, match=r"video 'a0' is in shard 'one' and in shard 'two'"
    ):
        ShardedSegmentIndex({"one": first, "two": again})


@pytest.mark.parametrize("shards", [{}, {"../x": SegmentIndex(FLAT)}, {"x": "not an index"}])
def test_bad_shard_sets_are_refused(shards) -> None:
    with pytest.raises(DataValidationError, match="shard"):
        ShardedSegmentIndex(shards)


def test_build_errors_name_the_shard() -> None:
    bad = {"ok": _videos("o", 2, 0), "bad": {"v": np.zeros((0, DIM), np.float32)}}
    with pytest.raises(DataValidationError, match="shard 'bad'"):
        ShardedSegmentIndex.build(bad, FLAT)


def test_search_of_an_empty_index_and_bad_k(parts) -> None:
    with pytest.raises(DataValidationError, match="empty"):
        ShardedSegmentIndex({"e": SegmentIndex(FLAT)}).search(_queries(1), 3)
    with pytest.raises(ValueError, match="k must be"):
        ShardedSegmentIndex.build(parts, FLAT).search(_queries(1), 0)
    with pytest.raises(DataValidationError, match="expected"):  # queries of another dimension
        ShardedSegmentIndex.build(parts, FLAT).search(np.zeros((1, DIM + 1), np.float32), 3)


def test_stage_one_scores_videos_from_the_shards(parts) -> None:
    from course_lib.corpus.search import SegmentVideoScorer

    sharded, single = ShardedSegmentIndex.build(parts, FLAT), _union(parts)
    query = _queries(1)[0]
    # the coarse stage of the engine takes the sharded index in place of one index
    assert SegmentVideoScorer(sharded, lambda q: q, 25)(query) == SegmentVideoScorer(
        single, lambda q: q, 25
    )(query)
