"""Coarse-to-fine video corpus moment search (CFAN; "Coarse to Fine: Video Retrieval before
Moment Localization"; SPR sec. 3).

Two stages, each pluggable:

1. **Coarse (stage 1)** -- a *video scorer* ``query -> {vid: score}`` ranks the collection's
   videos. The default :class:`SegmentVideoScorer` searches the segment index and scores a video
   by its best retrieved segment; a video-level similarity (e.g. chapter 2's UCoFiA model) plugs
   in the same way.
2. **Fine (stage 2)** -- a :class:`course_lib.localisers.Localiser` runs on the top-K videos
   only: :class:`CorpusLocaliser` turns it into ``(vid, query) -> [(st, ed, score), ...]`` over
   the collection's clip features (sliding windows on videos longer than the localiser's
   window). :class:`ProposalRefinementLocaliser` is a training-free localiser that refines segment
   proposals with clip features; the chapter-3 baseline and the chapter-5 model plug in the same
   way (:class:`~course_lib.localisers.BaselineLocaliser`,
   :class:`~course_lib.localisers.CorebaLocaliser`).

Final score of a candidate moment m in video v (per query; min-max over the query's candidates):

    score(m) = alpha * norm(s1(v)) + (1 - alpha) * norm(s2(m)),
    norm(x) = (x - min x) / (max x - min x)   (1 when all candidates tie)

:func:`combine_scores` computes it; another function with its signature (a :data:`Fusion`) can
take its place (``CoarseToFineSearch(fuse=...)``, ``rank_candidates(..., fuse=...)``).
:func:`fit_alpha` chooses alpha on validation queries by grid search. :func:`exhaustive_search`
runs the localiser on every video: the slow upper bound that stage 1 approximates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from course_lib.corpus.index import SegmentIndex
from course_lib.corpus.proposals import merge_segments, proposals_frame
from course_lib.corpus.segments import l2_normalize, pool_segments
from course_lib.errors import DataValidationError
from course_lib.localisers import Localiser, localise_long, query_embedding
from course_lib.timeline import CLIP_LEN

#: stage 2 over a collection: (vid, query) -> [(start s, end s, score), ...]
VideoMoments = Callable[[str, Any], Sequence[tuple[float, float, float]]]
#: stage 1: query -> {vid: score}
VideoScorer = Callable[[Any], Mapping[str, float]]
#: score fusion over one query's candidates: (stage1, stage2, alpha) -> (N,) final scores, in
#: the candidates' order (:func:`combine_scores`)
Fusion = Callable[[np.ndarray, np.ndarray, float], np.ndarray]
#: a metric of VCMR predictions (qid -> [[vid, st, ed, score], ...]) against corpus queries
Metric = Callable[[Mapping, Sequence[Mapping]], float]

RESULT_COLUMNS = ["rank", "vid", "start", "end", "score", "stage1_score", "stage2_score"]


def minmax(x: np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1]; all ones when every value is equal (or x is empty)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return x
    span = x.max() - x.min()
    return np.ones_like(x) if span <= 0 else (x - x.min()) / span


def combine_scores(stage1: np.ndarray, stage2: np.ndarray, alpha: float) -> np.ndarray:
    """``alpha * minmax(stage1) + (1 - alpha) * minmax(stage2)`` over one query's candidates."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return alpha * minmax(stage1) + (1.0 - alpha) * minmax(stage2)


def index_proposals(
    index: SegmentIndex,
    query_embedding: np.ndarray,
    n_segments: int = 200,
    n_proposals: int = 100,
    max_gap: int = 0,
    gap: str = "constant",
):
    """Top ``n_segments`` segments of the index merged into at most ``n_proposals`` proposals.

    Returns:
        DataFrame (rank, vid, start, end, score, n_segments), best first.
    """
    hits = index.search_segments(query_embedding, n_segments)
    seg_len = index.config.clips_per_segment * CLIP_LEN
    props = merge_segments(
        hits["vid"], hits["start"], hits["end"], hits["score"], seg_len, max_gap, gap
    )
    return proposals_frame(props, n_proposals)


@dataclass
class SegmentVideoScorer:
    """Stage 1 from the segment index: a video scores as its best retrieved segment.

    Args:
        index: the segment index.
        embed_query: maps a query to its embedding (default: a ``Query``'s embedding, or the
            query itself when it is an array).
        n_segments: segments retrieved per query; videos without a hit are not candidates.
    """

    index: SegmentIndex
    embed_query: Callable[[Any], np.ndarray] = query_embedding
    n_segments: int = 200

    def __call__(self, query: Any) -> dict[str, float]:
        hits = self.index.search_segments(self.embed_query(query), self.n_segments)
        best = hits.groupby("vid", sort=False)["score"].max()
        return {str(vid): float(score) for vid, score in best.items()}


