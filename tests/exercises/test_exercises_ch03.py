"""Chapter 3 exercise checkers: each passes the reference and rejects plausible mistakes."""

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from exercise_helpers import failure, stub

from course_lib.authoring.make_student import make_student_notebook
from course_lib.checks import ExerciseError
from course_lib.exercises import ch03
from course_lib.metrics import detection_ap
from course_lib.spans import temporal_iou

SOLUTION = Path(__file__).resolve().parents[2] / "solutions" / "03_moments_and_metrics.ipynb"


# ----------------------------------------------------------------------------- helpers
def brute_force_assignment(cost):
    """A correct learner answer: try every permutation (fine for n <= 6)."""
    n = cost.shape[0]
    return min(itertools.permutations(range(n)), key=lambda p: cost[np.arange(n), p].sum())


# ----------------------------------------------------------------------------- 3.1 seconds -> (c, w)
def cxw_in_seconds(windows, duration):
    """Forgets to normalise by the duration: centre and width in seconds."""
    return np.stack(
        [(windows[..., 0] + windows[..., 1]) / 2, windows[..., 1] - windows[..., 0]], -1
    )


def cxw_swapped(windows, duration):
    """Returns [width, centre] instead of [centre, width]."""
    return ch03.windows_to_cxw(windows, duration)[..., ::-1]


def cxw_half_width(windows, duration):
    """Codes the half-width (e - s) / 2D instead of the width."""
    centre = (windows[..., 0] + windows[..., 1]) / (2 * duration)
    return np.stack([centre, (windows[..., 1] - windows[..., 0]) / (2 * duration)], -1)


def cxw_rows_only(windows, duration):
    """Indexes ``[:, 0]``: works for (K, 2) only, not for one span or a batch."""
    st, ed = windows[:, 0], windows[:, 1]
    return np.stack([(st + ed) / (2 * duration), (ed - st) / duration], 1)


def cxw_in_torch(windows, duration):
    return torch.as_tensor(ch03.windows_to_cxw(windows, duration))


@pytest.mark.parametrize(
    ("wrong", "words"),
    [
        (cxw_in_seconds, "differs at"),
        (cxw_swapped, "differs at"),
        (cxw_half_width, "differs at"),
        (cxw_rows_only, "should have shape"),
        (cxw_in_torch, "should be a numpy array"),
    ],
)
def test_windows_to_cxw_checker_rejects(wrong, words):
    message = failure(ch03.check_windows_to_cxw, wrong)
    assert message.startswith("Exercise 3.1: windows_to_cxw: ") and words in message


def test_windows_to_cxw_inputs_cover_edge_cases():
    inputs = [ch03.windows_to_cxw_inputs(seed=0, trial=t) for t in range(30)]
    assert {w.ndim for w, _ in inputs} == {1, 2, 3}  # one span, a list, a batch of lists
    widths = np.concatenate([(w[..., 1] - w[..., 0]).ravel() for w, _ in inputs])
    assert (widths == 0).any() and (widths > 0).any()
    assert any((w.reshape(-1, 2) == [0.0, d]).all(1).any() for w, d in inputs)  # whole video
    assert all(((w >= 0) & (w <= d)).all() for w, d in inputs)
    assert len({d for _, d in inputs}) > 2


# ----------------------------------------------------------------------------- 3.2 (c, w) -> seconds
def windows_not_clipped(spans, duration):
    """Forgets to clip: spans reaching past either end of the video stay outside it."""
    centre, width = spans[..., 0], spans[..., 1]
    return np.stack([centre - width / 2, centre + width / 2], -1) * duration


def windows_swapped(spans, duration):
    """Reads [width, centre] instead of [centre, width]."""
    return ch03.cxw_to_windows(spans[..., ::-1], duration)


def windows_not_scaled(spans, duration):
    """Clips to the video but forgets to multiply by the duration: fractions, not seconds."""
    centre, width = spans[..., 0], spans[..., 1]
    return np.clip(np.stack([centre - width / 2, centre + width / 2], -1), 0, duration)


def windows_full_width(spans, duration):
    """Goes a whole width to each side of the centre: c -/+ w."""
    centre, width = spans[..., 0], spans[..., 1]
    return np.clip(np.stack([centre - width, centre + width], -1) * duration, 0, duration)


def windows_clipped_before_scaling(spans, duration):
    """Clips to [0, duration] while still in fractions of the video (the wrong units)."""
    centre, width = spans[..., 0], spans[..., 1]
    return np.clip(np.stack([centre - width / 2, centre + width / 2], -1), 0, duration) * duration


@pytest.mark.parametrize(
    "wrong",
    [
        windows_not_clipped,
        windows_swapped,
        windows_not_scaled,
        windows_full_width,
        windows_clipped_before_scaling,
    ],
)
def test_cxw_to_windows_checker_rejects(wrong):
    message = failure(ch03.check_cxw_to_windows, wrong)
    assert message.startswith("Exercise 3.2: cxw_to_windows: the output differs at")


