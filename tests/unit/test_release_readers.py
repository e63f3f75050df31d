"""Readers of other releases (Charades-STA, ActivityNet Captions, TaCoS, TVR, TVR-Ranking) and the
MR-only grounding metrics (R@K at IoU, mIoU).

Every file is written in ``tmp_path`` in the exact layout of its release: lighthouse's
``data/{charades,activitynet,tacos}/*_release.jsonl`` (values of their first lines, ActivityNet's
compact separators), TVRetrieval's ``data/tvr_*_release.jsonl`` and ``tvr_video2dur_idx.json``,
TVR-Ranking's ``val.json`` / ``video_corpus.json``.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import pytest

from course_lib.datasets import (
    WindowClippedWarning,
    check_highlight_labels,
    is_mr_only,
    read_mr_release,
    read_tvr_ranking,
    read_tvr_ranking_videos,
    read_tvr_release,
    read_tvr_video_durations,
    validate_corpus,
    validate_moment_records,
)
from course_lib.errors import DataValidationError, MetricInputError
from course_lib.metrics import eval_grounding, eval_qvhighlights, ndcg_iou, vcmr_recall

# lighthouse data/charades/charades_train_release.jsonl (line 2's window ends 0.01 s past)
CHARADES = (
    '{"qid": 0, "query": "a person is putting a book on a shelf.", "duration": 33.67, '
    '"vid": "AO8RW", "relevant_windows": [[0.0, 6.9]]}\n'
    '{"qid": 1, "query": "person begins to play on a phone.", "duration": 29.42, '
    '"vid": "Y6R7T", "relevant_windows": [[20.8, 29.43]]}\n'
)
# lighthouse data/activitynet/activitynet_val_release.jsonl (lines 1, 3428 and 5311 of it)
ACTIVITYNET = (
    '{"qid":37421,"query":"A weight lifting tutorial is given.","duration":55.15,'
    '"vid":"v_uqiMw7tQ1Cc","relevant_windows":[[0.28,55.15]]}\n'
    '{"qid":40848,"query":" He continues to move around talking and explaining technique.",'
    '"duration":89.71,"vid":"v_EGLJPCJnG64","relevant_windows":[[29.61,89.72]]}\n'
    '{"qid":42731,"query":"The man grabs the chalk on the pool table.","duration":112.12,'
    '"vid":"v_spZ_RrpyNJw","relevant_windows":[[10.65,112.13]]}\n'
)
# lighthouse data/tacos/tacos_test_release.jsonl: string qids "{vid}_{n}"
TACOS = (
    '{"qid": "s30-d52_0", "query": "She took out kiwi", "duration": 249.8639455782313, '
    '"vid": "s30-d52", "relevant_windows": [[4.795918367346939, 12.040816326530614]]}\n'
    '{"qid": "s30-d52_1", "query": "She took out cutting board", "duration": 249.8639455782313, '
    '"vid": "s30-d52", "relevant_windows": [[12.27891156462585, 24.89795918367347]]}\n'
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    """``text`` written to ``tmp_path / name``."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def read_warned(read, *args, **kwargs):
    """``read(*args, **kwargs)`` and the WindowClippedWarnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = read(*args, **kwargs)
    return out, [w for w in caught if issubclass(w.category, WindowClippedWarning)]


# ----------------------------------------------------------------------------- MR-only releases
def test_charades_records_and_one_clip_warning(tmp_path):
    path = write(tmp_path, "charades_train_release.jsonl", CHARADES)
    records, caught = read_warned(read_mr_release, path)
    assert records[0] == {
        "qid": 0,
        "query": "a person is putting a book on a shelf.",
        "vid": "AO8RW",
        "duration": 33.67,
        "relevant_windows": [[0.0, 6.9]],
        "dataset": "charades",
        "mr_only": True,
    }
    assert records[1]["relevant_windows"] == [[20.8, 29.42]]  # clipped to the duration
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "1 window ends past" in message and "line 2 (qid=1)" in message
    assert "relevant_windows[0]" in message and "29.43" in message
    # int-qid MR-only records are QVHighlights moment records without the label fields
    validate_moment_records(records, require_labels=False, allow_extra=True)


def test_activitynet_compact_layout_one_warning_counts_every_clip(tmp_path):
    path = write(tmp_path, "activitynet_val_release.jsonl", ACTIVITYNET)
    records, caught = read_warned(read_mr_release, path)
    assert [r["qid"] for r in records] == [37421, 40848, 42731]
    assert records[1]["query"].startswith(" He")  # kept as given
    assert records[1]["relevant_windows"] == [[29.61, 89.71]]
    assert records[2]["relevant_windows"] == [[10.65, 112.12]]
    assert len(caught) == 1  # one per file, however many windows
    message = str(caught[0].message)
    assert str(path) in message and "2 windows end past" in message
    assert "first: line 2 (qid=40848)" in message and "largest overrun 0.01 s" in message


def test_tacos_string_qids_kept_and_dataset_named(tmp_path):
    path = write(tmp_path, "tacos_test_release.jsonl", TACOS)
    records, caught = read_warned(read_mr_release, path)
    assert [r["qid"] for r in records] == ["s30-d52_0", "s30-d52_1"]
    assert all(r["dataset"] == "tacos" and is_mr_only(r) for r in records) and not caught
    # string qids are valid moment records too (as the official scripts take them)
    validate_moment_records(records, require_labels=False, allow_extra=True)
    # the file name need not be lighthouse's when the dataset is named (aliases too)
    other = write(tmp_path, "mine.jsonl", CHARADES.splitlines()[0])
    assert read_mr_release(other, dataset="charades-sta")[0]["dataset"] == "charades"
    with pytest.raises(DataValidationError, match="cannot tell the dataset.*dataset="):
        read_mr_release(other)
    with pytest.raises(DataValidationError, match="unknown MR dataset 'didemo'"):
        read_mr_release(other, dataset="didemo")


GOOD = {"qid": 5, "query": "a cat", "duration": 30.0, "vid": "V1", "relevant_windows": [[1, 2]]}


def line(**changes) -> str:
    """One Charades-style line: GOOD with ``changes`` (None removes a field)."""
    record = {**GOOD, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not None})


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ('{"qid": 5, "query": "a cat",', r"line 2: invalid JSON"),
        (
            line(relevant_windows=[[31.0, 33.0]]),
            r"line 2 \(qid=5\): field 'relevant_windows\[0\]'"
            r": window \[31.0, 33.0\] lies entirely past the video's duration 30.0",
        ),
        (line(relevant_windows=[[30.0, 30.5]]), r"entirely past.*start >= end once clipped"),
        (line(relevant_windows=[[4.0, 4.0]]), r"'relevant_windows\[0\]': start 4.0 >= end 4.0"),
        (line(relevant_windows=[[-1.0, 4.0]]), r"'relevant_windows\[0\]': start -1.0 < 0"),
        (line(relevant_windows=[[1, "2"]]), r"'relevant_windows\[0\]': expected \[start, end\]"),
        (line(relevant_windows=[]), r"field 'relevant_windows': expected a non-empty list"),
        (line(duration=None), r"line 2: field 'duration': missing"),
        (line(duration=0), r"\(qid=5\): field 'duration': expected a positive finite number"),
        (line(qid=5.0), r"field 'qid': expected an int or a non-empty string, got 5.0 \(a float\)"),
        (line(qid=""), r"field 'qid': expected an int or a non-empty string"),
        (line(query="  "), r"field 'query': expected a non-empty string, got empty"),
        (line(vid=7), r"field 'vid': expected a non-empty string, got 7"),
        (line(extra=1), r"field 'extra': unknown field \['extra'\]"),
        (
            line(saliency_scores=[[1, 2, 3]]),
            r"line 2: fields relevant_clip_ids, saliency_scores "
            r"present: a QVHighlights-style record",
        ),
        (line(qid=0), r"line 2 \(qid=0\): field 'qid': 0 repeats line 1"),
        (line(qid="0"), r"field 'qid': '0' is a string but line 1 has an int"),
        ("[1, 2]", r"line 2: expected a JSON object"),
    ],
)
def test_every_bad_line_names_file_line_and_field(tmp_path, bad, expected):
    path = write(tmp_path, "charades_test_release.jsonl", line(qid=0) + "\n" + bad + "\n")
    with pytest.raises(DataValidationError, match=re.escape(str(path)) + ".*" + expected):
        read_mr_release(path)


def test_empty_file_is_refused(tmp_path):
    path = write(tmp_path, "tacos_val_release.jsonl", "\n")
    with pytest.raises(DataValidationError, match="no records"):
        read_mr_release(path)


def test_highlight_metrics_refuse_mr_only_records(tmp_path):
    records = read_mr_release(write(tmp_path, "tacos_test_release.jsonl", TACOS))
    submission = [
        {
            "qid": r["qid"],
            "pred_relevant_windows": [[4.0, 12.0, 0.9]],
            "pred_saliency_scores": [0.1],
        }
        for r in records
    ]
    with pytest.raises(MetricInputError, match="s30-d52_0.*lacks relevant_clip_ids/saliency"):
        eval_qvhighlights(submission, records)
    with pytest.raises(MetricInputError, match="from the TaCoS release, which is MR-only"):
        check_highlight_labels(records)
    # the MR part (what lighthouse reports for these datasets) still runs
    mr_only = [{k: v for k, v in s.items() if k != "pred_saliency_scores"} for s in submission]
    assert "MR-full-R1@0.5" in eval_qvhighlights(mr_only, records)["brief"]


# ----------------------------------------------------------------------------- TVR
TVR_VAL = (
    '{"vid_name": "friends_s01e03_seg02_clip_19", "duration": 61.46, "ts": [16.48, 33.87], '
    '"desc": "Phoebe puts one of her ponytails in her mouth.", "type": "v", "desc_id": 90200}\n'
    '{"vid_name": "friends_s04e21_seg02_clip_18", "duration": 57.35, "ts": [0, 57.36], '
    '"desc": "Monica tells Ross never knew he did that.", "type": "vt", "desc_id": 94603}\n'
)
TVR_TEST = '{"desc": "Monica hands Rachel a purple gift bag with red paper. ", "desc_id": 107711}\n'
VIDEO2DUR = {
    "val": {
        "friends_s01e03_seg02_clip_19": [61.46, 0],
        "friends_s04e21_seg02_clip_18": [57.35, 1],
        "house_s01e01_seg02_clip_00": [90.0, 2],
    },
    "test_public": {"castle_s01e01_seg02_clip_20": [91.56, 0]},
}


def test_tvr_corpus_records_with_the_split_video_table(tmp_path):
    table = write(tmp_path, "tvr_video2dur_idx.json", json.dumps(VIDEO2DUR))
    videos = read_tvr_video_durations(table, "val")
    corpus, caught = read_warned(
        read_tvr_release, write(tmp_path, "tvr_val_release.jsonl", TVR_VAL), videos
    )
    assert [v["vid"] for v in corpus["videos"]] == list(VIDEO2DUR["val"])  # the whole split
    first, second = corpus["queries"]
    assert first == {
        "qid": 90200,
        "query": "Phoebe puts one of her ponytails in her mouth.",
        "type": "v",
        "relevant_moments": [
            {
                "vid": "friends_s01e03_seg02_clip_19",
                "duration": 61.46,
                "window": [16.48, 33.87],
                "relevance": 1,
            }
        ],
    }
    assert second["relevant_moments"][0]["window"] == [0.0, 57.35]
    assert len(caught) == 1 and "line 2 (desc_id=94603): field 'ts'" in str(caught[0].message)
    validate_corpus(corpus)
    predictions = {90200: [["friends_s01e03_seg02_clip_19", 16.0, 34.0, 1.0]], 94603: []}
    assert vcmr_recall(predictions, corpus["queries"], ks=(1,))["0.5-r1"] == 50.0


def test_tvr_test_public_and_bad_lines(tmp_path):
    corpus = read_tvr_release(write(tmp_path, "tvr_test_public_release.jsonl", TVR_TEST))
    assert corpus["queries"] == [
        {"qid": 107711, "query": json.loads(TVR_TEST)["desc"], "relevant_moments": []}
    ]
    assert corpus["videos"] == []  # no video named: give read_tvr_video_durations(..., split)
    good = TVR_VAL.splitlines()[0]
    cases = {
        good.replace('"type": "v"', '"type": "x"'): r"line 2 \(desc_id=90200\): field 'type'",
        good.replace("[16.48, 33.87]", "[[1, 2], [3, 4]]"): r"field 'ts': a list of windows",
        good.replace(', "type": "v"', ""): r"field 'type': missing",
        good.replace("61.46", "61.5"): r"field 'duration': 61.5 differs from the duration 61.46",
        good.replace("clip_19", "clip_99"): r"field 'vid_name': video .* is not in the video table",
    }
    videos = read_tvr_video_durations(write(tmp_path, "d.json", json.dumps(VIDEO2DUR)), "val")
    for bad, expected in cases.items():
        path = write(tmp_path, "tvr_val_release.jsonl", TVR_VAL.splitlines()[1] + "\n" + bad)
        with pytest.raises(DataValidationError, match=expected):
            read_tvr_release(path, videos)
    with pytest.raises(DataValidationError, match="no split 'train'"):
        read_tvr_video_durations(tmp_path / "d.json", "train")


# ----------------------------------------------------------------------------- TVR-Ranking
def ranking_moment(pair_id: int, vid: str, ts: list, relevance, duration: float = 90.02) -> dict:
    """One moment of a TVR-Ranking query (data/TVR_Ranking/readme.md fields)."""
    return {
        "pair_id": pair_id,
        "video_name": vid,
        "timestamp": ts,
        "duration": duration,
        "caption": "A man and a woman are talking.",
        "similarity": 0.8,
        "relevance": relevance,
    }


RANKING = [
    {
        "query_id": 54251,
        "query": "A man and a woman are talking about how he lied to a patient.",
        "relevant_moment": [
            ranking_moment(0, "house_s07e03_seg02_clip_24", [63.47, 77.42], 4),
            ranking_moment(1, "house_s07e03_seg02_clip_25", [10.0, 90.03], 2),
        ],
    },
    {"query_id": 54252, "query": "A doctor runs.", "relevant_moment": []},
]


def test_tvr_ranking_grouped_json_flat_pairs_and_jsonl(tmp_path):
    path = write(tmp_path, "val.json", json.dumps(RANKING))
    corpus, caught = read_warned(read_tvr_ranking, path)
    assert [q["qid"] for q in corpus["queries"]] == [54251, 54252]
    first = corpus["queries"][0]["relevant_moments"]
    assert first[0] == {
        "vid": "house_s07e03_seg02_clip_24",
        "duration": 90.02,
        "window": [63.47, 77.42],
        "relevance": 4,
        "pair_id": 0,
        "caption": "A man and a woman are talking.",
        "similarity": 0.8,
    }
    assert first[1]["window"] == [10.0, 90.02] and len(caught) == 1
    assert "item 0 (query_id=54251): field 'relevant_moment[1].timestamp'" in str(caught[0].message)
    validate_corpus(corpus)
    predictions = {54251: [["house_s07e03_seg02_clip_24", 63.0, 78.0, 1.0]], 54252: []}
    assert (
        ndcg_iou(predictions, corpus["queries"], ks=(1,), iou_thresholds=(0.5,))["NDCG@1-IoU0.5"]
        == 50.0
    )  # the first query is perfect at K=1, the second (no moment) counts 0
    # the readme's form: single pairs carrying their query's fields, grouped by query_id
    pairs = [
        {"query_id": 7, "query": "q", **ranking_moment(0, "v1", [1, 2], 3.5)},
        {"query_id": 8, "query": "r", **ranking_moment(1, "v1", [2, 3], 1)},
        {"query_id": 7, "query": "q", **ranking_moment(2, "v2", [4, 5], 0)},
    ]
    flat = read_tvr_ranking(write(tmp_path, "pairs.json", json.dumps(pairs)))
    assert [(q["qid"], len(q["relevant_moments"])) for q in flat["queries"]] == [(7, 2), (8, 1)]
    assert flat["queries"][0]["relevant_moments"][0]["relevance"] == 3.5  # kept as given
    # one query per line in a .jsonl file, with the released video corpus
    text = "\n".join(json.dumps(q) for q in RANKING)
    table = {"house_s07e03_seg02_clip_24": 90.02, "house_s07e03_seg02_clip_25": 90.02, "x": 5.0}
    videos = read_tvr_ranking_videos(write(tmp_path, "video_corpus.json", json.dumps(table)))
    corpus, _ = read_warned(read_tvr_ranking, write(tmp_path, "val.jsonl", text), videos)
    assert len(corpus["videos"]) == 3 and len(corpus["queries"]) == 2


def test_tvr_ranking_bad_objects(tmp_path):
    def moment_with(**changes) -> list:
        query = json.loads(json.dumps(RANKING[0]))
        query["relevant_moment"][0].update(changes)
        return [query]

    no_relevance = json.loads(json.dumps(RANKING))
    del no_relevance[0]["relevant_moment"][0]["relevance"]
    cases = [
        (moment_with(relevance=5), r"field 'relevant_moment\[0\].relevance': expected a number"),
        (moment_with(timestamp=[95.0, 99.0]), r"relevant_moment\[0\].timestamp'.*entirely past"),
        (moment_with(video_name=""), r"field 'relevant_moment\[0\].video_name'"),
        (moment_with(extra=1), r"field 'relevant_moment\[0\].extra': unknown field"),
        (no_relevance, r"item 0 \(query_id=54251\): field 'relevant_moment\[0\].relevance'"),
        ([RANKING[0], RANKING[0]], r"item 1 \(query_id=54251\): field 'query_id': 54251 repeats"),
        (
            [RANKING[0], {"query_id": 1, "query": "q", **ranking_moment(0, "v", [1, 2], 1)}],
            r"item 1: a pair object, but item 0 is a query object",
        ),
        (
            [
                {"query_id": 1, "query": "q", **ranking_moment(0, "v", [1, 2], 1)},
                {"query_id": 1, "query": "other", **ranking_moment(1, "v", [1, 2], 1)},
            ],
            r"item 1 \(query_id=1\): field 'query': 'other' differs from the query text of item 0",
        ),
        ([5], r"item 0: expected a JSON object, got 5"),
        (
            [
                {"query_id": 1, "query": "q", **ranking_moment(0, "v", [1, 2], 1)},
                {"query_id": "1", "query": "q", **ranking_moment(1, "v", [1, 2], 1)},
            ],
            r"item 1 \(query_id='1'\): field 'query_id': '1' is a string but item 0 has an int",
        ),
        (
            [{"query_id": 2, "query": "q", "relevant_moment": "none"}],
            r"field 'relevant_moment': expected a list",
        ),
    ]
    for data, expected in cases:
        path = write(tmp_path, "test.json", json.dumps(data))
        with pytest.raises(DataValidationError, match=re.escape(str(path)) + ".*" + expected):
            read_warned(read_tvr_ranking, path)
    # a default relevance for files that carry none (documented option)
    path = write(tmp_path, "t.json", json.dumps(no_relevance))
    corpus, _ = read_warned(read_tvr_ranking, path, missing_relevance=1)
    assert corpus["queries"][0]["relevant_moments"][0]["relevance"] == 1
    with pytest.raises(DataValidationError, match="expected a JSON array"):
        read_tvr_ranking(write(tmp_path, "obj.json", "{}"))


def test_tvr_ranking_relevance_as_tvr_rankings_code_uses_it(tmp_path):
    """Relevance is a number as TVR-Ranking's ndcg_iou.py uses it (sorted, gain 2**r - 1)."""
    query = {
        "query_id": 9,
        "query": "a nurse talks",
        "relevant_moment": [
            ranking_moment(0, "v1", [0.0, 10.0], 2.5),  # an average over workers: kept
            ranking_moment(1, "v2", [0.0, 10.0], 2.0),  # an integral float: the int 2
            ranking_moment(2, "v3", [0.0, 10.0], 4),
        ],
    }
    for name, text in (("val.json", json.dumps([query])), ("val.jsonl", json.dumps(query))):
        corpus = read_tvr_ranking(write(tmp_path, name, text))
        relevances = [m["relevance"] for m in corpus["queries"][0]["relevant_moments"]]
        assert relevances == [2.5, 2, 4] and [type(r) for r in relevances] == [float, int, int]
    # NDCG@1 by hand (TVR-Ranking: GT sorted by relevance, IoU > t earns the moment's relevance):
    # the one prediction hits v2 (relevance 2, gain 2**2 - 1 = 3); the ideal first gain is that of
    # relevance 4 (15); with v1 first, 2**2.5 - 1
    predictions = {9: [["v2", 0.0, 10.0, 1.0]]}
    scores = ndcg_iou(predictions, corpus["queries"], ks=(1, 2), iou_thresholds=(0.5,))
    assert scores["NDCG@1-IoU0.5"] == 20.0
    predictions = {9: [["v1", 0.0, 10.0, 1.0], ["v3", 0.0, 10.0, 0.5]]}
    scores = ndcg_iou(predictions, corpus["queries"], ks=(2,), iou_thresholds=(0.5,))
    dcg = (2**2.5 - 1) + (2**4 - 1) / math.log2(3)
    ideal = (2**4 - 1) + (2**2.5 - 1) / math.log2(3)
    assert scores["NDCG@2-IoU0.5"] == round(100 * dcg / ideal, 2)  # ndcg_iou rounds to 2 places
    # an integral float passes the corpus validator; a non-integral one is kept but refused there
    whole = json.loads(json.dumps(query))
    whole["relevant_moment"][0]["relevance"] = 3.0
    validate_corpus(read_tvr_ranking(write(tmp_path, "whole.json", json.dumps([whole]))))
    with pytest.raises(DataValidationError, match=r"relevance': expected an int 0-4, got 2\.5"):
        validate_corpus(corpus)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ('"3"', r"got '3' \(a string: TVR-Ranking's ndcg_iou\.py computes 2 \*\* relevance - 1\)"),
        ("true", r"got True \(a bool\)"),
        ("null", r"got None"),
        ("NaN", r"got nan \(a float\)"),
        ("Infinity", r"got inf \(a float\)"),
        ("4.5", r"got 4\.5 \(a float\)"),
        ("-1", r"got -1"),
        ("[2]", r"got \[2\]"),
    ],
)
def test_a_relevance_that_is_not_a_number_in_0_to_4_names_file_line_and_field(
    tmp_path, value, shown
):
    moment = json.dumps(ranking_moment(0, "v1", [1.0, 2.0], 0)).replace(
        '"relevance": 0', f'"relevance": {value}'
    )
    line = f'{{"query_id": 3, "query": "q", "relevant_moment": [{moment}]}}'
    good = json.dumps({"query_id": 2, "query": "p", "relevant_moment": []})
    path = write(tmp_path, "test.jsonl", good + "\n" + line + "\n")
    expected = (
        re.escape(f"{path}: line 2 (query_id=3): field 'relevant_moment[0].relevance': ")
        + r"expected a number in 0-4, "
        + shown
    )
    with pytest.raises(DataValidationError, match=expected):
        read_tvr_ranking(path)
    # the readme's single-pair form names the field without a prefix, and the item of a .json
    pair = json.loads(moment) | {"query_id": 3, "query": "q"}
    text = "[" + json.dumps(pair).replace('"relevance": 0', f'"relevance": {value}') + "]"
    path = write(tmp_path, "pairs.json", text)
    expected = re.escape(f"{path}: item 0 (query_id=3): field 'relevance': ")
    with pytest.raises(DataValidationError, match=expected):
        read_tvr_ranking(path)


