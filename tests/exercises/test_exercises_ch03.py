"""Chapter 3 exercise checkers: each passes the reference and rejects plausible mistakes."""

import itertools

import numpy as np
import pytest
import torch

from course_lib.checks import ExerciseError
from course_lib.exercises import ch03
from course_lib.metrics import detection_ap


# ----------------------------------------------------------------------------- helpers
def stub(*args):
    raise NotImplementedError("exercise")


def brute_force_assignment(cost):
    """A correct learner answer: try every permutation (fine for n <= 6)."""
    n = cost.shape[0]
    return min(itertools.permutations(range(n)), key=lambda p: cost[np.arange(n), p].sum())


# ----------------------------------------------------------------------------- 3.1 IoU
def iou_without_clamp(a, b):
    """Forgets max(0, .): disjoint windows get negative IoU."""
    inter = np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0])
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    return inter / union


def iou_union_without_overlap(a, b):
    """Union = sum of lengths (forgets to subtract the intersection)."""
    inter = np.clip(
        np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None
    )
    return inter / ((a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :])


def iou_transposed(a, b):
    """(M, N) instead of (N, M)."""
    return ch03.temporal_iou_matrix(b, a)


def iou_in_torch(a, b):
    return torch.as_tensor(ch03.temporal_iou_matrix(a, b))


@pytest.mark.parametrize(
    "wrong", [iou_without_clamp, iou_union_without_overlap, iou_transposed, iou_in_torch]
)
def test_iou_checker_rejects(wrong):
    with pytest.raises(ExerciseError, match="Exercise 3.1"):
        ch03.check_temporal_iou_matrix(wrong)


def test_iou_inputs_cover_edge_cases():
    ious = np.concatenate(
        [
            ch03.temporal_iou_matrix(*ch03.temporal_iou_matrix_inputs(seed=0, trial=t)).ravel()
            for t in range(30)
        ]
    )
    assert (ious == 0).any() and (ious == 1).any() and ((ious > 0) & (ious < 1)).any()


# ----------------------------------------------------------------------------- 3.2 AP
def ap_unstable_ties(gt, preds, thr):
    """Reverses the order of equal scores (argsort()[::-1] instead of a stable sort)."""
    order = np.argsort(preds[:, 2])[::-1]
    return ch03.average_precision_at(gt, preds[order], thr)


def ap_no_top10_cut(gt, preds, thr):
    return float(detection_ap(gt, preds, (thr,), top_k=None)[0])


def ap_gt_reused(gt, preds, thr):
    """Lets one GT window match several predictions."""
    if len(preds) == 0:
        return 0.0
    preds = preds[np.argsort(-preds[:, 2], kind="stable")][:10]
    tp = (ch03.temporal_iou_matrix(preds[:, :2], gt) >= thr).any(1)
    prec = np.cumsum(tp) / np.arange(1, len(tp) + 1)
    return float(np.sum(prec * tp) / len(gt))


def ap_strict_threshold(gt, preds, thr):
    """Uses IoU > threshold instead of >=."""
    return ch03.average_precision_at(gt, preds, thr + 1e-9)


@pytest.mark.parametrize(
    "wrong", [ap_unstable_ties, ap_no_top10_cut, ap_gt_reused, ap_strict_threshold]
)
def test_ap_checker_rejects(wrong):
    with pytest.raises(ExerciseError, match="Exercise 3.2"):
        ch03.check_average_precision_at(wrong)


def test_ap_inputs_cover_edge_cases():
    inputs = [ch03.average_precision_at_inputs(seed=0, trial=t) for t in range(40)]
    n_preds = [len(p) for _, p, _ in inputs]
    assert 0 in n_preds and max(n_preds) > 10
    assert any(len(np.unique(p[:, 2])) < len(p) for _, p, _ in inputs)  # tied scores
    for gt, _, _ in inputs:  # GT windows never touch or overlap: no tie between GT windows
        assert np.all(gt[1:, 0] > gt[:-1, 1])


# ----------------------------------------------------------------------------- 3.3 assignment
def greedy_assignment(cost):
    """Row by row, the cheapest column still free: valid but not optimal."""
    free, perm = set(range(cost.shape[1])), []
    for row in cost:
        col = min(free, key=lambda c: row[c])
        perm.append(col)
        free.remove(col)
    return perm


