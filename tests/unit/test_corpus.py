"""Tests for course_lib.corpus: segments, faiss segment index, proposals, two-stage search."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from fault_helpers import returns_within
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.corpus import (
    CoarseToFineSearch,
    CorpusLocaliser,
    IndexConfig,
    SegmentIndex,
    SegmentVideoScorer,
    UnsupportedIndexOperation,
    exhaustive_search,
    fit_alpha,
    index_proposals,
    merge_segments,
    pool_segments,
    rank_candidates,
    segment_bounds,
    segment_videos,
    to_vcmr,
)
from course_lib.corpus.index import metadata_path
from course_lib.errors import DataValidationError
from course_lib.localisers import BaselineLocaliser, FunctionLocaliser

DIM = 16
# small parameters so every kind trains on ~100 segments (PQ: 4-bit codes need 16 vectors)
CONFIGS = {
    "flat": IndexConfig(kind="flat"),
    "ivf": IndexConfig(kind="ivf", nlist=4, nprobe=2),
    "ivfpq": IndexConfig(kind="ivfpq", nlist=4, nprobe=2, pq_m=4, pq_bits=4),
    "hnsw": IndexConfig(kind="hnsw", hnsw_m=8, ef_construction=40, ef_search=256),
}


@pytest.fixture(autouse=True, scope="module")
def one_faiss_thread():
    """faiss' OpenMP threads spin badly on a loaded 2-core machine: use one for these tiny sizes."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def make_features(n_videos: int = 24, seed: int = 0, dim: int = DIM) -> dict[str, np.ndarray]:
    """Random clip features for videos of 5..14 clips (ids v000, v001, ...)."""
    rng = np.random.default_rng(seed)
    return {
        f"v{i:03d}": rng.standard_normal((int(rng.integers(5, 15)), dim)).astype(np.float32)
        for i in range(n_videos)
    }


