"""Tests for course_lib.baseline: the training-free sliding-window baseline."""

import numpy as np
import pytest

from course_lib.baseline import (
    baseline_submission,
    clip_similarities,
    predict_moments,
    sliding_window_scores,
)
from course_lib.errors import DataValidationError
from course_lib.metrics import eval_qvhighlights, validate_submission
from course_lib.spans import temporal_iou


def normalise(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def planted_video(rng, n_clips=40, dim=32, start=10, length=8, strength=2.0):
    """Random clip features with the query direction planted in clips start .. start+length-1."""
    query = normalise(rng.normal(size=dim))
    feats = rng.normal(size=(n_clips, dim))
    feats[start : start + length] += strength * np.sqrt(dim) * query
    return normalise(feats).astype(np.float32), query.astype(np.float32)


def test_sliding_window_scores_hand():
    sims = np.array([0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(
        sliding_window_scores(sims, (2,), "none"), [[0, 4, 0.5], [2, 6, 1.5], [4, 8, 2.5]]
    )
    np.testing.assert_allclose(sliding_window_scores(sims, (2,), "video")[:, 2], [-1, 0, 1])
    # inside minus outside: [0, 1] vs [2, 3] -> 0.5 - 2.5; [1, 2] vs [0, 3] -> 0; [2, 3] vs [0, 1] -> 2
    np.testing.assert_allclose(sliding_window_scores(sims, (2,))[:, 2], [-2, 0, 2])
    rows = sliding_window_scores(sims, (2, 9), "none")
    np.testing.assert_allclose(rows[-1], [0, 8, 1.5])  # too long -> one whole-video window
    assert sliding_window_scores(sims, (9,))[0, 2] == 0.0  # whole video: no outside, score 0
    rows = sliding_window_scores(np.array([1.0, 1.0, 1.0]), (2,), duration=5.0)
    assert rows[-1, 1] == 5.0  # clipped to the video end
    assert sliding_window_scores(np.zeros(0)).shape == (0, 3)
    with pytest.raises(ValueError, match="contrast"):
        sliding_window_scores(sims, (2,), "median")


def test_clip_similarities_are_cosines():
    feats = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    np.testing.assert_allclose(clip_similarities(feats, np.array([1.0, 0.0])), [1, 0, np.sqrt(0.5)])
    with pytest.raises(DataValidationError, match="do not fit"):
        clip_similarities(feats, np.ones(3))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("length", [6, 8, 12])
def test_finds_planted_window(seed, length):
    rng = np.random.default_rng(seed)
    start = int(rng.integers(0, 40 - length))
    feats, query = planted_video(rng, start=start, length=length)
    pred = predict_moments(feats, query, duration=80.0)
    top = np.array(pred["pred_relevant_windows"][0][:2])
    assert temporal_iou(top[None], np.array([[2.0 * start, 2.0 * (start + length)]]))[0, 0] >= 0.6
    sal = np.array(pred["pred_saliency_scores"])
    assert len(sal) == 40
    assert set(np.argsort(-sal)[:length]) == set(range(start, start + length))


@pytest.mark.parametrize("contrast", ["none", "video"])
def test_mean_pooling_length_bias(contrast):
    # without the outside contrast the shortest window on the peak wins
    rng = np.random.default_rng(0)
    feats, query = planted_video(rng, start=10, length=8)
    top = predict_moments(feats, query, duration=80.0, contrast=contrast)["pred_relevant_windows"][
        0
    ]
    assert top[1] - top[0] == 4.0 and 20.0 <= top[0] and top[1] <= 36.0


def test_prediction_format_nms_and_length_fix():
    rng = np.random.default_rng(0)
    feats, query = planted_video(rng)
    pred = predict_moments(feats, query, duration=84.0, max_windows=5, nms_threshold=0.3)
    windows = np.array(pred["pred_relevant_windows"])
    assert windows.shape == (5, 3)
    assert np.all(np.diff(windows[:, 2]) <= 0)  # sorted by score
    iou = temporal_iou(windows[:, :2], windows[:, :2])
    assert np.all(iou[~np.eye(5, dtype=bool)] <= 0.3)  # NMS kept only weakly overlapping windows
    assert len(pred["pred_saliency_scores"]) == 42  # padded to int(84 / 2) clips
    assert len(predict_moments(feats, query, duration=60.0)["pred_saliency_scores"]) == 30
    assert np.all(windows[:, 1] <= 84.0)
    with pytest.raises(DataValidationError, match="shorter than one clip"):
        predict_moments(feats, query, duration=1.0)


def test_subtracting_the_video_mean_shifts_scores_only():
    rng = np.random.default_rng(1)
    feats, query = planted_video(rng)
    a = predict_moments(feats, query, contrast="video")["pred_relevant_windows"]
    b = predict_moments(feats, query, contrast="none")["pred_relevant_windows"]
    assert [w[:2] for w in a] == [w[:2] for w in b]
    shift = {round(wb[2] - wa[2], 5) for wa, wb in zip(a, b)}
    assert len(shift) == 1


def test_baseline_submission_is_official_and_scores():
    rng = np.random.default_rng(2)
    records, videos, queries = [], {}, {}
    for qid in range(3):
        start = 5 + 7 * qid
        feats, query = planted_video(rng, start=start, strength=3.0)
        vid = f"vid{qid}"
        videos[vid], queries[qid] = feats, query
        window = [2.0 * start, 2.0 * (start + 8)]
        ids = list(range(start, start + 8))
        records.append(
            {
                "qid": qid,
                "query": f"q{qid}",
                "vid": vid,
                "duration": 80.0,
                "relevant_windows": [window],
                "relevant_clip_ids": ids,
                "saliency_scores": [[4, 4, 4]] * 8,
            }
        )
    sub = baseline_submission(records, videos.__getitem__, lambda rec: queries[rec["qid"]])
    validate_submission(sub, records)
    assert [s["qid"] for s in sub] == [0, 1, 2] and sub[0]["vid"] == "vid0"
    brief = eval_qvhighlights(sub, records)["brief"]
    assert brief["MR-full-R1@0.5"] == 100.0
    assert brief["HL-min-VeryGood-Hit1"] == 100.0 and brief["HL-min-VeryGood-mAP"] == 100.0
