"""Chapter 7 exercise checkers: each passes correct answers and rejects plausible mistakes."""

import numpy as np
import pytest

from course_lib.checks import ExerciseError
from course_lib.exercises import ch07


def stub(*args):
    raise NotImplementedError("exercise")


@pytest.mark.parametrize("checker", [ch07.check_sliding_window_starts, ch07.check_top_k_hit_rate])
def test_untouched_stub_is_not_attempted(checker, capsys):
    assert checker(stub) is None
    assert "[TODO]" in capsys.readouterr().out


# ----------------------------------------------------------------------------- 7.1 windows
def starts_by_hand(n_clips, window, overlap):
    """A correct learner answer written without the library."""
    if n_clips <= window:
        return [0]
    starts, a = [], 0
    while a + window <= n_clips:
        starts.append(a)
        a += window - overlap
    if starts[-1] + window < n_clips:
        starts.append(n_clips - window)
    return starts


def starts_no_tail(n_clips, window, overlap):
    """Forgets the window aligned with the end: the last clips are never searched."""
    if n_clips <= window:
        return [0]
    return list(range(0, n_clips - window + 1, window - overlap))


def starts_ignore_overlap(n_clips, window, overlap):
    """Steps by the whole window: consecutive windows do not overlap."""
    return starts_by_hand(n_clips, window, 0)


def starts_duplicate_tail(n_clips, window, overlap):
    """Adds the end-aligned window even when the strided windows already end there (<=)."""
    if n_clips <= window:
        return [0]
    starts = list(range(0, n_clips - window + 1, window - overlap))
    if starts[-1] + window <= n_clips:
        starts.append(n_clips - window)
    return starts


def starts_short_video_empty(n_clips, window, overlap):
    """Returns no window at all for a video shorter than one window."""
    return [] if n_clips < window else starts_by_hand(n_clips, window, overlap)


def starts_stride_is_overlap(n_clips, window, overlap):
    """Confuses the stride with the overlap."""
    return starts_by_hand(n_clips, window, window - max(overlap, 1))


def test_windows_checker_accepts_reference_and_hand_written(capsys):
    ch07.check_sliding_window_starts(ch07.sliding_window_starts)
    ch07.check_sliding_window_starts(starts_by_hand)
    assert capsys.readouterr().out.count("[OK]") == 2


@pytest.mark.parametrize(
    "wrong",
    [
        starts_no_tail,
        starts_ignore_overlap,
        starts_duplicate_tail,
        starts_short_video_empty,
        starts_stride_is_overlap,
    ],
)
def test_windows_checker_rejects(wrong):
    with pytest.raises(ExerciseError, match="Exercise 7.1"):
        ch07.check_sliding_window_starts(wrong)


def test_hand_written_windows_cover_every_clip():
    for n_clips, window, overlap in [(1, 5, 0), (75, 75, 25), (76, 75, 25), (300, 75, 25)]:
        covered = set()
        for a in starts_by_hand(n_clips, window, overlap):
            covered |= set(range(a, min(a + window, n_clips)))
        assert covered == set(range(n_clips))


# ----------------------------------------------------------------------------- 7.2 hit rate
def hit_rate_by_hand(results, relevant, k):
    """A correct learner answer: group the rows by query, keep ranks 1..k."""
    if not relevant:
        return 0.0
    top = {}
    for row in results.itertuples():
        if row.rank <= k:
            top.setdefault(row.query, set()).add(row.vid)
    return sum(bool(top.get(q, set()) & set(v)) for q, v in relevant.items()) / len(relevant)


def hit_rate_table_order(results, relevant, k):
    """Takes the first k rows of each query in table order, not the k best ranks."""
    hits = 0
    for query, right in relevant.items():
        first = results[results["query"] == query].head(k)
        hits += bool(set(first["vid"]) & set(right))
    return hits / len(relevant)


def hit_rate_off_by_one(results, relevant, k):
    """Counts ranks 1..k-1 only (rank < k)."""
    return hit_rate_by_hand(results, relevant, k - 1)


def hit_rate_answered_only(results, relevant, k):
    """Divides by the queries that have results, so queries without any are not misses."""
    answered = {q: v for q, v in relevant.items() if (results["query"] == q).any()}
    return hit_rate_by_hand(results, answered, k) if answered else 0.0


def hit_rate_per_row(results, relevant, k):
    """Averages over result rows instead of over queries."""
    top = results[(results["rank"] <= k) & results["query"].isin(list(relevant))]
    if top.empty:
        return 0.0
    return float(np.mean([v in relevant[q] for q, v in zip(top["query"], top["vid"])]))


def hit_rate_all_queries(results, relevant, k):
    """Also counts the queries of the table that are not evaluated."""
    extra = {q: set() for q in results["query"].unique() if q not in relevant}
    return hit_rate_by_hand(results, {**relevant, **extra}, k)


def test_hit_rate_checker_accepts_reference_and_hand_written(capsys):
    ch07.check_top_k_hit_rate(ch07.top_k_hit_rate)
    ch07.check_top_k_hit_rate(hit_rate_by_hand)
    assert capsys.readouterr().out.count("[OK]") == 2


@pytest.mark.parametrize(
    "wrong",
    [
        hit_rate_table_order,
        hit_rate_off_by_one,
        hit_rate_answered_only,
        hit_rate_per_row,
        hit_rate_all_queries,
    ],
)
def test_hit_rate_checker_rejects(wrong):
    with pytest.raises(ExerciseError, match="Exercise 7.2"):
        ch07.check_top_k_hit_rate(wrong)


def test_hit_rate_reference_on_a_small_table():
    import pandas as pd

    table = pd.DataFrame(
        {"query": ["a", "a", "b", "b", "c"], "rank": [2, 1, 1, 2, 1], "vid": list("xyzwx")}
    )
    relevant = {"a": {"x"}, "b": {"w"}, "d": {"x"}}
    assert ch07.top_k_hit_rate(table, relevant, 1) == 0.0
    assert ch07.top_k_hit_rate(table, relevant, 2) == pytest.approx(2 / 3)
