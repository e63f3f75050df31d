"""Evaluate corpus moment search pipelines on a toy corpus (chapter 6).

Three pipelines answer a query over a whole collection with ranked ``[vid, st, ed, score]``
moments (the VCMR prediction format):

* ``segment_only`` -- SPR without refinement: the top segments of the faiss index are merged
  into proposals (:func:`~course_lib.corpus.proposals.merge_segments`), each scored by its best
  segment's similarity.
* ``two_stage`` -- video retrieval before moment localisation (CFAN): stage 1 ranks videos with
  the segment index, stage 2 localises moments in the top-K videos only, and the final score is
  ``alpha * norm(s1) + (1 - alpha) * norm(s2)`` with alpha fitted on *validation* queries.
  Stage 2 is training-free by default (``"refine"``, ``"baseline"``) or chapter 5's trained
  moment model (``"coreba"``: pass ``moment_model=`` and prepare the corpus ``with_tokens``).
* ``exhaustive`` -- the same localiser and scoring on *every* video (K = all, every video gets
  an exact stage-1 score): the slow upper bound that the two-stage pipeline approximates.

A fourth, reference row (:data:`CHANCE`) ranks random moments: what the metrics give when
the features carry no signal. :func:`localisation_signal` measures how much signal raw clip
similarities carry for video retrieval and for localisation.

Quality: VCMR R@{1,5,10,100} at IoU 0.5/0.7 (TVRetrieval) and NDCG@{10,20,40} at IoU
0.3/0.5/0.7 (TVR-Ranking), from :mod:`course_lib.metrics`. Speed: wall time per query of each
pipeline measured in the same run (query text encoding and feature loading excluded: they are
the same for every pipeline).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from course_lib.corpus.index import IndexConfig, SegmentIndex
from course_lib.corpus.proposals import merge_segments
from course_lib.corpus.search import (
    CoarseToFineSearch,
    CorpusLocaliser,
    Fusion,
    ProposalRefinementLocaliser,
    SegmentVideoScorer,
    combine_scores,
    exhaustive_search,
    fit_alpha,
    to_vcmr,
)
from course_lib.corpus.segments import l2_normalize, segment_videos
from course_lib.errors import DataValidationError
from course_lib.timeline import CLIP_LEN

PIPELINES = ("segment_only", "two_stage", "exhaustive")
#: a reference row: random moments of random videos (what the metrics give for no signal)
CHANCE = "chance"
LOCALISERS = ("refine", "baseline", "coreba")
VCMR_KS: tuple[int, ...] = (1, 5, 10, 100)
VCMR_IOUS: tuple[float, ...] = (0.5, 0.7)
NDCG_KS: tuple[int, ...] = (10, 20, 40)
NDCG_IOUS: tuple[float, ...] = (0.3, 0.5, 0.7)
#: a pipeline: query embedding (D,) -> ranked VCMR predictions [[vid, st, ed, score], ...]
Pipeline = Callable[[np.ndarray], list]


def metric_columns() -> list[str]:
    """Names of the quality columns: ``vcmr_r1_iou0.5`` ... ``ndcg40_iou0.7``."""
    recall = [f"vcmr_r{k}_iou{t}" for t in VCMR_IOUS for k in VCMR_KS]
    ndcg = [f"ndcg{k}_iou{t}" for t in NDCG_IOUS for k in NDCG_KS]
    return recall + ndcg


# ----------------------------------------------------------------------------- data
@dataclass
class CorpusSetup:
    """A corpus with everything the pipelines need in memory.

    Attributes:
        corpus: the corpus dict (``videos``, ``queries``) from :func:`course_lib.toyworld.corpus`.
        queries: the evaluated queries (all of the corpus's, or a seeded subsample).
        features_by_vid: video id -> float32 (T, D) clip features.
        query_embs: qid -> the query as the pipelines take it: a float32 (D,) text embedding,
            or a :class:`course_lib.localisers.Query` (embedding + token features) for stage-2
            models that read words (see :func:`query_vector`).
    """

    corpus: dict
    queries: list[dict]
    features_by_vid: dict[str, np.ndarray]
    query_embs: dict[Any, np.ndarray]

    @property
    def vids(self) -> list[str]:
        """Video ids of the collection, in corpus order."""
        return [v["vid"] for v in self.corpus["videos"]]


def query_vector(query: Any) -> np.ndarray:
    """The (D,) embedding of a query: the array itself, or a ``Query``'s ``embedding``."""
    return np.asarray(getattr(query, "embedding", query), dtype=np.float32)


def subsample_queries(queries: Sequence[Mapping], n: int | None, seed: int = 0) -> list[dict]:
    """A seeded subsample of ``n`` queries (corpus order kept); all when ``n`` is None or larger."""
    queries = [q for q in queries if q["relevant_moments"]]
    if n is None or n >= len(queries):
        return list(queries)
    if n < 1:
        raise ValueError(f"n_queries must be >= 1, got {n}")
    rows = np.sort(np.random.default_rng(seed).choice(len(queries), n, replace=False))
    return [queries[i] for i in rows]


def encode_queries(encoder, queries: Sequence[Mapping]) -> dict[Any, np.ndarray]:
    """qid -> float32 (D,) text embedding (``encoder.encode_text``, one batched call)."""
    embs = encoder.encode_text([q["query"] for q in queries]).cpu().numpy().astype(np.float32)
    return {q["qid"]: emb for q, emb in zip(queries, embs)}


def encode_queries_with_tokens(encoder, queries: Sequence[Mapping]) -> dict[Any, Any]:
    """qid -> :class:`course_lib.localisers.Query` with the sentence embedding and the word-token
    features (``encoder.encode_text_tokens``, padding dropped): what a moment model reads."""
    from course_lib.localisers import Query

    embs = encode_queries(encoder, queries)
    tokens, mask = encoder.encode_text_tokens([q["query"] for q in queries])
    tokens, mask = tokens.cpu().numpy(), mask.cpu().numpy()
    return {
        q["qid"]: Query.from_features(q["query"], embs[q["qid"]], tokens[i][mask[i]])
        for i, q in enumerate(queries)
    }


def prepare_corpus(
    corpus: dict,
    encoder,
    feature_cache,
    n_queries: int | None = None,
    seed: int = 0,
    with_tokens: bool = False,
) -> CorpusSetup:
    """Clip features of every video (through the cache) and embeddings of the evaluated queries.

    Args:
        corpus: corpus dict (``videos`` with ``vid``; ``queries`` with ``relevant_moments``).
        encoder: a :class:`~course_lib.clip.ClipEncoder` (for the query texts).
        feature_cache: a :class:`~course_lib.clip.FeatureCache` (computes missing videos).
        n_queries: evaluate a seeded subsample of this many queries (None = all).
        seed: seed of the query subsample.
        with_tokens: queries as :class:`course_lib.localisers.Query` objects with token features
            (needed by the ``"coreba"`` stage 2) instead of bare embeddings.
    """
    queries = subsample_queries(corpus["queries"], n_queries, seed)
    if not queries:
        raise DataValidationError("the corpus has no query with a relevant moment")
    feats = {
        v["vid"]: np.asarray(feature_cache.get(v["vid"]), np.float32) for v in corpus["videos"]
    }
    encode = encode_queries_with_tokens if with_tokens else encode_queries
    return CorpusSetup(corpus, queries, feats, encode(encoder, queries))


# ----------------------------------------------------------------------------- pipelines
@dataclass
class EvalConfig:
    """Settings shared by the three pipelines.

    Attributes:
        index_kind: faiss index of the segments (``"flat"`` is exact; see :class:`IndexConfig`).
        clips_per_segment: segment length in 2-s clips.
        n_segments: segments retrieved per query (segment-only proposals and stage 1).
        n_proposals: proposals kept by the segment-only pipeline.
        max_gap: missing segments bridged when merging (constant gap rule).
        top_k_videos: K, videos passed to stage 2 of the two-stage pipeline.
        moments_per_video: stage-2 moments kept per video.
        localiser: stage 2, ``"refine"`` (:class:`ProposalRefinementLocaliser`),
            ``"baseline"`` (the chapter-3 training-free sliding-window baseline) or ``"coreba"``
            (chapter 5's trained model, :class:`~course_lib.localisers.CorebaLocaliser`; needs
            ``moment_model``).
        top_n: predictions kept per query (VCMR evaluates the top 100).
        alpha_grid: alpha values tried by :func:`fit_alpha`.
    """

    index_kind: str = "flat"
    clips_per_segment: int = 2
    n_segments: int = 200
    n_proposals: int = 100
    max_gap: int = 1
    top_k_videos: int = 20
    moments_per_video: int = 5
    localiser: str = "refine"
    top_n: int = 100
    alpha_grid: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))

    def __post_init__(self) -> None:
        if self.localiser not in LOCALISERS:
            raise ValueError(f"localiser must be one of {LOCALISERS}, got {self.localiser!r}")


