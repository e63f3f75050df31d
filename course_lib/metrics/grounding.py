"""Moment retrieval on MR-only datasets (Charades-STA, ActivityNet Captions, TaCoS): R@K at IoU, mIoU.

The usual table of these datasets is "R@1 and R@5 at IoU 0.3 / 0.5 / 0.7, and mIoU", the
evaluation of 2D-TAN (Zhang et al., AAAI 2020; ``microsoft/2D-TAN``, ``lib/core/eval.py``,
``eval``; ``experiments/*/*.yaml``: ``RECALL: 1,5``, ``TIOU: 0.3,0.5,0.7`` for ActivityNet).
Lighthouse (``line/lighthouse``, ``training/standalone_eval/eval.py``), which ships these
datasets in the layout :mod:`course_lib.datasets.release_readers` reads, reports only moment_detr's
MR-mAP and R1 at IoU 0.5-0.95 (:func:`course_lib.metrics.qvhighlights.eval_qvhighlights` computes
those): no R@5, no IoU 0.3, no mIoU. The definitions here:

* **Ranking**: the predictions in list order, best first (lighthouse ``compute_mr_r1`` takes
  ``pred_relevant_windows[0]``; 2D-TAN cuts ``seg[:r]``). ``rank_by_score=True`` (option) sorts
  each list by score first (descending, stable).
* **IoU**: ``|a ∩ b| / |a ∪ b|``. Both official scripts divide by the hull ``max(ed) - min(st)``
  (lighthouse ``compute_temporal_iou_batch_paired``, 2D-TAN ``iou``), which equals the union
  whenever the windows overlap, and the intersection is 0 when they do not: the same number.
* **R@K, IoU t**: a query is a hit when one of its first K predictions has IoU with a
  ground-truth window of at least t (``convention="lighthouse"``, the default: ``IoU >= t`` as in
  ``compute_mr_r1``) or above t (``convention="2d-tan"``: ``(overlap > t)[:r].any()``). With
  several GT windows any of them counts (these datasets have one per query). Averaged over
  queries.
* **mIoU**: the mean over queries of the IoU of the first prediction with the ground truth (the
  best-matching GT window when there are several; 2D-TAN averages the three best IoUs of its
  first prediction over the GT windows, which is that IoU with one GT window).
* Percent with 2 decimals, as both scripts print them; keys ``"R1@0.5"``, ``"R5@0.7"``,
  ``"mIoU"``, plus ``"n_queries"``.

Departures: 2D-TAN runs non-maximum suppression (``NMS_THRESH: 0.5``) on its predictions before
cutting the top K; here the predictions are scored as given (suppress duplicates beforehand if
the model does not). A query without a predicted window is a miss with IoU 0 (both scripts crash
on it).

Inputs: the QVHighlights submission form (:mod:`course_lib.metrics.submission`): one line per
query ``{"qid", "pred_relevant_windows": [[st, ed, score], ...]}``; a ``pred_saliency_scores``
field is ignored (lighthouse models predict saliency for these datasets too, but they have no
saliency labels). Ground truth: moment records with ``qid``, ``duration`` and
``relevant_windows``, e.g. the MR-only records of
:func:`course_lib.datasets.release_readers.read_mr_release`; int or string qids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from course_lib.datasets.records import is_int
from course_lib.errors import MetricInputError
from course_lib.metrics.qvhighlights import round_percent
from course_lib.metrics.submission import SALIENCY_KEY, WINDOW_KEY, validate_submission
from course_lib.spans import temporal_iou

RECALL_KS: tuple[int, ...] = (1, 5)
IOU_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)
CONVENTIONS: dict[str, bool] = {"lighthouse": True, "2d-tan": False}
"""Convention -> whether a hit needs ``IoU >= t`` (True) or ``IoU > t`` (False)."""


def ranked_windows(windows: Sequence[Sequence[float]], rank_by_score: bool = False) -> np.ndarray:
    """A query's predicted ``[st, ed]`` in rank order.

    Args:
        windows: ``[st, ed, score]`` rows, best first.
        rank_by_score: option: sort by score, descending, equal scores in list order.

    Returns:
        (P, 2) float64 windows.
    """
    rows = np.asarray(windows, dtype=np.float64).reshape(-1, 3)
    if rank_by_score:
        rows = rows[np.argsort(-rows[:, 2], kind="stable")]
    return rows[:, :2]


def best_ious(pred_windows: np.ndarray, gt_windows: Sequence[Sequence[float]]) -> np.ndarray:
    """(P,) IoU of each predicted window with the GT window it overlaps most (0 with no GT)."""
    gt = np.asarray(gt_windows, dtype=np.float64).reshape(-1, 2)
    if len(pred_windows) == 0 or len(gt) == 0:
        return np.zeros(len(pred_windows))
    return temporal_iou(pred_windows, gt).max(axis=1)


def query_hits(
    ious: np.ndarray, ks: Sequence[int], iou_thresholds: Sequence[float], inclusive: bool = True
) -> dict[str, bool]:
    """R@K hits of one query from the ranked predictions' IoUs.

    Args:
        ious: (P,) IoU of each ranked prediction with the ground truth (:func:`best_ious`).
        ks: cut-offs K.
        iou_thresholds: thresholds t.
        inclusive: a hit needs ``IoU >= t`` (lighthouse) rather than ``IoU > t`` (2D-TAN).

    Returns:
        ``{"R1@0.5": bool, ...}``.
    """
    hits = {}
    for k in ks:
        top = ious[:k]
        for t in iou_thresholds:
            hits[f"R{k}@{t}"] = bool(np.any(top >= t if inclusive else top > t))
    return hits


def _check_options(ks: Sequence[int], iou_thresholds: Sequence[float], convention: str) -> None:
    """Refuse K that are not positive ints, thresholds outside (0, 1] and unknown conventions."""
    if not ks or not all(is_int(k) and k >= 1 for k in ks):
        raise MetricInputError(f"ks must be ints >= 1, got {list(ks)!r}")
    if not iou_thresholds or not all(0 < float(t) <= 1 for t in iou_thresholds):
        raise MetricInputError(f"iou_thresholds must lie in (0, 1], got {list(iou_thresholds)!r}")
    if convention not in CONVENTIONS:
        raise MetricInputError(
            f"convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}"
        )


def _window_lines(submission: Sequence[Mapping]) -> list[dict]:
    """The submission lines without their saliency field; each must have predicted windows."""
    if not isinstance(submission, Sequence) or len(submission) == 0:
        raise MetricInputError("submission must be a non-empty list of prediction dicts")
    for i, line in enumerate(submission):
        if not isinstance(line, Mapping) or WINDOW_KEY not in line:
            qid = line.get("qid", "?") if isinstance(line, Mapping) else "?"
            raise MetricInputError(
                f"submission line {i} (qid {qid!r}) has no {WINDOW_KEY!r}: grounding metrics "
                "score predicted windows"
            )
    return [{k: v for k, v in line.items() if k != SALIENCY_KEY} for line in submission]


def eval_grounding(
    submission: Sequence[Mapping],
    ground_truth: Sequence[Mapping],
    ks: Sequence[int] = RECALL_KS,
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
    convention: str = "lighthouse",
    rank_by_score: bool = False,
) -> dict[str, float]:
    """R@K at IoU t and mIoU of a submission (module docstring).

    Args:
        submission: one line per ground-truth qid with ``pred_relevant_windows`` (best first).
        ground_truth: moment records (``qid``, ``duration``, ``relevant_windows``).
        ks: cut-offs K (1 and 5).
        iou_thresholds: thresholds t (0.3, 0.5, 0.7).
        convention: ``"lighthouse"`` (``IoU >= t``, default) or ``"2d-tan"`` (``IoU > t``).
        rank_by_score: option: rank each list by score before the cut.

    Returns:
        ``{"R1@0.3": %, ..., "R5@0.7": %, "mIoU": %, "n_queries": n}``; queries without a GT
        window are skipped (``n_queries`` counts the rest).

    Raises:
        MetricInputError: bad options, a submission without ``pred_relevant_windows``, qids
            missing or extra on either side, malformed windows (names the qid and field), or no
            query with a GT window.
    """
    # 1. options and inputs (saliency predictions play no part: MR-only ground truth)
    _check_options(ks, iou_thresholds, convention)
    lines = _window_lines(submission)
    validate_submission(lines, ground_truth)
    windows = {p["qid"]: p[WINDOW_KEY] for p in lines}
    # 2. per query: the ranked predictions' IoUs, their hits and the first one's IoU
    hits: dict[str, list[bool]] = {}
    top1: list[float] = []
    for record in ground_truth:
        if len(record.get("relevant_windows", [])) == 0:
            continue  # nothing to find: the query is not scored
        preds = ranked_windows(windows[record["qid"]], rank_by_score)
        ious = best_ious(preds, record["relevant_windows"])
        for key, hit in query_hits(ious, ks, iou_thresholds, CONVENTIONS[convention]).items():
            hits.setdefault(key, []).append(hit)
        top1.append(float(ious[0]) if len(ious) else 0.0)
    if not top1:
        raise MetricInputError("no ground-truth record has a relevant window")
    # 3. means over the scored queries, in percent
    out = {key: round_percent(np.mean(values)) for key, values in hits.items()}
    out["mIoU"] = round_percent(np.mean(top1))
    out["n_queries"] = len(top1)
    return out
