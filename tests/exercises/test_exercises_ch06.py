"""Chapter 6 exercise checkers: each passes the reference and rejects plausible mistakes."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from exercise_helpers import assert_checkers_follow_notebook, failure, stub

from course_lib.checks import ExerciseError
from course_lib.corpus import rank_candidates, recall_at_k
from course_lib.exercises import ch06
from course_lib.metrics import ndcg_iou, vcmr_recall
from course_lib.spans import temporal_iou

SOLUTION = Path(__file__).resolve().parents[2] / "solutions" / "06_searching_a_collection.ipynb"

#: the checkers in the notebook's order (Exercise 6.1 ... 6.5)
CHECKERS = [
    ch06.check_smallest_nprobe,
    ch06.check_merge_into_proposals,
    ch06.check_vcmr_recall_at_k,
    ch06.check_ndcg_at_k_iou,
    ch06.check_fuse_scores,
]


@pytest.mark.parametrize("checker", CHECKERS)
def test_untouched_stub_is_not_attempted(checker, capsys):
    assert checker(stub) is None
    assert "[TODO]" in capsys.readouterr().out


def test_checker_names_follow_the_notebooks_exercise_numbers(capsys):
    """Each checker names the exercise as the student notebook's stub does ("Exercise 6.M: f")."""
    assert_checkers_follow_notebook(SOLUTION, CHECKERS, capsys)


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


# ----------------------------------------------------------------------------- 6.3 VCMR R@K
def _relevant(query, min_relevance=1):
    return [m for m in query["relevant_moments"] if m["relevance"] >= min_relevance]


def _line_hits(line, moments, thr, strict=False, same_video=True):
    """Does one ``[vid, st, ed, score]`` line match one of ``moments`` at IoU >= thr (> if strict)?"""
    vid, st, ed = line[:3]
    windows = [m["window"] for m in moments if m["vid"] == vid or not same_video]
    if not windows:
        return False
    best = temporal_iou(np.array([[st, ed]]), np.array(windows)).max()
    return bool(best > thr) if strict else bool(best >= thr)


def _recall(predictions, queries, k, thr, *, distinct=False, skip_empty=True, **line_rule):
    """R@K by hand; the TVR rule unless a mistake is switched on (``line_rule``: _line_hits')."""
    hits = []
    for q in queries:
        moments = _relevant(q)
        if not moments and skip_empty:
            continue
        lines = predictions[q["qid"]]
        if distinct:  # every line of the first k videos
            first_videos = list(dict.fromkeys(p[0] for p in lines))[:k]
            top = [p for p in lines if p[0] in first_videos]
        else:
            top = lines[:k]
        hits.append(any(_line_hits(p, moments, thr, **line_rule) for p in top))
    return sum(hits) / len(hits)


def recall_by_hand(predictions, queries, k, thr):
    """A correct learner answer written without the library."""
    return _recall(predictions, queries, k, thr)


def recall_sorted_by_score(predictions, queries, k, thr):
    """Ranks each list by score first; the official script takes the list as given."""
    ranked = {qid: sorted(p, key=lambda line: -line[3]) for qid, p in predictions.items()}
    return recall_by_hand(ranked, queries, k, thr)


def recall_strict_iou(predictions, queries, k, thr):
    """A hit needs IoU > t instead of >= t."""
    return _recall(predictions, queries, k, thr, strict=True)


def recall_distinct_videos(predictions, queries, k, thr):
    """K counts distinct videos (every line of the first K videos) instead of list positions."""
    return _recall(predictions, queries, k, thr, distinct=True)


def recall_counts_relevance_zero(predictions, queries, k, thr):
    """Takes every listed moment as ground truth, relevance 0 included."""
    zero_ok = [dict(q, relevant_moments=[dict(m, relevance=1) for m in q["relevant_moments"]])
               for q in queries]  # fmt: skip
    return recall_by_hand(predictions, zero_ok, k, thr)


def recall_scores_every_query(predictions, queries, k, thr):
    """Counts a query without a relevant moment as a miss instead of leaving it out."""
    return _recall(predictions, queries, k, thr, skip_empty=False)


def recall_any_video(predictions, queries, k, thr):
    """Compares the window with the relevant moments of every video, not only its own."""
    return _recall(predictions, queries, k, thr, same_video=False)


def recall_in_percent(predictions, queries, k, thr):
    """Returns a percentage, as the library's table does, instead of a fraction."""
    return 100 * recall_by_hand(predictions, queries, k, thr)