def _check_moments(vid: str, moments: Iterable) -> list[tuple[float, float, float]]:
    """Validate a localiser's output: finite (st, ed, score) with st < ed."""
    out = []
    for i, moment in enumerate(moments):
        st, ed, score = (float(v) for v in moment)
        if not (np.isfinite([st, ed, score]).all() and st < ed):
            raise DataValidationError(
                f"localiser output for video {vid!r}, moment {i}: expected finite "
                f"(st < ed, score), got {tuple(moment)}"
            )
        out.append((st, ed, score))
    return out


@dataclass
class CorpusLocaliser:
    """Stage 2 over a collection: a :class:`~course_lib.localisers.Localiser` on one video's features.

    ``(vid, query) -> [(st, ed, score), ...]``: looks up the video's clip features and duration
    and runs the localiser. A localiser with a finite ``window_clips`` (a moment model, the
    chapter-3 baseline) runs over sliding windows merged by temporal NMS
    (:func:`course_lib.localisers.localise_long`); one that takes any length
    (``window_clips = None``) runs once on the whole video.

    Args:
        features_by_vid: video id -> (T, D) clip features.
        localiser: the moment localiser; queries must be what it expects (for COREBA a
            :class:`course_lib.localisers.Query` with token features).
        durations: video id -> duration in seconds (default: ``T * CLIP_LEN``).
        max_moments: moments kept per video by the sliding-window merge.
    """

    features_by_vid: Mapping[str, np.ndarray]
    localiser: Localiser
    durations: Mapping[str, float] | None = None
    max_moments: int = 5

    def __call__(self, vid: str, query: Any) -> list[tuple[float, float, float]]:
        if vid not in self.features_by_vid:
            raise DataValidationError(f"no clip features for video {vid!r}")
        feats = self.features_by_vid[vid]
        if self.durations is None:
            duration = len(feats) * CLIP_LEN
        elif vid in self.durations:
            duration = float(self.durations[vid])
        else:
            raise DataValidationError(f"no duration for video {vid!r}")
        if getattr(self.localiser, "window_clips", None) is None:
            return _check_moments(vid, self.localiser(feats, query, duration))
        moments = localise_long(self.localiser, feats, query, duration, max_moments=self.max_moments)
        return _check_moments(vid, moments)


def refine_window(sims: np.ndarray, lo: int, hi: int) -> tuple[int, int, float]:
    """Refine the clip window ``[lo, hi)`` to the run of high-similarity clips around its peak.

    Threshold ``tau = (max(sims[lo:hi]) + mean(sims)) / 2``; the run grows left and right from the
    best clip while ``sims >= tau`` (staying inside ``[lo, hi)``).

    Returns:
        ``(a, b, score)``: clip bounds ``[a, b)`` and the mean similarity over the run.
    """
    peak = lo + int(np.argmax(sims[lo:hi]))
    tau = 0.5 * (sims[peak] + sims.mean())
    a, b = peak, peak + 1
    while a > lo and sims[a - 1] >= tau:
        a -= 1
    while b < hi and sims[b] >= tau:
        b += 1
    return a, b, float(sims[a:b].mean())


