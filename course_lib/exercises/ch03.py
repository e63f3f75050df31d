"""Chapter 3 checkers: span coding, temporal IoU and gIoU, per-query detection AP, Hungarian
assignment, HIT@1.

References come from the library (:mod:`course_lib.spans`, :mod:`course_lib.metrics`, scipy's
Hungarian solver); the input makers draw windows on a 0.5-s grid so that edge cases occur often:
zero-width, touching (zero-length overlap), identical, nested and disjoint windows, predicted spans
that reach past either end of the video, batch shapes, IoU exactly at a threshold, equal scores,
more than ten predictions, and no prediction at all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from course_lib.checks import check, trial_rng
from course_lib.metrics import detection_ap, hl_hit_at_1
from course_lib.spans import (
    cxw_to_seconds,
    generalized_temporal_iou,
    seconds_to_cxw,
    temporal_iou,
)

DURATIONS = (30.0, 37.5, 60.0, 126.0, 150.0)
"""Video durations the span-coding makers draw from (37.5 s: not a whole number of clips)."""


# ----------------------------------------------------------------------------- 3.1 seconds -> (c, w)
def windows_to_cxw(windows: np.ndarray, duration: float) -> np.ndarray:
    """Reference: ``(..., 2)`` windows ``[start, end]`` in seconds -> ``[centre, width]`` as
    fractions of the video (Moment-DETR's ``span_xx_to_cxw(windows / duration)``)."""
    return seconds_to_cxw(windows, duration)


def _batch_shape(rng: np.random.Generator) -> tuple[int, ...]:
    """A leading shape: one span ``()``, a list ``(K,)`` or a batch of lists ``(B, Q)``."""
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return ()
    if kind in (1, 2):
        return (int(rng.integers(1, 7)),)
    return (int(rng.integers(1, 4)), int(rng.integers(1, 5)))


def windows_to_cxw_inputs(seed: int = 0, trial: int = 0) -> tuple[np.ndarray, float]:
    """Inputs of trial ``trial`` of Exercise 3.1: windows of shape ``(2,)``, ``(K, 2)`` or
    ``(B, Q, 2)`` on a 0.5-s grid inside the video, with zero-width windows, the whole video and
    windows ending at the video's end.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(windows, duration)``, the positional arguments of ``windows_to_cxw``.
    """
    rng = trial_rng(seed, trial)
    duration = float(rng.choice(DURATIONS))
    shape = _batch_shape(rng)
    n_steps = int(duration * 2)  # the 0.5-s grid of [0, duration]
    a = rng.integers(0, n_steps + 1, size=(*shape, 2))
    windows = np.sort(a, axis=-1) * 0.5  # start <= end, both inside the video
    flat = windows.reshape(-1, 2)  # a view: the edge cases below land in ``windows``
    edge = int(rng.integers(0, 3))
    if edge == 0:
        flat[0] = [flat[0, 0], flat[0, 0]]  # zero width
    elif edge == 1:
        flat[0] = [0.0, duration]  # the whole video
    else:
        flat[0] = [flat[0, 0], duration]  # ends at the end of the video
    return windows, duration


def check_windows_to_cxw(fn: Callable[[np.ndarray, float], np.ndarray]) -> None:
    """Exercise 3.1: compare ``fn`` with :func:`windows_to_cxw` on 30 random inputs."""
    check(
        fn,
        windows_to_cxw,
        windows_to_cxw_inputs,
        name="Exercise 3.1: windows_to_cxw",
        n=30,
        check_dtype=False,
    )


# ----------------------------------------------------------------------------- 3.2 (c, w) -> seconds
def cxw_to_windows(spans_cxw: np.ndarray, duration: float) -> np.ndarray:
    """Reference: ``(..., 2)`` normalised ``[centre, width]`` -> ``[start, end]`` in seconds,
    clipped to ``[0, duration]`` (Moment-DETR's ``span_cxw_to_xx(spans) * duration``, clipped)."""
    return cxw_to_seconds(spans_cxw, duration)


def cxw_to_windows_inputs(seed: int = 0, trial: int = 0) -> tuple[np.ndarray, float]:
    """Inputs of trial ``trial`` of Exercise 3.2: predicted ``[centre, width]`` in [0, 1] of shape
    ``(2,)``, ``(K, 2)`` or ``(B, Q, 2)``, with spans that reach past the start or the end of the
    video (so the answer must be clipped), zero widths and the whole video.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(spans_cxw, duration)``, the positional arguments of ``cxw_to_windows``.
    """
    rng = trial_rng(seed, trial)
    duration = float(rng.choice(DURATIONS))
    shape = _batch_shape(rng)
    centre = np.round(rng.uniform(0.0, 1.0, size=shape), 3)
    width = np.round(rng.uniform(0.0, 0.6, size=shape), 3)
    spans = np.stack([centre, width], axis=-1)
    flat = spans.reshape(-1, 2)  # a view: the edge cases below land in ``spans``
    edge = int(rng.integers(0, 5))
    if edge == 0:
        flat[0] = [round(float(rng.uniform(0.0, 0.2)), 3), 0.5]  # starts before 0
    elif edge == 1:
        flat[0] = [round(float(rng.uniform(0.8, 1.0)), 3), 0.5]  # ends after the video
    elif edge == 2:
        flat[0] = [0.5, 1.0]  # the whole video
    elif edge == 3:
        flat[0, 1] = 0.0  # zero width
    if flat.shape[0] > 1:  # one more span past an end, in every trial with several spans
        flat[-1] = [0.05, 0.3] if edge % 2 else [0.95, 0.3]
    return spans, duration


def check_cxw_to_windows(fn: Callable[[np.ndarray, float], np.ndarray]) -> None:
    """Exercise 3.2: compare ``fn`` with :func:`cxw_to_windows` on 30 random inputs."""
    check(
        fn,
        cxw_to_windows,
        cxw_to_windows_inputs,
        name="Exercise 3.2: cxw_to_windows",
        n=30,
        check_dtype=False,
    )


# ----------------------------------------------------------------------------- 3.3 temporal IoU
def temporal_iou_matrix(spans1: np.ndarray, spans2: np.ndarray) -> np.ndarray:
    """Reference: all-pairs temporal IoU of (N, 2) and (M, 2) ``[start, end]`` arrays -> (N, M)."""
    return temporal_iou(spans1, spans2)


def _random_windows(rng: np.random.Generator, n: int, horizon: int = 60) -> np.ndarray:
    """``n`` windows ``[st, ed]`` (seconds) on a 0.5-s grid with 0 <= st < ed <= horizon / 2 + 10."""
    st = rng.integers(0, horizon, size=n) * 0.5
    ed = st + rng.integers(1, 21, size=n) * 0.5
    return np.stack([st, ed], axis=1)


def temporal_iou_matrix_inputs(seed: int = 0, trial: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs of trial ``trial`` of Exercise 3.3: two span arrays with different row counts, plus
    touching, identical and nested pairs.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(spans1, spans2)``, the positional arguments of ``temporal_iou_matrix``.
    """
    rng = trial_rng(seed, trial)
    n = int(rng.integers(1, 5))
    m = n + int(rng.integers(1, 4))  # N != M, so a transposed answer shows
    a, b = _random_windows(rng, n), _random_windows(rng, m)
    # edge cases against a[0]: a window that touches it, a copy, and one nested inside it
    st, ed = a[0]
    b[0] = [ed, ed + 2.0]  # touching: zero-length overlap, IoU 0
    if m > 1:
        b[1] = a[0]  # identical: IoU 1
    if m > 2 and ed - st >= 1.0:
        b[2] = [st + 0.5, ed]  # nested
    return a, b


def check_temporal_iou_matrix(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
    """Exercise 3.3: compare ``fn`` with :func:`temporal_iou_matrix` on 30 random inputs."""
    check(
        fn,
        temporal_iou_matrix,
        temporal_iou_matrix_inputs,
        name="Exercise 3.3: temporal_iou_matrix",
        n=30,
        check_dtype=False,
    )


# ----------------------------------------------------------------------------- 3.4 generalised IoU
def giou_matrix(spans1: np.ndarray, spans2: np.ndarray) -> np.ndarray:
    """Reference: all-pairs generalised temporal IoU of (N, 2) and (M, 2) ``[start, end]`` arrays
    -> (N, M); IoU is 0 where the union is empty and the penalty 0 where the enclosing span is."""
    return generalized_temporal_iou(spans1, spans2)


def giou_matrix_inputs(seed: int = 0, trial: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs of trial ``trial`` of Exercise 3.4: two span arrays of 1-6 rows (N != M), with
    zero-width spans, and against the first span of ``spans1`` an identical, a disjoint, a
    touching and a zero-width span.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(spans1, spans2)``, the positional arguments of ``giou_matrix``.
    """
    rng = trial_rng(seed, trial)
    n = int(rng.integers(1, 6))
    m = int(rng.integers(1, 6))
    m += m >= n  # 1..6 and never n, so a transposed answer shows
    a, b = _random_windows(rng, n), _random_windows(rng, m)
    # zero-width spans anywhere, about one row in six
    for spans in (a, b):
        point = rng.random(len(spans)) < 1 / 6
        spans[point, 1] = spans[point, 0]
    if rng.random() < 0.3:
        a[0, 1] = a[0, 0]  # the first span a point: 0/0 cases against its copy
    st, ed = a[0]
    b[0] = a[0]  # identical (for a zero-width span: empty union and enclosing span)
    if m > 1:
        gap = float(rng.integers(1, 41)) * 0.5
        b[1] = [ed + gap, ed + gap + float(rng.integers(0, 11)) * 0.5]  # disjoint (maybe a point)
    if m > 2:
        point = st + float(rng.integers(-4, 5)) * 0.5
        b[2] = [point, point]  # a zero-width span near, inside or outside a[0]
    if m > 3:
        b[3] = [ed, ed + 2.0]  # touching
    return a, b


def check_giou_matrix(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
    """Exercise 3.4: compare ``fn`` with :func:`giou_matrix` on 30 random inputs."""
    check(
        fn,
        giou_matrix,
        giou_matrix_inputs,
        name="Exercise 3.4: giou_matrix",
        n=30,
        check_dtype=False,
    )


# ----------------------------------------------------------------------------- 3.5 detection AP
def average_precision_at(
    gt_windows: np.ndarray, pred_windows: np.ndarray, iou_threshold: float
) -> float:
    """Reference: one query's detection AP at one IoU threshold (moment_detr MR-mAP, top 10).

    The exercise ranks the windows by score (stable) before keeping the top 10, so it takes
    windows in any order: ``detection_ap``'s ``rank_by_score`` option. The official script keeps
    the first 10 *as listed*; the two agree on lists written best first, as submissions are.

    Args:
        gt_windows: (G, 2) GT ``[st, ed]``.
        pred_windows: (P, 3) ``[st, ed, score]``, any order (P may be 0).
        iou_threshold: a prediction is a true positive when IoU >= this with an unmatched GT.

    Returns:
        AP in [0, 1] as a python float.
    """
    return float(detection_ap(gt_windows, pred_windows, (iou_threshold,), rank_by_score=True)[0])


def average_precision_at_inputs(
    seed: int = 0, trial: int = 0
) -> tuple[np.ndarray, np.ndarray, float]:
    """Inputs of trial ``trial`` of Exercise 3.5: GT windows with gaps between them, and 0-14
    predictions with tied scores and duplicates.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(gt_windows, pred_windows, iou_threshold)``, the positional arguments of
        ``average_precision_at``.
    """
    rng = trial_rng(seed, trial)
    # 1. one to three disjoint GT windows separated by gaps (as QVHighlights' merged windows)
    n_gt = int(rng.integers(1, 4))
    gt, t = [], float(rng.integers(0, 8))
    for _ in range(n_gt):
        length = float(rng.integers(1, 9)) * 2.0
        gt.append([t, t + length])
        t += length + float(rng.integers(1, 6)) * 2.0
    gt_arr = np.array(gt)
    # 2. predictions: near-copies of GT windows (some duplicated) and random windows
    n_pred = int(rng.choice([0, 1, 3, 6, 10, 12, 14]))
    preds = []
    for _ in range(n_pred):
        if rng.random() < 0.6:
            st, ed = gt_arr[rng.integers(n_gt)]
            st, ed = st + float(rng.integers(-3, 4)), ed + float(rng.integers(-3, 4))
            st, ed = max(0.0, st), max(st + 1.0, ed)
        else:
            st, ed = _random_windows(rng, 1, horizon=int(2 * t))[0]
        score = float(rng.integers(1, 6)) / 5.0  # five values only: ties are common
        preds.append([st, ed, score])
    pred_arr = np.array(preds, dtype=np.float64).reshape(-1, 3)
    threshold = float(rng.choice([0.5, 0.6, 0.7, 0.9]))
    return gt_arr, pred_arr, threshold


def check_average_precision_at(fn: Callable[[np.ndarray, np.ndarray, float], float]) -> None:
    """Exercise 3.5: compare ``fn`` with :func:`average_precision_at` on 40 random queries."""
    check(
        fn,
        average_precision_at,
        average_precision_at_inputs,
        name="Exercise 3.5: average_precision_at",
        n=40,
    )


# ----------------------------------------------------------------------------- 3.6 assignment
class InvalidAssignment(ValueError):
    """An assignment that is not one-to-one or does not cover every row and column."""


def optimal_assignment_cost(cost: np.ndarray) -> float:
    """Reference: the smallest total cost of a one-to-one assignment (scipy's Hungarian solver)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum())


def assignment_cost(cost: np.ndarray, assignment: Any) -> float:
    """Total cost of an assignment of a square ``cost`` matrix, after checking it is valid.

    Args:
        cost: (n, n) cost matrix.
        assignment: ``(row_ind, col_ind)`` (two sequences of n indices) or a permutation
            ``perm`` of length n (row ``i`` is assigned to column ``perm[i]``).

    Returns:
        ``sum_i cost[row_ind[i], col_ind[i]]``.

    Raises:
        InvalidAssignment: wrong form, indices out of range, or a row/column used twice.
    """
    n = cost.shape[0]
    # 1. accept (row_ind, col_ind) or a permutation
    if isinstance(assignment, tuple) and len(assignment) == 2 and np.ndim(assignment[0]) == 1:
        rows, cols = np.asarray(assignment[0]), np.asarray(assignment[1])
    else:
        cols = np.asarray(assignment)
        if cols.ndim == 2 and cols.shape[0] == 2:  # a (2, n) array of rows and columns
            rows, cols = cols[0], cols[1]
        elif cols.ndim == 1:
            if len(cols) != n:
                raise InvalidAssignment(f"the permutation has {len(cols)} entries; need {n}")
            rows = np.arange(n)
        else:
            raise InvalidAssignment(
                f"return (row_ind, col_ind) or a permutation of length {n}, got shape {cols.shape}"
            )
    for what, idx in (("row", rows), ("column", cols)):
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise InvalidAssignment(f"{what} indices must be a 1-D list of ints, got {idx!r}")
    # 2. one-to-one and complete
    for what, idx in (("row", rows), ("column", cols)):
        if len(idx) != n:
            raise InvalidAssignment(f"{len(idx)} {what} indices for a {n}x{n} matrix; need {n}")
        if idx.min() < 0 or idx.max() >= n:
            raise InvalidAssignment(f"a {what} index is outside 0..{n - 1}: {idx.tolist()}")
        twice = [int(i) for i in np.unique(idx) if np.sum(idx == i) > 1]
        if twice:
            raise InvalidAssignment(f"{what} {twice[0]} is assigned twice: {idx.tolist()}")
    return float(cost[rows, cols].sum())


def best_assignment_inputs(seed: int = 0, trial: int = 0) -> tuple[np.ndarray]:
    """Inputs of trial ``trial`` of Exercise 3.6: a square cost matrix, 1x1 to 6x6; integer costs
    half of the time (ties between optima).

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(cost,)``, the positional argument of ``best_assignment``.
    """
    rng = trial_rng(seed, trial)
    n = int(rng.integers(1, 7))
    if rng.random() < 0.5:
        return (rng.integers(0, 4, size=(n, n)).astype(np.float64),)
    return (np.round(rng.uniform(-1.0, 10.0, size=(n, n)), 3),)


def check_best_assignment(fn: Callable[[np.ndarray], Any]) -> None:
    """Exercise 3.6: ``fn(cost)`` must reach the optimal total cost on 25 random matrices.

    Several assignments can be optimal, so the check compares total costs, not indices.
    """

    @functools.wraps(fn)  # messages name the learner's function and signature
    def cost_of_learner_assignment(cost: np.ndarray) -> float:
        return assignment_cost(cost, fn(cost.copy()))

    check(
        cost_of_learner_assignment,
        optimal_assignment_cost,
        best_assignment_inputs,
        name="Exercise 3.6: best_assignment (total cost of the assignment)",
        n=25,
    )


# ----------------------------------------------------------------------------- 3.7 HIT@1
def hit_at_1(gt_scores: np.ndarray, pred_saliency: np.ndarray, min_score: int) -> float:
    """Reference: 1.0 when the top predicted clip (first on ties) is positive for any annotator."""
    return hl_hit_at_1(gt_scores, pred_saliency, min_score)


def hit_at_1_inputs(seed: int = 0, trial: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """Inputs of trial ``trial`` of Exercise 3.7: (C, 3) annotator scores (mostly 0), saliency with
    frequent ties, a level 2 / 3 / 4.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(gt_scores, pred_saliency, min_score)``, the positional arguments of ``hit_at_1``.
    """
    rng = trial_rng(seed, trial)
    n_clips = int(rng.integers(3, 16))
    gt = np.zeros((n_clips, 3), dtype=np.int64)
    start = int(rng.integers(0, n_clips))
    stop = min(n_clips, start + int(rng.integers(1, 6)))
    gt[start:stop] = rng.integers(0, 5, size=(stop - start, 3))  # one relevant run of clips
    pred = rng.integers(0, 4, size=n_clips).astype(np.float64) / 3.0  # four values: ties
    return gt, pred, int(rng.choice([2, 3, 4]))


def check_hit_at_1(fn: Callable[[np.ndarray, np.ndarray, int], float]) -> None:
    """Exercise 3.7: compare ``fn`` with :func:`hit_at_1` on 40 random videos."""

    @functools.wraps(fn)  # messages name the learner's function and signature
    def as_float(gt: np.ndarray, pred: np.ndarray, min_score: int) -> float:
        return float(fn(gt, pred, min_score))  # accept True/False, 0/1 and 0-d arrays

    check(as_float, hit_at_1, hit_at_1_inputs, name="Exercise 3.7: hit_at_1", n=40)
