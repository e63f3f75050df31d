"""Merge retrieved segments into coarse moment proposals (SPR sec. 3.2).

The segment index returns the top segments of the whole collection (e.g. 200). Consecutive
retrieved segments of the same video are one moment cut into pieces, so they are merged into a
*proposal* whose score (and hence rank) is that of its best member. Optionally, small holes
between retrieved runs are filled:

* ``gap="constant"``: bridge at most ``max_gap`` missing segments.
* ``gap="adaptive"``: bridge ``g`` missing segments when
  ``g <= max(max_gap, floor(adaptive_ratio * min(n_left, n_right)))``, where ``n_left`` /
  ``n_right`` count the retrieved segments on each side -- long moments tolerate longer holes.

Proposals never cross video boundaries: segments are grouped by video before merging.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

GAP_MODES = ("constant", "adaptive")


@dataclass(frozen=True)
class Proposal:
    """A coarse moment proposal: a run of (nearly) consecutive retrieved segments of one video.

    Attributes:
        vid: video id.
        start: start (s) of the first member segment.
        end: end (s) of the last member segment.
        score: best member score (SPR: a proposal is as good as its best segment).
        n_segments: number of retrieved member segments (filled gaps not counted).
    """

    vid: str
    start: float
    end: float
    score: float
    n_segments: int


def _runs(starts: np.ndarray, ends: np.ndarray, scores: np.ndarray, tol: float) -> list[list]:
    """Runs of exactly consecutive segments of one video, as [start, end, best, count]."""
    runs: list[list] = []
    for st, ed, sc in zip(starts, ends, scores):
        if runs and st <= runs[-1][1] + tol:  # touches (or overlaps) the previous run
            runs[-1][1] = max(runs[-1][1], ed)
            runs[-1][2] = max(runs[-1][2], sc)
            runs[-1][3] += 1
        else:
            runs.append([st, ed, sc, 1])
    return runs


def _bridge(runs: list[list], segment_len: float, max_gap: int, gap: str, ratio: float) -> list:
    """Join adjacent runs whose hole (in segments) is small enough (constant/adaptive rule)."""
    merged = [list(runs[0])]
    for run in runs[1:]:
        left = merged[-1]
        hole = int(round((run[0] - left[1]) / segment_len))
        allowed = max_gap
        if gap == "adaptive":
            allowed = max(max_gap, math.floor(ratio * min(left[3], run[3])))
        if hole <= allowed:
            left[1], left[2], left[3] = run[1], max(left[2], run[2]), left[3] + run[3]
        else:
            merged.append(list(run))
    return merged


def merge_segments(
    vids: Sequence[str],
    starts: Sequence[float],
    ends: Sequence[float],
    scores: Sequence[float],
    segment_len: float = 4.0,
    max_gap: int = 0,
    gap: str = "constant",
    adaptive_ratio: float = 0.5,
) -> list[Proposal]:
    """Merge retrieved segments into proposals, best first.

    Args:
        vids, starts, ends, scores: one entry per retrieved segment (any order; a segment
            retrieved twice counts once, with its best score).
        segment_len: segment length in seconds (holes are measured in segments).
        max_gap: missing segments that may be bridged (0 = merge only touching segments).
        gap: ``"constant"`` or ``"adaptive"`` (see module docstring).
        adaptive_ratio: slope of the adaptive rule.

    Returns:
        Proposals sorted by score (descending; ties by vid, start).
    """
    if gap not in GAP_MODES:
        raise ValueError(f"gap must be one of {GAP_MODES}, got {gap!r}")
    if max_gap < 0 or segment_len <= 0:
        raise ValueError(f"need max_gap >= 0 and segment_len > 0, got {max_gap}, {segment_len}")
    vids = np.asarray(vids, dtype=np.str_)
    starts, ends = np.asarray(starts, float), np.asarray(ends, float)
    scores = np.asarray(scores, float)
    if not (len(vids) == len(starts) == len(ends) == len(scores)):
        raise ValueError("vids, starts, ends and scores must have the same length")
    proposals = []
    for vid in np.unique(vids):
        rows = np.flatnonzero(vids == vid)
        rows = rows[np.lexsort((-scores[rows], starts[rows]))]  # by start, best duplicate first
        rows = rows[np.r_[True, np.diff(starts[rows]) != 0]]  # drop repeated segments
        runs = _runs(starts[rows], ends[rows], scores[rows], tol=1e-6)
        for st, ed, sc, n in _bridge(runs, segment_len, max_gap, gap, adaptive_ratio):
            proposals.append(Proposal(str(vid), float(st), float(ed), float(sc), int(n)))
    proposals.sort(key=lambda p: (-p.score, p.vid, p.start))
    return proposals


def proposals_frame(proposals: Sequence[Proposal], n_proposals: int | None = None):
    """Proposals as a ranked DataFrame (rank, vid, start, end, score, n_segments).

    Args:
        proposals: output of :func:`merge_segments` (already sorted).
        n_proposals: keep at most this many (SPR: top-200 segments -> about 100 proposals).
    """
    import pandas as pd

    rows = list(proposals)[:n_proposals]
    frame = pd.DataFrame(
        [(p.vid, p.start, p.end, p.score, p.n_segments) for p in rows],
        columns=["vid", "start", "end", "score", "n_segments"],
    )
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame
