"""Chapter 6 exercise checkers: each passes the reference and rejects plausible mistakes."""

import numpy as np
import pytest

from course_lib.checks import ExerciseError
from course_lib.corpus import recall_at_k
from course_lib.exercises import ch06
from course_lib.metrics import ndcg_iou


def stub(*args):
    raise NotImplementedError("exercise")


@pytest.mark.parametrize(
    "checker",
    [ch06.check_merge_into_proposals, ch06.check_ndcg_at_k_iou, ch06.check_smallest_nprobe],
)
def test_untouched_stub_is_not_attempted(checker, capsys):
    assert checker(stub) is None
    assert "[TODO]" in capsys.readouterr().out


# ----------------------------------------------------------------------------- 6.2 proposals
def merge_by_hand(vids, starts, ends, scores, segment_len, max_gap):
    """A correct learner answer written without the library."""
    out = []
    for vid in sorted(set(vids)):
        segs = sorted((s, e, sc) for v, s, e, sc in zip(vids, starts, ends, scores) if v == vid)
        run = list(segs[0])
        for s, e, sc in segs[1:]:
            if round((s - run[1]) / segment_len) <= max_gap:
                run[1], run[2] = e, max(run[2], sc)
            else:
                out.append((vid, run[0], run[1], run[2]))
                run = [s, e, sc]
        out.append((vid, run[0], run[1], run[2]))
    return sorted(out, key=lambda p: (-p[3], p[0], p[1]))


def merge_across_videos(vids, starts, ends, scores, segment_len, max_gap):
    """Sorts by time only: segments of different videos merge into one proposal."""
    return merge_by_hand(["one"] * len(vids), starts, ends, scores, segment_len, max_gap)


def merge_strict_gap(vids, starts, ends, scores, segment_len, max_gap):
    """Bridges holes shorter than max_gap only (< instead of <=)."""
    return merge_by_hand(vids, starts, ends, scores, segment_len, max_gap - 1)


def merge_mean_score(vids, starts, ends, scores, segment_len, max_gap):
    """Scores a proposal by the first member's score instead of the best one's."""
    props = merge_by_hand(vids, starts, ends, scores, segment_len, max_gap)
    firsts = {}
    for v, s, sc in sorted(zip(vids, starts, scores)):
        firsts.setdefault((v, s), sc)
    props = [(v, s, e, firsts[(v, s)]) for v, s, e, _ in props]
    return sorted(props, key=lambda p: (-p[3], p[0], p[1]))


def merge_unsorted(vids, starts, ends, scores, segment_len, max_gap):
    """Returns proposals by video and time, not best first."""
    return sorted(merge_by_hand(vids, starts, ends, scores, segment_len, max_gap))


def test_merge_checker_accepts_reference_and_hand_written(capsys):
    ch06.check_merge_into_proposals(ch06.merge_into_proposals)
    ch06.check_merge_into_proposals(merge_by_hand)
    assert capsys.readouterr().out.count("[OK]") == 2


@pytest.mark.parametrize(
    "wrong", [merge_across_videos, merge_strict_gap, merge_mean_score, merge_unsorted]
)
def test_merge_checker_rejects(wrong):
    with pytest.raises(ExerciseError, match="Exercise 6.2"):
        ch06.check_merge_into_proposals(wrong)


def test_merge_reference_on_a_known_case():
    # video a: segments 0, 1 and 3 (hole of one segment); video b: segment 2
    got = ch06.merge_into_proposals(
        ["a", "b", "a", "a"], [0.0, 8.0, 4.0, 12.0], [4.0, 12.0, 8.0, 16.0], [0.9, 0.8, 0.2, 0.95],
        4.0, 1,
    )  # fmt: skip
    assert got == [("a", 0.0, 16.0, 0.95), ("b", 8.0, 12.0, 0.8)]
    got0 = ch06.merge_into_proposals(["a", "a", "a"], [0.0, 4.0, 12.0], [4.0, 8.0, 16.0],
                                     [0.9, 0.2, 0.95], 4.0, 0)  # fmt: skip
    assert got0 == [("a", 12.0, 16.0, 0.95), ("a", 0.0, 8.0, 0.9)]


# ----------------------------------------------------------------------------- 6.3 NDCG
def test_ndcg_reference_equals_library_metric():
    """The one-query reference agrees with course_lib.metrics.ndcg_iou (percent, 2 decimals).

    The exercise ranks the predictions by score, the library's ``rank_by_score`` option.
    """
    for trial in range(40):
        preds, moments, k, thr = ch06.ndcg_at_k_iou_inputs(seed=1, trial=trial)
        query = {
            "qid": 0,
            "query": "q",
            "relevant_moments": [dict(m, duration=60.0) for m in moments],
        }
        lib = ndcg_iou({0: preds}, [query], ks=(k,), iou_thresholds=(thr,), rank_by_score=True)
        lib = lib[f"NDCG@{k}-IoU{thr}"]
        assert lib == pytest.approx(100 * ch06.ndcg_at_k_iou(preds, moments, k, thr), abs=0.006)


