"""A training-free moment retrieval / highlight detection baseline on CLIP features.

Given L2-normalised clip features ``V`` (T, D) (one per 2-s clip) and a query feature ``q`` (D,):

1. clip saliency ``s_i = <v_i, q>`` (cosine similarity) - this is ``pred_saliency_scores``;
2. every window ``W`` of ``L`` consecutive clips (``L`` in ``window_lengths``, stride 1) gets a
   score from the mean similarity inside it, ``m_in = mean_{i in W} s_i``, with one of three
   ``contrast`` choices:

   * ``"none"``: ``m_in``. Plain mean pooling has a length bias: the shortest window sitting on the
     noisy peak of the similarity curve always wins, so predicted moments come out too short.
   * ``"video"``: ``m_in - mean_i s_i``. Subtracting the video mean does not change the ranking
     inside a video (same length bias), but makes scores comparable across videos (a video that
     resembles every query no longer wins), which a corpus-level ranking needs.
   * ``"outside"`` (default): ``m_in - mean_{i not in W} s_i``. A window that leaves part of the
     peak outside is penalised, and one that adds background clips lowers ``m_in``, so the best
     window is the one that covers the peak exactly. It is also comparable across videos. The
     whole-video window scores 0.
3. temporal NMS (IoU > 0.7 suppressed) keeps the best distinct windows; the top ``max_windows``
   become ``pred_relevant_windows`` ``[st, ed, score]`` in seconds.

The result is the official QVHighlights submission format (see
:mod:`course_lib.metrics.submission`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from course_lib.errors import DataValidationError
from course_lib.spans import num_clips, temporal_nms
from course_lib.timeline import CLIP_LEN

DEFAULT_WINDOW_LENGTHS: tuple[int, ...] = (2, 4, 8, 16)
"""Window lengths in clips (4, 8, 16, 32 seconds)."""


def clip_similarities(clip_feats: np.ndarray, query_feat: np.ndarray) -> np.ndarray:
    """(T,) cosine similarity of every clip with the query (features are re-normalised here)."""
    v = np.asarray(clip_feats, dtype=np.float64)
    q = np.asarray(query_feat, dtype=np.float64).reshape(-1)
    if v.ndim != 2 or v.shape[1] != q.shape[0]:
        raise DataValidationError(
            f"clip features {v.shape} and query feature {q.shape} do not fit (T, D) / (D,)"
        )
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    return v @ q


CONTRASTS = ("none", "video", "outside")


def sliding_window_scores(
    sims: np.ndarray,
    window_lengths: Sequence[int] = DEFAULT_WINDOW_LENGTHS,
    contrast: str = "outside",
    clip_len: float = CLIP_LEN,
    duration: float | None = None,
) -> np.ndarray:
    """Score every window of every length from the clip similarities inside (and outside) it.

    Args:
        sims: (T,) clip-query similarities.
        window_lengths: window lengths in clips; lengths > T are replaced by one whole-video window.
        contrast: ``"none"``, ``"video"`` or ``"outside"`` (see module docstring).
        clip_len: clip length in seconds.
        duration: video duration; window ends are clipped to it.

    Returns:
        (N, 3) rows ``[st, ed, score]`` in seconds, ordered by length then start.
    """
    if contrast not in CONTRASTS:
        raise ValueError(f"contrast must be one of {CONTRASTS}, got {contrast!r}")
    sims = np.asarray(sims, dtype=np.float64)
    T = len(sims)
    if T == 0:
        return np.zeros((0, 3))
    cumsum = np.concatenate([[0.0], np.cumsum(sims)])  # window sums in O(1) each
    rows = []
    for length in sorted({min(int(L), T) for L in window_lengths if int(L) > 0}):
        starts = np.arange(T - length + 1)
        inside = cumsum[starts + length] - cumsum[starts]
        score = inside / length
        if contrast == "video":
            score = score - sims.mean()
        elif contrast == "outside":
            # the whole-video window has no outside: compare it with itself (score 0)
            outside = (cumsum[-1] - inside) / (T - length) if length < T else score
            score = score - outside
        st, ed = starts * clip_len, (starts + length) * clip_len
        if duration is not None:
            ed = np.minimum(ed, duration)
        rows.append(np.stack([st, ed, score], axis=1))
    return np.concatenate(rows)


def predict_moments(
    clip_feats: np.ndarray,
    query_feat: np.ndarray,
    duration: float | None = None,
    window_lengths: Sequence[int] = DEFAULT_WINDOW_LENGTHS,
    contrast: str = "outside",
    nms_threshold: float = 0.7,
    max_windows: int = 10,
) -> dict[str, list]:
    """Training-free prediction for one (video, query) pair.

    Args:
        clip_feats: (T, D) clip features (one per 2-s clip).
        query_feat: (D,) query feature.
        duration: video duration in seconds; when given, the saliency list has exactly
            ``int(duration / 2)`` entries (extra feature clips dropped, missing ones padded with
            the lowest similarity) and windows end at most at ``duration``.
        window_lengths, contrast: see :func:`sliding_window_scores`.
        nms_threshold: temporal NMS IoU threshold.
        max_windows: windows kept after NMS.

    Returns:
        ``{"pred_relevant_windows": [[st, ed, score], ...], "pred_saliency_scores": [float, ...]}``.
    """
    sims = clip_similarities(clip_feats, query_feat)
    if duration is not None:
        n = num_clips(duration)
        if n == 0:
            raise DataValidationError(f"duration {duration} s is shorter than one clip")
        pad = np.full(max(0, n - len(sims)), sims.min() if len(sims) else 0.0)
        sims = np.concatenate([sims[:n], pad])
    windows = sliding_window_scores(sims, window_lengths, contrast, duration=duration)
    kept = temporal_nms(windows, nms_threshold, max_keep=max_windows)
    return {
        "pred_relevant_windows": [
            [round(st, 4), round(ed, 4), round(sc, 6)] for st, ed, sc in kept
        ],
        "pred_saliency_scores": [round(float(s), 6) for s in sims],
    }


def baseline_submission(
    records: Sequence[Mapping],
    video_features: Callable[[str], np.ndarray],
    query_feature: Callable[[Mapping], np.ndarray],
    **kwargs,
) -> list[dict]:
    """Run :func:`predict_moments` over moment records and return an official-format submission.

    Args:
        records: moment records (``qid``, ``query``, ``vid``, ``duration``, ...).
        video_features: ``vid -> (T, D)`` clip features (e.g. a feature-store loader, cached).
        query_feature: ``record -> (D,)`` query feature (e.g. encode ``record["query"]``).
        **kwargs: passed to :func:`predict_moments`.

    Returns:
        One submission dict per record: ``qid, query, vid, pred_relevant_windows,
        pred_saliency_scores``.
    """
    submission = []
    for rec in records:
        pred = predict_moments(
            video_features(rec["vid"]), query_feature(rec), rec.get("duration"), **kwargs
        )
        submission.append(
            {"qid": rec["qid"], "query": rec.get("query", ""), "vid": rec["vid"], **pred}
        )
    return submission
