"""Tests for course_lib.metrics: QVHighlights MR/HL, VCMR R@K, NDCG@K,IoU, submissions."""

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.errors import MetricInputError
from course_lib.metrics import (
    binary_ap,
    dcg,
    detection_ap,
    eval_qvhighlights,
    eval_vcmr,
    hl_hit_at_1,
    interpolated_ap,
    ndcg_iou,
    read_submission,
    top1_iou,
    validate_submission,
    vcmr_recall,
    write_submission,
)
from course_lib.metrics.qvhighlights import (
    IOU_THRESHOLDS,
    UNBOUNDED_LENGTH_BUCKETS,
    gt_saliency_matrix,
    rank_windows,
)

FIXTURES = Path(__file__).parent / "fixtures"
BRIEF_KEYS = [
    "MR-full-mAP",
    "MR-full-mAP@0.5",
    "MR-full-mAP@0.75",
    "MR-short-mAP",
    "MR-middle-mAP",
    "MR-long-mAP",
    "MR-full-R1@0.5",
    "MR-full-R1@0.7",
    "HL-min-VeryGood-mAP",
    "HL-min-VeryGood-Hit1",
]


def record(qid, windows, duration=60.0, ids=None, scores=None, vid=None):
    """A ground-truth moment record; saliency defaults to 'every covered clip scores 4'."""
    if ids is None:
        ids = sorted({c for st_, ed in windows for c in range(int(st_ // 2), math.ceil(ed / 2))})
    if scores is None:
        scores = [[4, 4, 4] for _ in ids]
    return {
        "qid": qid,
        "query": f"query {qid}",
        "vid": vid or f"v{qid}",
        "duration": duration,
        "relevant_windows": windows,
        "relevant_clip_ids": ids,
        "saliency_scores": scores,
    }


def prediction(rec, windows, saliency=None):
    n = int(rec["duration"] / 2)
    return {
        "qid": rec["qid"],
        "query": rec["query"],
        "vid": rec["vid"],
        "pred_relevant_windows": windows,
        "pred_saliency_scores": saliency if saliency is not None else [0.0] * n,
    }


# ============================================================================ hand-computed MR
def test_interpolated_ap_hand():
    # TP, FP, TP with 2 GT: precision 1, .5, .667; recall .5, .5, 1 -> .5*1 + .5*2/3
    assert interpolated_ap(np.array([1, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])) == pytest.approx(
        5 / 6
    )
    assert interpolated_ap(np.array([0.0, 0.5]), np.array([0.0, 1.0])) == pytest.approx(0.5)


def test_detection_ap_hand():
    gt = [[0, 10], [20, 30]]
    preds = [[0, 10, 0.9], [40, 50, 0.8], [20, 30, 0.7]]
    np.testing.assert_allclose(detection_ap(gt, preds), 5 / 6)
    # within the first 10 windows the listed order does not matter: they are ranked by score
    np.testing.assert_allclose(detection_ap(gt, preds[::-1]), 5 / 6)


def test_detection_ap_each_gt_matched_once():
    # the duplicate is a false positive, but after full recall: AP stays 1
    np.testing.assert_allclose(detection_ap([[0, 10]], [[0, 10, 0.9], [0, 10, 0.8]]), 1.0)
    # duplicate ranked first among two GT: TP, FP, TP -> 5/6
    np.testing.assert_allclose(
        detection_ap([[0, 10], [20, 30]], [[0, 10, 0.9], [0, 10, 0.8], [20, 30, 0.1]]), 5 / 6
    )


def test_detection_ap_threshold_dependence():
    # IoU 0.6: hit at 0.5..0.6, miss above
    ap = detection_ap([[0, 10]], [[0, 6, 1.0]])
    assert ap.tolist() == [1.0, 1.0, 1.0] + [0.0] * 7
    assert IOU_THRESHOLDS[2] == 0.6 and IOU_THRESHOLDS[5] == 0.75


def test_detection_ap_highest_iou_unmatched_gt():
    # pred 1 overlaps GT0 (IoU .5) and GT1 (IoU 1): it must take GT1, leaving GT0 to pred 2
    gt = [[0, 10], [5, 10]]
    preds = [[5, 10, 0.9], [0, 10, 0.8]]
    np.testing.assert_allclose(detection_ap(gt, preds, [0.5]), [1.0])
    # equal IoU 1/3 with both GT windows: the later GT window is taken first
    gt = [[0, 10], [10, 20]]
    preds = [[5, 15, 0.9], [0, 10, 0.8]]
    np.testing.assert_allclose(detection_ap(gt, preds, [0.3]), [1.0])


def test_detection_ap_top10_cut_and_empty():
    preds = [[50 + i, 51 + i, 1.0 - i / 100] for i in range(10)] + [[0, 10, 0.01]]
    np.testing.assert_allclose(detection_ap([[0, 10]], preds), 0.0)
    np.testing.assert_allclose(detection_ap([[0, 10]], preds, top_k=None), 1 / 11)
    np.testing.assert_allclose(detection_ap([[0, 10]], []), 0.0)


def test_detection_ap_keeps_the_first_ten_listed():
    # moment_detr compute_mr_ap cuts the list as given (first 10), then ranks those by score: the
    # best-scored window listed 11th never counts; rank_by_score=True ranks the whole list first
    preds = [[50 + i, 51 + i, 0.5] for i in range(10)] + [[0, 10, 0.9]]
    np.testing.assert_allclose(detection_ap([[0, 10]], preds), 0.0)
    np.testing.assert_allclose(detection_ap([[0, 10]], preds, rank_by_score=True), 1.0)
    # the kept ten are ranked by score, equal scores in list order
    ranked = rank_windows([[0, 1, 0.1], [2, 3, 0.9], [4, 5, 0.9], [6, 7, 0.95]], top_k=3)
    assert ranked[:, 0].tolist() == [2.0, 4.0, 0.0]
    ranked = rank_windows([[0, 1, 0.1], [2, 3, 0.9], [4, 5, 0.9], [6, 7, 0.95]], 3, True)
    assert ranked[:, 0].tolist() == [6.0, 2.0, 4.0]


def test_detection_ap_score_ties_keep_order():
    gt = [[0, 10]]
    # equal scores: the first listed is ranked first
    np.testing.assert_allclose(detection_ap(gt, [[0, 10, 0.5], [30, 40, 0.5]]), 1.0)
    np.testing.assert_allclose(detection_ap(gt, [[30, 40, 0.5], [0, 10, 0.5]]), 0.5)


def test_top1_iou():
    assert top1_iou([[0, 10], [20, 30]], [[22, 30, 0.2], [0, 10, 0.1]]) == pytest.approx(0.8)
    assert top1_iou([[0, 20]], [[0, 14, 1.0]]) == 0.7  # exact: counts at R1@0.7
    assert top1_iou([[0, 10]], []) == 0.0


def test_top1_iou_is_the_first_listed_window():
    # moment_detr compute_mr_r1 takes pred_relevant_windows[0], whatever the scores say
    gt, preds = [[0, 10], [20, 30]], [[0, 10, 0.1], [22, 30, 0.2]]
    assert top1_iou(gt, preds) == 1.0
    assert top1_iou(gt, preds, rank_by_score=True) == pytest.approx(0.8)
    # the first of equal best scores under the option
    assert top1_iou(gt, [[22, 30, 0.5], [0, 10, 0.5]], rank_by_score=True) == pytest.approx(0.8)


# ============================================================================ hand-computed HL
def test_binary_ap_hand():
    assert binary_ap([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.6]) == pytest.approx((1 + 2 / 3) / 2)
    assert binary_ap([0, 1, 0, 1], [0.9, 0.8, 0.7, 0.6]) == pytest.approx((1 / 2 + 1 / 2) / 2)
    # tied scores form one threshold: precision 1/2 at recall 1
    assert binary_ap([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    # ties: {a+, b-} tied on top, then c+ -> thresholds give (p=.5, r=.5), (p=2/3, r=1)
    assert binary_ap([1, 0, 1], [0.9, 0.9, 0.1]) == pytest.approx(2 / 3)
    assert binary_ap([0, 0, 0], [0.1, 0.2, 0.3]) == 0.0
    assert binary_ap([1, 1], [0.1, 0.2]) == 1.0


def test_hit_at_1_first_max_on_ties():
    gt = np.array([[0, 0, 0], [4, 0, 0], [0, 0, 1]])
    assert hl_hit_at_1(gt, [0.1, 0.9, 0.9], 4) == 1.0  # first of the tied maxima is clip 1
    assert hl_hit_at_1(gt, [0.9, 0.9, 0.1], 2) == 0.0
    assert hl_hit_at_1(gt, [0.0, 0.0, 1.0], 1) == 1.0
    # a list longer than the video: a top clip beyond the video is a miss (compute_hl_hit1)
    assert hl_hit_at_1(gt, [0.0, 0.9, 0.0, 1.0], 4) == 0.0
    assert hl_hit_at_1(gt, [0.0, 0.9], 4) == 1.0  # shorter list: its own argmax


def test_gt_saliency_matrix():
    rec = record(1, [[2, 6]], duration=10.0, scores=[[1, 2, 3], [4, 0, 1]])
    np.testing.assert_array_equal(
        gt_saliency_matrix(rec), [[0, 0, 0], [1, 2, 3], [4, 0, 1], [0, 0, 0], [0, 0, 0]]
    )


# ============================================================================ whole evaluation
def test_eval_keys_and_oracle():
    gt = [record(1, [[0, 6]]), record(2, [[10, 30]]), record(3, [[0, 60]], duration=60.0)]
    preds = []
    for r in gt:
        sal = np.zeros(int(r["duration"] / 2))
        sal[r["relevant_clip_ids"]] = 1.0
        preds.append(prediction(r, [[*w, 1.0] for w in r["relevant_windows"]], sal.tolist()))
    result = eval_qvhighlights(preds, gt)
    assert list(result)[0] == "brief"
    assert set(BRIEF_KEYS) <= set(result["brief"])
    assert all(v == 100.0 for v in result["brief"].values())
    assert result["n_queries"] == {"short": 1, "middle": 1, "long": 1, "full": 3}
    assert set(result["full"]["MR-mAP"]) == {str(t) for t in IOU_THRESHOLDS} | {"average"}


def test_eval_buckets_filter_gt_not_predictions():
    # GT windows of 4 s (short) and 40 s (long); predictions hit only the long one
    gt = [record(1, [[0, 4], [10, 50]], duration=60.0)]
    preds = [prediction(gt[0], [[10, 50, 0.9]])]
    res = eval_qvhighlights(preds, gt)["brief"]
    assert res["MR-long-mAP"] == 100.0
    assert res["MR-short-mAP"] == 0.0
    assert math.isnan(res["MR-middle-mAP"])  # no query in the bucket
    assert res["MR-full-mAP"] == 50.0  # one of two GT windows found at full precision
    # an oracle is not 100 in a bucket when a window of another bucket outranks it
    oracle_preds = [prediction(gt[0], [[0, 4, 0.9], [10, 50, 0.8]])]
    res = eval_qvhighlights(oracle_preds, gt)["brief"]
    assert res["MR-full-mAP"] == 100.0 and res["MR-short-mAP"] == 100.0
    assert res["MR-long-mAP"] == 50.0  # [0, 4] ranks first and is a false positive there


def test_long_bucket_ends_at_150_seconds():
    # moment_detr length_ranges: long = (30, 150]; a 160-s window counts in full only
    gt = [record(1, [[0, 160]], duration=200.0), record(2, [[0, 40]], duration=60.0)]
    preds = [prediction(r, [[*r["relevant_windows"][0], 1.0]]) for r in gt]
    res = eval_qvhighlights(preds, gt)
    assert res["n_queries"] == {"short": 0, "middle": 0, "long": 1, "full": 2}
    assert res["brief"]["MR-long-mAP"] == 100.0 and res["brief"]["MR-full-mAP"] == 100.0
    unbounded = eval_qvhighlights(preds, gt, length_buckets=UNBOUNDED_LENGTH_BUCKETS)
    assert unbounded["n_queries"]["long"] == 2
    with pytest.raises(MetricInputError, match="length_buckets"):
        eval_qvhighlights(preds, gt, length_buckets={"long": (30.0, 150.0)})


def test_r1_uses_the_first_listed_window():
    gt = [record(1, [[20, 30]])]
    preds = [prediction(gt[0], [[0, 10, 0.1], [20, 30, 0.9]])]
    assert eval_qvhighlights(preds, gt)["brief"]["MR-full-R1@0.5"] == 0.0
    assert eval_qvhighlights(preds, gt, rank_by_score=True)["brief"]["MR-full-R1@0.5"] == 100.0
    # mAP ranks the kept windows by score either way
    assert eval_qvhighlights(preds, gt)["brief"]["MR-full-mAP"] == 100.0


def test_saliency_of_wrong_length_is_cut_or_padded_with_a_warning():
    # 5 clips; only clip 4 is positive. moment_detr compute_ap_from_tuple pads a short list with
    # zeros (clip 4 gets 0, ranked last: AP 1/5) and cuts a long one; Hit1 takes the list's argmax
    gt = [record(1, [[8, 10]], duration=10.0)]
    short = [{"qid": 1, "pred_saliency_scores": [0.1, 0.2, 0.3, 0.4]}]
    with pytest.warns(UserWarning, match=r"1 of 1 lines.*needs 5 scores.*got 4"):
        brief = eval_qvhighlights(short, gt)["brief"]
    assert brief["HL-min-Fair-mAP"] == 20.0 and brief["HL-min-Fair-Hit1"] == 0.0
    long = [{"qid": 1, "pred_saliency_scores": [0.0, 0.0, 0.0, 0.0, 0.5, 0.9]}]
    with pytest.warns(UserWarning, match="got 6"):
        brief = eval_qvhighlights(long, gt)["brief"]
    assert brief["HL-min-Fair-mAP"] == 100.0  # cut to 5 clips: clip 4 ranks first
    assert brief["HL-min-Fair-Hit1"] == 0.0  # the argmax is clip 5, beyond the video
    with pytest.raises(MetricInputError, match="needs 5 scores.*got 4"):
        eval_qvhighlights(short, gt, strict_saliency_length=True)
    with pytest.raises(MetricInputError, match="needs 5 scores"):
        validate_submission(short, gt, strict_saliency_length=True)


def test_saliency_of_right_length_gives_no_warning():
    preds, gt = _valid()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_submission(preds, gt)


def test_eval_no_predicted_windows_is_a_miss():
    gt = [record(1, [[0, 10]]), record(2, [[0, 10]])]
    preds = [prediction(gt[0], [[0, 10, 1.0]]), prediction(gt[1], [])]
    res = eval_qvhighlights(preds, gt)["brief"]
    assert res["MR-full-mAP"] == 50.0 and res["MR-full-R1@0.5"] == 50.0


def test_eval_empty_gt_windows_skipped_in_mr():
    gt = [record(1, [[0, 10]]), record(2, [], ids=[], scores=[])]
    preds = [prediction(gt[0], [[0, 10, 1.0]]), prediction(gt[1], [[0, 10, 1.0]])]
    res = eval_qvhighlights(preds, gt)
    assert res["brief"]["MR-full-mAP"] == 100.0 and res["n_queries"]["full"] == 1
    # HL counts the query: no positive clip -> AP 0, no hit
    assert res["brief"]["HL-min-Fair-Hit1"] == 50.0


def test_eval_gt_without_relevant_windows_key_is_skipped_in_mr():
    # test-split style ground truth: a record may carry no windows at all (not even the key)
    unlabelled = record(2, [], ids=[], scores=[])
    del unlabelled["relevant_windows"]
    gt = [record(1, [[0, 10]]), unlabelled]
    preds = [prediction(gt[0], [[0, 10, 1.0]]), prediction(gt[1], [[0, 10, 1.0]])]
    res = eval_qvhighlights(preds, gt)
    assert res["brief"]["MR-full-mAP"] == 100.0 and res["n_queries"]["full"] == 1


def test_eval_only_one_task():
    gt = [record(1, [[0, 10]])]
    mr_only = [{"qid": 1, "pred_relevant_windows": [[0, 10, 1.0]]}]
    assert set(eval_qvhighlights(mr_only, gt)["brief"]) == {
        k for k in BRIEF_KEYS if k.startswith("MR")
    }
    hl_only = [{"qid": 1, "pred_saliency_scores": [1.0] * 30}]
    assert all(k.startswith("HL") for k in eval_qvhighlights(hl_only, gt)["brief"])


# ============================================================================ malformed input
def _valid():
    gt = [record(1, [[0, 10]]), record(2, [[4, 8]])]
    return [prediction(r, [[0, 10, 0.5]]) for r in gt], gt


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p, g: p.pop(), r"lacks predictions for qids \[2\]"),
        (lambda p, g: g.pop(), r"not in the ground truth: \[2\]"),
        (lambda p, g: p[0].__setitem__("pred_relevant_windows", [[5, 5, 0.1]]), "qid 1.*st < ed"),
        (lambda p, g: p[0].__setitem__("pred_relevant_windows", [[6, 5, 0.1]]), "st < ed"),
        (
            lambda p, g: p[1].__setitem__("pred_relevant_windows", [[0, 5, float("nan")]]),
            "qid 2.*NaN score",
        ),
        (lambda p, g: p[0].__setitem__("pred_relevant_windows", [[0, 5]]), "list of 3 numbers"),
        (lambda p, g: p[0].__setitem__("pred_saliency_scores", []), "non-empty list"),
        (lambda p, g: p[0].__setitem__("pred_saliency_scores", [float("nan")] * 30), "finite"),
        (lambda p, g: p[1].pop("pred_saliency_scores"), "qid 2 lacks 'pred_saliency_scores'"),
        (lambda p, g: p.append(dict(p[0])), "qid 1 more than once"),
        (lambda p, g: p[0].__setitem__("vid", "other"), "vid 'other'"),
        (
            lambda p, g: g[0].__setitem__("relevant_clip_ids", [0, 1, 2, 3, 99]),
            "clip id 99 outside",
        ),
        (lambda p, g: g[0].__setitem__("saliency_scores", [[1, 2]] * 5), "3 scores in 0..4"),
        (lambda p, g: g[1].__setitem__("relevant_windows", [[8, 4]]), "ground truth.*st < ed"),
    ],
)
def test_malformed_input_raises(mutate, message):
    preds, gt = _valid()
    mutate(preds, gt)
    with pytest.raises(MetricInputError, match=message):
        eval_qvhighlights(preds, gt)


def test_validate_submission_accepts_valid_and_numpy():
    preds, gt = _valid()
    validate_submission(preds, gt)
    as_lists = eval_qvhighlights(preds, gt)
    preds[0]["pred_saliency_scores"] = np.zeros(30, dtype=np.float32)
    preds[0]["pred_relevant_windows"] = np.array([[0.0, 10.0, 0.5]])
    assert json.dumps(eval_qvhighlights(preds, gt)) == json.dumps(as_lists)  # NaN-safe
    preds[0]["pred_saliency_scores"] = np.zeros((30, 1))
    with pytest.raises(MetricInputError, match="got shape"):
        validate_submission(preds, gt)


# ============================================================================ files
def test_write_read_submission_roundtrip(tmp_path):
    preds, _ = _valid()
    preds[0]["pred_saliency_scores"] = np.linspace(0, 1, 30, dtype=np.float32)  # numpy is converted
    path = tmp_path / "sub" / "preds.jsonl"
    write_submission(path, preds)
    back = read_submission(path)
    assert len(back) == 2 and back[1] == preds[1]
    assert back[0]["pred_saliency_scores"] == pytest.approx(
        np.linspace(0, 1, 30).tolist(), abs=1e-6
    )
    assert [p.name for p in path.parent.iterdir()] == ["preds.jsonl"]  # no temporary file left


def test_write_submission_sorts_windows_by_score_for_the_official_script(tmp_path):
    # the official script (and eval_qvhighlights by default) reads windows in list order (top-10
    # cut, top-1 for R1), so the file is written in score order: its order is the ranking
    gt = [record(1, [[20, 30]])]
    unsorted = [[0, 10, 0.1], [20, 30, 0.9], [40, 50, 0.5], [44, 50, 0.5]]
    preds = [prediction(gt[0], unsorted)]
    path = tmp_path / "preds.jsonl"
    write_submission(path, preds)
    back = read_submission(path)
    assert back[0]["pred_relevant_windows"] == [
        [20, 30, 0.9],
        [40, 50, 0.5],
        [44, 50, 0.5],
        [0, 10, 0.1],
    ]
    assert preds[0]["pred_relevant_windows"] == unsorted  # the caller's list is not reordered
    # the written file scores like the unsorted list ranked by score (the option) ...
    file_brief = json.dumps(eval_qvhighlights(back, gt)["brief"])  # NaN-safe
    assert file_brief == json.dumps(eval_qvhighlights(preds, gt, rank_by_score=True)["brief"])
    # ... and unlike the unsorted list read in its own order, whose first window misses
    assert eval_qvhighlights(preds, gt)["brief"]["MR-full-R1@0.5"] == 0.0
    assert eval_qvhighlights(back, gt)["brief"]["MR-full-R1@0.5"] == 100.0


def test_write_submission_nan_keeps_old_file(tmp_path):
    path = tmp_path / "preds.jsonl"
    write_submission(path, [{"qid": 1, "pred_relevant_windows": [[0, 1, 0.5]]}])
    before = path.read_text()
    with pytest.raises(ValueError):
        write_submission(path, [{"qid": 1, "pred_relevant_windows": [[0, 1, float("nan")]]}])
    assert path.read_text() == before


def test_read_submission_names_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"qid": 1}\n{oops\n')
    with pytest.raises(MetricInputError, match="line 2"):
        read_submission(path)


# ============================================================================ golden fixture
def slow_iou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)


def slow_query_ap(gt_windows, pred_windows, thr):
    """Plain-python detection AP: the first 10 listed ranked by score, greedy matching, VOC
    envelope by explicit max over the tail."""
    ranked = sorted(pred_windows[:10], key=lambda w: -w[2])
    used, hits = set(), []
    for p in ranked:
        best, best_iou = None, -1.0
        for j, g in enumerate(gt_windows):
            iou = slow_iou(p, g)
            if j not in used and iou >= thr and iou >= best_iou:
                best, best_iou = j, iou
        if best is not None:
            used.add(best)
        hits.append(best is not None)
    precisions, recalls, tp = [], [], 0
    for i, hit in enumerate(hits):
        tp += hit
        precisions.append(tp / (i + 1))
        recalls.append(tp / len(gt_windows))
    ap, prev_recall = 0.0, 0.0
    for i in range(len(hits)):
        if recalls[i] != prev_recall:
            ap += (recalls[i] - prev_recall) * max(precisions[i:])
            prev_recall = recalls[i]
    return ap


def slow_ranking_ap(labels, scores):
    """Plain-python HL AP: thresholds at distinct scores; mean best precision per recall level."""
    if len(set(labels)) == 1:
        return float(labels[0])
    points = []  # (recall, precision) at each distinct score threshold
    for s in sorted(set(scores), reverse=True):
        chosen = [lab for lab, sc in zip(labels, scores) if sc >= s]
        points.append((sum(chosen) / sum(labels), sum(chosen) / len(chosen)))
    levels = sorted({r for r, _ in points if r > 0})
    return sum(max(p for r, p in points if r >= level) for level in levels) / len(levels)


def slow_eval(preds, gts):
    pct = lambda x: float(f"{100 * x:.2f}")  # noqa: E731
    pred_by_qid = {p["qid"]: p for p in preds}
    out = {}
    for name, lo, hi in [
        ("full", -1, 1e9),
        ("short", 0, 10),
        ("middle", 10, 30),
        ("long", 30, 150),
    ]:
        per_thr = {t: [] for t in IOU_THRESHOLDS}
        r1 = {0.5: [], 0.7: []}
        for g in gts:
            windows = [w for w in g["relevant_windows"] if lo < w[1] - w[0] <= hi]
            if not windows:
                continue
            pw = pred_by_qid[g["qid"]]["pred_relevant_windows"]
            for t in IOU_THRESHOLDS:
                per_thr[t].append(slow_query_ap(windows, pw, t))
            top = pw[0]  # the first listed window
            best = max(slow_iou(top, w) for w in windows)
            for t in r1:
                r1[t].append(best >= t)
        means = [sum(v) / len(v) for v in per_thr.values()]
        out[f"MR-{name}-mAP"] = pct(sum(means) / len(means))
        if name == "full":
            out["MR-full-mAP@0.5"], out["MR-full-mAP@0.75"] = pct(means[0]), pct(means[5])
            out["MR-full-R1@0.5"] = pct(sum(r1[0.5]) / len(r1[0.5]))
            out["MR-full-R1@0.7"] = pct(sum(r1[0.7]) / len(r1[0.7]))
    for level, min_score in [("Fair", 2), ("Good", 3), ("VeryGood", 4)]:
        aps, hits = [], []
        for g in gts:
            n = int(g["duration"] / 2)
            table = [[0, 0, 0] for _ in range(n)]
            for cid, triple in zip(g["relevant_clip_ids"], g["saliency_scores"]):
                table[cid] = triple
            sal = pred_by_qid[g["qid"]]["pred_saliency_scores"]
            top = sal.index(max(sal))
            hits.append(any(s >= min_score for s in table[top]))
            for a in range(3):
                aps.append(slow_ranking_ap([int(row[a] >= min_score) for row in table], sal))
        out[f"HL-min-{level}-mAP"] = pct(sum(aps) / len(aps))
        out[f"HL-min-{level}-Hit1"] = pct(sum(hits) / len(hits))
    return out


# Output of moment_detr's standalone_eval (eval_submission) on the committed fixture.
OFFICIAL_GOLDEN_BRIEF = {
    "MR-full-R1@0.5": 66.67,
    "MR-full-R1@0.7": 66.67,
    "MR-full-mAP": 62.69,
    "MR-full-mAP@0.5": 74.63,
    "MR-full-mAP@0.75": 64.91,
    "MR-long-mAP": 90.0,
    "MR-middle-mAP": 68.06,
    "MR-short-mAP": 20.67,
    "HL-min-Fair-mAP": 30.13,
    "HL-min-Fair-Hit1": 50.0,
    "HL-min-Good-mAP": 17.72,
    "HL-min-Good-Hit1": 33.33,
    "HL-min-VeryGood-mAP": 9.48,
    "HL-min-VeryGood-Hit1": 16.67,
}


def test_golden_fixture():
    gts = read_submission(FIXTURES / "qvh_golden_gt.jsonl")
    preds = read_submission(FIXTURES / "qvh_golden_pred.jsonl")
    assert len(gts) == 6
    result = eval_qvhighlights(preds, gts)
    assert dict(result["brief"]) == slow_eval(preds, gts)
    assert dict(result["brief"]) == OFFICIAL_GOLDEN_BRIEF
    assert result["n_queries"] == {"short": 3, "middle": 3, "long": 2, "full": 6}


def test_golden_fixture_is_well_formed():
    # the fixture exercises what it claims to: multi-window queries, >10 predictions, ties
    gts = read_submission(FIXTURES / "qvh_golden_gt.jsonl")
    preds = read_submission(FIXTURES / "qvh_golden_pred.jsonl")
    assert max(len(g["relevant_windows"]) for g in gts) >= 3
    assert max(len(p["pred_relevant_windows"]) for p in preds) > 10
    assert any(len(set(p["pred_saliency_scores"])) == 1 for p in preds)
    assert any(
        len({w[2] for w in p["pred_relevant_windows"]}) < len(p["pred_relevant_windows"])
        for p in preds
    )
    validate_submission(preds, gts)


MOMENT_DETR_DIR = os.environ.get("MOMENT_DETR_DIR")


@pytest.mark.skipif(
    not MOMENT_DETR_DIR, reason="set MOMENT_DETR_DIR to a jayleicn/moment_detr checkout"
)
def test_official_sample_predictions_reproduce_the_official_metrics():
    """moment_detr's own sample file (13 short saliency lists) scores exactly as its script does.

    Needs a checkout of jayleicn/moment_detr: ``standalone_eval/sample_val_preds.jsonl``, its
    metrics ``standalone_eval/sample_val_preds_metrics_raw.json`` and
    ``data/highlight_val_release.jsonl``.
    """
    root = Path(MOMENT_DETR_DIR)
    preds = read_submission(root / "standalone_eval" / "sample_val_preds.jsonl")
    gts = read_submission(root / "data" / "highlight_val_release.jsonl")
    official = json.loads(
        (root / "standalone_eval" / "sample_val_preds_metrics_raw.json").read_text()
    )
    with pytest.warns(UserWarning, match="13 of 1550 lines"):
        ours = eval_qvhighlights(preds, gts)
    assert dict(ours["brief"]) == official["brief"]
    for bucket in ("full", "short", "middle", "long"):
        assert ours[bucket] == official[bucket]


# ============================================================================ property tests
@st.composite
def qvh_ground_truth(draw):
    """1-4 queries; annotators agree per clip; every video has a score-4 clip and a score-0 clip."""
    records = []
    for qid in range(draw(st.integers(1, 4))):
        n_clips = draw(st.integers(6, 40))
        n_win = draw(st.integers(1, 3))
        bounds = sorted(
            draw(
                st.lists(
                    st.integers(0, n_clips - 1), min_size=2 * n_win, max_size=2 * n_win, unique=True
                )
            )
        )
        windows = [[2 * bounds[2 * i], 2 * bounds[2 * i + 1]] for i in range(n_win)]
        ids = sorted({c for a, b in windows for c in range(a // 2, b // 2)})
        levels = draw(st.lists(st.integers(1, 4), min_size=len(ids), max_size=len(ids)))
        levels[0] = 4
        records.append(
            record(qid, windows, duration=2.0 * n_clips, ids=ids, scores=[[v] * 3 for v in levels])
        )
    return records


def oracle(gts):
    preds = []
    for g in gts:
        sal = gt_saliency_matrix(g)[:, 0]
        wins = [[*w, 1.0 - i / 10] for i, w in enumerate(g["relevant_windows"])]
        preds.append(prediction(g, wins, sal.tolist()))
    return preds


@settings(max_examples=30, deadline=None)
@given(qvh_ground_truth())
def test_oracle_scores_100_and_corruptions_score_lower(gts):
    brief = eval_qvhighlights(oracle(gts), gts)["brief"]
    buckets = {"MR-short-mAP", "MR-middle-mAP", "MR-long-mAP"}
    assert all(v == 100.0 for k, v in brief.items() if k not in buckets)
    # predictions are not filtered by bucket (official rule): an oracle window of another
    # bucket ranked first is a false positive there, so buckets reach 100 only without one
    for key in buckets:
        assert math.isnan(brief[key]) or 0.0 < brief[key] <= 100.0
    if all(len(g["relevant_windows"]) == 1 for g in gts):
        assert all(brief[k] == 100.0 for k in buckets if not math.isnan(brief[k]))
    # windows shifted off the moments and saliency reversed: strictly worse
    bad = oracle(gts)
    for p, g in zip(bad, gts):
        p["pred_relevant_windows"] = [
            [w[0] + g["duration"], w[1] + g["duration"], w[2]] for w in p["pred_relevant_windows"]
        ]
        p["pred_saliency_scores"] = [-s for s in p["pred_saliency_scores"]]
    worse = eval_qvhighlights(bad, gts)["brief"]
    assert worse["MR-full-mAP"] == 0.0 and worse["MR-full-R1@0.5"] == 0.0
    assert worse["HL-min-Fair-Hit1"] == 0.0 and worse["HL-min-Fair-mAP"] < 100.0


@settings(max_examples=30, deadline=None)
@given(qvh_ground_truth(), st.integers(0, 2**16))
def test_random_predictions_never_beat_oracle(gts, seed):
    rng = np.random.default_rng(seed)
    preds = []
    for g in gts:
        n = int(g["duration"] / 2)
        starts = rng.integers(0, n, 5)
        wins = [[2.0 * s, 2.0 * (s + rng.integers(1, 6)), float(rng.random())] for s in starts]
        preds.append(prediction(g, wins, rng.random(n).tolist()))
    brief = eval_qvhighlights(preds, gts)["brief"]
    assert all(0.0 <= v <= 100.0 for v in brief.values() if not math.isnan(v))


# ============================================================================ VCMR
def corpus_query(qid, moments):
    return {
        "qid": qid,
        "query": f"q{qid}",
        "relevant_moments": [
            {"vid": v, "duration": 60.0, "window": w, "relevance": r} for v, w, r in moments
        ],
    }


def vcmr_case():
    queries = [
        corpus_query(1, [("a", [0, 10], 3), ("b", [20, 40], 1)]),
        corpus_query(2, [("c", [10, 20], 2)]),
        corpus_query(3, [("a", [0, 10], 0)]),  # no relevant moment: skipped
    ]
    preds = {
        1: [["x", 0, 10, 0.9], ["b", 20, 34, 0.8], ["a", 0, 10, 0.1]],  # b: IoU exactly 0.7
        2: [["c", 10, 20, 0.5]],
        3: [],
    }
    return preds, queries


def test_vcmr_hand():
    preds, queries = vcmr_case()
    res = eval_vcmr(preds, queries)
    assert res["VCMR"]["0.5-r1"] == 50.0 and res["VCMR"]["0.5-r5"] == 100.0
    assert res["VCMR"]["0.7-r1"] == 50.0 and res["VCMR"]["0.7-r100"] == 100.0
    assert res["VCMR"]["n_queries"] == 2
    # SVMR drops video x: top-1 of q1 is b, IoU exactly 0.7 counts at 0.7
    assert res["SVMR"]["0.5-r1"] == 100.0 and res["SVMR"]["0.7-r1"] == 100.0
    assert vcmr_recall(preds, queries, task="SVMR", float32_iou=False)["0.7-r1"] == 100.0
    assert res["VR"] == {"r1": 50.0, "r5": 100.0, "r10": 100.0, "r100": 100.0, "n_queries": 2}


def test_vcmr_float32_arithmetic():
    # TVR casts times to float32: 0.69999999 s becomes 0.7 s, so IoU reaches 0.7 only in float32
    queries = [corpus_query(1, [("a", [0, 1], 1)])]
    preds = {1: [["a", 0, 0.69999999, 1.0]]}
    assert vcmr_recall(preds, queries)["0.7-r1"] == 100.0
    assert vcmr_recall(preds, queries, float32_iou=False)["0.7-r1"] == 0.0


def test_vcmr_takes_the_list_order():
    # TVRetrieval eval_by_task_type never sorts: the first listed prediction is the top-1
    queries = [corpus_query(1, [("a", [0, 10], 1)])]
    preds = {1: [["b", 0, 10, 0.1], ["a", 0, 10, 0.9]]}
    assert vcmr_recall(preds, queries)["0.5-r1"] == 0.0
    assert vcmr_recall(preds, queries)["0.5-r5"] == 100.0
    # the top-100 cut is in list order too: the 101st line never counts
    late = {1: [["b", 0, 10, 0.9]] * 100 + [["a", 0, 10, 1.0]]}
    assert vcmr_recall(late, queries)["0.5-r100"] == 0.0


def test_vcmr_rank_by_score_option_with_stable_ties():
    queries = [corpus_query(1, [("a", [0, 10], 1)])]
    preds = {1: [["b", 0, 10, 0.1], ["a", 0, 10, 0.9]]}
    assert vcmr_recall(preds, queries, rank_by_score=True)["0.5-r1"] == 100.0
    ties = {1: [["b", 0, 10, 0.5], ["a", 0, 10, 0.5]]}
    assert vcmr_recall(ties, queries, rank_by_score=True)["0.5-r1"] == 0.0
    late = {1: [["b", 0, 10, 0.9]] * 100 + [["a", 0, 10, 1.0]]}
    assert vcmr_recall(late, queries, rank_by_score=True)["0.5-r1"] == 100.0


def test_vr_counts_list_positions_and_accepts_official_lines():
    # official VR lines are [vid, 0, 0, score]; K counts positions, so a repeated video takes two
    queries = [corpus_query(1, [("b", [0, 10], 1)])]
    vr_lines = {1: [["a", 0, 0, 0.9], ["a", 0, 0, 0.8], ["b", 0, 0, 0.7]]}
    res = vcmr_recall(vr_lines, queries, task="VR", ks=(1, 2, 3))
    assert (res["r1"], res["r2"], res["r3"]) == (0.0, 0.0, 100.0)
    distinct = vcmr_recall(vr_lines, queries, task="VR", ks=(1, 2), distinct_videos=True)
    assert (distinct["r1"], distinct["r2"]) == (0.0, 100.0)
    # eval_vcmr scores VR on the separate video lines when given
    moments = {1: [["b", 0, 10, 1.0]]}
    both = eval_vcmr(moments, queries, vr_predictions=vr_lines)
    assert both["VCMR"]["0.5-r1"] == 100.0 and both["VR"]["r1"] == 0.0 and both["VR"]["r5"] == 100.0
    # moment lines still need st < ed
    with pytest.raises(MetricInputError, match="st < ed"):
        vcmr_recall(vr_lines, queries, task="VCMR")


@pytest.mark.parametrize(
    "preds, message",
    [
        ({}, r"lack qids \[1\]"),
        ({1: [], 7: []}, r"not in the ground truth: \[7\]"),
        ({1: [["a", 5, 5, 0.1]]}, "qid 1: prediction 0 must have st < ed"),
        ({1: [["a", 0, 5, float("nan")]]}, "NaN score"),
        ({1: [["a", 0, 5]]}, r"\[vid, st, ed, score\]"),
    ],
)
def test_vcmr_malformed(preds, message):
    queries = [corpus_query(1, [("a", [0, 10], 1)])]
    with pytest.raises(MetricInputError, match=message):
        vcmr_recall(preds, queries)
    with pytest.raises(MetricInputError, match=message):
        ndcg_iou(preds, queries)


def test_vcmr_all_queries_without_gt():
    with pytest.raises(MetricInputError, match="no query has a relevant moment"):
        vcmr_recall({1: []}, [corpus_query(1, [("a", [0, 10], 0)])])


# ============================================================================ NDCG
def test_dcg_hand():
    assert dcg([3, 2]) == pytest.approx(7 + 3 / math.log2(3))
    assert dcg([]) == 0.0


def test_ndcg_hand():
    queries = [corpus_query(1, [("a", [0, 10], 3), ("b", [20, 30], 1), ("a", [40, 50], 2)])]
    preds = {
        1: [
            ["a", 40, 50, 0.9],
            ["a", 0, 10, 0.8],
            ["b", 0, 5, 0.7],
            ["b", 20, 30, 0.6],
            ["a", 0, 10, 0.5],
        ]
    }
    res = ndcg_iou(preds, queries)
    # gains 2, 3, 0, 1, 0 (the second [0, 10] finds its GT already used)
    expected = (3 + 7 / math.log2(3) + 1 / math.log2(5)) / (7 + 3 / math.log2(3) + 1 / math.log2(4))
    assert res["NDCG@10-IoU0.5"] == round(100 * expected, 2)
    assert res["NDCG@40-IoU0.7"] == res["NDCG@10-IoU0.5"] and res["n_queries"] == 1


def test_ndcg_iou_above_threshold_vs_spr():
    # TVR-Ranking ndcg_iou.py: IoU > t; SPR rvmr.py (the papers' IoU >= mu): IoU >= t
    queries = [corpus_query(1, [("a", [0, 10], 2)])]
    preds = {1: [["a", 0, 5, 0.9]]}  # IoU exactly 0.5
    assert ndcg_iou(preds, queries)["NDCG@10-IoU0.5"] == 0.0
    assert ndcg_iou(preds, queries)["NDCG@10-IoU0.3"] == 100.0
    assert ndcg_iou(preds, queries, convention="spr")["NDCG@10-IoU0.5"] == 100.0
    with pytest.raises(MetricInputError, match="convention"):
        ndcg_iou(preds, queries, convention="paper")


def test_ndcg_relevance_zero_moments_can_be_used_up():
    # GT sorted by relevance: a[0, 8] (3), a[0, 10] (0). The first prediction overlaps the
    # relevance-0 moment best (IoU 1 vs 0.8): TVR-Ranking gives it 0 and uses that moment up, the
    # second prediction earns 3 -> NDCG = (7 / log2 3) / 7. SPR drops relevance-0 moments: the
    # first prediction earns 3 -> 100.
    queries = [corpus_query(1, [("a", [0, 10], 0), ("a", [0, 8], 3)])]
    preds = {1: [["a", 0, 10, 0.9], ["a", 0, 8, 0.8]]}
    assert ndcg_iou(preds, queries)["NDCG@10-IoU0.5"] == round(100 / math.log2(3), 2)
    assert ndcg_iou(preds, queries, convention="spr")["NDCG@10-IoU0.5"] == 100.0


def test_ndcg_queries_without_relevant_moment_count_zero():
    # TVR-Ranking averages over every query (IDCG 0 -> NDCG 0); SPR skips such queries
    queries = [corpus_query(1, [("a", [0, 10], 2)]), corpus_query(2, [("b", [0, 10], 0)])]
    preds = {1: [["a", 0, 10, 0.9]], 2: [["b", 0, 10, 0.9]]}
    res = ndcg_iou(preds, queries)
    assert res["NDCG@10-IoU0.5"] == 50.0 and res["n_queries"] == 2
    spr = ndcg_iou(preds, queries, convention="spr")
    assert spr["NDCG@10-IoU0.5"] == 100.0 and spr["n_queries"] == 1
    with pytest.raises(MetricInputError, match="no query to average"):
        ndcg_iou({2: []}, [queries[1]], convention="spr")


def test_ndcg_takes_the_list_order():
    queries = [corpus_query(1, [("a", [0, 10], 3), ("b", [0, 10], 1)])]
    preds = {1: [["b", 0, 10, 0.1], ["a", 0, 10, 0.9]]}  # listed worst first
    ideal = 7 + 1 / math.log2(3)
    listed = (1 + 7 / math.log2(3)) / ideal
    assert ndcg_iou(preds, queries)["NDCG@10-IoU0.5"] == round(100 * listed, 2)
    assert ndcg_iou(preds, queries, rank_by_score=True)["NDCG@10-IoU0.5"] == 100.0


def test_ndcg_idcg_uses_top_k_relevances():
    # 12 relevant moments; a perfect top-10 still scores 100 at K=10
    moments = [("a", [20 * i, 20 * i + 10], 4 if i < 10 else 1) for i in range(12)]
    queries = [corpus_query(1, moments)]
    preds = {1: [[v, *w, 1 - i / 100] for i, (v, w, _) in enumerate(moments[:10])]}
    res = ndcg_iou(preds, queries)
    assert res["NDCG@10-IoU0.7"] == 100.0 and res["NDCG@20-IoU0.7"] < 100.0


@st.composite
def corpus_queries(draw):
    queries = []
    for qid in range(draw(st.integers(1, 4))):
        n = draw(st.integers(1, 6))
        slots = draw(st.lists(st.integers(0, 20), min_size=n, max_size=n, unique=True))
        rels = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
        vids = draw(st.lists(st.sampled_from("abc"), min_size=n, max_size=n))
        queries.append(
            corpus_query(qid, [(v, [10 * s, 10 * s + 8], r) for v, s, r in zip(vids, slots, rels)])
        )
    return queries


@settings(max_examples=30, deadline=None)
@given(corpus_queries())
def test_corpus_oracle_100_and_reversed_lower(queries):
    oracle_preds = {}
    for q in queries:
        moments = sorted(q["relevant_moments"], key=lambda m: -m["relevance"])
        oracle_preds[q["qid"]] = [
            [m["vid"], *m["window"], 1.0 - i / 100] for i, m in enumerate(moments)
        ]
    for task, values in eval_vcmr(oracle_preds, queries).items():
        assert all(v == 100.0 for k, v in values.items() if k != "n_queries"), task
    assert all(v == 100.0 for k, v in ndcg_iou(oracle_preds, queries).items() if k != "n_queries")
    # reversing the ranking (the list order) cannot help, and hurts where relevances differ
    reversed_preds = {k: v[::-1] for k, v in oracle_preds.items()}
    rev = ndcg_iou(reversed_preds, queries)["NDCG@10-IoU0.5"]
    graded = any(len({m["relevance"] for m in q["relevant_moments"]}) > 1 for q in queries)
    assert rev < 100.0 if graded else rev == 100.0


def test_fixture_files_are_jsonl():
    for name in ("qvh_golden_gt.jsonl", "qvh_golden_pred.jsonl"):
        lines = (FIXTURES / name).read_text().splitlines()
        assert len(lines) == 6 and all(isinstance(json.loads(line), dict) for line in lines)