# ----------------------------------------------------------------------------- metrics
def grounding_case():
    """Four queries whose R@K and mIoU are computed by hand in the tests below.

    q1: GT [10, 20]; top-1 [10, 20] -> IoU 1.
    q2: GT [0, 10]; ranked IoUs 1/3 ([5, 15]), 0.5 ([0, 5]), 0.7 ([0, 7]), 0, 0 (all five in R@5).
    q3: GT [0, 4]; no prediction -> misses, IoU 0.
    q4 (string qid): GT [2, 6]; one prediction [0, 4] -> IoU 2/6 = 1/3.
    """
    gt = [
        {"qid": 1, "duration": 30.0, "relevant_windows": [[10.0, 20.0]]},
        {"qid": 2, "duration": 30.0, "relevant_windows": [[0.0, 10.0]]},
        {"qid": 3, "duration": 30.0, "relevant_windows": [[0.0, 4.0]]},
        {"qid": "s1-d1_0", "duration": 10.0, "relevant_windows": [[2.0, 6.0]]},
    ]
    q2 = [[5, 15, 0.5], [0, 5, 0.9], [0, 7, 0.4], [20, 30, 0.3], [20, 25, 0.2], [1, 10, 0.1]]
    submission = [
        {"qid": 1, "pred_relevant_windows": [[10, 20, 0.9]]},
        {"qid": 2, "pred_relevant_windows": q2, "pred_saliency_scores": [0.0] * 15},
        {"qid": 3, "pred_relevant_windows": []},
        {"qid": "s1-d1_0", "pred_relevant_windows": [[0, 4, 0.5]]},
    ]
    return submission, gt