def test_cxw_to_windows_inputs_cover_edge_cases():
    inputs = [ch03.cxw_to_windows_inputs(seed=0, trial=t) for t in range(30)]
    assert {s.ndim for s, _ in inputs} == {1, 2, 3}
    starts = np.concatenate([(s[..., 0] - s[..., 1] / 2).ravel() for s, _ in inputs])
    ends = np.concatenate([(s[..., 0] + s[..., 1] / 2).ravel() for s, _ in inputs])
    assert (starts < 0).any() and (ends > 1).any()  # the answer must be clipped at both ends
    clipped = sum(
        ((s[..., 0] - s[..., 1] / 2 < 0) | (s[..., 0] + s[..., 1] / 2 > 1)).any() for s, _ in inputs
    )
    assert clipped >= 20  # most trials test the clipping
    assert any((s[..., 1] == 0).any() for s, _ in inputs)  # zero width


def test_span_coding_round_trip():
    """Decoding an encoded window gives the window back (it lies inside the video)."""
    for trial in range(30):
        windows, duration = ch03.windows_to_cxw_inputs(seed=0, trial=trial)
        back = ch03.cxw_to_windows(ch03.windows_to_cxw(windows, duration), duration)
        assert np.allclose(back, windows)


# ----------------------------------------------------------------------------- 3.3 IoU
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
    with pytest.raises(ExerciseError, match="Exercise 3.3"):
        ch03.check_temporal_iou_matrix(wrong)


def test_iou_inputs_cover_edge_cases():
    ious = np.concatenate(
        [
            ch03.temporal_iou_matrix(*ch03.temporal_iou_matrix_inputs(seed=0, trial=t)).ravel()
            for t in range(30)
        ]
    )
    assert (ious == 0).any() and (ious == 1).any() and ((ious > 0) & (ious < 1)).any()


# ----------------------------------------------------------------------------- 3.4 gIoU
def giou_with_union(a, b):
    """Takes the union for the enclosing span C: the penalty vanishes and gIoU = IoU."""
    inter = np.clip(
        np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None
    )
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    enclosing = union  # should be max(ends) - min(starts)
    safe = np.where(union != 0, union, 1)
    return np.where(union != 0, inter / safe - (enclosing - union) / safe, 0.0)


def giou_penalty_added(a, b):
    """Adds the penalty instead of subtracting it: disjoint spans score above 0."""
    return 2 * temporal_iou(a, b) - ch03.giou_matrix(a, b)


def giou_penalty_from_intersection(a, b):
    """Measures the empty part of C from the intersection: (|C| - |a n b|) / |C|."""
    inter = np.clip(
        np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None
    )
    hull = np.maximum(a[:, None, 1], b[None, :, 1]) - np.minimum(a[:, None, 0], b[None, :, 0])
    safe = np.where(hull != 0, hull, 1)
    return temporal_iou(a, b) - np.where(hull != 0, (hull - inter) / safe, 0.0)


def giou_penalty_over_union(a, b):
    """Divides the penalty by the union instead of the enclosing span."""
    inter = np.clip(
        np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None
    )
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    hull = np.maximum(a[:, None, 1], b[None, :, 1]) - np.minimum(a[:, None, 0], b[None, :, 0])
    safe = np.where(union != 0, union, 1)
    return np.where(union != 0, (inter - (hull - union)) / safe, 0.0)


