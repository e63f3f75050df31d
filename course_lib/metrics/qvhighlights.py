"""QVHighlights metrics: moment retrieval (MR mAP, R1@IoU) and highlight detection (HL mAP, HIT@1).

By default every definition is that of moment_detr's ``standalone_eval/eval.py`` (Lei et al.,
NeurIPS 2021; ``eval_submission``); the official function is named in brackets.

Moment retrieval
  * Order (``compute_mr_ap``, ``compute_mr_r1``): the script trusts the submission's order. Per
    query it keeps the first ``MAX_PRED_WINDOWS = 10`` windows *as listed*, and R1 looks at the
    first listed window. Detection AP then ranks the kept windows by score, descending, equal
    scores in list order (``utils.compute_average_precision_detection``: a stable ``list.sort``).
  * Detection AP (ActivityNet / VOC 2011 style) at IoU thresholds 0.50, 0.55, ..., 0.95: walking
    down the ranking, a prediction is a true positive when some still-unmatched GT window has
    IoU >= threshold with it; it takes the unmatched GT window with the highest IoU (so every GT
    window is matched at most once). Precision is made monotone (precision envelope) and summed
    over the recall steps. ``MR-mAP`` = mean over queries, then over thresholds; x100, 2 decimals.
  * Length buckets (``eval_moment_retrieval``'s ``length_ranges``, ``get_data_by_range``): a
    query's GT windows are filtered to the bucket ``short`` (0 < len <= 10 s), ``middle``
    (10 < len <= 30) or ``long`` (30 < len <= 150); queries left without windows are skipped in
    that bucket (their predictions are *not* filtered). ``full`` keeps every window.
  * ``R1@t`` (``compute_mr_r1``): the first listed window against the GT window it overlaps most
    (first on ties), with the script's IoU whose union is the hull of the two windows (equal to
    the IoU when they overlap); hit when IoU >= t.

Highlight detection
  * GT saliency per clip = the three annotators' scores (0 for clips not listed), one row per
    2-s clip, ``int(duration / 2)`` rows (``mk_gt_scores``). A clip is positive for an annotator
    at level Fair / Good / VeryGood when that score is >= 2 / 3 / 4.
  * ``HL-Hit1`` (``compute_hl_hit1``): is the clip with the highest predicted saliency (first one
    on ties) positive for any annotator? ``HL-mAP`` (``compute_hl_ap``, ``utils.get_ap``): AP of
    the predicted saliency ranking of *all* clips of the video, per annotator (ties between equal
    scores are one threshold, as sklearn's ``precision_recall_curve``; AP = mean interpolated
    precision over the distinct recall levels; all-negative -> 0, all-positive -> 1), averaged
    over annotators and queries. x100, 2 decimals.
  * Saliency lists of the wrong length (``compute_ap_from_tuple``, ``compute_hl_hit1``): for
    HL-mAP a list longer than the video's clips is truncated and a shorter one zero-padded at the
    end; HL-Hit1 takes the argmax of the list as given and scores a top clip beyond the video as
    a miss. The official sample predictions (``standalone_eval/sample_val_preds.jsonl``) contain
    such lists. We score them the same way and warn (see ``validate_submission``).

Explicit options for other behaviour (keyword arguments of :func:`eval_qvhighlights`):
  * ``rank_by_score=True``: rank *all* windows by score (stable) before the top-10 cut and use
    the best-scored window for R1. Identical to the default for lists written best first, as
    :func:`~course_lib.metrics.submission.write_submission` writes them.
  * ``length_buckets=UNBOUNDED_LENGTH_BUCKETS``: ``long`` is every window longer than 30 s.
  * ``strict_saliency_length=True``: refuse saliency lists whose length is not
    ``int(duration / 2)``.

Departures on inputs the official script crashes on or cannot score:
  * a query with no predicted windows scores AP 0 and an R1 miss (the official script drops it
    from mAP and crashes in R1); a query with no GT window is skipped by every MR metric (the
    official script cannot handle it); a bucket without queries reports NaN; an empty saliency
    list is refused (the official ``np.argmax`` crashes on it).
  * GT windows with exactly equal IoU to a prediction: the later GT window is taken first (what
    the official ``argsort()[::-1]`` gives with a stable sort; numpy leaves it unspecified).
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np

from course_lib.errors import MetricInputError
from course_lib.metrics.submission import (
    SALIENCY_KEY,
    WINDOW_KEY,
    validate_submission,
)
from course_lib.spans import num_clips, temporal_iou
from course_lib.timeline import CLIP_LEN

IOU_THRESHOLDS: tuple[float, ...] = tuple(float(f"{t:.2f}") for t in np.linspace(0.5, 0.95, 10))
"""0.5, 0.55, ..., 0.95 (rounded to 2 decimals as the official script does)."""
MAX_PRED_WINDOWS = 10
LENGTH_BUCKETS: dict[str, tuple[float, float]] = {
    "short": (0.0, 10.0),
    "middle": (10.0, 30.0),
    "long": (30.0, 150.0),
}
"""GT window length buckets, each the half-open range (lo, hi] in seconds (moment_detr's
``eval_moment_retrieval``: ``length_ranges = [[0, 10], [10, 30], [30, 150]]``)."""
UNBOUNDED_LENGTH_BUCKETS: dict[str, tuple[float, float]] = {
    **LENGTH_BUCKETS,
    "long": (30.0, math.inf),
}
"""Option: the same buckets with ``long`` open above (every window longer than 30 s)."""
SALIENCY_LEVELS: dict[str, int] = {"Fair": 2, "Good": 3, "VeryGood": 4}


def round_percent(x: float) -> float:
    """``x`` in [0, 1] -> percent with 2 decimals, formatted exactly as the official script."""
    return float(f"{100 * x:.2f}")


# ----------------------------------------------------------------------------- moment retrieval
def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC 2011 interpolated AP: area under the monotone precision envelope.

    Args:
        precision: (P,) precision after each ranked prediction.
        recall: (P,) recall after each ranked prediction (non-decreasing).

    Returns:
        ``sum_i (r_i - r_{i-1}) * max_{j >= i} p_j`` over the points where recall changes.
    """
    prec = np.concatenate([[0.0], precision, [0.0]])
    rec = np.concatenate([[0.0], recall, [1.0]])
    # envelope: precision at recall r is the best precision at any recall >= r
    prec = np.maximum.accumulate(prec[::-1])[::-1]
    steps = np.nonzero(rec[1:] != rec[:-1])[0] + 1
    return float(np.sum((rec[steps] - rec[steps - 1]) * prec[steps]))


