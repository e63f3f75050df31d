"""benchmarks/bench_search.py: accuracy scoring on a fake engine, and real end-to-end runs."""

import json

import pandas as pd
import pytest
from conftest import load_script

from course_lib import toyworld

#: keys every ``--json`` line holds
JSON_KEYS = {
    "seed",
    "split",
    "videos",
    "queries",
    "encoder",
    "top1_moment_iou05",
    "right_video_top3",
    "build_s",
    "p50_ms",
    "p95_ms",
    "top1_moment_iou05_lo",
    "top1_moment_iou05_hi",
    "right_video_top3_lo",
    "right_video_top3_hi",
}


@pytest.fixture(scope="module")
def tool():
    return load_script("benchmarks/bench_search.py")


@pytest.fixture(scope="module")
def records():
    """Held-out records of the first three test videos of draw 1."""
    return toyworld.moment_records("test", 3, seed=1, with_attributes=True)


def table(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    """A search result table: vids are file paths, as a folder index names them."""
    return pd.DataFrame(
        [{"vid": f"{vid}.mp4", "start": start, "end": end} for vid, start, end in rows],
        columns=["vid", "start", "end"],
    )


class FakeEngine:
    """Answers every query with one fixed table; records what it was asked."""

    def __init__(self, result: pd.DataFrame, vids: list[str]) -> None:
        self.result, self.vids, self.alpha, self.asked = result, vids, 0.9, []

    def search(self, query: str, k: int = 10, **kwargs) -> pd.DataFrame:
        self.asked.append((query, k, kwargs))
        return self.result.head(k)


def window(rec: dict) -> tuple[float, float]:
    """The first relevant window of a record."""
    start, end = rec["relevant_windows"][0]
    return float(start), float(end)


def test_top1_moment_hit_needs_own_video_and_iou_half(tool, records):
    rec = records[0]
    start, end = window(rec)
    # the exact window is a hit, in the right video only
    assert tool.top1_moment_hit(table([(rec["vid"], start, end)]), rec)
    other = next(r["vid"] for r in records if r["vid"] != rec["vid"])
    assert not tool.top1_moment_hit(table([(other, start, end)]), rec)
    # IoU with [10, 20]: 5 / 10 = 0.5 counts, 4.9 / 10 = 0.49 does not; any window may match
    boundary = {"vid": rec["vid"], "relevant_windows": [[40.0, 44.0], [10.0, 20.0]]}
    assert tool.top1_moment_hit(table([(rec["vid"], 10.0, 15.0)]), boundary)
    assert tool.top1_moment_hit(table([(rec["vid"], 15.0, 20.0)]), boundary)
    assert not tool.top1_moment_hit(table([(rec["vid"], 10.0, 14.9)]), boundary)
    # only the first row counts; an empty result misses
    rows = [(other, start, end), (rec["vid"], start, end)]
    assert not tool.top1_moment_hit(table(rows), rec)
    assert not tool.top1_moment_hit(table([]), rec)


def test_right_video_hit_looks_at_the_first_k(tool):
    result = table([("a", 0, 2), ("b", 0, 2), ("c", 0, 2), ("d", 0, 2)])
    assert tool.right_video_hit(result, {"c"})
    assert not tool.right_video_hit(result, {"d"})
    assert not tool.right_video_hit(result, set())
    assert not tool.right_video_hit(table([]), {"a"})


def test_wilson_interval(tool):
    low, high = tool.wilson_interval(0, 2)
    assert low == 0.0 and high == pytest.approx(0.6576, abs=1e-4)
    low, high = tool.wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    assert tool.wilson_interval(3, 3)[1] == 1.0
    with pytest.raises(ValueError, match="n >= 1"):
        tool.wilson_interval(0, 0)


def test_accuracy_on_a_fake_engine(tool, records):
    first = tool.first_queries(records)
    vids = list(first)
    rec = first[vids[0]]
    start, end = window(rec)
    # the table answers video 0's query exactly; the other queries get video 0 first
    engine = FakeEngine(table([(vids[0], start, end)]), [f"{v}.mp4" for v in vids])
    acc = tool.accuracy(engine, records)
    assert acc["queries"] == len(vids) == 3
    right = tool.right_videos(first)
    expected_video = [vids[0] in right[v] for v in vids]
    assert acc["top1_moment_iou05"]["rate"] == pytest.approx(1 / 3)
    assert acc["right_video_top3"]["rate"] == pytest.approx(sum(expected_video) / 3)
    for key in ("top1_moment_iou05", "right_video_top3"):
        assert 0 <= acc[key]["lo"] <= acc[key]["rate"] <= acc[key]["hi"] <= 1
    # one search per video, its first query, 3 results, no thumbnails
    assert [q for q, _, _ in engine.asked] == [first[v]["query"] for v in vids]
    assert all(k == 3 and kw == {"thumbnails": False} for _, k, kw in engine.asked)


def test_accuracy_only_asks_indexed_videos(tool, records):
    first = tool.first_queries(records)
    vids = list(first)
    engine = FakeEngine(table([]), [f"{vids[1]}.mp4"])
    acc = tool.accuracy(engine, records)
    assert acc["queries"] == 1 and acc["top1_moment_iou05"]["rate"] == 0.0
    assert engine.asked[0][0] == first[vids[1]]["query"]
    with pytest.raises(ValueError, match="no indexed video"):
        tool.accuracy(FakeEngine(table([]), ["elsewhere.mp4"]), records)


def test_hit_rates_restores_alpha(tool, records):
    first = tool.first_queries(records)
    vids = list(first)
    engine = FakeEngine(table([(vids[0], 0, 2)]), [f"{v}.mp4" for v in vids])
    rates = tool.hit_rates(engine, records, alphas=(0.0, 1.0))
    assert set(rates) == {0.0, 1.0} and engine.alpha == 0.9
    assert rates[0.0][1] == pytest.approx(1 / 3)  # the source video only for video 0


def test_video_encoder_needs_two_fps(tool, capsys):
    with pytest.raises(SystemExit):
        tool.parse_args(["--encoder", "video", "--fps", "1"])
    assert "--fps 1 is < 2" in capsys.readouterr().err
    assert tool.parse_args(["--encoder", "tiny", "--fps", "1"]).fps == 1.0


@pytest.mark.parametrize("encoder", ["tiny", "video"])
def test_main_end_to_end_prints_json_last(tool, capsys, encoder):
    args = ["--videos", "2", "--queries", "2", "--threads", "1", "--json", "--seed", "1"]
    tool.main([*args, "--encoder", encoder])
    out = capsys.readouterr().out.strip().splitlines()
    record = json.loads(out[-1])
    assert JSON_KEYS <= set(record)
    assert record["encoder"] == encoder and record["seed"] == 1 and record["videos"] == 2
    assert record["queries"] == 2 and record["split"] == "test"
    for key in ("top1_moment_iou05", "right_video_top3"):
        assert 0 <= record[f"{key}_lo"] <= record[key] <= record[f"{key}_hi"] <= 1
    assert record["build_s"] > 0 and 0 < record["p50_ms"] <= record["p95_ms"]
    assert any("top-1 moment hit" in line for line in out)
