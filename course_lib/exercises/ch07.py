"""Chapter 7 checkers: sliding windows over long videos (7.1), top-K hit rate (7.2).

References: :func:`course_lib.search.window_starts` (the windows the search engine runs its
moment localiser on) and :func:`top_k_hit_rate` below (how the notebook scores the engine).
The input makers produce the cases that separate right from almost-right answers: videos
shorter than, equal to and one clip longer than the window, lengths where the strided windows
end exactly at the video's end; result tables in shuffled row order, queries without any
result, results of queries that are not evaluated, and ranks exactly at the cut-off ``k``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pandas as pd

from course_lib.checks import check, trial_rng
from course_lib.localisers import window_starts


# ----------------------------------------------------------------------------- 7.1 windows
def sliding_window_starts(n_clips: int, window: int, overlap: int) -> list[int]:
    """Reference: start clips of the windows covering a video of ``n_clips`` clips.

    Windows are ``window`` clips long and start every ``window - overlap`` clips from 0; if
    they do not reach the end, one more window is aligned with the end of the video. A video
    of at most ``window`` clips is one window starting at 0.
    """
    return [int(a) for a in window_starts(n_clips, window, overlap)]


def sliding_window_starts_inputs(seed: int = 0, trial: int = 0) -> tuple[int, int, int]:
    """Inputs of trial ``trial`` of Exercise 7.1: window 5-80 clips, overlap 0..window-1, and
    lengths at the awkward boundaries.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(n_clips, window, overlap)``, the positional arguments of ``sliding_window_starts``.
    """
    rng = trial_rng(seed, trial)
    window = int(rng.integers(5, 81))
    overlap = int(rng.choice([0, window // 3, window - 1, int(rng.integers(0, window))]))
    stride = window - overlap
    n_clips = int(
        rng.choice(
            [
                int(rng.integers(1, window + 1)),  # short video: one window
                window,
                window + 1,
                window + stride * int(rng.integers(1, 6)),  # strided windows end exactly
                int(rng.integers(window + 2, 8 * window)),
            ]
        )
    )
    return n_clips, window, overlap


def check_sliding_window_starts(fn: Callable[..., list]) -> None:
    """Exercise 7.1: compare ``fn`` with :func:`sliding_window_starts` on 60 random inputs."""
    check(
        fn,
        sliding_window_starts,
        sliding_window_starts_inputs,
        name="Exercise 7.1: sliding_window_starts",
        n=60,
    )


# ----------------------------------------------------------------------------- 7.2 hit rate
def top_k_hit_rate(results: pd.DataFrame, relevant: Mapping[str, set], k: int) -> float:
    """Reference: fraction of evaluated queries with a right video among their top ``k``.

    Args:
        results: one row per returned moment with columns ``query``, ``rank`` (1 = best) and
            ``vid``; rows in any order, several queries in one table.
        relevant: every evaluated query -> the set of vids that count as a right answer.
            A query without any row in ``results`` is a miss; rows of queries that are not
            in ``relevant`` are ignored.
        k: cut-off: ranks ``1..k`` count.

    Returns:
        The hit rate as a Python float in [0, 1] (0.0 when ``relevant`` is empty).
    """
    if not relevant:
        return 0.0
    top = results[results["rank"] <= k]
    hits = 0
    for query, right in relevant.items():
        found = set(top.loc[top["query"] == query, "vid"])
        hits += bool(found & set(right))
    return hits / len(relevant)


def top_k_hit_rate_inputs(seed: int = 0, trial: int = 0) -> tuple[pd.DataFrame, dict, int]:
    """Inputs of trial ``trial`` of Exercise 7.2: 2-8 queries with 0-6 ranked results each (shuffled
    rows), plus an unevaluated query.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(results, relevant, k)``, the positional arguments of ``top_k_hit_rate``.
    """
    rng = trial_rng(seed, trial)
    pool = [f"video{i}.mp4" for i in range(10)]
    rows, relevant = [], {}
    n_queries = int(rng.integers(2, 9))
    for q in range(n_queries + 1):
        query = f"query {q}"
        n_results = int(rng.choice([0, 1, 3, 4, 6]))
        vids = rng.choice(pool, size=n_results, replace=False)
        rows += [(query, rank + 1, str(v), 1.0 - 0.1 * rank) for rank, v in enumerate(vids)]
        right = set(rng.choice(pool, size=int(rng.integers(1, 3)), replace=False).tolist())
        if n_results and rng.random() < 0.5:  # often a right video somewhere in the ranking
            right.add(str(vids[int(rng.integers(n_results))]))
        if q < n_queries:  # the last query has results but is not evaluated
            relevant[query] = right
    table = pd.DataFrame(rows, columns=["query", "rank", "vid", "score"])
    table = table.iloc[rng.permutation(len(table))].reset_index(drop=True)
    return table, relevant, int(rng.choice([1, 2, 3, 5]))


def check_top_k_hit_rate(fn: Callable[..., float]) -> None:
    """Exercise 7.2: compare ``fn`` with :func:`top_k_hit_rate` on 60 random result tables."""
    check(fn, top_k_hit_rate, top_k_hit_rate_inputs, name="Exercise 7.2: top_k_hit_rate", n=60)