def _gains(preds, moments, k, thr, consume=True, inclusive=False, drop_zero=False):
    """Gains of the ranked predictions; the TVR-Ranking rule unless a mistake is switched on."""
    kept = [m for m in moments if m["relevance"] > 0] if drop_zero else list(moments)
    gt = sorted(kept, key=lambda m: -m["relevance"])
    ranked = sorted(preds, key=lambda p: -p[3])[:k]
    free, gains = list(gt), []
    for vid, st, ed, _ in ranked:
        best, best_iou = None, -1.0
        for m in free:
            if m["vid"] != vid:
                continue
            a, b = m["window"]
            iou = max(0.0, min(ed, b) - max(st, a)) / (max(ed, b) - min(st, a))
            if iou > best_iou:
                best, best_iou = m, iou
        if best is not None and (best_iou >= thr if inclusive else best_iou > thr):
            gains.append(best["relevance"])
            if consume:
                free.remove(best)
        else:
            gains.append(0)
    return gt, gains


def _dcg(rels, linear=False):
    return sum((r if linear else 2**r - 1) / np.log2(i + 2) for i, r in enumerate(rels))


def ndcg_by_hand(preds, moments, k, thr):
    gt, gains = _gains(preds, moments, k, thr)
    return _dcg(gains) / _dcg([m["relevance"] for m in gt][:k])


def ndcg_reuses_moments(preds, moments, k, thr):
    """Lets several predictions earn the same GT moment."""
    gt, gains = _gains(preds, moments, k, thr, consume=False)
    return _dcg(gains) / _dcg([m["relevance"] for m in gt][:k])


def ndcg_linear_gain(preds, moments, k, thr):
    """Uses gain rel instead of 2^rel - 1."""
    gt, gains = _gains(preds, moments, k, thr)
    return _dcg(gains, True) / _dcg([m["relevance"] for m in gt][:k], True)


def ndcg_idcg_unsorted(preds, moments, k, thr):
    """Takes the ideal DCG from the first K moments in input order, not the K most relevant."""
    _, gains = _gains(preds, moments, k, thr)
    ideal = [m["relevance"] for m in moments][:k]
    return _dcg(gains) / _dcg(ideal)


def ndcg_inclusive_iou(preds, moments, k, thr):
    """Hits at IoU >= threshold (the SPR code) instead of the official IoU > threshold."""
    gt, gains = _gains(preds, moments, k, thr, inclusive=True)
    return _dcg(gains) / _dcg([m["relevance"] for m in gt][:k])


def ndcg_drops_relevance_zero(preds, moments, k, thr):
    """Leaves relevance-0 moments out of the GT, so they can no longer be used up."""
    gt, gains = _gains(preds, moments, k, thr, drop_zero=True)
    return _dcg(gains) / _dcg([m["relevance"] for m in gt][:k])


def ndcg_unranked(preds, moments, k, thr):
    """Forgets to rank the predictions by score."""
    ordered = [p[:3] + [len(preds) - i] for i, p in enumerate(preds)]
    return ndcg_by_hand(ordered, moments, k, thr)


def test_ndcg_checker_accepts_reference_and_hand_written(capsys):
    ch06.check_ndcg_at_k_iou(ch06.ndcg_at_k_iou)
    ch06.check_ndcg_at_k_iou(ndcg_by_hand)
    assert capsys.readouterr().out.count("[OK]") == 2


@pytest.mark.parametrize(
    "wrong",
    [
        ndcg_reuses_moments,
        ndcg_linear_gain,
        ndcg_idcg_unsorted,
        ndcg_unranked,
        ndcg_inclusive_iou,
        ndcg_drops_relevance_zero,
    ],
)
def test_ndcg_checker_rejects(wrong):
    with pytest.raises(ExerciseError, match="Exercise 6.3"):
        ch06.check_ndcg_at_k_iou(wrong)


# ----------------------------------------------------------------------------- 6.1 nprobe
def nprobe_by_hand(index, queries, target, k, candidates):
    """A correct learner answer: exact top-k at nprobe = nlist, then the candidates in order."""
    index.set_search_params(nprobe=index.faiss_index.nlist)
    exact = index.search(queries, k)[1]
    for nprobe in candidates:
        index.set_search_params(nprobe=nprobe)
        if recall_at_k(index.search(queries, k)[1], exact) >= target:
            return nprobe
    return candidates[-1]


def nprobe_ground_truth_from_current(index, queries, target, k, candidates):
    """Takes the 'exact' answer from the index as it is (nprobe = 1), not from nprobe = nlist."""
    exact = index.search(queries, k)[1]
    for nprobe in candidates:
        index.set_search_params(nprobe=nprobe)
        if recall_at_k(index.search(queries, k)[1], exact) >= target:
            return nprobe
    return candidates[-1]


def nprobe_strict(index, queries, target, k, candidates):
    """Requires recall > target (a target met exactly is missed)."""
    return nprobe_by_hand(index, queries, target + 1e-9, k, candidates)


def nprobe_recall_at_1(index, queries, target, k, candidates):
    """Measures recall of the top-1 segment only."""
    return nprobe_by_hand(index, queries, target, 1, candidates)


def test_nprobe_checker_accepts_reference_and_hand_written(capsys):
    ch06.check_smallest_nprobe(ch06.smallest_nprobe)
    ch06.check_smallest_nprobe(nprobe_by_hand)
    assert capsys.readouterr().out.count("[OK]") == 2


@pytest.mark.parametrize(
    "wrong", [nprobe_ground_truth_from_current, nprobe_strict, nprobe_recall_at_1]
)
def test_nprobe_checker_rejects(wrong):
    with pytest.raises(ExerciseError, match="Exercise 6.1"):
        ch06.check_smallest_nprobe(wrong)