def queries(n: int = 5, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


# ---------------------------------------------------------------- segments
def test_segment_bounds_keep_last_partial_segment():
    assert segment_bounds(5, 2).tolist() == [[0, 2], [2, 4], [4, 5]]
    assert segment_bounds(4, 2).tolist() == [[0, 2], [2, 4]]


def test_pool_segments_and_metadata_hand_case():
    feats = np.arange(10, dtype=np.float32).reshape(5, 2)  # rows [0,1],[2,3],...,[8,9]
    assert pool_segments(feats, 2).tolist() == [[1, 2], [5, 6], [8, 9]]
    table = segment_videos({"a": feats, "b": feats[:2]}, clips_per_segment=2)
    assert table.vids.tolist() == ["a", "a", "a", "b"]
    assert table.starts.tolist() == [0.0, 4.0, 8.0, 0.0]
    assert table.ends.tolist() == [4.0, 8.0, 10.0, 4.0]
    np.testing.assert_allclose(np.linalg.norm(table.embeddings, axis=1), 1.0, rtol=1e-6)


def test_projector_hook_changes_dimension():
    proj = np.random.default_rng(0).standard_normal((DIM, 8)).astype(np.float32)
    index = SegmentIndex.build(make_features(4), projector=lambda x: x @ proj)
    assert index.dim == 8
    assert len(index.search_segments(np.ones(8, np.float32), 3)) == 3


# ---------------------------------------------------------------- index files
@pytest.mark.parametrize("kind", list(CONFIGS))
def test_save_load_round_trip_identical_results(kind, tmp_path):
    index = SegmentIndex.build(make_features(), CONFIGS[kind])
    path = tmp_path / f"{kind}.faiss"
    index.save(path)
    assert metadata_path(path).exists()
    loaded = SegmentIndex.load(path, expected_dim=DIM)
    s1, i1 = index.search(queries(), 10)
    s2, i2 = loaded.search(queries(), 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(s1, s2)
    assert loaded.vids == index.vids
    assert loaded.search_segments(queries()[0], 5).equals(index.search_segments(queries()[0], 5))


def test_dimension_mismatch_on_load_names_file_and_values(tmp_path):
    path = tmp_path / "flat.faiss"
    SegmentIndex.build(make_features(4)).save(path)
    with pytest.raises(DataValidationError) as err:
        SegmentIndex.load(path, expected_dim=32)
    msg = str(err.value)
    assert "flat.faiss" in msg and "32" in msg and str(DIM) in msg and "dimension" in msg


def test_metadata_index_mismatch_is_caught(tmp_path):
    # metadata of a 16-d index next to a 32-d index file (e.g. a partially copied folder)
    SegmentIndex.build(make_features(4)).save(tmp_path / "a.faiss")
    SegmentIndex.build(make_features(4, dim=32)).save(tmp_path / "b.faiss")
    metadata_path(tmp_path / "a.faiss").replace(metadata_path(tmp_path / "b.faiss"))
    with pytest.raises(DataValidationError, match=r"b\.faiss.*dimension.*16.*32"):
        SegmentIndex.load(tmp_path / "b.faiss")


def test_query_and_feature_dimension_mismatch():
    index = SegmentIndex.build(make_features(4))
    with pytest.raises(DataValidationError, match=r"\(Q, 16\)"):
        index.search(np.ones(7, np.float32), 3)
    with pytest.raises(DataValidationError, match="dimension 7"):
        index.add_videos({"new": np.ones((3, 7), np.float32)})


def test_empty_corpus_errors():
    with pytest.raises(DataValidationError, match="empty corpus"):
        SegmentIndex.build({})
    with pytest.raises(DataValidationError, match="empty"):
        SegmentIndex().search(np.ones(DIM, np.float32), 3)
    with pytest.raises(DataValidationError, match="video 'bad'"):
        SegmentIndex.build({"bad": np.zeros((0, DIM), np.float32)})


def test_duplicate_video_id_rejected():
    index = SegmentIndex.build(make_features(4))
    with pytest.raises(DataValidationError, match="'v002'"):
        index.add_videos({"fresh": np.ones((3, DIM), np.float32), "v002": np.ones((3, DIM))})
    assert "fresh" not in index.vids  # the whole batch is refused


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_truncated_index_file_names_file(kind, tmp_path):
    path = tmp_path / "trunc.faiss"
    SegmentIndex.build(make_features(), CONFIGS[kind]).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataValidationError, match=r"trunc\.faiss.*truncated"):
        SegmentIndex.load(path)


def test_missing_files_raise_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.faiss"):
        SegmentIndex.load(tmp_path / "nothing.faiss")


def _random_bytes(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(300))


def _fifo(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path.unlink()
    os.mkfifo(path)  # faiss opening it would wait for a writer forever


def _folder(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path.unlink()
    path.mkdir()


def _bad_alloc(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """faiss failing with another exception than RuntimeError (std::bad_alloc: MemoryError)."""
    import faiss

    def read_index(*args, **kwargs):
        raise MemoryError("std::bad_alloc")

    monkeypatch.setattr(faiss, "read_index", read_index)


@pytest.mark.parametrize(
    "damage, problem",
    [
        (_random_bytes, "is truncated or not a faiss index"),
        (_fifo, "is a FIFO (named pipe), not a regular file"),
        (_folder, "is a folder, not a regular file"),
        (_bad_alloc, "is truncated or not a faiss index: std::bad_alloc"),
    ],
    ids=["random bytes", "fifo", "folder", "MemoryError"],
)
def test_index_file_faiss_cannot_read_is_named_never_waited_on(
    tmp_path, monkeypatch, damage, problem
):
    path = tmp_path / "bad.faiss"
    SegmentIndex.build(make_features()).save(path)
    damage(path, monkeypatch)
    outcome = returns_within(lambda: SegmentIndex.load(path), 10)
    assert isinstance(outcome.get("error"), DataValidationError), outcome
    assert str(path) in str(outcome["error"]) and problem in str(outcome["error"])


# ---------------------------------------------------------------- incremental adds, deletion
def split(features: dict, n_first: int) -> tuple[dict, dict]:
    items = list(features.items())
    return dict(items[:n_first]), dict(items[n_first:])


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf", "ivfpq"])
def test_incremental_add_equals_scratch_build(kind):
    feats = make_features(30)
    first, rest = split(feats, 12)
    # IVF kinds: both indexes train their quantisers on the union (shared training data)
    train = feats if CONFIGS[kind].trained else None
    scratch = SegmentIndex.build(feats, CONFIGS[kind], train_features=train)
    incremental = SegmentIndex.build(first, CONFIGS[kind], train_features=train)
    incremental.add_videos(rest)
    assert incremental.ntotal == scratch.ntotal
    s1, i1 = scratch.search(queries(8), 10)
    s2, i2 = incremental.search(queries(8), 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, rtol=1e-5)


def test_ivf_trained_on_first_batch_differs_in_semantics_but_still_searches():
    feats = make_features(30)
    first, rest = split(feats, 12)
    index = SegmentIndex.build(first, CONFIGS["ivf"])  # trained on the first 12 videos only
    index.add_videos(rest)
    assert index.ntotal == sum(len(segment_bounds(len(f))) for f in feats.values())
    with pytest.raises(DataValidationError, match="already trained"):
        index.train(np.ones((10, DIM), np.float32))


@pytest.mark.parametrize("kind", ["flat", "ivf", "ivfpq"])
def test_remove_videos(kind):
    feats = make_features()
    index = SegmentIndex.build(feats, CONFIGS[kind])
    n_before, n_gone = index.ntotal, len(segment_bounds(len(feats["v003"])))
    assert index.remove_videos(["v003"]) == n_gone
    assert index.ntotal == n_before - n_gone and "v003" not in index.vids
    hits = index.search_segments(feats["v003"].mean(0), index.ntotal)
    assert "v003" not in set(hits["vid"])
    index.add_videos({"v003": feats["v003"]})  # re-adding a deleted id is allowed
    assert index.search_segments(feats["v003"][:2].mean(0), 1)["vid"].iloc[0] == "v003"
    with pytest.raises(DataValidationError, match="'nope'"):
        index.remove_videos(["nope"])


def test_remove_from_hnsw_refused_clearly():
    index = SegmentIndex.build(make_features(4), CONFIGS["hnsw"])
    with pytest.raises(UnsupportedIndexOperation, match="HNSW.*rebuild.*v001"):
        index.remove_videos(["v001"])
    assert index.ntotal > 0


# ---------------------------------------------------------------- proposals
def test_merge_consecutive_segments_hand_case():
    vids = ["a", "a", "a", "b", "a", "b"]
    starts = [0, 4, 12, 4, 8, 12]
    ends = [4, 8, 16, 8, 12, 16]
    scores = [0.5, 0.9, 0.3, 0.8, 0.1, 0.7]
    props = merge_segments(vids, starts, ends, scores, segment_len=4.0)
    got = [(p.vid, p.start, p.end, p.score, p.n_segments) for p in props]
    assert got == [("a", 0, 16, 0.9, 4), ("b", 4, 8, 0.8, 1), ("b", 12, 16, 0.7, 1)]


def test_gap_filling_constant_and_adaptive():
    # video a: run [0, 12) (3 segments), hole of 1 segment, run [16, 28) (3), hole of 2, [36, 40)
    starts = [0, 4, 8, 16, 20, 24, 36]
    kw = dict(vids=["a"] * 7, starts=starts, ends=[s + 4 for s in starts], segment_len=4.0)
    scores = [0.1, 0.2, 0.3, 0.9, 0.4, 0.5, 0.6]
    spans = lambda props: sorted((p.start, p.end) for p in props)  # noqa: E731
    assert spans(merge_segments(scores=scores, **kw)) == [(0, 12), (16, 28), (36, 40)]
    assert spans(merge_segments(scores=scores, max_gap=1, **kw)) == [(0, 28), (36, 40)]
    assert spans(merge_segments(scores=scores, max_gap=2, **kw)) == [(0, 40)]
    # adaptive: hole 1 <= floor(0.5 * min(3, 3)) = 1 is bridged; hole 2 > floor(0.5 * 1) is not
    adaptive = merge_segments(scores=scores, gap="adaptive", **kw)
    assert spans(adaptive) == [(0, 28), (36, 40)]
    assert adaptive[0].score == 0.9 and adaptive[0].n_segments == 6


hit = st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 15), st.floats(-1, 1))


@settings(max_examples=60, deadline=None)
@given(
    hits=st.lists(hit, min_size=1, max_size=40),
    max_gap=st.integers(0, 3),
    gap=st.sampled_from(["constant", "adaptive"]),
)
def test_proposals_never_cross_video_boundaries(hits, max_gap, gap):
    vids = [h[0] for h in hits]
    starts = [4.0 * h[1] for h in hits]
    props = merge_segments(
        vids,
        starts,
        [s + 4 for s in starts],
        [h[2] for h in hits],
        segment_len=4.0,
        max_gap=max_gap,
        gap=gap,
    )
    segs = {(v, s) for v, s in zip(vids, starts)}
    # every retrieved segment is in exactly one proposal of its own video
    assert sum(p.n_segments for p in props) == len(segs)
    for p in props:
        own = [s for v, s in segs if v == p.vid and p.start <= s < p.end]
        assert len(own) == p.n_segments and min(own) == p.start and max(own) + 4 == p.end
        assert p.score == max(h[2] for h in hits if h[0] == p.vid and p.start <= 4 * h[1] < p.end)
    for v in set(vids):  # proposals of one video are disjoint
        spans = sorted((p.start, p.end) for p in props if p.vid == v)
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))
    assert [p.score for p in props] == sorted((p.score for p in props), reverse=True)