@dataclass
class ExactVideoScorer:
    """Stage-1 scores for *every* video: its best segment's cosine similarity (one matmul).

    The exhaustive pipeline uses it, so that no video is left without a stage-1 score.
    """

    features_by_vid: Mapping[str, np.ndarray]
    clips_per_segment: int = 2
    _table: Any = field(default=None, init=False, repr=False)

    def __call__(self, query_emb: np.ndarray) -> dict[str, float]:
        if self._table is None:
            table = segment_videos(self.features_by_vid, self.clips_per_segment)
            firsts = np.r_[0, np.flatnonzero(table.vids[1:] != table.vids[:-1]) + 1]
            self._table = (table.embeddings, firsts, table.vids[firsts])
        emb, firsts, vids = self._table
        q = query_vector(query_emb).reshape(-1)
        sims = emb @ (q / max(float(np.linalg.norm(q)), 1e-12))
        best = np.maximum.reduceat(sims, firsts)  # max over each video's block of segments
        return {str(v): float(s) for v, s in zip(vids, best)}


def make_localiser(
    config: EvalConfig,
    features_by_vid: Mapping[str, np.ndarray],
    durations: Mapping[str, float] | None = None,
    moment_model: Any = None,
) -> CorpusLocaliser:
    """Stage 2 over the collection, with the localiser named by ``config.localiser``.

    Args:
        config: pipeline settings.
        features_by_vid: video id -> (T, D) clip features.
        durations: video id -> seconds (``"coreba"`` only).
        moment_model: a trained :class:`course_lib.alignment.CorebaModel` (``"coreba"`` only).
    """
    from course_lib.localisers import BaselineLocaliser, CorebaLocaliser

    if config.localiser == "refine":
        refine = ProposalRefinementLocaliser(clips_per_segment=config.clips_per_segment)
        return CorpusLocaliser(features_by_vid, refine)
    if config.localiser == "baseline":
        baseline = BaselineLocaliser(window_clips=None, max_windows=config.moments_per_video)
        return CorpusLocaliser(features_by_vid, baseline)
    if moment_model is None or durations is None:
        raise ValueError("localiser 'coreba' needs moment_model= (a trained COREBA) and durations")
    return CorpusLocaliser(
        features_by_vid, CorebaLocaliser(moment_model), durations, config.moments_per_video
    )