def test_recall_checker_accepts_reference_and_hand_written(capsys):
    ch06.check_vcmr_recall_at_k(ch06.vcmr_recall_at_k)
    ch06.check_vcmr_recall_at_k(recall_by_hand)
    assert capsys.readouterr().out.count("[OK]") == 2


@pytest.mark.parametrize(
    "wrong",
    [
        recall_sorted_by_score,
        recall_strict_iou,
        recall_distinct_videos,
        recall_counts_relevance_zero,
        recall_scores_every_query,
        recall_any_video,
        recall_in_percent,
    ],
)
def test_recall_checker_rejects(wrong):
    message = failure(ch06.check_vcmr_recall_at_k, wrong)
    lines = message.splitlines()
    assert lines[0].startswith("Exercise 6.3: vcmr_recall_at_k: the output should be ")
    assert len(lines) == 3 and "module" not in message
    assert lines[-1].startswith(
        "from course_lib.exercises import ch06; args = ch06.vcmr_recall_at_k_inputs(seed=0, trial="
    ) and lines[-1].endswith(f"); {wrong.__name__}(*args)")


def test_recall_reference_equals_library_metric():
    """The reference is course_lib.metrics.vcmr_recall (percent, 2 decimals) without rounding."""
    for trial in range(60):
        preds, queries, k, thr = ch06.vcmr_recall_at_k_inputs(seed=1, trial=trial)
        lib = vcmr_recall(preds, queries, "VCMR", ks=(k,), iou_thresholds=(thr,))
        assert lib[f"{thr}-r{k}"] == pytest.approx(
            100 * ch06.vcmr_recall_at_k(preds, queries, k, thr), abs=0.006
        )
        assert lib["n_queries"] == sum(bool(_relevant(q)) for q in queries)


def test_recall_inputs_cover_edge_cases():
    inputs = [ch06.vcmr_recall_at_k_inputs(seed=0, trial=t) for t in range(80)]
    lists = [p for preds, _, _, _ in inputs for p in preds.values()]
    assert any(not p for p in lists)  # an empty list
    assert any(k > len(p) for preds, _, k, _ in inputs for p in preds.values() if p)
    assert any(not _relevant(q) for _, queries, _, _ in inputs for q in queries)  # not scored
    assert any([line[3] for line in p] != sorted((line[3] for line in p), reverse=True)
               for p in lists)  # fmt: skip
    exact = 0  # lines whose best IoU with a relevant moment of their video is exactly t
    for preds, queries, _, thr in inputs:
        for q in queries:
            for vid, st, ed, _ in preds[q["qid"]]:
                windows = [m["window"] for m in _relevant(q) if m["vid"] == vid]
                if windows and temporal_iou(np.array([[st, ed]]), np.array(windows)).max() == thr:
                    exact += 1
    assert exact >= 10


def test_recall_reference_on_a_known_case():
    queries = [
        {"qid": "a", "relevant_moments": [{"vid": "v1", "window": [10.0, 20.0], "relevance": 2}]},
        {"qid": "b", "relevant_moments": [{"vid": "v2", "window": [0.0, 10.0], "relevance": 0}]},
    ]
    # position 1 misses; position 2 has IoU exactly 0.5 (listed below a higher score)
    preds = {"a": [["v1", 30.0, 40.0, 0.9], ["v1", 10.0, 15.0, 0.1]], "b": []}
    assert ch06.vcmr_recall_at_k(preds, queries, 1, 0.5) == 0.0
    assert ch06.vcmr_recall_at_k(preds, queries, 2, 0.5) == 1.0  # query b is not scored
    assert ch06.vcmr_recall_at_k(preds, queries, 10, 0.7) == 0.0


# ----------------------------------------------------------------------------- 6.4 NDCG
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
    with pytest.raises(ExerciseError, match="Exercise 6.4"):
        ch06.check_ndcg_at_k_iou(wrong)


# ----------------------------------------------------------------------------- 6.5 score fusion
def _minmax(x):
    span = x.max() - x.min()
    return np.ones_like(x, dtype=float) if span == 0 else (x - x.min()) / span


def fuse_by_hand(stage1, stage2, alpha):
    """A correct learner answer written without the library."""
    return alpha * _minmax(stage1) + (1 - alpha) * _minmax(stage2)


def fuse_unnormalised(stage1, stage2, alpha):
    """Forgets to normalise: the stage on the larger scale decides alone."""
    return alpha * stage1 + (1 - alpha) * stage2