def _sorted_by_score(arr: np.ndarray) -> np.ndarray:
    """Rows of an ``[st, ed, score]`` array by score, descending; equal scores keep their order."""
    return arr[np.argsort(-arr[:, 2], kind="stable")]


def rank_windows(
    windows: Sequence[Sequence[float]],
    top_k: int | None = MAX_PRED_WINDOWS,
    rank_by_score: bool = False,
) -> np.ndarray:
    """The windows that count for detection AP, in rank order.

    Default (moment_detr ``compute_mr_ap`` + ``compute_average_precision_detection``): keep the
    first ``top_k`` windows as listed, then rank them by score, descending, equal scores in list
    order (stable sort).

    Args:
        windows: (N, 3) ``[st, ed, score]`` rows.
        top_k: how many windows count (None: all).
        rank_by_score: option: rank all windows by score first, then keep the best ``top_k``.

    Returns:
        (min(N, top_k), 3) float64 array in rank order.
    """
    arr = np.asarray(windows, dtype=np.float64).reshape(-1, 3)
    if rank_by_score:
        arr = _sorted_by_score(arr)
    return _sorted_by_score(arr if top_k is None else arr[:top_k])


def first_window(windows: Sequence[Sequence[float]], rank_by_score: bool = False) -> np.ndarray:
    """The window R1 looks at: the first listed one (moment_detr ``compute_mr_r1``).

    Args:
        windows: (N, 3) ``[st, ed, score]`` rows, N >= 1.
        rank_by_score: option: the best-scored window instead (the first of equal scores).

    Returns:
        (3,) float64 ``[st, ed, score]``.
    """
    arr = np.asarray(windows, dtype=np.float64).reshape(-1, 3)
    return _sorted_by_score(arr)[0] if rank_by_score else arr[0]


