"""Video corpus moment retrieval recall (TVR style): VCMR, SVMR and VR R@K.

Follows TVRetrieval's ``standalone_eval/eval.py`` (Lei et al., ECCV 2020):

* Per query, predictions ``[vid, st, ed, score]`` are ranked by score (descending, stable; the
  official script takes the list order, identical for score-sorted lists) and cut to the top 100.
* **VCMR R@K, IoU>=t**: hit when one of the top-K predictions has a ground-truth video and IoU >= t
  with a ground-truth moment of that video.
* **SVMR**: the same, after dropping every prediction that is not in a ground-truth video.
* **VR R@K**: video retrieval; the ranked list of *distinct* predicted videos (first occurrence
  counts), hit when one of the top-K videos has a ground-truth moment.
* Values are percentages with 2 decimals; keys ``"0.5-r1"`` (VCMR/SVMR) and ``"r1"`` (VR), K in
  (1, 5, 10, 100), t in (0.5, 0.7).

Several relevant moments per query (our corpus, TVR-Ranking style): TVR has exactly one GT moment
per query. Here the GT of a query is every ``relevant_moments`` entry with relevance >=
``min_relevance`` (default 1), and a prediction is correct when it matches **any** of them
(same video and IoU >= t). Queries without such a moment are skipped (``n_queries`` says how many
counted).

Arithmetic: TVR casts start/end times to float32 and computes IoU in float32; numpy then
compares with the threshold in float32 too, so exact ratios such as 14 s / 20 s = 0.7 still hit
0.7. ``float32_iou=True`` (the default) reproduces this; it differs from float64 only within
float32 rounding (e.g. a prediction ending at 0.69999999 s against GT [0, 1] hits 0.7 in float32
and misses in float64). Pass ``float32_iou=False`` for float64 arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from course_lib.errors import MetricInputError

RECALL_KS: tuple[int, ...] = (1, 5, 10, 100)
IOU_THRESHOLDS: tuple[float, ...] = (0.5, 0.7)
MAX_PREDICTIONS = 100
TASKS = ("VCMR", "SVMR", "VR")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def validate_corpus_predictions(predictions: Mapping, queries: Sequence[Mapping]) -> None:
    """Check corpus-level predictions against corpus queries.

    Args:
        predictions: qid -> list of ``[vid, st, ed, score]`` (an empty list is a legal miss).
        queries: corpus queries ``{"qid", "query", "relevant_moments": [{"vid", "duration",
            "window", "relevance"}, ...]}``.

    Raises:
        MetricInputError: a qid missing on either side, a duplicate GT qid, a malformed
        prediction (not 4 fields, st >= ed, NaN score) or GT moment (names qid and index).
    """
    if not isinstance(predictions, Mapping):
        raise MetricInputError("predictions must map qid -> [[vid, st, ed, score], ...]")
    gt_qids = [q.get("qid") if isinstance(q, Mapping) else None for q in queries]
    if None in gt_qids:
        raise MetricInputError(f"ground-truth query {gt_qids.index(None)} has no 'qid'")
    if len(set(gt_qids)) != len(gt_qids):
        raise MetricInputError("ground truth has a qid twice")
    missing = [q for q in gt_qids if q not in predictions]
    extra = [q for q in predictions if q not in set(gt_qids)]
    if missing:
        raise MetricInputError(f"predictions lack qids {missing[:5]} ({len(missing)} missing)")
    if extra:
        raise MetricInputError(f"predictions have qids not in the ground truth: {extra[:5]}")
    for query in queries:
        qid = query["qid"]
        for i, m in enumerate(query.get("relevant_moments", [])):
            w = m.get("window") if isinstance(m, Mapping) else None
            if w is None or len(w) != 2 or not all(_is_number(v) for v in w) or not w[0] < w[1]:
                raise MetricInputError(
                    f"qid {qid!r}: relevant_moments[{i}] needs window [st, ed], st < ed; got {w!r}"
                )
            if "vid" not in m or not _is_number(m.get("relevance", 1)):
                raise MetricInputError(
                    f"qid {qid!r}: relevant_moments[{i}] needs 'vid' and a numeric 'relevance'"
                )
        for i, p in enumerate(predictions[qid]):
            if len(p) != 4 or not all(_is_number(v) for v in p[1:]):
                raise MetricInputError(
                    f"qid {qid!r}: prediction {i} must be [vid, st, ed, score], got {p!r}"
                )
            if math.isnan(p[3]):
                raise MetricInputError(f"qid {qid!r}: prediction {i} has a NaN score")
            if not p[1] < p[2]:
                raise MetricInputError(
                    f"qid {qid!r}: prediction {i} must have st < ed, got {p[1:3]!r}"
                )


def rank_predictions(
    preds: Sequence[Sequence], top_k: int | None = MAX_PREDICTIONS
) -> list[Sequence]:
    """Predictions sorted by score descending (stable: ties keep their order), cut to ``top_k``."""
    ranked = sorted(preds, key=lambda p: -float(p[3]))
    return ranked if top_k is None else ranked[:top_k]


def gt_moments(query: Mapping, min_relevance: int = 1) -> list[Mapping]:
    """The relevant moments of a corpus query with relevance >= ``min_relevance``."""
    return [m for m in query.get("relevant_moments", []) if m.get("relevance", 1) >= min_relevance]


def moment_ious(preds: Sequence[Sequence], moment: Mapping, float32_iou: bool = True) -> np.ndarray:
    """(N,) IoU of each prediction with one GT moment; 0 for predictions in other videos."""
    dtype = np.float32 if float32_iou else np.float64
    if not preds:
        return np.zeros(0, dtype=dtype)
    spans = np.array([[p[1], p[2]] for p in preds], dtype=dtype)
    gt = np.asarray(moment["window"], dtype=dtype)
    inter = np.maximum(dtype(0), np.minimum(spans[:, 1], gt[1]) - np.maximum(spans[:, 0], gt[0]))
    hull = np.maximum(spans[:, 1], gt[1]) - np.minimum(
        spans[:, 0], gt[0]
    )  # = union when overlapping
    iou = np.divide(inter, hull, out=np.zeros_like(inter), where=hull != 0)
    same_video = np.array([p[0] == moment["vid"] for p in preds])
    return iou * same_video


def correct_matrix(
    preds: Sequence[Sequence],
    moments: Sequence[Mapping],
    iou_thresholds: Sequence[float],
    float32_iou: bool = True,
) -> np.ndarray:
    """(len(thresholds), N) bool: prediction n matches some GT moment at threshold t."""
    correct = np.zeros((len(iou_thresholds), len(preds)), dtype=bool)
    for moment in moments:
        ious = moment_ious(preds, moment, float32_iou)
        for t, thr in enumerate(iou_thresholds):
            correct[t] |= ious >= thr
    return correct


def vcmr_recall(
    predictions: Mapping,
    queries: Sequence[Mapping],
    task: str = "VCMR",
    ks: Sequence[int] = RECALL_KS,
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
    min_relevance: int = 1,
    float32_iou: bool = True,
) -> dict[str, float]:
    """R@K (and IoU>=t) for one task, averaged over the queries that have a GT moment.

    Args:
        predictions: qid -> ``[[vid, st, ed, score], ...]``.
        queries: corpus queries with ``relevant_moments``.
        task: ``"VCMR"``, ``"SVMR"`` or ``"VR"`` (see module docstring).
        ks: the K values.
        iou_thresholds: the IoU thresholds (ignored for VR).
        min_relevance: moments below this relevance do not count as GT.
        float32_iou: reproduce TVR's float32 IoU.

    Returns:
        ``{"0.5-r1": %, ...}`` (VCMR/SVMR) or ``{"r1": %, ...}`` (VR), plus ``"n_queries"``.
    """
    if task not in TASKS:
        raise MetricInputError(f"task must be one of {TASKS}, got {task!r}")
    validate_corpus_predictions(predictions, queries)
    hits: dict[str, list[bool]] = {}
    for query in queries:
        moments = gt_moments(query, min_relevance)
        if not moments:
            continue  # no relevant moment: the query is not scored
        gt_vids = {m["vid"] for m in moments}
        preds = rank_predictions(predictions[query["qid"]])
        if task == "VR":
            ranked_vids = list(dict.fromkeys(p[0] for p in preds))  # distinct, first occurrence
            for k in ks:
                hits.setdefault(f"r{k}", []).append(any(v in gt_vids for v in ranked_vids[:k]))
            continue
        if task == "SVMR":
            preds = [p for p in preds if p[0] in gt_vids]
        correct = correct_matrix(preds, moments, iou_thresholds, float32_iou)
        for t, thr in enumerate(iou_thresholds):
            for k in ks:
                hits.setdefault(f"{thr}-r{k}", []).append(bool(correct[t, :k].any()))
    n = sum(1 for q in queries if gt_moments(q, min_relevance))
    if n == 0:
        raise MetricInputError(f"no query has a relevant moment with relevance >= {min_relevance}")
    out = {key: round(100 * float(np.mean(v)), 2) for key, v in hits.items()}
    out["n_queries"] = n
    return out


def eval_vcmr(
    predictions: Mapping, queries: Sequence[Mapping], **kwargs: Any
) -> dict[str, dict[str, float]]:
    """All three TVR tasks: ``{"VCMR": {...}, "SVMR": {...}, "VR": {...}}`` (kwargs as vcmr_recall)."""
    return {task: vcmr_recall(predictions, queries, task=task, **kwargs) for task in TASKS}