def fuse_alpha_swapped(stage1, stage2, alpha):
    """Weights stage 2 by alpha and stage 1 by 1 - alpha."""
    return (1 - alpha) * _minmax(stage1) + alpha * _minmax(stage2)


def fuse_ties_to_zero(stage1, stage2, alpha):
    """A constant stage normalises to 0 instead of 1."""

    def norm(x):
        span = x.max() - x.min()
        return np.zeros_like(x) if span == 0 else (x - x.min()) / span

    return alpha * norm(stage1) + (1 - alpha) * norm(stage2)


def fuse_no_guard(stage1, stage2, alpha):
    """Divides by max - min even when it is 0: NaN for a constant stage."""
    with np.errstate(invalid="ignore"):
        n1 = (stage1 - stage1.min()) / (stage1.max() - stage1.min())
        n2 = (stage2 - stage2.min()) / (stage2.max() - stage2.min())
    return alpha * n1 + (1 - alpha) * n2


def fuse_fixed_range(stage1, stage2, alpha):
    """Maps cosine scores from [-1, 1] to [0, 1] instead of normalising over the candidates."""
    return alpha * (stage1 + 1) / 2 + (1 - alpha) * _minmax(stage2)


def fuse_joint_minmax(stage1, stage2, alpha):
    """One min-max over the scores of both stages together."""
    both = _minmax(np.concatenate([stage1, stage2]))
    return alpha * both[: len(stage1)] + (1 - alpha) * both[len(stage1) :]


def fuse_sorted(stage1, stage2, alpha):
    """Returns the scores best first instead of in the candidates' order."""
    return np.sort(fuse_by_hand(stage1, stage2, alpha))[::-1]


def test_fuse_checker_accepts_reference_and_hand_written(capsys):
    ch06.check_fuse_scores(ch06.fuse_scores)
    ch06.check_fuse_scores(fuse_by_hand)
    ch06.check_fuse_scores(lambda s1, s2, a: fuse_by_hand(s1, s2, a).astype(np.float32))
    assert capsys.readouterr().out.count("[OK]") == 3


@pytest.mark.parametrize(
    ("wrong", "words"),
    [
        (fuse_unnormalised, "differs at"),
        (fuse_alpha_swapped, "differs at"),
        (fuse_ties_to_zero, "differs at"),
        (fuse_no_guard, "NaN"),
        (fuse_fixed_range, "differs at"),
        (fuse_joint_minmax, "differs at"),
        (fuse_sorted, "differs at"),
    ],
)
def test_fuse_checker_rejects(wrong, words):
    message = failure(ch06.check_fuse_scores, wrong)
    lines = message.splitlines()
    assert lines[0].startswith("Exercise 6.5: fuse_scores: ") and words in lines[0]
    assert len(lines) == 3 and "module" not in message
    assert lines[-1].startswith(
        "from course_lib.exercises import ch06; args = ch06.fuse_scores_inputs(seed=0, trial="
    ) and lines[-1].endswith(f"); {wrong.__name__}(*args)")


def test_fuse_inputs_cover_edge_cases():
    inputs = [ch06.fuse_scores_inputs(seed=0, trial=t) for t in range(60)]
    alphas = [a for _, _, a in inputs]
    assert 0.0 in alphas and 1.0 in alphas and any(0 < a < 1 for a in alphas)
    assert sum(s1.min() == s1.max() for s1, _, _ in inputs) >= 5  # constant stage 1
    assert sum(s2.min() == s2.max() for _, s2, _ in inputs) >= 5  # constant stage 2
    assert any(len(s1) == 1 for s1, _, _ in inputs)  # one candidate
    assert any((np.diff(s1) != 0).sum() > 1 for s1, _, _ in inputs)  # videos interleaved


def test_reference_fusion_inside_rank_candidates():
    """The learner's function has the signature rank_candidates takes as ``fuse``."""
    for trial in range(10):
        s1, s2, alpha = ch06.fuse_scores_inputs(seed=2, trial=trial)
        cands = pd.DataFrame(
            {"vid": [f"v{int(1000 * x)}" for x in s1], "start": np.arange(len(s1), dtype=float),
             "end": np.arange(len(s1)) + 2.0, "stage1_score": s1, "stage2_score": s2}
        )  # fmt: skip
        mine = rank_candidates(cands, alpha, None, fuse=fuse_by_hand)
        pd.testing.assert_frame_equal(mine, rank_candidates(cands, alpha, None))


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