def match_detections(
    gt_windows: np.ndarray, ranked_preds: np.ndarray, threshold: float
) -> np.ndarray:
    """Greedy one-to-one matching of ranked predictions to GT windows at one IoU threshold.

    Args:
        gt_windows: (G, 2) GT ``[st, ed]``.
        ranked_preds: (P, >=2) predictions already in rank order.
        threshold: a prediction needs IoU >= threshold with an unmatched GT window.

    Returns:
        (P,) bool, True where the prediction is a true positive.
    """
    ious = temporal_iou(ranked_preds[:, :2], gt_windows)  # (P, G)
    taken = np.zeros(len(gt_windows), dtype=bool)
    is_tp = np.zeros(len(ranked_preds), dtype=bool)
    for p in range(len(ranked_preds)):
        # candidates: unmatched GT windows above the threshold; best IoU wins, later GT on ties
        cand = np.nonzero(~taken & (ious[p] >= threshold))[0]
        if len(cand):
            best = cand[::-1][np.argmax(ious[p, cand[::-1]])]
            taken[best] = True
            is_tp[p] = True
    return is_tp


def detection_ap(
    gt_windows: Sequence[Sequence[float]],
    pred_windows: Sequence[Sequence[float]],
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
    top_k: int | None = MAX_PRED_WINDOWS,
    rank_by_score: bool = False,
) -> np.ndarray:
    """Per-query detection AP at several IoU thresholds (moment_detr MR-mAP, ``compute_mr_ap``).

    Args:
        gt_windows: (G, 2) GT windows in seconds, G >= 1.
        pred_windows: (P, 3) ``[st, ed, score]``; the first ``top_k`` as listed count, ranked
            by score (see :func:`rank_windows`).
        iou_thresholds: IoU thresholds.
        top_k: how many windows count (10 in QVHighlights).
        rank_by_score: option: rank all windows by score before the ``top_k`` cut.

    Returns:
        (len(iou_thresholds),) AP values in [0, 1]; zeros when there is no prediction.
    """
    gt = np.asarray(gt_windows, dtype=np.float64).reshape(-1, 2)
    preds = rank_windows(pred_windows, top_k, rank_by_score)
    aps = np.zeros(len(iou_thresholds))
    if len(preds) == 0 or len(gt) == 0:
        return aps
    for t, thr in enumerate(iou_thresholds):
        is_tp = match_detections(gt, preds, thr)
        tp, fp = np.cumsum(is_tp).astype(float), np.cumsum(~is_tp).astype(float)
        aps[t] = interpolated_ap(tp / (tp + fp), tp / len(gt))
    return aps


def _hull_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two spans with union = hull length (official R1 code; equal to IoU when they overlap)."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    hull = max(a[1], b[1]) - min(a[0], b[0])
    return inter / hull if hull != 0 else 0.0


def top1_iou(
    gt_windows: Sequence[Sequence[float]],
    pred_windows: Sequence[Sequence[float]],
    rank_by_score: bool = False,
) -> float:
    """IoU behind R1@t: the first listed window vs the GT window it overlaps most (``compute_mr_r1``).

    Args:
        gt_windows: (G, 2) GT windows.
        pred_windows: (P, 3) ``[st, ed, score]``.
        rank_by_score: option: use the best-scored window instead of the first listed one.

    Returns:
        The hull IoU of the two windows; 0.0 without predictions or GT windows.
    """
    gt = np.asarray(gt_windows, dtype=np.float64).reshape(-1, 2)
    if len(pred_windows) == 0 or len(gt) == 0:
        return 0.0
    top = first_window(pred_windows, rank_by_score)
    best = int(np.argmax(temporal_iou(top[None, :2], gt)[0]))  # first max on ties
    return _hull_iou(top[:2], gt[best])


