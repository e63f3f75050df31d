"""Tests for course_lib.datasets: jsonl IO, validators, feature stores, torch data, CLI."""

import copy
import json
import math
import subprocess
import sys
from functools import partial

import numpy as np
import pytest
import torch

from course_lib.datasets import (
    CorpusQueryDataset,
    CorpusVideoDataset,
    MomentDataset,
    RetrievalPairDataset,
    collate_corpus_queries,
    collate_corpus_videos,
    collate_moments,
    collate_retrieval,
    load_query_features,
    load_video_features,
    read_jsonl,
    save_query_features,
    save_video_features,
    validate_corpus,
    validate_moment_record,
    validate_moment_records,
    validate_retrieval_pairs,
    windows_to_spans,
    write_jsonl,
)
from course_lib.datasets.__main__ import main as cli_main
from course_lib.errors import DataValidationError


def good_record(qid: int = 7, vid: str = "vidA_0.0_20.0") -> dict:
    """A valid 20-s QVHighlights record: windows [2, 6] and [10, 12] -> clips 1, 2, 5."""
    return {
        "qid": qid,
        "query": "a red ball rolls to the left",
        "vid": vid,
        "duration": 20.0,
        "relevant_windows": [[2.0, 6.0], [10.0, 12.0]],
        "relevant_clip_ids": [1, 2, 5],
        "saliency_scores": [[1, 2, 3], [4, 4, 4], [0, 1, 2]],
    }


def good_corpus() -> dict:
    return {
        "videos": [{"vid": "v1", "duration": 20.0}, {"vid": "v2", "duration": 10.0}],
        "queries": [
            {
                "qid": 1,
                "query": "blue square spins",
                "relevant_moments": [
                    {"vid": "v1", "duration": 20.0, "window": [4.0, 8.0], "relevance": 4},
                    {"vid": "v2", "duration": 10.0, "window": [0.0, 2.0], "relevance": 2},
                ],
            },
            {
                "qid": 2,
                "query": "green circle grows",
                "relevant_moments": [
                    {"vid": "v2", "duration": 10.0, "window": [6.0, 10.0], "relevance": 3}
                ],
            },
        ],
    }


# ------------------------------------------------------------------ jsonl
def test_jsonl_round_trip_with_numpy_values(tmp_path):
    recs = [good_record(1), dict(good_record(2), duration=np.float32(20.0))]
    write_jsonl(tmp_path / "a.jsonl", recs)
    back = read_jsonl(tmp_path / "a.jsonl")
    assert back[0] == recs[0] and back[1]["duration"] == 20.0 and len(back) == 2


