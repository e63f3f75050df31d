"""Video corpus moment retrieval recall (TVR style): VCMR, SVMR and VR R@K.

By default every definition is that of TVRetrieval's ``standalone_eval/eval.py`` (Lei et al.,
ECCV 2020; ``eval_by_task_type``):

* Order: the script trusts the submission's order. Per query it keeps the first 100 predictions
  ``[vid, st, ed, score]`` *as listed* (``max_pred_per_query``) and never sorts by score.
* **VCMR R@K, IoU>=t**: hit when one of the first K predictions has a ground-truth video and
  IoU >= t with a ground-truth moment of that video.
* **SVMR**: the same, after dropping every prediction (of the first 100) that is not in a
  ground-truth video.
* **VR R@K**: hit when one of the first K predictions is in a ground-truth video. K counts list
  positions: a video listed twice takes two positions. The official VR lines are
  ``[vid, 0, 0, score]`` (times unused), and are accepted as such.
* IoU (``compute_temporal_iou_batch``): start/end times are cast to float32 and the IoU is
  computed in float32 with the union taken as the hull of the two windows (equal to the union
  when they overlap); numpy compares it with the threshold in float32 too, so exact ratios such
  as 14 s / 20 s = 0.7 still hit 0.7. ``float32_iou=False`` computes in float64 instead.
* Values are percentages with 2 decimals (``get_rounded_percentage``); keys ``"0.5-r1"``
  (VCMR/SVMR) and ``"r1"`` (VR), K in (1, 5, 10, 100), t in (0.5, 0.7).

Explicit options for other behaviour:
  * ``rank_by_score=True``: rank all predictions by score (descending, stable) before the top-100
    cut. Identical to the default for lists written best first.
  * ``distinct_videos=True`` (VR): K counts distinct videos (first occurrence) instead of list
    positions.

Several relevant moments per query (our corpus, TVR-Ranking style): TVR has exactly one GT moment
per query, so the official script has no rule for this. Here the GT of a query is every
``relevant_moments`` entry with relevance >= ``min_relevance`` (default 1), and a prediction is
correct when it matches **any** of them (same video and IoU >= t). Queries without such a moment
are skipped (``n_queries`` says how many counted).
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


def _check_gt_moments(query: Mapping) -> None:
    """Every relevant moment of a query has a vid, a window ``[st, ed]`` with st < ed and a relevance."""
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


def _check_prediction_lines(qid: Any, preds: Sequence, need_times: bool) -> None:
    """Every line is ``[vid, st, ed, score]`` with numbers, a non-NaN score and, for moments, st < ed."""
    for i, p in enumerate(preds):
        if len(p) != 4 or not all(_is_number(v) for v in p[1:]):
            raise MetricInputError(
                f"qid {qid!r}: prediction {i} must be [vid, st, ed, score], got {p!r}"
            )
        if math.isnan(p[3]):
            raise MetricInputError(f"qid {qid!r}: prediction {i} has a NaN score")
        if need_times and not p[1] < p[2]:
            raise MetricInputError(f"qid {qid!r}: prediction {i} must have st < ed, got {p[1:3]!r}")


def validate_corpus_predictions(
    predictions: Mapping, queries: Sequence[Mapping], task: str = "VCMR"
) -> None:
    """Check corpus-level predictions against corpus queries.

    Args:
        predictions: qid -> list of ``[vid, st, ed, score]`` (an empty list is a legal miss).
        queries: corpus queries ``{"qid", "query", "relevant_moments": [{"vid", "duration",
            "window", "relevance"}, ...]}``.
        task: ``"VR"`` lines may have any times (the official form is ``[vid, 0, 0, score]``);
            moment lines (VCMR, SVMR) need ``st < ed``.

    Raises:
        MetricInputError: a qid missing on either side, a duplicate GT qid, a malformed
        prediction (not 4 fields, NaN score, st >= ed for a moment) or GT moment (names qid and
        index).
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
        _check_gt_moments(query)
        _check_prediction_lines(query["qid"], predictions[query["qid"]], task != "VR")


def rank_predictions(
    preds: Sequence[Sequence], top_k: int | None = MAX_PREDICTIONS
) -> list[Sequence]:
    """Predictions sorted by score descending (stable: ties keep their order), cut to ``top_k``."""
    ranked = sorted(preds, key=lambda p: -float(p[3]))
    return ranked if top_k is None else ranked[:top_k]


def top_predictions(
    preds: Sequence[Sequence], top_k: int | None = MAX_PREDICTIONS, rank_by_score: bool = False
) -> list[Sequence]:
    """The predictions that count, in rank order (TVRetrieval ``eval_by_task_type``).

    Args:
        preds: ``[vid, st, ed, score]`` lines.
        top_k: how many count (100 in TVR; None: all).
        rank_by_score: option: sort by score first (:func:`rank_predictions`).

    Returns:
        Default: the first ``top_k`` lines as listed (the official script never sorts).
    """
    if rank_by_score:
        return rank_predictions(preds, top_k)
    return list(preds) if top_k is None else list(preds[:top_k])


