"""Chapter 0b checkers: from a moment window to the 2-second clips it covers."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from course_lib.checks import check
from course_lib.datasets import clips_of_window


def window_to_clip_ids(st: float, ed: float) -> list[int]:
    """Reference: ids of the 2-s clips that window ``[st, ed]`` overlaps (QVHighlights rule)."""
    return list(clips_of_window(st, ed, clip_len=2.0))


def _window_inputs(rng: np.random.Generator) -> tuple[float, float]:
    """A window on a 0.5-s grid (so boundaries often fall exactly on clip edges)."""
    st = float(rng.integers(0, 120)) * 0.5
    ed = st + float(rng.integers(1, 40)) * 0.5
    return st, ed


def check_window_to_clip_ids(fn: Callable[[float, float], list[int]]) -> None:
    """Exercise 0b.1: compare ``fn`` with :func:`window_to_clip_ids` on 30 random windows."""
    check(fn, window_to_clip_ids, _window_inputs, name="Exercise 0b.1: window_to_clip_ids", n=30)