def durations_of(setup: CorpusSetup) -> dict[str, float]:
    """Video id -> duration in seconds, from the corpus."""
    return {v["vid"]: float(v["duration"]) for v in setup.corpus["videos"]}


def build_index(setup: CorpusSetup, config: EvalConfig) -> SegmentIndex:
    """The segment index of the collection (``config.index_kind``, ``config.clips_per_segment``)."""
    cfg = IndexConfig(kind=config.index_kind, clips_per_segment=config.clips_per_segment)
    return SegmentIndex.build(setup.features_by_vid, cfg)


def segment_only_search(index: SegmentIndex, query_emb: np.ndarray, config: EvalConfig) -> list:
    """SPR without refinement: top segments merged into proposals, scored by their best segment.

    Returns:
        Ranked VCMR predictions ``[[vid, st, ed, score], ...]`` (at most ``config.n_proposals``).
    """
    hits = index.search_segments(query_vector(query_emb), config.n_segments)
    seg_len = config.clips_per_segment * CLIP_LEN
    props = merge_segments(
        hits["vid"], hits["start"], hits["end"], hits["score"], seg_len, config.max_gap
    )
    return [[p.vid, p.start, p.end, p.score] for p in props[: config.n_proposals]]


def two_stage_search(
    index: SegmentIndex,
    setup: CorpusSetup,
    config: EvalConfig,
    alpha: float = 0.5,
    moment_model: Any = None,
    fuse: Fusion = combine_scores,
) -> CoarseToFineSearch:
    """The coarse-to-fine search: segment-index stage 1, ``config.localiser`` stage 2, and
    ``fuse`` combining their scores (e.g. a learner's own fusion; default the library's)."""
    scorer = SegmentVideoScorer(index, query_vector, n_segments=config.n_segments)
    return CoarseToFineSearch(
        scorer,
        make_localiser(config, setup.features_by_vid, durations_of(setup), moment_model),
        top_k_videos=config.top_k_videos,
        alpha=alpha,
        moments_per_video=config.moments_per_video,
        fuse=fuse,
    )