def filter_by_length(ground_truth: Sequence[Mapping], bucket: tuple[float, float]) -> list[dict]:
    """GT records with their windows restricted to lengths in ``(lo, hi]``; empty records dropped."""
    lo, hi = bucket
    kept = []
    for rec in ground_truth:
        windows = [w for w in rec.get("relevant_windows", []) if lo < w[1] - w[0] <= hi]
        if windows:
            rec = copy.deepcopy(dict(rec))
            rec["relevant_windows"] = windows
            kept.append(rec)
    return kept


def mr_scores(
    pred_by_qid: Mapping,
    ground_truth: Sequence[Mapping],
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
    rank_by_score: bool = False,
) -> dict[str, dict[str, float]]:
    """MR-mAP (per threshold and "average") and MR-R1 (per threshold) for one set of queries.

    Args:
        pred_by_qid: qid -> list of ``[st, ed, score]``.
        ground_truth: records with non-empty ``relevant_windows`` (others are skipped).
        iou_thresholds: IoU thresholds.
        rank_by_score: option (see :func:`rank_windows` and :func:`first_window`).

    Returns:
        ``{"MR-mAP": {"0.5": .., ..., "average": ..}, "MR-R1": {"0.5": .., ...}}`` in percent;
        NaN everywhere when no query is left.
    """
    records = [r for r in ground_truth if len(r.get("relevant_windows", [])) > 0]
    keys = [str(t) for t in iou_thresholds]
    if not records:
        nan = float("nan")
        return {
            "MR-mAP": {**dict.fromkeys(keys, nan), "average": nan},
            "MR-R1": dict.fromkeys(keys, nan),
        }
    # per-query AP at every threshold -> mean over queries -> mean over thresholds
    ap = np.array(
        [
            detection_ap(
                r["relevant_windows"],
                pred_by_qid[r["qid"]],
                iou_thresholds,
                rank_by_score=rank_by_score,
            )
            for r in records
        ]
    )
    ap_per_thr = ap.mean(0)
    mean_ap = {k: round_percent(v) for k, v in zip(keys, ap_per_thr)}
    mean_ap["average"] = round_percent(np.mean(ap_per_thr))
    # R1: the first window (first listed by default) vs its best GT window
    ious = np.array(
        [top1_iou(r["relevant_windows"], pred_by_qid[r["qid"]], rank_by_score) for r in records]
    )
    r1 = {k: round_percent(np.mean(ious >= t)) for k, t in zip(keys, iou_thresholds)}
    return {"MR-mAP": mean_ap, "MR-R1": r1}


def eval_moment_retrieval(
    submission: Sequence[Mapping],
    ground_truth: Sequence[Mapping],
    rank_by_score: bool = False,
    length_buckets: Mapping[str, tuple[float, float]] = LENGTH_BUCKETS,
) -> dict[str, dict]:
    """MR metrics for the ``full`` set and the length buckets (moment_detr ``eval_moment_retrieval``).

    Args:
        submission: prediction dicts with ``pred_relevant_windows``.
        ground_truth: moment records.
        rank_by_score: option (see :func:`rank_windows` and :func:`first_window`).
        length_buckets: bucket name -> GT window length range ``(lo, hi]``; the official
            :data:`LENGTH_BUCKETS` by default, :data:`UNBOUNDED_LENGTH_BUCKETS` as the option.

    Returns:
        ``{bucket: {"MR-mAP": {...}, "MR-R1": {...}}}`` plus ``"n_queries": {bucket: int}``.

    Raises:
        MetricInputError: ``length_buckets`` does not name exactly short, middle and long.
    """
    if set(length_buckets) != set(LENGTH_BUCKETS):
        raise MetricInputError(
            f"length_buckets must name {sorted(LENGTH_BUCKETS)}, got {sorted(length_buckets)}"
        )
    pred_by_qid = {p["qid"]: p[WINDOW_KEY] for p in submission}
    out: dict[str, dict] = {"n_queries": {}}
    buckets = {**length_buckets, "full": (-math.inf, math.inf)}
    for name, bucket in buckets.items():
        records = filter_by_length(ground_truth, bucket)
        out[name] = mr_scores(pred_by_qid, records, rank_by_score=rank_by_score)
        out["n_queries"][name] = len(records)
    return out