def argmin_per_row(cost):
    """Not one-to-one: two rows can take the same column."""
    return cost.argmin(1)


def maximising_assignment(cost):
    return brute_force_assignment(-cost)


@pytest.mark.parametrize("wrong", [greedy_assignment, argmin_per_row, maximising_assignment])
def test_assignment_checker_rejects(wrong):
    with pytest.raises(ExerciseError, match="Exercise 3.3"):
        ch03.check_best_assignment(wrong)


def test_assignment_checker_accepts_both_forms(capsys):
    from scipy.optimize import linear_sum_assignment

    ch03.check_best_assignment(brute_force_assignment)  # a permutation (tuple of ints)
    ch03.check_best_assignment(linear_sum_assignment)  # (row_ind, col_ind)
    ch03.check_best_assignment(lambda c: list(linear_sum_assignment(c)[1]))  # a list
    assert capsys.readouterr().out.count("[OK] Exercise 3.3") == 3


def test_assignment_cost_messages():
    cost = np.arange(9.0).reshape(3, 3)
    assert ch03.assignment_cost(cost, [2, 1, 0]) == 2 + 4 + 6
    assert ch03.assignment_cost(cost, (np.array([0, 1, 2]), np.array([0, 1, 2]))) == 12
    with pytest.raises(ch03.InvalidAssignment, match="column 0 is assigned twice"):
        ch03.assignment_cost(cost, [0, 0, 1])
    with pytest.raises(ch03.InvalidAssignment, match="permutation has 2 entries; need 3"):
        ch03.assignment_cost(cost, [0, 1])
    with pytest.raises(ch03.InvalidAssignment, match="2 column indices"):
        ch03.assignment_cost(cost, ([0, 1, 2], [0, 1]))
    with pytest.raises(ch03.InvalidAssignment, match="outside"):
        ch03.assignment_cost(cost, [0, 1, 3])
    with pytest.raises(ch03.InvalidAssignment, match="ints"):
        ch03.assignment_cost(cost, [0.0, 1.0, 2.0])


def test_assignment_inputs_have_ties():
    # integer costs: some matrices have several optimal assignments, and the check still passes
    n_optimal = []
    for trial in range(25):
        (cost,) = ch03.best_assignment_inputs(seed=0, trial=trial)
        n = cost.shape[0]
        best = ch03.optimal_assignment_cost(cost)
        perms = itertools.permutations(range(n))
        n_optimal.append(sum(np.isclose(cost[np.arange(n), p].sum(), best) for p in perms))
    assert max(n_optimal) > 1


# ----------------------------------------------------------------------------- 3.4 HIT@1
def hit_last_on_ties(gt, pred, min_score):
    top = len(pred) - 1 - int(np.argmax(pred[::-1]))
    return float((gt[top] >= min_score).any())


def hit_mean_annotator(gt, pred, min_score):
    return float(gt[int(np.argmax(pred))].mean() >= min_score)


def hit_strict(gt, pred, min_score):
    return float((gt[int(np.argmax(pred))] > min_score).any())


@pytest.mark.parametrize("wrong", [hit_last_on_ties, hit_mean_annotator, hit_strict])
def test_hit_checker_rejects(wrong):
    with pytest.raises(ExerciseError, match="Exercise 3.4"):
        ch03.check_hit_at_1(wrong)


def test_hit_checker_accepts_bools(capsys):
    ch03.check_hit_at_1(lambda g, p, m: bool((g[np.argmax(p)] >= m).any()))
    assert "[OK] Exercise 3.4" in capsys.readouterr().out


# ----------------------------------------------------------------------------- all four
CHECKERS = [
    (ch03.check_temporal_iou_matrix, ch03.temporal_iou_matrix),
    (ch03.check_average_precision_at, ch03.average_precision_at),
    (ch03.check_best_assignment, brute_force_assignment),
    (ch03.check_hit_at_1, ch03.hit_at_1),
]


@pytest.mark.parametrize("checker, reference", CHECKERS)
def test_checker_passes_reference_and_returns_none(checker, reference, capsys):
    assert checker(reference) is None
    assert "[OK]" in capsys.readouterr().out


@pytest.mark.parametrize("checker, reference", CHECKERS)
def test_checker_reports_untouched_stub(checker, reference, capsys):
    assert checker(stub) is None
    assert "[TODO]" in capsys.readouterr().out