@dataclass
class ProposalRefinementLocaliser:
    """Training-free localiser: segment proposals of one video, refined with its clip features.

    For clip features f and query q (L2-normalised): (1) score the clips ``s_t = <f_t, q>`` and
    the mean-pooled segments; (2) merge the ``n_seeds`` best segments into proposals
    (:func:`merge_segments`, ``max_gap``); (3) pad each by ``pad_clips`` and refine it with
    :func:`refine_window`; (4) return the ``top_n`` distinct windows by mean clip similarity.
    Windows lie on the clip grid, inside ``[0, T * CLIP_LEN]``.

    Args:
        clips_per_segment: segment length in clips (as the segment index's).
        n_seeds: best segments merged into proposals.
        max_gap: missing segments bridged when merging.
        pad_clips: clips added on each side of a proposal before refining.
        top_n: windows returned.
        window_clips: ``None``: takes a video of any length in one call.
    """

    clips_per_segment: int = 2
    n_seeds: int = 4
    max_gap: int = 1
    pad_clips: int = 1
    top_n: int = 5
    window_clips: int | None = None

    def __call__(
        self, clip_feats: np.ndarray, query: Any, duration: float
    ) -> list[tuple[float, float, float]]:
        feats = l2_normalize(np.asarray(clip_feats, np.float32))
        q = l2_normalize(query_embedding(query))
        if q.shape[0] != feats.shape[1]:
            raise DataValidationError(
                f"query embedding has dimension {q.shape[0]}, clip features have {feats.shape[1]}"
            )
        sims = feats @ q
        cps, n = self.clips_per_segment, len(sims)
        # (1)-(2): best segments -> proposals inside this video
        seg_sims = l2_normalize(pool_segments(feats, cps)) @ q
        seeds = np.argsort(-seg_sims, kind="stable")[: self.n_seeds]
        starts = seeds * cps * CLIP_LEN
        ends = np.minimum((seeds + 1) * cps, n) * CLIP_LEN
        props = merge_segments(
            ["video"] * len(seeds), starts, ends, seg_sims[seeds], cps * CLIP_LEN, self.max_gap
        )
        # (3)-(4): refine each proposal on the clip level
        windows: dict[tuple[int, int], float] = {}
        for p in props:
            lo = max(0, round(p.start / CLIP_LEN) - self.pad_clips)
            hi = min(n, round(p.end / CLIP_LEN) + self.pad_clips)
            a, b, score = refine_window(sims, lo, hi)
            windows[(a, b)] = max(score, windows.get((a, b), -np.inf))
        ranked = sorted(windows.items(), key=lambda kv: (-kv[1], kv[0]))[: self.top_n]
        return [(a * CLIP_LEN, b * CLIP_LEN, s) for (a, b), s in ranked]


def _candidate_rows(vid: str, stage1: float, moments, per_video: int | None) -> list[tuple]:
    """(vid, st, ed, stage1, stage2) rows of one video's best ``per_video`` moments."""
    moments = sorted(_check_moments(vid, moments), key=lambda m: -m[2])[:per_video]
    return [(vid, st, ed, stage1, s2) for st, ed, s2 in moments]


def rank_candidates(
    candidates, alpha: float, top_n: int | None = 100, fuse: Fusion = combine_scores
):
    """Score candidate moments with ``fuse`` (default :func:`combine_scores`) and rank them.

    Args:
        candidates: DataFrame with vid, start, end, stage1_score, stage2_score.
        alpha: weight of the (normalised) stage-1 score; NaN stage-1 scores count as 0 weight
            (the final score is then the normalised stage-2 score).
        top_n: keep the best ``top_n`` (None = all).
        fuse: the score fusion, called once with the candidates' stage-1 and stage-2 scores
            (NaN stage-1 scores as 0) and alpha; not called when there is no candidate.

    Returns:
        DataFrame with :data:`RESULT_COLUMNS`, rank 1 first: by score, ties by the higher
        stage-2 score, then vid, then start.

    Raises:
        ValueError: ``fuse`` returned another number of scores than there are candidates.
    """
    import pandas as pd

    frame = candidates.copy()
    s1 = frame["stage1_score"].to_numpy(float)
    s2 = frame["stage2_score"].to_numpy(float)
    use_alpha = alpha if len(s1) and not np.isnan(s1).any() else 0.0
    scores = np.asarray(fuse(np.nan_to_num(s1), s2, use_alpha) if len(frame) else [], float)
    if scores.shape != (len(frame),):
        raise ValueError(
            f"the score fusion returned shape {scores.shape} for {len(frame)} candidates; "
            f"expected ({len(frame)},), one score per candidate in their order"
        )
    frame["score"] = scores
    frame = frame.sort_values(
        ["score", "stage2_score", "vid", "start"],
        ascending=[False, False, True, True],
        kind="stable",
    )
    frame = frame.head(top_n) if top_n is not None else frame
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return pd.DataFrame(frame[RESULT_COLUMNS]).reset_index(drop=True)


def to_vcmr(results) -> list[list]:
    """Result DataFrame -> the VCMR prediction list ``[[vid, st, ed, score], ...]`` (ranked)."""
    return [
        [str(r.vid), float(r.start), float(r.end), float(r.score)]
        for r in results.itertuples(index=False)
    ]


def _frame(rows: list[tuple]):
    import pandas as pd

    cols = ["vid", "start", "end", "stage1_score", "stage2_score"]
    return pd.DataFrame(rows, columns=cols).astype(
        {"start": float, "end": float, "stage1_score": float, "stage2_score": float}
    )