def giou_no_guard(a, b):
    """moment_detr's formula as it is: 0/0 gives NaN for two identical zero-width spans."""
    inter = np.clip(
        np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None
    )
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    hull = np.maximum(a[:, None, 1], b[None, :, 1]) - np.minimum(a[:, None, 0], b[None, :, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union - (hull - union) / hull


def giou_transposed(a, b):
    return ch03.giou_matrix(b, a)


@pytest.mark.parametrize(
    ("wrong", "words"),
    [
        (giou_with_union, "differs at"),
        (giou_penalty_added, "differs at"),
        (giou_penalty_from_intersection, "differs at"),
        (giou_penalty_over_union, "differs at"),
        (giou_no_guard, "NaN"),
        (giou_transposed, "should have shape"),
    ],
)
def test_giou_checker_rejects(wrong, words):
    message = failure(ch03.check_giou_matrix, wrong)
    assert message.startswith("Exercise 3.4: giou_matrix: ") and words in message


def test_giou_inputs_cover_edge_cases():
    inputs = [ch03.giou_matrix_inputs(seed=0, trial=t) for t in range(30)]
    gious = np.concatenate([ch03.giou_matrix(a, b).ravel() for a, b in inputs])
    assert (gious == 1).any() and (gious < 0).any() and (gious == -1).any()
    assert ((gious > 0) & (gious < 1)).any() and (gious == 0).any()
    # two identical zero-width spans: empty union and enclosing span, gIoU 0 by convention
    assert any((a[0, 0] == a[0, 1]) and (b[0] == a[0]).all() for a, b in inputs)
    assert {len(a) for a, _ in inputs} >= {1, 2, 3} and any(len(b) == 1 for _, b in inputs)
    assert all(len(a) != len(b) for a, b in inputs)


# ----------------------------------------------------------------------------- 3.5 AP
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
    with pytest.raises(ExerciseError, match="Exercise 3.5"):
        ch03.check_average_precision_at(wrong)


def test_ap_inputs_cover_edge_cases():
    inputs = [ch03.average_precision_at_inputs(seed=0, trial=t) for t in range(40)]
    n_preds = [len(p) for _, p, _ in inputs]
    assert 0 in n_preds and max(n_preds) > 10
    assert any(len(np.unique(p[:, 2])) < len(p) for _, p, _ in inputs)  # tied scores
    for gt, _, _ in inputs:  # GT windows never touch or overlap: no tie between GT windows
        assert np.all(gt[1:, 0] > gt[:-1, 1])


# ----------------------------------------------------------------------------- 3.6 assignment
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
    with pytest.raises(ExerciseError, match="Exercise 3.6"):
        ch03.check_best_assignment(wrong)


def test_assignment_checker_accepts_both_forms(capsys):
    from scipy.optimize import linear_sum_assignment

    ch03.check_best_assignment(brute_force_assignment)  # a permutation (tuple of ints)
    ch03.check_best_assignment(linear_sum_assignment)  # (row_ind, col_ind)
    ch03.check_best_assignment(lambda c: list(linear_sum_assignment(c)[1]))  # a list
    assert capsys.readouterr().out.count("[OK] Exercise 3.6") == 3


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


# ----------------------------------------------------------------------------- 3.7 HIT@1
def hit_last_on_ties(gt, pred, min_score):
    top = len(pred) - 1 - int(np.argmax(pred[::-1]))
    return float((gt[top] >= min_score).any())


def hit_mean_annotator(gt, pred, min_score):
    return float(gt[int(np.argmax(pred))].mean() >= min_score)


def hit_strict(gt, pred, min_score):
    return float((gt[int(np.argmax(pred))] > min_score).any())


@pytest.mark.parametrize("wrong", [hit_last_on_ties, hit_mean_annotator, hit_strict])
def test_hit_checker_rejects(wrong):
    with pytest.raises(ExerciseError, match="Exercise 3.7"):
        ch03.check_hit_at_1(wrong)


def test_hit_checker_accepts_bools(capsys):
    ch03.check_hit_at_1(lambda g, p, m: bool((g[np.argmax(p)] >= m).any()))
    assert "[OK] Exercise 3.7" in capsys.readouterr().out


# ----------------------------------------------------------------------------- all seven
CHECKERS = [
    (ch03.check_windows_to_cxw, ch03.windows_to_cxw),
    (ch03.check_cxw_to_windows, ch03.cxw_to_windows),
    (ch03.check_temporal_iou_matrix, ch03.temporal_iou_matrix),
    (ch03.check_giou_matrix, ch03.giou_matrix),
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


def test_checker_names_follow_the_notebooks_exercise_numbers(capsys):
    """Each checker names the exercise as the student notebook's stub does ("Exercise 3.M: f")."""
    _, exercises = make_student_notebook(SOLUTION)
    labels = [f"Exercise {e.number}: {e.name}" for e in exercises]
    names = []
    for checker, _ in CHECKERS:
        checker(stub)
        names.append(re.search(r"\[TODO\] (.*?): not attempted", capsys.readouterr().out).group(1))
    assert len(names) == len(labels)
    for name, label in zip(names, labels):
        assert name == label or name.startswith(label + " ("), (name, label)


@pytest.mark.parametrize(
    ("checker", "wrong", "maker"),
    [
        (ch03.check_windows_to_cxw, cxw_swapped, "windows_to_cxw_inputs"),
        (ch03.check_cxw_to_windows, windows_not_clipped, "cxw_to_windows_inputs"),
        (ch03.check_giou_matrix, giou_with_union, "giou_matrix_inputs"),
    ],
)
def test_span_checkers_end_with_a_reproduction_line(checker, wrong, maker):
    """The last line reruns the failing trial with the learner's function, called positionally."""
    message = failure(checker, wrong)
    lines = message.splitlines()
    assert len(lines) == 3 and "shape=" in lines[1] and "module" not in message
    match = re.fullmatch(
        rf"from course_lib\.exercises import ch03; args = ch03\.{maker}\(seed=0, "
        rf"trial=(\d+)\); {wrong.__name__}\(\*args\)",
        lines[-1],
    )
    assert match is not None, lines[-1]
    namespace = {wrong.__name__: wrong}
    exec(lines[-1].rpartition("; ")[0], namespace)  # the import and the inputs
    got = eval(lines[-1].rpartition("; ")[2], namespace)
    expected = getattr(ch03, maker.removesuffix("_inputs"))(*namespace["args"])
    assert not np.allclose(got, expected)