# ----------------------------------------------------------------------------- highlight detection
def gt_saliency_matrix(record: Mapping, clip_len: float = CLIP_LEN) -> np.ndarray:
    """(n_clips, 3) annotator scores 0-4 for every clip of the video (0 where not listed)."""
    scores = np.zeros((num_clips(record["duration"], clip_len), 3))
    if len(record["relevant_clip_ids"]):
        scores[np.asarray(record["relevant_clip_ids"])] = np.asarray(record["saliency_scores"])
    return scores


def fit_saliency(pred_saliency: Sequence[float], n_clips: int) -> np.ndarray:
    """A saliency list cut or zero-padded at the end to ``n_clips`` (moment_detr ``compute_ap_from_tuple``).

    Args:
        pred_saliency: (L,) predicted saliency, any length.
        n_clips: the number of clips of the video.

    Returns:
        (n_clips,) float64 array: the first ``n_clips`` scores, then zeros if ``L < n_clips``.
    """
    pred = np.asarray(pred_saliency, dtype=float)[:n_clips]
    return np.concatenate([pred, np.zeros(n_clips - len(pred))])


def binary_ap(labels: np.ndarray, scores: np.ndarray) -> float:
    """AP of a ranking as used for HL-mAP (video2gif ``get_ap``, interpolated, not 11-point).

    Args:
        labels: (C,) 0/1 relevance of each clip.
        scores: (C,) predicted saliency; equal scores form one threshold.

    Returns:
        Mean interpolated precision over the distinct recall levels reached; 0 if no positive
        clip, 1 if every clip is positive.
    """
    labels = np.asarray(labels, dtype=float)
    scores = np.asarray(scores, dtype=float)
    if np.all(labels == labels[0]):
        return float(labels[0] > 0)
    # one point per distinct score value, highest score first
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    last_of_tie = np.r_[np.nonzero(np.diff(sorted_scores))[0], len(scores) - 1]
    tps = np.cumsum(sorted_labels)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    # lowest threshold first (recall decreasing), then the (recall 0, precision 1) end point
    precision = np.r_[(tps / (tps + fps))[::-1], 1.0]
    recall = np.r_[(tps / tps[-1])[::-1], 0.0].astype(np.float32)
    precision = np.maximum.accumulate(precision)  # interpolation: best precision at >= recall
    steps = np.nonzero(np.diff(recall))[0]
    return float(np.mean(precision[steps]))


def hl_hit_at_1(gt_scores: np.ndarray, pred_saliency: Sequence[float], min_score: int) -> float:
    """HL-Hit1 of one query (moment_detr ``compute_hl_hit1``).

    Args:
        gt_scores: (n_clips, 3) annotator scores.
        pred_saliency: predicted saliency, used as given (any length).
        min_score: the level (2, 3 or 4).

    Returns:
        1.0 when the top predicted clip (first on ties) is positive for any annotator, else 0.0;
        0.0 when that clip lies beyond the video (a list longer than the video).
    """
    top = int(np.argmax(np.asarray(pred_saliency, dtype=float)))
    return float(top < len(gt_scores) and np.any(gt_scores[top] >= min_score))


def hl_ap(gt_scores: np.ndarray, pred_saliency: Sequence[float], min_score: int) -> np.ndarray:
    """(3,) per-annotator AP of the predicted saliency ranking at one positive level.

    The prediction is first cut or zero-padded to the video's clips (:func:`fit_saliency`).
    """
    binary = gt_scores >= min_score
    pred = fit_saliency(pred_saliency, len(gt_scores))
    return np.array([binary_ap(binary[:, a], pred) for a in range(gt_scores.shape[1])])