def test_index_proposals_top200_segments_to_at_most_100():
    feats = make_features(60, dim=DIM)
    index = SegmentIndex.build(feats)
    props = index_proposals(index, queries(1)[0], n_segments=200, n_proposals=100)
    assert 0 < len(props) <= 100
    assert props["rank"].tolist() == list(range(1, len(props) + 1))
    assert props["score"].is_monotonic_decreasing


# ---------------------------------------------------------------- coarse-to-fine search
def planted_corpus(seed: int = 3) -> tuple[dict, np.ndarray]:
    """40 random videos; video 'target' shows the query at clips 10..13, i.e. [20 s, 28 s)."""
    rng = np.random.default_rng(seed)
    feats = make_features(40, seed=seed)
    query = rng.standard_normal(DIM).astype(np.float32)
    target = rng.standard_normal((20, DIM)).astype(np.float32)
    target[10:14] = 3 * query + 0.1 * rng.standard_normal((4, DIM))
    feats["target"] = target
    return feats, query


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_two_stage_search_finds_planted_moment(kind):
    feats, query = planted_corpus()
    index = SegmentIndex.build(feats, CONFIGS[kind])
    engine = CoarseToFineSearch.from_index(index, feats, top_k_videos=5, alpha=0.5)
    result = engine.search(query, top_n=20)
    assert list(result.columns) == [
        "rank",
        "vid",
        "start",
        "end",
        "score",
        "stage1_score",
        "stage2_score",
    ]
    top = result.iloc[0]
    assert (top.vid, top.start, top.end) == ("target", 20.0, 28.0)
    assert result["vid"].nunique() <= 5 and result["score"].is_monotonic_decreasing
    pred = to_vcmr(result)
    assert pred[0] == ["target", 20.0, 28.0, pytest.approx(float(top.score))]
    assert engine.search_vcmr({7: query}, top_n=3)[7][0][:3] == ["target", 20.0, 28.0]