def fit_two_stage_alpha(
    search: CoarseToFineSearch, val: CorpusSetup, config: EvalConfig
) -> tuple[float, dict[float, float]]:
    """Grid-search alpha on validation queries (NDCG@10, IoU 0.5), never on test ones.

    Returns:
        ``(alpha, {alpha: validation NDCG@10-IoU0.5})``.
    """
    candidates = {q["qid"]: search.candidates(val.query_embs[q["qid"]]) for q in val.queries}
    return fit_alpha(candidates, val.queries, grid=config.alpha_grid, top_n=config.top_n)


def make_pipelines(
    setup: CorpusSetup,
    index: SegmentIndex,
    config: EvalConfig,
    alpha: float,
    moment_model: Any = None,
) -> dict[str, Pipeline]:
    """The pipelines (and the chance row) as ``query_emb -> predictions`` functions."""
    search = two_stage_search(index, setup, config, alpha, moment_model)
    exact = ExactVideoScorer(setup.features_by_vid, config.clips_per_segment)
    vids = setup.vids

    def exhaustive(emb: np.ndarray) -> list:
        results = exhaustive_search(
            emb, vids, search.localise, exact, alpha, config.top_n, config.moments_per_video
        )
        return to_vcmr(results)

    durations = durations_of(setup)
    rng = np.random.default_rng(0)
    return {
        "segment_only": lambda emb: segment_only_search(index, emb, config),
        "two_stage": lambda emb: to_vcmr(search.search(emb, config.top_n)),
        "exhaustive": exhaustive,
        CHANCE: lambda emb: chance_predictions(durations, rng, config.top_n),
    }


