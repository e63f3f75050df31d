"""Chapter 6 checkers: choosing nprobe (6.1), segments -> proposals (6.2), VCMR R@K,IoU (6.3),
NDCG@K,IoU (6.4), two-stage score fusion (6.5).

References come from the library (:func:`course_lib.corpus.choose_nprobe`,
:func:`course_lib.corpus.merge_segments`, :mod:`course_lib.metrics.vcmr`,
:mod:`course_lib.metrics.ndcg`, :func:`course_lib.corpus.combine_scores`). The input makers
produce the cases that separate right from almost-right answers: segments retrieved out of
order and from several videos, holes exactly ``max_gap`` long, tied scores, prediction lists
not sorted by score, empty lists and K longer than the list, several lines in one video, several
predictions hitting the same ground-truth moment, relevance-0 moments, queries without a
relevant moment, IoUs exactly at the threshold, recall targets met exactly, constant stage-1 or
stage-2 scores, and alpha 0 and 1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from course_lib.checks import check, trial_rng
from course_lib.corpus import (
    IndexConfig,
    SegmentIndex,
    choose_nprobe,
    combine_scores,
    merge_segments,
)
from course_lib.metrics.ndcg import ground_truth_moments, query_ndcg
from course_lib.metrics.vcmr import gt_moments, moment_hits, rank_predictions, top_predictions


# ----------------------------------------------------------------------------- 6.2 proposals
def merge_into_proposals(
    vids: Sequence[str],
    starts: Sequence[float],
    ends: Sequence[float],
    scores: Sequence[float],
    segment_len: float,
    max_gap: int,
) -> list[tuple[str, float, float, float]]:
    """Reference: merge retrieved segments into proposals (SPR sec. 3.2, constant gap).

    Segments of the same video whose hole is at most ``max_gap`` segments are one proposal
    ``(vid, start, end, score)`` with the best member's score; proposals are sorted by score
    (descending), ties by vid, then start.
    """
    props = merge_segments(vids, starts, ends, scores, segment_len, max_gap, gap="constant")
    return [(p.vid, p.start, p.end, p.score) for p in props]


def merge_into_proposals_inputs(seed: int = 0, trial: int = 0) -> tuple:
    """Inputs of trial ``trial`` of Exercise 6.2: retrieved segments of 1-3 videos, shuffled, with
    holes of 0-3 segments and tied scores.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(vids, starts, ends, scores, segment_len, max_gap)``, the positional arguments of
        ``merge_into_proposals``.
    """
    rng = trial_rng(seed, trial)
    seg_len = float(rng.choice([2.0, 4.0, 6.0]))
    vids, starts, ends = [], [], []
    for v in range(int(rng.integers(1, 4))):
        n_seg = int(rng.integers(3, 13))
        duration = n_seg * seg_len - float(rng.choice([0.0, seg_len / 2]))  # last may be short
        keep = rng.random(n_seg) < 0.55
        keep[rng.integers(n_seg)] = True  # every video has at least one hit
        for i in np.flatnonzero(keep):
            vids.append(f"video{v}")
            starts.append(i * seg_len)
            ends.append(min((i + 1) * seg_len, duration))
    order = rng.permutation(len(vids))  # the index returns segments by score, not by time
    scores = np.round(rng.uniform(0.1, 0.9, len(vids)) * 10) / 10  # few values: ties
    return (
        [vids[i] for i in order],
        [float(starts[i]) for i in order],
        [float(ends[i]) for i in order],
        [float(s) for s in scores],
        seg_len,
        int(rng.integers(0, 3)),
    )


def check_merge_into_proposals(fn: Callable[..., list]) -> None:
    """Exercise 6.2: compare ``fn`` with :func:`merge_into_proposals` on 40 random inputs."""
    check(
        fn,
        merge_into_proposals,
        merge_into_proposals_inputs,
        name="Exercise 6.2: merge_into_proposals",
        n=40,
    )


# ----------------------------------------------------------------------------- 6.3 VCMR R@K
def vcmr_recall_at_k(
    predictions: Mapping[Any, Sequence[Sequence]],
    queries: Sequence[Mapping],
    k: int,
    iou_threshold: float,
) -> float:
    """Reference: VCMR R@K, IoU >= t (TVRetrieval ``eval_by_task_type``) as a fraction in [0, 1].

    :func:`course_lib.metrics.vcmr_recall` with its defaults, unrounded: each query's list is
    taken in the order given (never sorted by score) and cut to its first 100 lines; a query is
    a hit when one of its first ``k`` lines (list positions, several lines of one video count
    one each) is in a video with a relevant moment (relevance >= 1) and has IoU >= t with one of
    that video's relevant moments; queries without a relevant moment are not scored.

    Args:
        predictions: qid -> ``[[vid, st, ed, score], ...]`` (may be empty).
        queries: ``{"qid", "relevant_moments": [{"vid", "window", "relevance"}, ...]}``; at
            least one query has a relevant moment.
        k: cut-off K (at most 100).
        iou_threshold: t.

    Returns:
        The fraction of the scored queries that are hits.
    """
    hits = []
    for query in queries:
        moments = gt_moments(query)
        if not moments:
            continue  # no relevant moment: the query is not scored
        preds = top_predictions(predictions[query["qid"]])
        hits.append(moment_hits(preds, moments, (k,), (iou_threshold,))[f"{iou_threshold}-r{k}"])
    return float(np.mean(hits))


def _exact_iou_line(rng: np.random.Generator, moment: Mapping, threshold: float) -> list:
    """A line ``[vid, st, ed]`` with IoU exactly ``threshold`` with ``moment`` (inside it)."""
    st, ed = moment["window"]
    length = (ed - st) * threshold
    if rng.random() < 0.5:
        return [moment["vid"], st, st + length]
    return [moment["vid"], ed - length, ed]


def vcmr_recall_at_k_inputs(seed: int = 0, trial: int = 0) -> tuple:
    """Inputs of trial ``trial`` of Exercise 6.3: 1-4 queries, each with 1-3 moments of
    relevance 0-4 (sometimes none relevant) in up to 4 videos, and a list of 0-15 lines not sorted
    by score: near copies of the moments (several per video), lines with IoU exactly at the
    threshold (also on relevance-0 moments), a moment's window in another video, random lines
    and tied scores; K from 1 to 20
    (often longer than the list).

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(predictions, queries, k, iou_threshold)``, the positional arguments of
        ``vcmr_recall_at_k``.
    """
    rng = trial_rng(seed, trial)
    threshold = float(rng.choice([0.5, 0.7]))
    queries, predictions = [], {}
    n_queries = int(rng.integers(1, 5))
    for qid in range(n_queries):
        # 1. the ground truth: lengths 4, 10 or 20 s, so that IoU = t exactly lies on the grid
        moments = []
        for _ in range(int(rng.integers(1, 4))):
            st = float(rng.integers(0, 30)) * 2.0
            moments.append(
                {
                    "vid": f"video{rng.integers(4)}",
                    "window": [st, st + float(rng.choice([4.0, 10.0, 20.0]))],
                    "relevance": int(rng.integers(0, 5)),
                }
            )
        if qid == 0 and all(m["relevance"] == 0 for m in moments):
            moments[0]["relevance"] = int(rng.integers(1, 5))  # one query is always scored
        queries.append({"qid": qid, "query": f"query {qid}", "relevant_moments": moments})
        # 2. the list, in an order that is not the score order
        lines = []
        for _ in range(int(rng.choice([0, 1, 3, 6, 10, 15]))):
            kind = rng.random()
            m = moments[int(rng.integers(len(moments)))]
            exact_ok = (m["window"][1] - m["window"][0]) * threshold % 0.5 == 0
            if kind < 0.25 and exact_ok:
                line = _exact_iou_line(rng, m, threshold)
            elif kind < 0.6:  # near a moment: hits and near misses, several lines per video
                st, ed = (w + float(rng.integers(-4, 5)) for w in m["window"])
                st = max(0.0, st)
                line = [m["vid"], st, max(st + 1.0, ed)]
            elif kind < 0.75:  # the moment's window in another video
                other = (int(m["vid"].removeprefix("video")) + int(rng.integers(1, 4))) % 4
                line = [f"video{other}", *m["window"]]
            else:
                st = float(rng.integers(0, 60))
                line = [f"video{rng.integers(4)}", st, st + float(rng.integers(1, 12))]
            lines.append([*line, float(rng.integers(1, 6)) / 5])  # five values: ties
        predictions[qid] = lines
    k = int(rng.choice([1, 2, 3, 5, 10, 20]))
    return predictions, queries, k, threshold


def check_vcmr_recall_at_k(fn: Callable[..., float]) -> None:
    """Exercise 6.3: compare ``fn`` with :func:`vcmr_recall_at_k` on 80 random query sets."""
    check(
        fn,
        vcmr_recall_at_k,
        vcmr_recall_at_k_inputs,
        name="Exercise 6.3: vcmr_recall_at_k",
        n=80,
    )


# ----------------------------------------------------------------------------- 6.4 NDCG
def ndcg_at_k_iou(
    predictions: Sequence[Sequence], moments: Sequence[Mapping], k: int, iou_threshold: float
) -> float:
    """Reference: NDCG@K,IoU of one query (TVR-Ranking ``calculate_ndcg_iou``), a fraction in [0, 1].

    Args:
        predictions: ``[vid, st, ed, score]`` in any order; the exercise ranks them by score,
            descending, stable (equal scores keep their order). The official code takes the
            list as the ranking, which is the same for lists written best first.
        moments: ground-truth ``{"vid", "window", "relevance"}``, relevance 0 included: such a
            moment earns nothing but can be matched and used up.
        k: cut-off.
        iou_threshold: a prediction earns the relevance of the still-unmatched moment of its
            video with the highest IoU (ties: the more relevant) when that IoU > threshold
            (strictly, as the official code).

    Returns:
        ``DCG@K / IDCG@K`` with gain ``2^rel - 1`` and discount ``log2(rank + 1)``.
    """
    gt = ground_truth_moments({"relevant_moments": moments})
    ranked = rank_predictions(predictions, top_k=k)
    return query_ndcg(ranked, gt, (k,), iou_threshold)[0]


def ndcg_at_k_iou_inputs(seed: int = 0, trial: int = 0) -> tuple:
    """Inputs of trial ``trial`` of Exercise 6.4: one query, 1-6 GT moments in 1-3 videos and 0-15
    unsorted predictions with tied scores.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(predictions, moments, k, iou_threshold)``, the positional arguments of ``ndcg_at_k_iou``.
    """
    rng = trial_rng(seed, trial)
    n_videos = int(rng.integers(1, 4))
    moments = []
    for _ in range(int(rng.integers(1, 7))):
        st = float(rng.integers(0, 40))
        moments.append(
            {
                "vid": f"video{rng.integers(n_videos)}",
                "window": [st, st + float(rng.integers(2, 12))],
                "relevance": int(rng.integers(0, 5)),
            }
        )
    moments[0]["relevance"] = int(rng.integers(1, 5))  # at least one relevant moment
    preds = []
    for _ in range(int(rng.choice([0, 1, 4, 8, 12, 15]))):
        if rng.random() < 0.75:  # near a GT moment: hits, near misses, and repeated hits
            m = moments[rng.integers(len(moments))]
            st, ed = (w + float(rng.integers(-3, 4)) for w in m["window"])
            st, ed = max(0.0, st), max(max(0.0, st) + 1.0, ed)
            vid = m["vid"]
        else:
            st = float(rng.integers(0, 40))
            st, ed, vid = st, st + float(rng.integers(1, 10)), f"video{rng.integers(n_videos)}"
        preds.append([vid, st, ed, float(rng.integers(1, 6)) / 5])
    k = int(rng.choice([1, 3, 5, 10]))
    return preds, moments, k, float(rng.choice([0.3, 0.5, 0.7]))


def check_ndcg_at_k_iou(fn: Callable[..., float]) -> None:
    """Exercise 6.4: compare ``fn`` with :func:`ndcg_at_k_iou` on 60 random queries."""
    check(fn, ndcg_at_k_iou, ndcg_at_k_iou_inputs, name="Exercise 6.4: ndcg_at_k_iou", n=60)


# ----------------------------------------------------------------------------- 6.5 score fusion
def fuse_scores(stage1: np.ndarray, stage2: np.ndarray, alpha: float) -> np.ndarray:
    """Reference: the two-stage score of one query's candidates (:func:`combine_scores`).

    ``alpha * norm(stage1) + (1 - alpha) * norm(stage2)`` with min-max normalisation over the
    candidates given, ``norm`` all ones when every candidate has the same score; one float64
    score per candidate, in the candidates' order (``rank_candidates`` sorts afterwards).

    Args:
        stage1: (N,) stage-1 score of each candidate's video (repeated for its moments).
        stage2: (N,) stage-2 score of each candidate moment.
        alpha: weight of stage 1, in [0, 1].
    """
    return combine_scores(stage1, stage2, alpha)


def fuse_scores_inputs(seed: int = 0, trial: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """Inputs of trial ``trial`` of Exercise 6.5: the candidates of one query, 1-5 videos with
    1-5 moments each, as the pipeline passes them (not sorted); stage-1 scores are cosine
    similarities, stage-2 scores on another scale; a constant stage 1 (one video, or tied videos)
    or stage 2 in about one trial in three each; alpha 0 or 1 in about one trial in three.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(stage1, stage2, alpha)``, the positional arguments of ``fuse_scores``.
    """
    rng = trial_rng(seed, trial)
    n_videos = int(rng.integers(1, 6))
    video_scores = np.round(rng.uniform(-0.2, 0.9, n_videos), 3)  # cosine similarities
    if rng.random() < 0.25:
        video_scores[:] = video_scores[0]  # stage 1 ties every video
    per_video = rng.integers(1, 6, n_videos)
    stage1 = np.repeat(video_scores, per_video)
    scale = float(rng.choice([1.0, 5.0, 20.0]))
    stage2 = np.round(rng.normal(0.0, scale, len(stage1)), 2) + 0.0  # logits (+ 0.0: no -0.0)
    if rng.random() < 0.3:
        stage2[:] = stage2[0]  # stage 2 cannot tell the moments apart
    order = rng.permutation(len(stage1))  # candidates in the order the pipeline lists them
    alpha = float(rng.choice([0.0, 1.0, 0.0, 1.0, 0.2, 0.4, 0.5, 0.7, 0.9, 0.3, 0.6, 0.8]))
    return stage1[order], stage2[order], alpha


def check_fuse_scores(fn: Callable[[np.ndarray, np.ndarray, float], np.ndarray]) -> None:
    """Exercise 6.5: compare ``fn`` with :func:`fuse_scores` on 60 random candidate lists."""
    check(
        fn,
        fuse_scores,
        fuse_scores_inputs,
        name="Exercise 6.5: fuse_scores",
        n=60,
        check_dtype=False,
    )


# ----------------------------------------------------------------------------- 6.1 nprobe
def smallest_nprobe(
    index: SegmentIndex,
    queries: np.ndarray,
    target_recall: float,
    k: int,
    candidates: Sequence[int],
) -> int:
    """Reference: the smallest candidate nprobe whose recall@k reaches ``target_recall``.

    Recall@k of a query = the fraction of its exact top-k segment ids (``nprobe = nlist``)
    that the search at this nprobe finds, averaged over the queries; "reaches" means >=.
    ``candidates`` are increasing and end with ``nlist``.
    """
    return int(choose_nprobe(index, queries, target_recall, k, candidates)[0])


def smallest_nprobe_inputs(seed: int = 0, trial: int = 0) -> tuple:
    """Inputs of trial ``trial`` of Exercise 6.1: a small IVF segment index (clustered vectors, set
    to nprobe=1) and queries near segments.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(index, queries, target_recall, k, candidates)``, the positional arguments of
        ``smallest_nprobe``.
    """
    rng = trial_rng(seed, trial)
    dim, nlist = 16, int(rng.choice([8, 12, 16]))
    centres = rng.normal(size=(24, dim))
    feats = {}
    for v in range(40):  # 40 videos x 20 clips; one clip = one segment
        x = centres[rng.integers(len(centres), size=20)] + 1.2 * rng.normal(size=(20, dim))
        feats[f"video{v:02d}"] = x.astype(np.float32)
    config = IndexConfig(kind="ivf", nlist=nlist, nprobe=1, clips_per_segment=1, use_gpu=False)
    index = SegmentIndex.build(feats, config)
    queries = centres[rng.integers(len(centres), size=16)] + 1.2 * rng.normal(size=(16, dim))
    candidates = sorted({p for p in (1, 2, 3, 4, 6, 8) if p < nlist} | {nlist})
    target = float(rng.choice([0.5, 0.8, 0.9, 0.95, 0.99, 1.0]))
    return index, queries.astype(np.float32), target, int(rng.choice([5, 10])), candidates


def check_smallest_nprobe(fn: Callable[..., int]) -> None:
    """Exercise 6.1: compare ``fn`` with :func:`smallest_nprobe` on 12 random indexes."""
    check(fn, smallest_nprobe, smallest_nprobe_inputs, name="Exercise 6.1: smallest_nprobe", n=12)