@dataclass
class CoarseToFineSearch:
    """Video retrieval before moment localisation: stage 1 on all videos, stage 2 on the top K.

    Args:
        video_scorer: stage 1, ``query -> {vid: score}``.
        localise: stage 2, ``(vid, query) -> [(st, ed, score)]`` (e.g. a :class:`CorpusLocaliser`).
        top_k_videos: K, videos passed to stage 2.
        alpha: weight of stage 1 in the final score (see module docstring).
        moments_per_video: keep at most this many moments per video (None = all).
        fuse: the score fusion of the two stages (default :func:`combine_scores`).
    """

    video_scorer: VideoScorer
    localise: VideoMoments
    top_k_videos: int = 10
    alpha: float = 0.5
    moments_per_video: int | None = 5
    fuse: Fusion = combine_scores

    @classmethod
    def from_index(
        cls,
        index: SegmentIndex,
        features_by_vid: Mapping[str, np.ndarray],
        **kwargs: Any,
    ) -> CoarseToFineSearch:
        """Default pipeline: segment-index stage 1 + proposal-refinement stage 2."""
        refine = ProposalRefinementLocaliser(clips_per_segment=index.config.clips_per_segment)
        return cls(SegmentVideoScorer(index), CorpusLocaliser(features_by_vid, refine), **kwargs)

    def candidates(self, query: Any):
        """Unranked candidate moments (vid, start, end, stage1_score, stage2_score) of a query."""
        if self.top_k_videos < 1:
            raise ValueError(f"top_k_videos must be >= 1, got {self.top_k_videos}")
        scores = self.video_scorer(query)
        top = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[: self.top_k_videos]
        rows: list[tuple] = []
        for vid, s1 in top:
            rows += _candidate_rows(vid, s1, self.localise(vid, query), self.moments_per_video)
        return _frame(rows)

    def search(self, query: Any, top_n: int = 100):
        """Ranked moments of one query: DataFrame with :data:`RESULT_COLUMNS`."""
        return rank_candidates(self.candidates(query), self.alpha, top_n, self.fuse)

    def search_vcmr(self, queries: Mapping[Any, Any], top_n: int = 100) -> dict[Any, list]:
        """VCMR predictions ``{qid: [[vid, st, ed, score], ...]}`` for ``{qid: query}``."""
        return {qid: to_vcmr(self.search(q, top_n)) for qid, q in queries.items()}


def exhaustive_search(
    query: Any,
    vids: Iterable[str],
    localise: VideoMoments,
    video_scorer: VideoScorer | None = None,
    alpha: float = 0.5,
    top_n: int = 100,
    moments_per_video: int | None = 5,
):
    """Slow upper bound: run the localiser on *every* video.

    Without a ``video_scorer`` the final score is the normalised stage-2 score alone
    (stage1_score is NaN); with one, videos it does not score get its lowest score.
    """
    s1 = dict(video_scorer(query)) if video_scorer is not None else {}
    floor = min(s1.values()) if s1 else float("nan")
    rows: list[tuple] = []
    for vid in vids:
        rows += _candidate_rows(vid, s1.get(vid, floor), localise(vid, query), moments_per_video)
    return rank_candidates(_frame(rows), alpha, top_n)


def default_metric(predictions: Mapping, queries: Sequence[Mapping]) -> float:
    """NDCG@10, IoU > 0.5 (TVR-Ranking's convention) in percent, from :mod:`course_lib.metrics.ndcg`."""
    from course_lib.metrics.ndcg import ndcg_iou

    return float(ndcg_iou(predictions, queries, ks=(10,), iou_thresholds=(0.5,))["NDCG@10-IoU0.5"])


def fit_alpha(
    candidates_by_qid: Mapping[Any, Any],
    queries: Sequence[Mapping],
    metric: Metric = default_metric,
    grid: Sequence[float] = tuple(np.round(np.linspace(0.0, 1.0, 11), 2)),
    top_n: int = 100,
) -> tuple[float, dict[float, float]]:
    """Grid-search the stage-1 weight alpha on validation queries.

    Stage 1 and 2 run once per query (``CoarseToFineSearch.candidates``); only the cheap
    re-ranking is repeated per alpha.

    Args:
        candidates_by_qid: qid -> candidates DataFrame of that validation query.
        queries: the validation corpus queries (with ``relevant_moments``).
        metric: higher-is-better metric of VCMR predictions (default NDCG@10, IoU 0.5).
        grid: alpha values to try.
        top_n: predictions kept per query.

    Returns:
        ``(best_alpha, {alpha: metric value})``; ties go to the smallest alpha.
    """
    if not grid:
        raise ValueError("fit_alpha needs a non-empty grid of alpha values")
    values: dict[float, float] = {}
    for alpha in grid:
        preds = {
            qid: to_vcmr(rank_candidates(c, float(alpha), top_n))
            for qid, c in candidates_by_qid.items()
        }
        values[float(alpha)] = metric(preds, queries)
    best = max(values, key=lambda a: (values[a], -a))
    return best, values