def chance_predictions(
    durations: Mapping[str, float], rng: np.random.Generator, top_n: int = 100
) -> list:
    """``top_n`` random moments: a random video, a 4-10 s window on the 2-s grid, falling scores."""
    vids = sorted(durations)
    preds = []
    for i in range(top_n):
        vid = vids[int(rng.integers(len(vids)))]
        n_clips = max(1, int(durations[vid] // CLIP_LEN))
        length = min(int(rng.integers(2, 6)), n_clips)
        st = int(rng.integers(0, n_clips - length + 1)) * CLIP_LEN
        preds.append([vid, st, st + length * CLIP_LEN, 1.0 - i / top_n])
    return preds


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counting one half (Mann-Whitney U / n m)."""
    neg = np.sort(np.asarray(neg, np.float64))
    pos = np.asarray(pos, np.float64)
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(pos) * len(neg)))


def localisation_signal(setup: CorpusSetup) -> dict[str, float]:
    """How well raw clip-query cosine similarities separate relevant from irrelevant (AUC).

    * ``video_auc``: a video's best clip similarity, relevant vs. irrelevant videos
      (what stage 1 needs);
    * ``clip_auc``: clip similarities inside vs. outside the relevant moments, *within* the
      relevant videos (what a localiser needs).

    Both are averaged over the evaluated queries; 0.5 = no signal, 1.0 = perfect separation.
    """
    unit = {v: l2_normalize(f) for v, f in setup.features_by_vid.items()}
    video_aucs, clip_aucs = [], []
    for q in setup.queries:
        emb = l2_normalize(query_vector(setup.query_embs[q["qid"]]).reshape(1, -1))[0]
        sims = {v: f @ emb for v, f in unit.items()}
        relevant = {m["vid"] for m in q["relevant_moments"]}
        best = {v: float(s.max()) for v, s in sims.items()}
        pos = [best[v] for v in best if v in relevant]
        neg = [best[v] for v in best if v not in relevant]
        if pos and neg:
            video_aucs.append(roc_auc(pos, neg))
        inside, outside = [], []
        for vid in relevant:
            mask = np.zeros(len(sims[vid]), bool)
            for m in q["relevant_moments"]:
                if m["vid"] == vid:
                    lo, hi = m["window"]
                    mask[int(lo // CLIP_LEN) : int(np.ceil(hi / CLIP_LEN))] = True
            inside += sims[vid][mask].tolist()
            outside += sims[vid][~mask].tolist()
        if inside and outside:
            clip_aucs.append(roc_auc(inside, outside))
    return {"video_auc": float(np.mean(video_aucs)), "clip_auc": float(np.mean(clip_aucs))}


# ----------------------------------------------------------------------------- measuring
def run_timed(pipeline: Pipeline, query_embs: Mapping[Any, np.ndarray]) -> tuple[dict, float]:
    """Run a pipeline on every query; return ``(predictions by qid, seconds per query)``."""
    if not query_embs:
        raise DataValidationError("no queries to run")
    pipeline(next(iter(query_embs.values())))  # warm-up (lazy caches), not timed
    start = time.perf_counter()
    preds = {qid: pipeline(emb) for qid, emb in query_embs.items()}
    return preds, (time.perf_counter() - start) / len(query_embs)


def quality(predictions: Mapping, queries: Sequence[Mapping]) -> dict[str, float]:
    """VCMR R@K (IoU 0.5/0.7) and NDCG@K (IoU 0.3/0.5/0.7) in percent, keyed as
    :func:`metric_columns`."""
    from course_lib.metrics import ndcg_iou, vcmr_recall

    recall = vcmr_recall(predictions, queries, "VCMR", VCMR_KS, VCMR_IOUS)
    ndcg = ndcg_iou(predictions, queries, NDCG_KS, NDCG_IOUS)
    out = {f"vcmr_r{k}_iou{t}": recall[f"{t}-r{k}"] for t in VCMR_IOUS for k in VCMR_KS}
    out.update({f"ndcg{k}_iou{t}": ndcg[f"NDCG@{k}-IoU{t}"] for t in NDCG_IOUS for k in NDCG_KS})
    return out


@dataclass
class CorpusEvaluation:
    """Result of :func:`evaluate_pipelines`.

    Attributes:
        table: one row per pipeline: pipeline, n_videos, n_queries, ms_per_query, the
            :func:`metric_columns`, alpha, top_k_videos, localiser.
        predictions: pipeline -> {qid: ranked predictions}.
        alpha: the stage-1 weight fitted on validation queries.
        alpha_curve: {alpha: validation NDCG@10-IoU0.5}.
        stage1: the two-stage pipeline's video scorer (to inspect stage-1 ranks).
    """

    table: Any
    predictions: dict[str, dict]
    alpha: float
    alpha_curve: dict[float, float]
    stage1: Any


def evaluate_pipelines(
    test: CorpusSetup,
    val: CorpusSetup,
    config: EvalConfig | None = None,
    pipelines: Sequence[str] = PIPELINES,
    log: Callable[[str], None] | None = None,
    moment_model: Any = None,
) -> CorpusEvaluation:
    """Fit alpha on ``val``, then run and score the pipelines on ``test`` (timed in this run).

    Args:
        test: the evaluated corpus (its queries are never used for fitting).
        val: validation corpus for :func:`fit_two_stage_alpha`.
        config: pipeline settings.
        pipelines: which of :data:`PIPELINES` (and :data:`CHANCE`, random moments) to run.
        log: optional progress printer (e.g. ``print``).
        moment_model: the trained model of the ``"coreba"`` stage 2 (both corpora prepared
            ``with_tokens``).
    """
    import pandas as pd

    config = config or EvalConfig()
    say = log or (lambda _msg: None)
    # 1. alpha from validation queries, with the validation collection's own index
    alpha, curve = fit_two_stage_alpha(
        two_stage_search(build_index(val, config), val, config, moment_model=moment_model),
        val,
        config,
    )
    say(f"alpha fitted on {len(val.queries)} validation queries: {alpha}")
    # 2. the test collection's index and the pipelines
    index = build_index(test, config)
    runners = make_pipelines(test, index, config, alpha, moment_model)
    rows, predictions = [], {}
    for name in pipelines:
        preds, seconds = run_timed(runners[name], test.query_embs)
        predictions[name] = preds
        rows.append(
            {
                "pipeline": name,
                "n_videos": len(test.vids),
                "n_queries": len(test.queries),
                "ms_per_query": 1000 * seconds,
                **quality(preds, test.queries),
                "alpha": alpha if name in ("two_stage", "exhaustive") else float("nan"),
                "top_k_videos": {
                    "two_stage": config.top_k_videos,
                    "exhaustive": len(test.vids),
                }.get(name, float("nan")),
                "localiser": config.localiser if name in ("two_stage", "exhaustive") else "",
            }
        )
        say(f"{name}: {1000 * seconds:.1f} ms/query")
    stage1 = two_stage_search(index, test, config, alpha, moment_model).video_scorer
    return CorpusEvaluation(pd.DataFrame(rows), predictions, alpha, curve, stage1)


# ----------------------------------------------------------------------------- targets, failures
def check_targets(
    table, recall_fraction: float = 0.9, time_fraction: float = 0.1
) -> list[tuple[str, bool]]:
    """The chapter-6 targets as ``(description with the numbers, holds)`` pairs.

    1. two-stage VCMR R@10 (IoU 0.5) >= ``recall_fraction`` x exhaustive's, at
       <= ``time_fraction`` x its time per query;
    2. two-stage NDCG@10 (IoU 0.5) > segment-only's.
    """
    row = {r["pipeline"]: r for r in table.to_dict("records")}
    out = []
    if {"two_stage", "exhaustive"} <= set(row):
        two, ex = row["two_stage"], row["exhaustive"]
        r_ratio = two["vcmr_r10_iou0.5"] / max(ex["vcmr_r10_iou0.5"], 1e-12)
        t_ratio = two["ms_per_query"] / max(ex["ms_per_query"], 1e-12)
        ok = r_ratio >= recall_fraction and t_ratio <= time_fraction
        out.append(
            (
                f"two-stage R@10 IoU0.5 = {100 * r_ratio:.1f}% of exhaustive (>= "
                f"{100 * recall_fraction:.0f}%) at {t_ratio:.3f}x its time per query "
                f"(<= {time_fraction:g})",
                bool(ok),
            )
        )
    if {"two_stage", "segment_only"} <= set(row):
        a, b = row["two_stage"]["ndcg10_iou0.5"], row["segment_only"]["ndcg10_iou0.5"]
        out.append((f"two-stage NDCG@10 IoU0.5 = {a:.2f} > segment-only {b:.2f}", bool(a > b)))
    return out


def query_hits(
    predictions: Mapping, queries: Sequence[Mapping], k: int = 10, iou: float = 0.5
) -> dict[Any, bool]:
    """qid -> whether one of the top-``k`` predictions matches a relevant moment at ``iou``."""
    from course_lib.metrics.vcmr import correct_matrix, gt_moments, rank_predictions

    hits = {}
    for q in queries:
        preds = rank_predictions(predictions[q["qid"]], top_k=k)
        hits[q["qid"]] = bool(correct_matrix(preds, gt_moments(q), (iou,))[0].any())
    return hits


FAILURE_COLUMNS = [
    "qid",
    "query",
    "n_relevant_videos",
    "best_stage1_rank",
    "exhaustive_hit",
    "hit_video_stage1_rank",
]


def failure_cases(evaluation: CorpusEvaluation, setup: CorpusSetup, k: int = 10, iou: float = 0.5):
    """Queries where the two-stage pipeline misses at R@k but the exhaustive one hits.

    Returns:
        DataFrame with :data:`FAILURE_COLUMNS`: ``best_stage1_rank`` is the stage-1 rank of the
        best-ranked relevant video, ``exhaustive_hit`` the first correct prediction of the
        exhaustive pipeline as ``vid [st, ed]`` and ``hit_video_stage1_rank`` the stage-1 rank
        of that video (ranks are NaN when stage 1 retrieved no segment of the video).
    """
    import pandas as pd

    from course_lib.metrics.vcmr import correct_matrix, gt_moments, rank_predictions

    two = query_hits(evaluation.predictions["two_stage"], setup.queries, k, iou)
    ex = query_hits(evaluation.predictions["exhaustive"], setup.queries, k, iou)
    rows = []
    for q in setup.queries:
        if two[q["qid"]] or not ex[q["qid"]]:
            continue
        scores = evaluation.stage1(setup.query_embs[q["qid"]])
        ranking = sorted(scores, key=lambda v: (-scores[v], v))
        relevant = {m["vid"] for m in gt_moments(q)}
        ranks = [i + 1 for i, v in enumerate(ranking) if v in relevant]
        preds = rank_predictions(evaluation.predictions["exhaustive"][q["qid"]], top_k=k)
        first = int(np.argmax(correct_matrix(preds, gt_moments(q), (iou,))[0]))
        vid, st, ed, _ = preds[first]
        rows.append(
            {
                "qid": q["qid"],
                "query": q["query"],
                "n_relevant_videos": len(relevant),
                "best_stage1_rank": min(ranks) if ranks else float("nan"),
                "exhaustive_hit": f"{vid} [{st:g}, {ed:g}]",
                "hit_video_stage1_rank": ranking.index(vid) + 1 if vid in scores else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=FAILURE_COLUMNS)