def test_grounding_recall_and_miou_by_hand():
    submission, gt = grounding_case()
    assert eval_grounding(submission, gt) == {
        "R1@0.3": 75.0,  # q1, q2 (1/3), q4 (1/3)
        "R1@0.5": 25.0,
        "R1@0.7": 25.0,
        "R5@0.3": 75.0,
        "R5@0.5": 50.0,  # q2 through [0, 5] (IoU exactly 0.5) and [0, 7]
        "R5@0.7": 50.0,  # q2 through [0, 7]: IoU exactly 0.7 >= 0.7 (lighthouse)
        "mIoU": 41.67,  # (1 + 1/3 + 0 + 1/3) / 4 = 5/12; the 6th window (IoU 0.9) never counts
        "n_queries": 4,
    }
    strict = eval_grounding(submission, gt, convention="2d-tan")  # IoU > t
    assert strict["R5@0.7"] == 25.0 and strict["R5@0.5"] == 50.0 and strict["R1@0.3"] == 75.0
    ranked = eval_grounding(submission, gt, rank_by_score=True)  # q2's top-1 becomes [0, 5]
    assert ranked["R1@0.5"] == 50.0 and ranked["mIoU"] == 45.83  # (1 + 0.5 + 0 + 1/3) / 4


def test_grounding_r1_is_lighthouse_r1_and_bad_input_is_refused():
    submission, gt = grounding_case()
    lines = [{k: v for k, v in s.items() if k != "pred_saliency_scores"} for s in submission]
    mr = eval_qvhighlights(lines, gt)["full"]["MR-R1"]
    ours = eval_grounding(submission, gt, iou_thresholds=(0.5, 0.7), ks=(1,))
    assert (ours["R1@0.5"], ours["R1@0.7"]) == (mr["0.5"], mr["0.7"])
    with pytest.raises(MetricInputError, match="lacks predictions for qids \\[3\\]"):
        eval_grounding([s for s in submission if s["qid"] != 3], gt)
    with pytest.raises(MetricInputError, match="line 0 .* has no 'pred_relevant_windows'"):
        eval_grounding([{"qid": 1, "pred_saliency_scores": [0.1]}], gt[:1])
    with pytest.raises(MetricInputError, match="st < ed"):
        eval_grounding([{"qid": 1, "pred_relevant_windows": [[5, 5, 0.1]]}], gt[:1])
    with pytest.raises(MetricInputError, match="convention must be one of"):
        eval_grounding(submission, gt, convention="tvr")
    with pytest.raises(MetricInputError, match="ks must be ints >= 1"):
        eval_grounding(submission, gt, ks=(0,))


def test_official_metrics_name_an_mr_only_record(tmp_path):
    from course_lib.errors import MetricInputError
    from course_lib.metrics import eval_qvhighlights

    record = {"qid": 3, "query": "a person opens a door", "vid": "AO8RW", "duration": 30.0,
              "relevant_windows": [[2.0, 8.0]], "dataset": "charades", "mr_only": True}  # fmt: skip
    prediction = {"qid": 3, "query": record["query"], "vid": "AO8RW",
                  "pred_relevant_windows": [[2.0, 8.0, 1.0]], "pred_saliency_scores": [0.0] * 15}  # fmt: skip
    with pytest.raises(MetricInputError, match="MR-only record of the charades release.*eval_grounding"):
        eval_qvhighlights([prediction], [record])