def test_exhaustive_search_and_corpus_localiser():
    feats, query = planted_corpus()

    def best_clip(clip_feats, q, duration):  # a toy localiser: the single most similar clip
        t = int(np.argmax(clip_feats @ q))
        return [(2.0 * t, 2.0 * t + 2, float(clip_feats[t] @ q))]

    localise = CorpusLocaliser(feats, FunctionLocaliser(best_clip, window_clips=None))
    result = exhaustive_search(query, feats, localise, top_n=5)
    assert result.iloc[0].vid == "target" and 20 <= result.iloc[0].start < 28
    assert result["stage1_score"].isna().all() and len(result) == 5
    bad = CorpusLocaliser(feats, FunctionLocaliser(lambda f, q, d: [(4.0, 2.0, 1.0)], None))
    with pytest.raises(DataValidationError, match="video 'v000'.*st < ed"):
        bad("v000", query)
    with pytest.raises(DataValidationError, match="no duration for video 'v000'"):
        CorpusLocaliser(feats, FunctionLocaliser(best_clip), durations={})("v000", query)


def test_baseline_localiser_in_two_stage_search():
    feats, query = planted_corpus()
    index = SegmentIndex.build(feats)
    engine = CoarseToFineSearch(
        SegmentVideoScorer(index),
        CorpusLocaliser(feats, BaselineLocaliser(window_clips=None, window_lengths=(2, 4, 6))),
        top_k_videos=3,
    )
    top = engine.search(query, top_n=5).iloc[0]
    assert (top.vid, top.start, top.end) == ("target", 20.0, 28.0)


def test_combine_scores_formula_and_fit_alpha():
    import pandas as pd

    # stage 1 says video 'good' is relevant, stage 2 wrongly prefers 'bad'
    cands = pd.DataFrame(
        {
            "vid": ["good", "bad"],
            "start": [0.0, 0.0],
            "end": [4.0, 4.0],
            "stage1_score": [0.9, 0.1],
            "stage2_score": [0.4, 0.6],
        }
    )
    ranked = rank_candidates(cands, alpha=0.7)
    assert ranked["score"].tolist() == pytest.approx([0.7, 0.3])  # 0.7*1 + 0.3*0, 0.7*0 + 0.3*1
    gt = [
        {
            "qid": 0,
            "query": "q",
            "relevant_moments": [
                {"vid": "good", "duration": 10.0, "window": [0.0, 4.0], "relevance": 3}
            ],
        }
    ]
    best, values = fit_alpha({0: cands}, gt, grid=[0.0, 0.25, 0.5, 0.75, 1.0])
    assert best == 0.75 and values[0.0] < values[0.75] == values[1.0]


