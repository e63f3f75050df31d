"""NDCG@K,IoU for video corpus moment retrieval with graded relevance (TVR-Ranking).

Definition (TVR-Ranking, Liang et al. 2024, and its released evaluation):

1. The GT of a query = its relevant moments with relevance >= ``min_relevance`` (default 1; the
   TVR-Ranking code drops relevance-0 moments), sorted by relevance descending (stable).
   Queries without any are skipped.
2. For each IoU threshold t, walk down the ranked predictions (score descending, stable). A
   prediction looks at the still-unmatched GT moments **of its own video**, picks the one with the
   highest IoU (ties: the more relevant one, i.e. the earlier one in the sorted GT list) and, if
   that IoU >= t, earns that moment's relevance and consumes it (each GT moment is used once);
   otherwise it earns 0.
3. ``DCG@K = sum_{i=1..K} (2^rel_i - 1) / log2(i + 1)``; ``IDCG@K`` is the DCG of the K largest GT
   relevances; ``NDCG@K = DCG@K / IDCG@K``. Averaged over queries, reported in percent with 2
   decimals, keys ``"NDCG@10-IoU0.5"`` for K in (10, 20, 40), t in (0.3, 0.5, 0.7).

Comparison ``IoU >= t`` (not ``>``): the current TVR-Ranking release uses ``>=`` (its first
release used ``>``), and ``>=`` is also what QVHighlights and TVR use, so one threshold means the
same thing in every metric of this course. With 2-second clips exact ratios such as 0.5 are
common, so the choice matters; ``strict=True`` switches to ``>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from course_lib.errors import MetricInputError
from course_lib.metrics.vcmr import gt_moments, rank_predictions, validate_corpus_predictions
from course_lib.spans import temporal_iou

NDCG_KS: tuple[int, ...] = (10, 20, 40)
IOU_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)


def dcg(relevances: Sequence[float]) -> float:
    """Discounted cumulative gain ``sum_i (2^rel_i - 1) / log2(i + 1)``, i = 1, 2, ... (rank)."""
    rel = np.asarray(relevances, dtype=float)
    return float(np.sum((2.0**rel - 1.0) / np.log2(np.arange(2, len(rel) + 2))))


def matched_relevances(
    preds: Sequence[Sequence], moments: Sequence[Mapping], threshold: float, strict: bool = False
) -> list[float]:
    """Relevance earned by each ranked prediction under greedy one-to-one matching.

    Args:
        preds: ranked ``[vid, st, ed, score]`` predictions.
        moments: GT moments ``{"vid", "window", "relevance"}`` sorted by relevance descending.
        threshold: IoU threshold.
        strict: use ``IoU > threshold`` instead of ``>=``.

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
        hit = ious[best] > threshold if strict else ious[best] >= threshold
        if hit:
            gains.append(float(same_video[best]["relevance"]))
            free.remove(same_video[best])
        else:
            gains.append(0.0)
    return gains


def ndcg_iou(
    predictions: Mapping,
    queries: Sequence[Mapping],
    ks: Sequence[int] = NDCG_KS,
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
    min_relevance: int = 1,
    strict: bool = False,
) -> dict[str, float]:
    """NDCG@K,IoU averaged over the queries that have a relevant moment.

    Args:
        predictions: qid -> ``[[vid, st, ed, score], ...]`` (any order; ranked by score here).
        queries: corpus queries with ``relevant_moments`` (``vid``, ``window``, ``relevance``).
        ks: cut-offs K.
        iou_thresholds: IoU thresholds.
        min_relevance: moments below this relevance are not GT.
        strict: ``IoU > t`` instead of ``IoU >= t`` (see module docstring).

    Returns:
        ``{"NDCG@10-IoU0.3": %, ...}`` plus ``"n_queries"``.

    Raises:
        MetricInputError: malformed input, or no query with a relevant moment.
    """
    validate_corpus_predictions(predictions, queries)
    scores: dict[str, list[float]] = {f"NDCG@{k}-IoU{t}": [] for k in ks for t in iou_thresholds}
    n = 0
    for query in queries:
        moments = sorted(gt_moments(query, min_relevance), key=lambda m: -m["relevance"])
        if not moments:
            continue
        n += 1
        preds = rank_predictions(predictions[query["qid"]], top_k=max(ks))
        ideal = [m["relevance"] for m in moments]
        for t in iou_thresholds:
            gains = matched_relevances(preds, moments, t, strict)
            for k in ks:
                idcg = dcg(ideal[:k])
                scores[f"NDCG@{k}-IoU{t}"].append(dcg(gains[:k]) / idcg if idcg > 0 else 0.0)
    if n == 0:
        raise MetricInputError(f"no query has a relevant moment with relevance >= {min_relevance}")
    out: dict[str, float] = {key: round(100 * float(np.mean(v)), 2) for key, v in scores.items()}
    out["n_queries"] = n
    return out