def gt_moments(query: Mapping, min_relevance: float = 1) -> list[Mapping]:
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


def video_hits(
    preds: Sequence[Sequence], gt_vids: set, ks: Sequence[int], distinct_videos: bool = False
) -> dict[str, bool]:
    """VR hits of one query: is a ground-truth video among the first K (TVRetrieval ``VR``)?

    Args:
        preds: ranked ``[vid, ...]`` lines.
        gt_vids: the videos with a ground-truth moment.
        ks: the K values.
        distinct_videos: option: K counts distinct videos (first occurrence), not positions.

    Returns:
        ``{"r1": bool, ...}``.
    """
    vids = [p[0] for p in preds]
    if distinct_videos:
        vids = list(dict.fromkeys(vids))
    return {f"r{k}": any(v in gt_vids for v in vids[:k]) for k in ks}


def moment_hits(
    preds: Sequence[Sequence],
    moments: Sequence[Mapping],
    ks: Sequence[int],
    iou_thresholds: Sequence[float],
    float32_iou: bool = True,
) -> dict[str, bool]:
    """VCMR / SVMR hits of one query: does one of the first K predictions match a GT moment?

    Returns:
        ``{"0.5-r1": bool, ...}`` for every threshold and K.
    """
    correct = correct_matrix(preds, moments, iou_thresholds, float32_iou)
    return {
        f"{thr}-r{k}": bool(correct[t, :k].any())
        for t, thr in enumerate(iou_thresholds)
        for k in ks
    }


def vcmr_recall(
    predictions: Mapping,
    queries: Sequence[Mapping],
    task: str = "VCMR",
    ks: Sequence[int] = RECALL_KS,
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
    min_relevance: float = 1,
    float32_iou: bool = True,
    rank_by_score: bool = False,
    distinct_videos: bool = False,
) -> dict[str, float]:
    """R@K (and IoU>=t) for one task, averaged over the queries that have a GT moment.

    Args:
        predictions: qid -> ``[[vid, st, ed, score], ...]``, best first (the list order is the
            ranking, as in TVRetrieval's ``eval_by_task_type``).
        queries: corpus queries with ``relevant_moments``.
        task: ``"VCMR"``, ``"SVMR"`` or ``"VR"`` (see module docstring).
        ks: the K values.
        iou_thresholds: the IoU thresholds (ignored for VR).
        min_relevance: moments below this relevance do not count as GT.
        float32_iou: reproduce TVR's float32 IoU.
        rank_by_score: option: rank each list by score before the top-100 cut.
        distinct_videos: option for VR: K counts distinct videos instead of list positions.

    Returns:
        ``{"0.5-r1": %, ...}`` (VCMR/SVMR) or ``{"r1": %, ...}`` (VR), plus ``"n_queries"``.

    Raises:
        MetricInputError: malformed input, an unknown task, or no query with a relevant moment.
    """
    if task not in TASKS:
        raise MetricInputError(f"task must be one of {TASKS}, got {task!r}")
    validate_corpus_predictions(predictions, queries, task)
    hits: dict[str, list[bool]] = {}
    n_scored = 0
    for query in queries:
        moments = gt_moments(query, min_relevance)
        if not moments:
            continue  # no relevant moment: the query is not scored
        n_scored += 1
        gt_vids = {m["vid"] for m in moments}
        preds = top_predictions(predictions[query["qid"]], MAX_PREDICTIONS, rank_by_score)
        if task == "VR":
            one = video_hits(preds, gt_vids, ks, distinct_videos)
        else:
            if task == "SVMR":
                preds = [p for p in preds if p[0] in gt_vids]
            one = moment_hits(preds, moments, ks, iou_thresholds, float32_iou)
        for key, hit in one.items():
            hits.setdefault(key, []).append(hit)
    if n_scored == 0:
        raise MetricInputError(f"no query has a relevant moment with relevance >= {min_relevance}")
    out: dict[str, float] = {key: round(100 * float(np.mean(v)), 2) for key, v in hits.items()}
    out["n_queries"] = n_scored
    return out


def eval_vcmr(
    predictions: Mapping,
    queries: Sequence[Mapping],
    vr_predictions: Mapping | None = None,
    **kwargs: Any,
) -> dict[str, dict[str, float]]:
    """All three TVR tasks: ``{"VCMR": {...}, "SVMR": {...}, "VR": {...}}``.

    Args:
        predictions: qid -> moment lines, used for VCMR and SVMR (and for VR when
            ``vr_predictions`` is None).
        queries: corpus queries.
        vr_predictions: qid -> video lines ``[vid, 0, 0, score]`` for VR (the official
            submission's separate ``"VR"`` list).
        **kwargs: passed to :func:`vcmr_recall`.

    Returns:
        One :func:`vcmr_recall` result per task.
    """
    vr = predictions if vr_predictions is None else vr_predictions
    by_task = {"VCMR": predictions, "SVMR": predictions, "VR": vr}
    return {task: vcmr_recall(by_task[task], queries, task=task, **kwargs) for task in TASKS}