def eval_highlight(
    submission: Sequence[Mapping], ground_truth: Sequence[Mapping]
) -> dict[str, dict]:
    """HL-mAP and HL-Hit1 at Fair (>=2), Good (>=3), VeryGood (>=4) (moment_detr ``eval_highlight``).

    Returns:
        ``{"HL-min-Fair": {"HL-mAP": .., "HL-Hit1": ..}, "HL-min-Good": ..., "HL-min-VeryGood": ...}``.
    """
    pred_by_qid = {p["qid"]: p[SALIENCY_KEY] for p in submission}
    gt_mats = [(gt_saliency_matrix(r), pred_by_qid[r["qid"]]) for r in ground_truth]
    out: dict[str, dict] = {}
    for name, min_score in SALIENCY_LEVELS.items():
        aps = np.array([hl_ap(gt, pred, min_score) for gt, pred in gt_mats])  # (Q, 3)
        hits = np.array([hl_hit_at_1(gt, pred, min_score) for gt, pred in gt_mats])
        out[f"HL-min-{name}"] = {
            "HL-mAP": round_percent(np.mean(aps)),
            "HL-Hit1": round_percent(np.mean(hits)),
        }
    return out


# ----------------------------------------------------------------------------- everything
def _mr_brief(mr: Mapping) -> dict[str, float]:
    """The official brief keys of the MR metrics."""
    return {
        "MR-full-mAP": mr["full"]["MR-mAP"]["average"],
        "MR-full-mAP@0.5": mr["full"]["MR-mAP"]["0.5"],
        "MR-full-mAP@0.75": mr["full"]["MR-mAP"]["0.75"],
        "MR-short-mAP": mr["short"]["MR-mAP"]["average"],
        "MR-middle-mAP": mr["middle"]["MR-mAP"]["average"],
        "MR-long-mAP": mr["long"]["MR-mAP"]["average"],
        "MR-full-R1@0.5": mr["full"]["MR-R1"]["0.5"],
        "MR-full-R1@0.7": mr["full"]["MR-R1"]["0.7"],
    }


def eval_qvhighlights(
    submission: Sequence[Mapping],
    ground_truth: Sequence[Mapping],
    *,
    rank_by_score: bool = False,
    length_buckets: Mapping[str, tuple[float, float]] = LENGTH_BUCKETS,
    strict_saliency_length: bool = False,
) -> dict:
    """Evaluate a QVHighlights submission like moment_detr's ``eval_submission``.

    Args:
        submission: prediction dicts (see :mod:`course_lib.metrics.submission`).
        ground_truth: moment records with the same qids.
        rank_by_score: option: rank all windows by score before the top-10 cut and take the
            best-scored window for R1 (default: the official list order).
        length_buckets: option: :data:`UNBOUNDED_LENGTH_BUCKETS` for a ``long`` bucket open above
            (default: the official :data:`LENGTH_BUCKETS`, long = (30, 150]).
        strict_saliency_length: option: refuse saliency lists whose length is not
            ``int(duration / 2)`` (default: cut or zero-padded as the official script, with a
            warning).

    Returns:
        ``{"brief": {...}, "HL-min-Fair": ..., ..., "full": ..., "long": ..., "middle": ...,
        "short": ..., "n_queries": ...}`` with the official brief keys (``MR-full-mAP``,
        ``MR-full-mAP@0.5``, ``MR-full-mAP@0.75``, ``MR-short/middle/long-mAP``,
        ``MR-full-R1@0.5``, ``MR-full-R1@0.7``, ``HL-min-{Fair,Good,VeryGood}-{mAP,Hit1}``).

    Raises:
        MetricInputError: the submission or ground truth is malformed (see ``validate_submission``).
    """
    validate_submission(submission, ground_truth, strict_saliency_length=strict_saliency_length)
    metrics: dict = {}
    brief: OrderedDict = OrderedDict()
    if WINDOW_KEY in submission[0]:
        mr = eval_moment_retrieval(submission, ground_truth, rank_by_score, length_buckets)
        metrics.update(mr)
        brief.update(sorted(_mr_brief(mr).items()))
    if SALIENCY_KEY in submission[0]:
        hl = eval_highlight(submission, ground_truth)
        metrics.update(hl)
        for level, values in hl.items():
            for key, value in values.items():
                brief[f"{level}-{key.split('-')[1]}"] = value
    result: OrderedDict = OrderedDict(brief=brief)
    result.update(sorted(metrics.items()))
    return result
