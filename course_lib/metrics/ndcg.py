"""NDCG@K,IoU for video corpus moment retrieval with graded relevance (TVR-Ranking).

Default convention ``"tvr-ranking"``: the released TVR-Ranking evaluation (Liang et al. 2024;
Ranking-VMR/TVR-Ranking, ``modules/ndcg_iou.py``, ``calculate_ndcg_iou``):

1. The GT of a query = **all** its relevant moments, relevance 0 included, sorted by relevance
   descending (stable). A relevance-0 moment earns nothing, but a prediction can match it and
   use it up.
2. The predictions are taken in list order (the list is the ranking; the code never sorts by
   score). For each IoU threshold t, walk down the list: a prediction looks at the still-unmatched
   GT moments **of its own video**, picks the one with the highest IoU (ties: the earlier one in
   the sorted GT list, i.e. the more relevant) and, if that IoU **> t** (strictly), earns that
   moment's relevance and uses the moment up (each GT moment is earned once); otherwise it earns 0.
3. ``DCG@K = sum_{i=1..K} (2^rel_i - 1) / log2(i + 1)`` (``calculate_dcg``); ``IDCG@K`` is the DCG
   of the K largest GT relevances; ``NDCG@K = DCG@K / IDCG@K``, and 0 when ``IDCG@K = 0``
   (``calculate_ndcg``), so a query without a relevant moment counts as 0.
4. Averaged over all queries; we report it in percent with 2 decimals, keys
   ``"NDCG@10-IoU0.5"`` for K in (10, 20, 40), t in (0.3, 0.5, 0.7).

Convention ``"spr"`` (explicit option): the evaluation released with SPR (Zhang et al., *A
Flexible and Scalable Framework for Video Moment Search*; Ranking-VMR/SPR,
``utils/evaluation_metrics/rvmr.py``, ``calculate_ndcg_iou``), which matches the ``IoU >= mu`` of
the TVR-Ranking paper's notation: moments with relevance <= 0 are dropped from the GT, queries left
without a moment are skipped, and a prediction needs ``IoU >= t``. With 2-second clips exact ratios
such as 0.5 are common, so ``>`` vs ``>=`` matters.

``rank_by_score=True`` (explicit option, either convention) ranks each list by score (descending,
stable) first; identical to the default for lists written best first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from course_lib.errors import MetricInputError
from course_lib.metrics.vcmr import top_predictions, validate_corpus_predictions
from course_lib.spans import temporal_iou

NDCG_KS: tuple[int, ...] = (10, 20, 40)
IOU_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)


@dataclass(frozen=True)
class NdcgConvention:
    """How one released evaluation defines NDCG@K,IoU.

    Attributes:
        iou_inclusive: a prediction hits with ``IoU >= t`` (else ``IoU > t``).
        drop_irrelevant: moments with relevance <= 0 are not part of the GT.
        skip_empty_queries: queries without a GT moment are left out of the mean (else they
            count as 0).
    """

    iou_inclusive: bool
    drop_irrelevant: bool
    skip_empty_queries: bool


CONVENTIONS: dict[str, NdcgConvention] = {
    "tvr-ranking": NdcgConvention(False, False, False),
    "spr": NdcgConvention(True, True, True),
}
"""``"tvr-ranking"``: TVR-Ranking ``modules/ndcg_iou.py`` (default); ``"spr"``: SPR
``utils/evaluation_metrics/rvmr.py``."""


def dcg(relevances: Sequence[float]) -> float:
    """Discounted cumulative gain ``sum_i (2^rel_i - 1) / log2(i + 1)``, i = 1, 2, ... (rank).

    Summed term by term in rank order, as TVR-Ranking's ``calculate_dcg``.
    """
    return float(sum((2 ** float(r) - 1) / np.log2(i + 2) for i, r in enumerate(relevances)))


def matched_relevances(
    preds: Sequence[Sequence],
    moments: Sequence[Mapping],
    threshold: float,
    iou_inclusive: bool = False,
) -> list[float]:
    """Relevance earned by each ranked prediction under greedy one-to-one matching.

    Args:
        preds: ranked ``[vid, st, ed, score]`` predictions.
        moments: GT moments ``{"vid", "window", "relevance"}`` sorted by relevance descending.
        threshold: IoU threshold.
        iou_inclusive: hit with ``IoU >= threshold`` (SPR) instead of ``IoU > threshold``
            (TVR-Ranking, the default).

    Returns:
        One relevance (0 for a miss) per prediction.
    """
    free = list(moments)
    gains: list[float] = []
    for vid, st, ed, _score in preds:
        same_video = [m for m in free if m["vid"] == vid]
        if not same_video:
            gains.append(0.0)
            continue
        ious = temporal_iou(
            np.array([[st, ed]], dtype=float),
            np.array([m["window"] for m in same_video], dtype=float),
        )[0]
        best = int(np.argmax(ious))  # first max = most relevant among equal IoUs
        hit = ious[best] >= threshold if iou_inclusive else ious[best] > threshold
        if hit:
            gains.append(float(same_video[best]["relevance"]))
            free.remove(same_video[best])
        else:
            gains.append(0.0)
    return gains


def ground_truth_moments(query: Mapping, drop_irrelevant: bool = False) -> list[Mapping]:
    """A query's GT moments sorted by relevance descending (stable).

    Args:
        query: corpus query with ``relevant_moments``.
        drop_irrelevant: leave out moments with relevance <= 0 (SPR convention).

    Returns:
        The moments, most relevant first.
    """
    moments = query.get("relevant_moments", [])
    if drop_irrelevant:
        moments = [m for m in moments if m.get("relevance", 1) > 0]
    return sorted(moments, key=lambda m: -m.get("relevance", 1))


def query_ndcg(
    preds: Sequence[Sequence],
    moments: Sequence[Mapping],
    ks: Sequence[int],
    threshold: float,
    iou_inclusive: bool = False,
) -> list[float]:
    """NDCG@K of one query at one IoU threshold for every K (0 where IDCG@K is 0).

    Args:
        preds: ranked predictions.
        moments: GT moments, most relevant first.
        ks: cut-offs K.
        threshold: IoU threshold.
        iou_inclusive: see :func:`matched_relevances`.

    Returns:
        One fraction in [0, 1] per K.
    """
    gains = matched_relevances(preds[: max(ks)], moments, threshold, iou_inclusive)
    ideal = [m.get("relevance", 1) for m in moments]
    out = []
    for k in ks:
        idcg = dcg(ideal[:k])
        out.append(dcg(gains[:k]) / idcg if idcg > 0 else 0.0)
    return out


def ndcg_iou(
    predictions: Mapping,
    queries: Sequence[Mapping],
    ks: Sequence[int] = NDCG_KS,
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
    convention: str = "tvr-ranking",
    rank_by_score: bool = False,
) -> dict[str, float]:
    """NDCG@K,IoU averaged over queries (TVR-Ranking ``calculate_ndcg_iou`` by default).

    Args:
        predictions: qid -> ``[[vid, st, ed, score], ...]``, best first (the list order is the
            ranking).
        queries: corpus queries with ``relevant_moments`` (``vid``, ``window``, ``relevance``).
        ks: cut-offs K.
        iou_thresholds: IoU thresholds.
        convention: ``"tvr-ranking"`` (default: IoU > t, relevance-0 moments kept, queries
            without a moment count 0) or ``"spr"`` (IoU >= t, relevance-0 moments dropped,
            such queries skipped); see the module docstring.
        rank_by_score: option: rank each list by score (descending, stable) first.

    Returns:
        ``{"NDCG@10-IoU0.3": %, ...}`` plus ``"n_queries"`` (the queries in the mean).

    Raises:
        MetricInputError: malformed input, an unknown convention, or no query to average.
    """
    if convention not in CONVENTIONS:
        raise MetricInputError(
            f"convention must be one of {sorted(CONVENTIONS)}, got {convention!r}"
        )
    rule = CONVENTIONS[convention]
    validate_corpus_predictions(predictions, queries)
    scores: dict[str, list[float]] = {f"NDCG@{k}-IoU{t}": [] for k in ks for t in iou_thresholds}
    n = 0
    for query in queries:
        moments = ground_truth_moments(query, rule.drop_irrelevant)
        if not moments and rule.skip_empty_queries:
            continue
        n += 1
        preds = top_predictions(predictions[query["qid"]], None, rank_by_score)
        for t in iou_thresholds:
            for k, value in zip(ks, query_ndcg(preds, moments, ks, t, rule.iou_inclusive)):
                scores[f"NDCG@{k}-IoU{t}"].append(value)
    if n == 0:
        raise MetricInputError("no query to average (every query lacks a relevant moment)")
    out: dict[str, float] = {key: round(100 * float(np.mean(v)), 2) for key, v in scores.items()}
    out["n_queries"] = n
    return out