def test_read_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good_record(1)) + "\n\n" + '{"qid": 2, "query": \n')
    with pytest.raises(DataValidationError, match=r"bad\.jsonl: line 3: invalid JSON"):
        read_jsonl(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(DataValidationError, match="line 1: expected a JSON object"):
        read_jsonl(path)
    with pytest.raises(DataValidationError, match="missing.jsonl"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_write_jsonl_is_atomic(tmp_path):
    path = tmp_path / "keep.jsonl"
    write_jsonl(path, [good_record(1)])
    before = path.read_text()
    with pytest.raises(DataValidationError, match="record 1"):
        write_jsonl(path, [good_record(2), dict(good_record(3), duration=float("nan"))])
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.jsonl"]


# ------------------------------------------------------------------ moment records
def test_good_record_passes():
    validate_moment_record(good_record())
    validate_moment_records([good_record(1), good_record(2)])


def _set(path, value):
    """Mutation that sets record[path[0]][path[1]]... to value."""

    def apply(rec):
        target = rec
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return apply


def _drop(field):
    return lambda rec: rec.pop(field)


MOMENT_ERRORS = [
    (
        "window outside duration",
        _set(["relevant_windows", 1], [10.0, 22.0]),
        "relevant_windows[1]",
        "outside",
    ),
    (
        "negative start",
        _set(["relevant_windows", 0], [-2.0, 6.0]),
        "relevant_windows[0]",
        "outside",
    ),
    ("start >= end", _set(["relevant_windows", 0], [6.0, 2.0]), "relevant_windows[0]", ">="),
    ("empty windows", _set(["relevant_windows"], []), "relevant_windows", "non-empty"),
    ("window not a pair", _set(["relevant_windows", 0], [2.0]), "relevant_windows[0]", "expected"),
    (
        "NaN window",
        _set(["relevant_windows", 0], [float("nan"), 6.0]),
        "relevant_windows[0]",
        "finite",
    ),
    (
        "clip ids vs windows",
        _set(["relevant_clip_ids"], [1, 2, 4]),
        "relevant_clip_ids",
        "inconsistent",
    ),
    ("clip ids unsorted", _set(["relevant_clip_ids"], [2, 1, 5]), "relevant_clip_ids", "sorted"),
    ("clip id not int", _set(["relevant_clip_ids", 0], 1.0), "relevant_clip_ids", "ints"),
    (
        "saliency length",
        _set(["saliency_scores"], [[1, 2, 3], [4, 4, 4]]),
        "saliency_scores",
        "length 2",
    ),
    ("score above 4", _set(["saliency_scores", 1], [4, 5, 4]), "saliency_scores[1]", "outside 0-4"),
    (
        "negative score",
        _set(["saliency_scores", 2], [0, -1, 2]),
        "saliency_scores[2]",
        "outside 0-4",
    ),
    ("float score", _set(["saliency_scores", 0], [1.5, 2, 3]), "saliency_scores[0]", "ints"),
    ("annotator count", _set(["saliency_scores", 2], [0, 1]), "saliency_scores[2]", "annotators"),
    ("qid float", _set(["qid"], 7.0), "qid", "expected an int or a non-empty string"),
    ("qid empty string", _set(["qid"], "  "), "qid", "expected an int or a non-empty string"),
    ("qid bool", _set(["qid"], True), "qid", "expected an int or a non-empty string"),
    ("qid list", _set(["qid"], [7]), "qid", "expected an int or a non-empty string"),
    ("empty query", _set(["query"], "  "), "query", "non-empty string"),
    ("vid not str", _set(["vid"], 3), "vid", "non-empty string"),
    ("duration NaN", _set(["duration"], float("nan")), "duration", "positive finite"),
    ("duration str", _set(["duration"], "20"), "duration", "positive finite"),
    ("duration zero", _set(["duration"], 0), "duration", "positive finite"),
    ("missing field", _drop("saliency_scores"), "saliency_scores", "missing"),
    ("unknown field", _set(["split"], "train"), "split", "unknown field"),
]


@pytest.mark.parametrize(
    "label, mutate, field, problem", MOMENT_ERRORS, ids=[m[0] for m in MOMENT_ERRORS]
)
def test_moment_record_error_names_record_and_field(label, mutate, field, problem):
    rec = copy.deepcopy(good_record())
    mutate(rec)
    with pytest.raises(DataValidationError) as info:
        validate_moment_record(rec, index=3)
    msg = str(info.value)
    qid = rec["qid"]
    assert f"qid={qid!r}" in msg and "index 3" in msg, msg
    assert f"'{field}'" in msg and problem in msg, msg


def test_record_not_a_dict():
    with pytest.raises(DataValidationError, match="index 0.*expected a dict"):
        validate_moment_record([1, 2], index=0)


def test_unlabelled_test_records():
    rec = {k: good_record()[k] for k in ("qid", "query", "vid", "duration")}
    with pytest.raises(DataValidationError, match="'relevant_windows': missing"):
        validate_moment_record(rec)
    validate_moment_record(rec, require_labels=False)
    bad = dict(rec, relevant_windows=[[3.0, 1.0]])
    with pytest.raises(DataValidationError, match="relevant_windows"):
        validate_moment_record(bad, require_labels=False)  # present labels still checked


def test_window_edges_and_partial_clips():
    rec = dict(
        good_record(), duration=21.0, relevant_windows=[[19.0, 21.0]], relevant_clip_ids=[9, 10]
    )
    validate_moment_record(dict(rec, saliency_scores=[[1, 1, 1], [2, 2, 2]]))


def test_duplicate_qids():
    with pytest.raises(
        DataValidationError, match=r"qid=7 \(index 1\): field 'qid': duplicate of index 0"
    ):
        validate_moment_records([good_record(7), good_record(7)])


def test_query_feature_path_names_int_and_string_qids_inside_the_root(tmp_path):
    from course_lib.datasets import query_feature_path

    assert query_feature_path(tmp_path, 7) == tmp_path / "qid7.npz"
    assert query_feature_path(tmp_path, np.int64(7)) == tmp_path / "qid7.npz"
    assert query_feature_path(tmp_path, "s30-d52_0") == tmp_path / "qids30-d52_0.npz"
    for bad in ("", "../x", "a/b", "a\\b", "a\0b", True, 1.5, None):
        with pytest.raises(DataValidationError, match="qid"):
            query_feature_path(tmp_path, bad)


def test_string_qids_are_accepted_as_the_official_scripts_do():
    # TaCoS in lighthouse's layout names its queries "{vid}_{n}"; moment_detr's and lighthouse's
    # evaluation use the qid only as a dict key, so a string qid is a valid moment record
    tacos = [dict(good_record(), qid="s30-d52_0"), dict(good_record(), qid="s30-d52_1")]
    validate_moment_record(tacos[0])
    validate_moment_records(tacos)
    validate_moment_records([dict(r, qid=str(i)) for i, r in enumerate(tacos)])  # digits too
    with pytest.raises(
        DataValidationError,
        match=r"qid='s30-d52_0' \(index 1\): field 'qid': duplicate of index 0",
    ):
        validate_moment_records([tacos[0], tacos[0]])


def test_int_and_string_qids_are_not_mixed():
    # 1 and "1" would name different queries: one list holds one kind, as the release readers say
    with pytest.raises(DataValidationError) as refused:
        validate_moment_records([good_record(1), dict(good_record(), qid="1")])
    message = str(refused.value)
    assert (
        "record qid='1' (index 1): field 'qid': '1' is a string but index 0 has an int" in message
    )
    with pytest.raises(DataValidationError, match=r"qid=2 \(index 2\).*is an int but index 0"):
        validate_moment_records(
            [dict(good_record(), qid="a"), dict(good_record(), qid="b"), good_record(2)]
        )
    # an unusable qid is reported once, by the record check, not as another kind
    with pytest.raises(DataValidationError) as refused:
        validate_moment_records([good_record(1), dict(good_record(), qid=1.5)])
    assert "expected an int or a non-empty string, got 1.5 (a float)" in str(refused.value)
    assert "kind" not in str(refused.value)


# ------------------------------------------------------------------ corpus and pairs
def test_good_corpus_and_pairs_pass():
    validate_corpus(good_corpus())
    validate_retrieval_pairs([{"pair_id": 0, "vid": "c0", "caption": "a cat", "duration": 4.0}])


CORPUS_ERRORS = [
    (
        "unknown vid",
        ["queries", 0, "relevant_moments", 1, "vid"],
        "v9",
        "relevant_moments[1].vid",
        "unknown video",
    ),
    (
        "window outside",
        ["queries", 1, "relevant_moments", 0, "window"],
        [6.0, 12.0],
        "relevant_moments[0].window",
        "outside",
    ),
    (
        "relevance 5",
        ["queries", 0, "relevant_moments", 0, "relevance"],
        5,
        "relevant_moments[0].relevance",
        "0-4",
    ),
    (
        "duration mismatch",
        ["queries", 0, "relevant_moments", 0, "duration"],
        30.0,
        "relevant_moments[0].duration",
        "!=",
    ),
    ("qid type", ["queries", 1, "qid"], "2", "qid", "expected int"),
]


@pytest.mark.parametrize(
    "label, path, value, field, problem", CORPUS_ERRORS, ids=[c[0] for c in CORPUS_ERRORS]
)
def test_corpus_errors(label, path, value, field, problem):
    corpus = good_corpus()
    _set(path, value)(corpus)
    with pytest.raises(DataValidationError) as info:
        validate_corpus(corpus)
    msg = str(info.value)
    assert f"(index {path[1]})" in msg and f"'{field}'" in msg and problem in msg, msg


def test_corpus_structure_errors():
    corpus = good_corpus()
    corpus["videos"].append({"vid": "v1", "duration": 5.0})
    with pytest.raises(DataValidationError, match="duplicate video 'v1'"):
        validate_corpus(corpus)
    corpus = good_corpus()
    corpus["queries"][1]["qid"] = 1
    with pytest.raises(DataValidationError, match="qid=1 .*duplicate"):
        validate_corpus(corpus)
    with pytest.raises(DataValidationError, match="'videos' and 'queries'"):
        validate_corpus({"videos": []})


def test_retrieval_pair_errors():
    pairs = [{"pair_id": 0, "vid": "c0", "caption": "x", "duration": 4.0}]
    with pytest.raises(DataValidationError, match=r"pair_id=0 \(index 1\).*duplicate"):
        validate_retrieval_pairs(pairs * 2)
    with pytest.raises(DataValidationError, match="pair_id=1.*'caption': missing"):
        validate_retrieval_pairs([{"pair_id": 1, "vid": "c0", "duration": 4.0}])


def test_toyworld_records_validate():
    toyworld = pytest.importorskip("course_lib.toyworld")
    if not hasattr(toyworld, "moment_records"):
        pytest.skip("toyworld.moment_records not available yet")
    validate_moment_records(toyworld.moment_records("train", 3, seed=0))
    validate_corpus(toyworld.corpus("train", 3, seed=0))
    validate_retrieval_pairs(toyworld.retrieval_pairs("train", 5, seed=0))


# ------------------------------------------------------------------ feature stores
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_feature_store_round_trip(tmp_path, rng, dtype):
    feats = rng.normal(size=(5, 8))
    path = save_video_features(tmp_path, "abc_12.0_162.0", feats, dtype=dtype)
    assert path.name == "abc_12.0_162.0.npz"
    with np.load(path, allow_pickle=False) as data:
        assert data["features"].dtype == dtype
    back = load_video_features(tmp_path, "abc_12.0_162.0")
    assert back.dtype == np.float32 and back.shape == (5, 8)
    np.testing.assert_allclose(back, feats, atol=2e-3 if dtype == np.float16 else 1e-6)
    tokens, pooled = rng.normal(size=(4, 6)), rng.normal(size=6)
    qpath = save_query_features(tmp_path, 42, tokens, pooled=pooled, dtype=dtype)
    assert qpath.name == "qid42.npz"
    np.testing.assert_allclose(load_query_features(tmp_path, 42), tokens, atol=5e-3)
    assert load_query_features(tmp_path, 42, key="pooler_output").shape == (6,)


def test_feature_save_is_atomic(tmp_path, monkeypatch):
    save_video_features(tmp_path, "v", np.ones((3, 4)))
    before = (tmp_path / "v.npz").read_bytes()

    def crash(handle, **arrays):
        handle.write(b"half a file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        save_video_features(tmp_path, "v", np.zeros((3, 4)))
    assert (tmp_path / "v.npz").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["v.npz"]


class _Exploit:
    """Unpickling this would create a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_refused(tmp_path):
    marker = tmp_path / "pwned"
    arr = np.empty(1, dtype=object)
    arr[0] = _Exploit(marker)
    np.savez(tmp_path / "evil.npz", features=arr)
    with pytest.raises(DataValidationError, match="evil.npz"):
        load_video_features(tmp_path, "evil")
    assert not marker.exists()


def _write(tmp_path, name, **arrays):
    np.savez(tmp_path / f"{name}.npz", **arrays)


BAD_FEATURES = [
    ("wrong key", {"feats": np.ones((2, 3), np.float32)}, "no array 'features'"),
    ("1-D", {"features": np.ones(3, np.float32)}, "shape"),
    ("3-D", {"features": np.ones((2, 3, 4), np.float32)}, "shape"),
    ("empty", {"features": np.ones((0, 3), np.float32)}, "shape"),
    ("NaN", {"features": np.array([[1.0, np.nan]], np.float32)}, "NaN or inf"),
    ("inf fp16", {"features": np.array([[1.0, np.inf]], np.float16)}, "NaN or inf"),
    ("int dtype", {"features": np.ones((2, 3), np.int64)}, "dtype"),
]


@pytest.mark.parametrize("label, arrays, problem", BAD_FEATURES, ids=[b[0] for b in BAD_FEATURES])
def test_bad_feature_files(tmp_path, label, arrays, problem):
    _write(tmp_path, "bad", **arrays)
    with pytest.raises(DataValidationError, match=problem) as info:
        load_video_features(tmp_path, "bad")
    assert "bad.npz" in str(info.value)


def test_missing_and_garbage_feature_files(tmp_path):
    with pytest.raises(DataValidationError, match="nope.npz"):
        load_video_features(tmp_path, "nope")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DataValidationError, match="junk.npz"):
        load_video_features(tmp_path, "junk")
    with pytest.raises(DataValidationError, match="qid3.npz"):
        load_query_features(tmp_path, 3)


def test_save_refuses_bad_input(tmp_path):
    with pytest.raises(DataValidationError, match="overflows float16"):
        save_video_features(tmp_path, "big", np.full((2, 2), 1e6))
    with pytest.raises(DataValidationError, match="path separators"):
        save_video_features(tmp_path, "../escape", np.ones((2, 2)))
    with pytest.raises(DataValidationError, match="NaN"):
        save_query_features(tmp_path, 1, np.full((2, 2), np.nan))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ torch data
def _video_fn(lengths, dim=8):
    return lambda vid: (
        np.arange(lengths[vid] * dim, dtype=np.float32).reshape(lengths[vid], dim) / 100
    )


def test_windows_to_spans():
    spans = windows_to_spans(torch.tensor([[2.0, 6.0], [10.0, 12.0], [30.0, 40.0]]), 20.0)
    torch.testing.assert_close(spans, torch.tensor([[0.2, 0.2], [0.55, 0.1]]))


def test_moment_dataset_and_collate(tmp_path):
    recs = [good_record(1, "a"), dict(good_record(2, "b"), duration=14.0)]
    recs[1]["relevant_windows"], recs[1]["relevant_clip_ids"] = [[10.0, 14.0]], [5, 6]
    recs[1]["saliency_scores"] = [[4, 4, 4], [2, 3, 4]]
    ds = MomentDataset(recs, _video_fn({"a": 10, "b": 7}), lambda qid: np.ones((qid + 2, 4)))
    item = ds[0]
    torch.testing.assert_close(item["saliency"][[1, 2, 5]], torch.tensor([2.0, 4.0, 1.0]))
    assert item["relevant"].nonzero().flatten().tolist() == [1, 2, 5]
    batch = collate_moments([ds[0], ds[1]])
    assert batch["video"].shape == (2, 10, 8) and batch["query"].shape == (2, 4, 4)
    assert batch["video_mask"].dtype == torch.bool
    assert batch["video_mask"].sum(1).tolist() == [10, 7]  # True = real clip
    assert batch["query_mask"].sum(1).tolist() == [3, 4]
    assert not batch["video"][1, 7:].any() and not batch["relevant"][1, 7:].any()
    assert batch["saliency_raw"].shape == (2, 10, 3)
    assert batch["saliency_raw"][1, 6].tolist() == [2, 3, 4]
    torch.testing.assert_close(batch["spans"][1], torch.tensor([[12 / 14, 4 / 14]]))
    assert batch["records"] == recs


def test_collate_cap_renormalises_spans():
    rec = good_record(1, "a")
    ds = MomentDataset([rec], _video_fn({"a": 10}), lambda qid: np.ones((5, 4)))
    batch = collate_moments([ds[0]], max_clips=4, max_tokens=2)
    assert batch["video"].shape == (1, 4, 8) and batch["query"].shape == (1, 2, 4)
    # window [2, 6] over the kept 8 s -> [0.25, 0.75]; window [10, 12] starts after the cut
    torch.testing.assert_close(batch["spans"][0], torch.tensor([[0.5, 0.5]]))
    assert batch["relevant"][0].tolist() == [False, True, True, False]


def test_moment_dataset_from_store_root(tmp_path, rng):
    save_video_features(tmp_path / "vid", "a", rng.normal(size=(10, 8)))
    save_query_features(tmp_path / "txt", 1, rng.normal(size=(3, 4)))
    ds = MomentDataset([good_record(1, "a")], tmp_path / "vid", str(tmp_path / "txt"))
    assert ds[0]["video"].dtype == torch.float32 and ds[0]["query"].shape == (3, 4)
    with pytest.raises(DataValidationError, match="qid2.npz"):
        MomentDataset([good_record(2, "a")], tmp_path / "vid", tmp_path / "txt")[0]


def test_dataset_validates_records():
    with pytest.raises(DataValidationError, match="qid=1"):
        MomentDataset([dict(good_record(1), duration=-1.0)], _video_fn({}), lambda q: None)


def test_bad_source_output_is_named():
    ds = MomentDataset(
        [good_record(1, "a")], lambda vid: np.full((3, 2), math.nan), lambda q: np.ones((2, 2))
    )
    with pytest.raises(DataValidationError, match="qid=1.*NaN"):
        ds[0]


@pytest.mark.parametrize("sentence", [True, False])
def test_retrieval_dataset_and_collate(sentence):
    pairs = [{"pair_id": i, "vid": f"c{i}", "caption": "x", "duration": 4.0} for i in range(3)]
    lengths = {"c0": 2, "c1": 3, "c2": 1}
    text = (lambda pid: np.ones(6)) if sentence else (lambda pid: np.ones((pid + 1, 6)))
    ds = RetrievalPairDataset(pairs, _video_fn(lengths), text)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=3, collate_fn=partial(collate_retrieval, max_clips=2)
    )
    batch = next(iter(loader))
    assert batch["video"].shape == (3, 2, 8)
    assert batch["video_mask"].tolist() == [[True, True], [True, True], [True, False]]
    if sentence:
        assert batch["text"].shape == (3, 6) and batch["text_mask"] is None
    else:
        assert batch["text"].shape == (3, 3, 6) and batch["text_mask"].sum(1).tolist() == [1, 2, 3]
    assert [r["pair_id"] for r in batch["records"]] == [0, 1, 2]


def test_corpus_datasets():
    corpus = good_corpus()
    videos = CorpusVideoDataset(corpus, _video_fn({"v1": 10, "v2": 5}))
    vb = collate_corpus_videos([videos[0], videos[1]])
    assert vb["vids"] == ["v1", "v2"] and vb["video_mask"].sum(1).tolist() == [10, 5]
    assert vb["durations"].tolist() == [20.0, 10.0]
    queries = CorpusQueryDataset(corpus, lambda qid: np.ones((qid + 1, 4)))
    qb = collate_corpus_queries([queries[0], queries[1]])
    assert qb["query"].shape == (2, 3, 4) and qb["query_mask"].sum(1).tolist() == [2, 3]
    assert qb["moment_vids"] == [["v1", "v2"], ["v2"]]
    assert qb["relevance"][0].tolist() == [4, 2]
    torch.testing.assert_close(qb["windows"][1], torch.tensor([[6.0, 10.0]]))


def test_collate_rejects_mixed_dims():
    ds = MomentDataset(
        [good_record(1, "a"), good_record(2, "b")],
        lambda vid: np.ones((4, 8 if vid == "a" else 6)),
        lambda q: np.ones((2, 2)),
    )
    with pytest.raises(DataValidationError, match="different shapes"):
        collate_moments([ds[0], ds[1]])


# ------------------------------------------------------------------ CLI
def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "course_lib.datasets", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_good_and_bad_files(tmp_path):
    """The real entry point in a subprocess: exit codes and what it prints."""
    good = write_jsonl(tmp_path / "good.jsonl", [good_record(1), good_record(2)])
    res = _cli("validate", good)
    assert res.returncode == 0 and res.stdout.strip() == "OK: 2 records", res.stdout + res.stderr
    bad_rec = dict(good_record(5), relevant_clip_ids=[1, 2])
    bad = write_jsonl(tmp_path / "bad.jsonl", [good_record(1), bad_rec])
    res = _cli("validate", bad)
    assert res.returncode == 1
    assert (
        "bad.jsonl:2:" in res.stdout and "qid=5" in res.stdout and "relevant_clip_ids" in res.stdout
    )


def test_cli_main_in_process(tmp_path, capsys):
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(good_record(1)) + "\n{oops\n")
    assert cli_main(["validate", str(broken)]) == 1
    assert "broken.jsonl: line 2" in capsys.readouterr().out
    dup = write_jsonl(tmp_path / "dup.jsonl", [good_record(3), good_record(3)])
    assert cli_main(["validate", str(dup)]) == 1
    assert "dup.jsonl:2:" in capsys.readouterr().out
    named = dict(good_record(), qid="s30-d52_0")  # string qids (TaCoS) are compared too
    dup_named = write_jsonl(tmp_path / "dup_named.jsonl", [named, named])
    assert cli_main(["validate", str(dup_named)]) == 1
    out = capsys.readouterr().out
    assert "dup_named.jsonl:2:" in out and "duplicate of line 1" in out
    test_split = [{k: good_record()[k] for k in ("qid", "query", "vid", "duration")}]
    unlabelled = write_jsonl(tmp_path / "test.jsonl", test_split)
    assert cli_main(["validate", str(unlabelled)]) == 1
    assert cli_main(["validate", str(unlabelled), "--no-labels"]) == 0
    pairs = [{"pair_id": 0, "vid": "c0", "caption": "x", "duration": 4.0}]
    assert cli_main(["validate", str(write_jsonl(tmp_path / "pairs.jsonl", pairs))]) == 0
    corpus = tmp_path / "corpus.json"
    corpus.write_text(json.dumps(good_corpus()))
    assert cli_main(["validate", str(corpus)]) == 0
    assert capsys.readouterr().out.strip().endswith("OK: 2 records")
    bad_corpus = good_corpus()
    bad_corpus["queries"][0]["relevant_moments"][0]["vid"] = "zz"
    corpus.write_text(json.dumps(bad_corpus))
    assert cli_main(["validate", str(corpus)]) == 1
    assert "unknown video 'zz'" in capsys.readouterr().out
