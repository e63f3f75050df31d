"""Chapter 0b checkers: from a moment window to the 2-second clips it covers."""

from __future__ import annotations

from collections.abc import Callable

from course_lib.checks import check, trial_rng
from course_lib.datasets import clips_of_window


def window_to_clip_ids(st: float, ed: float) -> list[int]:
    """Reference: ids of the 2-s clips that window ``[st, ed]`` overlaps (QVHighlights rule)."""
    return list(clips_of_window(st, ed, clip_len=2.0))


def window_to_clip_ids_inputs(seed: int = 0, trial: int = 0) -> tuple[float, float]:
    """Inputs of trial ``trial`` of Exercise 0b.1: a window on a 0.5-s grid (so boundaries often
    fall exactly on clip edges).

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(st, ed)``, the positional arguments of ``window_to_clip_ids``.
    """
    rng = trial_rng(seed, trial)
    st = float(rng.integers(0, 120)) * 0.5
    ed = st + float(rng.integers(1, 40)) * 0.5
    return st, ed


def check_window_to_clip_ids(fn: Callable[[float, float], list[int]]) -> None:
    """Exercise 0b.1: compare ``fn`` with :func:`window_to_clip_ids` on 30 random windows."""
    check(
        fn,
        window_to_clip_ids,
        window_to_clip_ids_inputs,
        name="Exercise 0b.1: window_to_clip_ids",
        n=30,
    )
