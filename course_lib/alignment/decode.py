"""Decode a moment model's outputs into predictions in seconds (QVHighlights submission form).

The decoder (:mod:`course_lib.alignment.heads`) gives, per query, anchor spans ``(center, width)``
normalised by the feature length and two-class logits (class 0 = foreground); the saliency head
gives one score per feature clip. moment_detr's inference turns these into

* ``pred_relevant_windows``: ``[[st, ed, score], ...]`` in seconds, sorted by foreground
  probability (:func:`windows_in_seconds`);
* ``pred_saliency_scores``: one score per 2-s clip of the video, ``int(duration / 2)`` of them,
  the count the official evaluation expects (:func:`clip_saliency`).

Chapter 5's evaluation and the search engine's localiser both decode through these functions, so
they see the same moments.
"""

from __future__ import annotations

import torch

from course_lib.grounding.matcher import FOREGROUND
from course_lib.spans import num_clips, span_cxw_to_xx
from course_lib.timeline import CLIP_LEN


def windows_in_seconds(
    spans: torch.Tensor,
    logits: torch.Tensor,
    n_real: int,
    duration: float,
    clip_len: float = CLIP_LEN,
    max_windows: int = 10,
) -> list[list[float]]:
    """One sample's predictions -> ``[[st, ed, score], ...]`` sorted by foreground probability.

    Args:
        spans: (Q, 2) predicted ``(center, width)``, normalised by ``n_real * clip_len``
            (moment_detr coding).
        logits: (Q, 2) class logits; the score is the softmax probability of class 0.
        n_real: number of real (unpadded) feature clips of the video.
        duration: video duration in seconds; windows are clipped to ``[0, duration]``.
        clip_len: seconds per feature clip.
        max_windows: windows kept (moment_detr's evaluation reads 10).

    Returns:
        At most ``max_windows`` windows, empty ones dropped, rounded to 4 (times) and 6 (scores)
        decimals.
    """
    # 1. foreground probability and (start, end) in seconds
    scores = logits.softmax(-1)[:, FOREGROUND]
    xx = span_cxw_to_xx(spans) * (n_real * clip_len)
    xx = xx.clamp(0.0, float(duration))
    # 2. most confident first (stable: ties keep the decoder's query order)
    order = torch.argsort(scores, descending=True, stable=True)
    windows = []
    for q in order.tolist():
        st, ed = round(float(xx[q, 0]), 4), round(float(xx[q, 1]), 4)
        if ed > st:
            windows.append([st, ed, round(float(scores[q]), 6)])
    return windows[:max_windows]


def clip_saliency(scores: torch.Tensor, n_real: int, duration: float) -> list[float]:
    """One saliency score per 2-s clip of the video (``int(duration / 2)``, the official count).

    Args:
        scores: (T,) saliency scores of the feature clips (padding included).
        n_real: number of real feature clips.
        duration: video duration in seconds.

    Returns:
        The scores of the real clips, rounded to 6 decimals; feature clips beyond the official
        count are dropped, missing ones (a video cut by ``max_clips``) get the lowest score.
    """
    expected = num_clips(duration)
    real = [round(float(s), 6) for s in scores[:n_real].tolist()]
    fill = min(real) if real else 0.0
    return (real + [fill] * expected)[:expected]
