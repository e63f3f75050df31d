"""Labels: relevant clips with saliency scores, and graded corpus relevance, from a script.

* **Saliency** (QVHighlights-style, three annotators, 0-4 per relevant 2-s clip): the base
  score is ``round(4 * coverage * visibility)`` clipped to 1-4, where *coverage* is the share
  of the clip the event fills and *visibility* the object's mean opacity during that share
  (low while it fades in or out). Each annotator adds deterministic noise (-1 / 0 / +1 with
  probabilities 0.1 / 0.8 / 0.1) and the result is clipped to 0-4.
* **Relevance** (TVR-Ranking-style, 1-4 per query and moment): 4 for an event matching colour,
  shape, action *and* scene, seen whole; minus 1 when the scene differs; minus 1 when only
  part of the action lies inside the video, minus 2 when less than half of it does.
"""

from __future__ import annotations

import math

import numpy as np

from course_lib.timeline import CLIP_LEN
from course_lib.toyworld.motion import object_alpha
from course_lib.toyworld.script import Event, VideoSpec
from course_lib.toyworld.spec import stable_seed

N_ANNOTATORS = 3
_SAMPLES_PER_CLIP = 5


def window_clip_ids(st: float, ed: float) -> list[int]:
    """Clip ids covered by a window: ``floor(st / 2) .. ceil(ed / 2) - 1`` (the contract rule)."""
    return list(range(int(math.floor(st / CLIP_LEN)), int(math.ceil(ed / CLIP_LEN))))


def _base_scores(spec: VideoSpec, e: Event) -> dict[int, int]:
    """Annotator-free saliency of each clip that event ``e`` touches."""
    ids = window_clip_ids(e.start, e.end)
    lo = np.maximum(np.array(ids) * CLIP_LEN, e.start)
    hi = np.minimum((np.array(ids) + 1) * CLIP_LEN, e.end)
    frac = (np.arange(_SAMPLES_PER_CLIP) + 0.5) / _SAMPLES_PER_CLIP
    times = (lo[:, None] + (hi - lo)[:, None] * frac[None, :]).reshape(-1)
    alpha = object_alpha(spec, e.obj, times).reshape(len(ids), _SAMPLES_PER_CLIP)
    coverage = (hi - lo) / CLIP_LEN
    base = np.clip(np.rint(4.0 * coverage * alpha.mean(axis=1)), 1, 4).astype(int)
    return dict(zip(ids, base.tolist(), strict=True))


def saliency_labels(spec: VideoSpec, events: list[Event]) -> tuple[list[int], list[list[int]]]:
    """Relevant clip ids and three annotators' saliency scores for the occurrences of a query.

    Args:
        spec: The video's script.
        events: The occurrences of the queried event (same object, same action).

    Returns:
        ``(clip_ids, scores)``: sorted clip ids and one ``[a1, a2, a3]`` (ints 0-4) per id.
    """
    base: dict[int, int] = {}
    for e in events:
        for cid, score in _base_scores(spec, e).items():
            base[cid] = max(score, base.get(cid, 0))
    clip_ids = sorted(base)
    # one noise stream per (video, event): annotator j of clip i gets noise[i, j]
    rng = np.random.default_rng(stable_seed("saliency", spec.vid, events[0].combo))
    draw = rng.random((len(clip_ids), N_ANNOTATORS))
    noise = (draw >= 0.9).astype(int) - (draw < 0.1).astype(int)
    scores = np.clip(np.array([base[c] for c in clip_ids])[:, None] + noise, 0, 4)
    return clip_ids, scores.astype(int).tolist()


def relevance(query_scene: str, video_scene: str, e: Event) -> int:
    """Graded relevance (1-4) of an event whose colour, shape and action match a query.

    Args:
        query_scene: The scene the query names.
        video_scene: The scene of the video the event is in.
        e: The matching event.

    Returns:
        4 minus 1 for another scene, minus 1 (partly inside the video) or 2 (under half inside).
    """
    penalty = int(query_scene != video_scene)
    if e.completeness < 0.5:
        penalty += 2
    elif e.completeness < 1.0:
        penalty += 1
    return max(1, 4 - penalty)