def test_score_fusion_is_pluggable():
    """``fuse`` replaces combine_scores in rank_candidates and in the two-stage search."""
    import pandas as pd

    from course_lib.corpus import combine_scores

    cands = pd.DataFrame(
        {
            "vid": ["a", "a", "b"],
            "start": [0.0, 4.0, 0.0],
            "end": [4.0, 8.0, 4.0],
            "stage1_score": [0.9, 0.9, 0.1],
            "stage2_score": [0.2, 0.6, 0.8],
        }
    )
    seen = []

    def stage2_only(stage1, stage2, alpha):
        seen.append((stage1.tolist(), stage2.tolist(), alpha))
        return stage2

    default = rank_candidates(cands, alpha=0.5)
    pd.testing.assert_frame_equal(rank_candidates(cands, 0.5, fuse=combine_scores), default)
    ranked = rank_candidates(cands, 0.5, fuse=stage2_only)
    assert ranked["vid"].tolist() == ["b", "a", "a"] and default["vid"].tolist()[0] == "a"
    assert seen == [([0.9, 0.9, 0.1], [0.2, 0.6, 0.8], 0.5)]  # candidates' order, once
    with pytest.raises(ValueError, match=r"returned shape \(2,\) for 3 candidates"):
        rank_candidates(cands, 0.5, fuse=lambda s1, s2, a: s2[:2])
    # the search passes its fuse on; with the default it ranks as before
    feats, query = planted_corpus()
    index = SegmentIndex.build(feats, CONFIGS["flat"])
    engine = CoarseToFineSearch.from_index(index, feats, top_k_videos=5, alpha=0.8)

    def swapped(stage1, stage2, alpha):
        return combine_scores(stage2, stage1, alpha)

    expected = rank_candidates(engine.candidates(query), 0.8, 20, fuse=swapped)
    other = CoarseToFineSearch.from_index(index, feats, top_k_videos=5, alpha=0.8, fuse=swapped)
    pd.testing.assert_frame_equal(other.search(query, top_n=20), expected)
    assert not expected.equals(engine.search(query, top_n=20))


def test_choose_nprobe_reaches_target_and_is_minimal():
    from course_lib.corpus.index import choose_nprobe, recall_at_k

    assert recall_at_k(np.array([[1, 2, -1]]), np.array([[2, 3]])) == 0.5
    index = SegmentIndex.build(make_features(60), IndexConfig(kind="ivf", nlist=8, nprobe=1))
    q = queries(20)
    nprobe, recall = choose_nprobe(index, q, target_recall=0.9, k=10)
    assert recall >= 0.9 and index.config.nprobe == nprobe
    index.set_search_params(nprobe=8)
    exact = index.search(q, 10)[1]
    assert recall_at_k(exact, exact) == 1.0
    if nprobe > 1:  # the next smaller candidate misses the target
        index.set_search_params(nprobe=nprobe // 2)
        assert recall_at_k(index.search(q, 10)[1], exact) < 0.9
    with pytest.raises(DataValidationError, match="'flat'"):
        choose_nprobe(SegmentIndex.build(make_features(4)), q)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_gpu_copy_is_searched_when_faiss_sees_a_gpu(kind, monkeypatch):
    """The GPU path's logic, with faiss' CPU->GPU copy replaced by a clone (no GPU here)."""
    import dataclasses

    import faiss

    from course_lib.corpus import index as index_module

    copies = []

    def fake_to_gpus(cpu_index):
        copies.append(cpu_index)
        return faiss.clone_index(cpu_index)

    feats = make_features()
    cpu_only = SegmentIndex.build(feats, dataclasses.replace(CONFIGS[kind], use_gpu=False))
    expected = cpu_only.search(queries(), k=10)
    monkeypatch.setattr(index_module, "gpu_available", lambda: True)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", fake_to_gpus)
    index = SegmentIndex.build(feats, dataclasses.replace(CONFIGS[kind], use_gpu=True))
    found = index.search(queries(), k=10)
    np.testing.assert_array_equal(found[1], expected[1])
    np.testing.assert_allclose(found[0], expected[0], rtol=1e-5)
    index.search(queries(), k=10)
    if kind == "hnsw":  # faiss has no GPU HNSW: it stays on the CPU
        assert copies == []
        return
    assert len(copies) == 1  # one copy, reused by later searches
    new = {f"new{i}": f for i, f in enumerate(make_features(n_videos=2, seed=5).values())}
    index.add_videos(new)  # a change invalidates the copy ...
    index.search(queries(), k=10)
    assert len(copies) == 2  # ... and the next search copies the updated index
    index.set_search_params(nprobe=4)
    index.search(queries(), k=10)
    assert len(copies) == 3
    cpu_only.search(queries(), k=10)  # use_gpu=False never copies
    assert len(copies) == 3
