"""Tests for course_lib.search (capstone moment search engine) and course_lib.widgets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc

import av
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib import toyworld
from course_lib.clip import TINY_MODEL_NAME, ClipEncoder
from course_lib.localisers import BaselineLocaliser, Query, localise_long, window_starts
from course_lib.search import IndexMismatchError, MomentSearch
from course_lib.search.__main__ import main
from course_lib.search.build import FEATURES_DIR, read_manifest
from course_lib.video import write_video

N_VIDEOS = 20
HIT_RATE_TARGET = 0.8


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny CLIP runs fastest on one thread (and does not fight other processes)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def encoder() -> ClipEncoder:
    return ClipEncoder.tiny(device="cpu", progress=False)


def _audio_only(path) -> None:
    """An mp4 with one AAC stream and no video stream."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    """20 toy videos (30-150 s, 2 fps, 64x64) as mp4, a corrupt file and an audio-only file."""
    root = tmp_path_factory.mktemp("videos")
    (root / "sub").mkdir()
    for i in range(N_VIDEOS):
        vid = toyworld.make_vid("test", "m", 0, i)
        frames, _ = toyworld.render(vid, fps=2, size=64)
        write_video(root / ("sub" if i % 5 == 0 else "") / f"{vid}.mp4", frames, fps=2)
    noise = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    (root / "corrupt.mp4").write_bytes(noise)
    _audio_only(root / "audio_only.mp4")
    (root / "README.txt").write_text("not a video\n")
    return root


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COURSE_OFFLINE": "1", "COURSE_DEVICE": "cpu"}
    cmd = [sys.executable, "-m", "course_lib.search", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def cli_index(video_dir, tmp_path_factory):
    """The folder indexed by the CLI in a subprocess (tiny CLIP)."""
    out = tmp_path_factory.mktemp("index") / "idx"
    proc = _cli("index", str(video_dir), "--out", str(out), "--encoder", "tiny", "--no-progress")
    return proc, out


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_cli_index_reports_bad_files_and_exits_0(cli_index):
    proc, out = cli_index
    assert proc.returncode == 0, proc.stderr[-2000:]
    skipped = [line for line in proc.stdout.splitlines() if line.strip().startswith("skipped ")]
    assert len(skipped) == 2, proc.stdout
    assert any("corrupt.mp4" in s for s in skipped) and any("audio_only.mp4" in s for s in skipped)
    assert "no video stream" in proc.stdout  # the reason is given
    manifest = read_manifest(out)
    assert len(manifest["videos"]) == N_VIDEOS and set(manifest["index"]["vids"]) == set(
        manifest["videos"]
    )
    assert manifest["encoder"]["spec"] == "tiny"


def test_encoder_spec_names_only_the_committed_tiny_clip(encoder: ClipEncoder) -> None:
    from course_lib.env import data_dir
    from course_lib.search.build import encoder_from_spec, encoder_spec

    assert encoder_spec(encoder) == "tiny"
    assert encoder_from_spec("tiny", device="cpu", progress=False).identity == encoder.identity
    # another local checkpoint of the same family cannot be recreated from "tiny"
    other = ClipEncoder.tiny(data_dir() / "tiny_clip_default_recipe.safetensors", progress=False)
    assert other.name != encoder.name and encoder_spec(other) is None


def _queries() -> list[dict]:
    """One held-out (test split) query per video; its event is present in that video."""
    first: dict[str, dict] = {}
    for rec in toyworld.moment_records("test", N_VIDEOS, with_attributes=True):
        first.setdefault(rec["vid"], rec)
    return list(first.values())


@pytest.mark.slow
def test_cli_query_finds_the_right_video(cli_index, capsys):
    proc, out = cli_index
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = _queries()
    assert len(records) == N_VIDEOS
    # a right video shows the query's event in the query's scene: its source video, or another
    # video showing the same event (as notebook 07 counts)
    vids = [r["vid"] for r in records]
    right = [toyworld.videos_showing(r["attributes"], vids) for r in records]
    assert all(r["vid"] in ok for r, ok in zip(records, right, strict=True))
    # the CLI's entry point in-process (the subprocess start-up is tested by `index`)
    assert main(["query", str(out), *[r["query"] for r in records], "-k", "3", "--json"]) == 0
    answers = json.loads(capsys.readouterr().out)
    assert [a["query"] for a in answers] == [r["query"] for r in records]
    hits, own = [], []
    for rec, ok, ans in zip(records, right, answers, strict=True):
        assert 1 <= len(ans["results"]) <= 3
        assert {"rank", "vid", "path", "start", "end", "score"} <= set(ans["results"][0])
        stems = {os.path.basename(r["vid"]).removesuffix(".mp4") for r in ans["results"]}
        hits.append(bool(stems & ok))
        own.append(rec["vid"] in stems)
    rate = float(np.mean(hits))
    measured = f"{rate:.0%} (source video only: {np.mean(own):.0%})"
    # the capstone's target: 80% measured at commit (16 of 20; the engine's alpha 0.9 was fitted on
    # validation videos, where the rate is 70%), so one more miss fails. The tiny CLIP sees which
    # object is on screen, not what it does, so the misses are queries about an object that
    # appears in several videos doing other things.
    assert rate >= HIT_RATE_TARGET, f"right video in the top 3 for only {measured} of queries"


@pytest.mark.slow
def test_cli_query_table(cli_index, capsys):
    _, out = cli_index
    assert main(["query", str(out), "a red circle moves left", "-k", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "query: a red circle moves left"
    assert lines[1].split() == ["rank", "vid", "start", "end", "score"]
    assert len(lines) == 2 + 4


def test_cli_offline_pretrained_exit_2(video_dir, tmp_path, capsys):
    code = main(["index", str(video_dir), "--out", str(tmp_path / "o"), "--encoder", "ViT-B-32"])
    err = capsys.readouterr().err
    assert code == 2
    assert "not available offline" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_cli_nothing_indexable_exits_1(tmp_path, capsys):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "broken.mkv").write_bytes(b"\x00" * 100)
    code = main(
        [
            "index",
            str(tmp_path / "v"),
            "--out",
            str(tmp_path / "o"),
            "--encoder",
            "tiny",
            "--no-progress",
        ]
    )
    assert code == 1
    assert "broken.mkv" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".mkv", ".mov"])
def test_other_containers(tmp_path, encoder, suffix):
    vid = toyworld.make_vid("val", "c", 0, 1)
    frames, _ = toyworld.render(vid, fps=2, size=64)
    write_video(tmp_path / "v" / f"clip{suffix}", frames, fps=2)
    engine = MomentSearch.build(tmp_path / "v", tmp_path / "o", encoder=encoder, progress=False)
    assert engine.vids == [f"clip{suffix}"]
    duration = toyworld.video_spec(vid).duration
    assert engine.features(f"clip{suffix}").shape == (int(np.ceil(duration / 2)), 128)


def test_very_short_video_is_indexed(tmp_path, encoder):
    frames, _ = toyworld.render(toyworld.make_vid("val", "c", 0, 0), fps=2, size=64)
    write_video(tmp_path / "v" / "short.mp4", frames[:2], fps=2)  # 1 s: shorter than a clip
    engine = MomentSearch.build(tmp_path / "v", tmp_path / "o", encoder=encoder, progress=False)
    assert engine.features("short.mp4").shape == (1, 128)
    assert engine.video_info("short.mp4")["duration"] == pytest.approx(1.0)
    res = engine.search("a red circle", k=1)
    assert res["vid"].tolist() == ["short.mp4"] and res["end"].iloc[0] <= 1.0


# ----------------------------------------------------------------------------- resumability
TOY = [toyworld.make_vid("val", "c", 0, i) for i in range(6)]


def _crash_on_call(monkeypatch, encoder, n: int, exc: type[BaseException]) -> list[int]:
    """Make ``encoder.encode_frames`` raise on its ``n``-th call (one call per short video)."""
    calls = [0]
    real = encoder.encode_frames

    def flaky(frames):
        calls[0] += 1
        if calls[0] == n:
            raise exc("simulated crash")
        return real(frames)

    monkeypatch.setattr(encoder, "encode_frames", flaky)
    return calls


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_resume_after_crash_equals_uninterrupted_build(tmp_path, encoder, monkeypatch, exc):
    ref = MomentSearch.build(TOY, tmp_path / "ref", encoder=encoder, progress=False)
    # 1. crash while encoding the 4th video: 3 are finished and recorded
    _crash_on_call(monkeypatch, encoder, 4, exc)
    with pytest.raises(exc, match="simulated crash"):
        MomentSearch.build(TOY, tmp_path / "run", encoder=encoder, progress=False)
    monkeypatch.undo()
    done = sorted(read_manifest(tmp_path / "run")["videos"])
    assert done == sorted(TOY)[:3]
    # 2. debris a killed process could leave: an hours-old temporary file (whose writer is gone;
    #    temporaries of live writers are kept, see test_search_reliability.py), and junk at the
    #    final name of an unfinished video (not in the manifest: recomputed, never read)
    features = tmp_path / "run" / FEATURES_DIR
    stray = features / f".{sorted(TOY)[3]}.npz.x1y2.tmp"
    stray.write_bytes(b"half a file")
    os.utime(stray, (1e9, 1e9))
    (features / f"{sorted(TOY)[4]}.npz").write_bytes(b"PK\x03\x04 truncated")
    # 3. re-run: only the 3 missing videos are computed
    calls = _crash_on_call(monkeypatch, encoder, -1, RuntimeError)
    run = MomentSearch.build(TOY, tmp_path / "run", encoder=encoder, progress=False)
    assert calls[0] == 3
    assert sorted(run.summary.reused) == sorted(TOY)[:3]
    assert sorted(run.summary.computed) == sorted(TOY)[3:]
    assert not list(features.glob(".*.tmp"))
    # 4. same features and same search results as the uninterrupted build
    for vid in TOY:
        np.testing.assert_array_equal(run.features(vid), ref.features(vid))
        np.testing.assert_array_equal(run.thumbnails(vid), ref.thumbnails(vid))
    for query in ("a blue square moves left", "the green triangle grows"):
        a, b = run.search(query, k=5), ref.search(query, k=5)
        cols = ["vid", "start", "end", "score", "video_score", "moment_score"]
        assert a[cols].equals(b[cols])


def test_load_refuses_another_encoder(tmp_path, encoder):
    MomentSearch.build(TOY[:2], tmp_path / "o", encoder=encoder, progress=False)
    loaded = MomentSearch.load(tmp_path / "o")  # encoder recreated from the manifest
    assert loaded.encoder.identity == encoder.identity
    other = ClipEncoder.from_config(TINY_MODEL_NAME, seed=1, progress=False)
    with pytest.raises(IndexMismatchError, match="was built with encoder"):
        MomentSearch.load(tmp_path / "o", encoder=other)
    with pytest.raises(IndexMismatchError, match="was built with encoder"):
        MomentSearch.build(TOY[:2], tmp_path / "o", encoder=other, progress=False)


def test_add_is_incremental(tmp_path, encoder):
    full = MomentSearch.build(TOY[:5], tmp_path / "full", encoder=encoder, progress=False)
    part = MomentSearch.build(TOY[:3], tmp_path / "part", encoder=encoder, progress=False)
    summary = part.add(TOY[2:5], progress=False)
    assert sorted(summary.computed) == TOY[3:5] and summary.reused == [TOY[2]]
    reloaded = MomentSearch.load(tmp_path / "part", encoder=encoder)
    assert sorted(reloaded.vids) == sorted(TOY[:5])
    cols = ["vid", "start", "end", "score"]
    for query in ("a red circle appears", "the yellow star spins"):
        assert reloaded.search(query, k=5)[cols].equals(full.search(query, k=5)[cols])


# ----------------------------------------------------------------------------- long videos
def _long_video_frames(total_s: float, fps: float, size: int):
    """Toy videos rendered one after another until ``total_s`` seconds (a generator)."""
    made, i = 0, 0
    while made < total_s * fps:
        frames, _ = toyworld.render(toyworld.make_vid("val", "m", 1, i), fps=fps, size=size)
        yield from frames[: int(total_s * fps) - made]
        made, i = made + len(frames), i + 1


@pytest.mark.slow
def test_ten_minute_video_streams_with_bounded_memory(tmp_path, encoder):
    size, fps = 128, 2.0
    write_video(tmp_path / "v" / "long.mp4", _long_video_frames(600, fps, size), fps=fps)
    tracemalloc.start()
    try:
        engine = MomentSearch.build(
            tmp_path / "v", tmp_path / "o", encoder=encoder, batch_size=16, progress=False
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    feats = engine.features("long.mp4")
    assert feats.shape == (300, 128)
    sampled = 300 * size * size * 3  # every sampled frame held at once
    decoded = int(600 * fps) * size * size * 3  # every decoded frame held at once
    print(
        f"peak traced memory {peak / 1e6:.1f} MB; holding the sampled frames would take "
        f"{sampled / 1e6:.1f} MB, all decoded frames {decoded / 1e6:.1f} MB"
    )
    # what remains is one batch of frames plus the per-clip thumbnails (48 px) and features
    assert peak < 0.5 * sampled and peak < 0.1 * decoded
    # searchable: the localiser (75-clip window) runs on overlapping windows over 600 s
    res = engine.search("a red circle moves left", k=3, moments_per_video=3)
    assert len(res) == 3 and (res["end"] <= 600).all() and (res["start"] >= 0).all()
    moments = engine.localise("long.mp4", engine.encode_query("a red circle moves left"))
    assert len(moments) == 10 and max(m[1] for m in moments) > 150


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 400), window=st.integers(1, 80), overlap=st.integers(0, 79))
def test_window_starts_cover_the_video(n, window, overlap):
    overlap = min(overlap, window - 1)
    starts = window_starts(n, window, overlap)
    covered = np.zeros(n, bool)
    for a in starts:
        assert 0 <= a and a + min(window, n) <= n
        covered[a : a + window] = True
    assert covered.all()
    assert all(b - a <= window - overlap for a, b in zip(starts, starts[1:]))


def test_sliding_windows_find_a_moment_far_beyond_the_window(rng):
    feats = rng.normal(size=(300, 16)).astype(np.float32)
    target = rng.normal(size=16).astype(np.float32)
    feats[250:254] = target + 0.05 * rng.normal(size=(4, 16))  # clips 250-253 = 500-508 s
    query = Query("planted", target / np.linalg.norm(target))
    loc = BaselineLocaliser(window_clips=75, overlap_clips=25)
    best = localise_long(loc, feats, query, duration=600.0)[0]
    assert best[:2] == (500.0, 508.0)
    # without windows the same moment is found, so windowing loses nothing here
    whole = localise_long(BaselineLocaliser(window_clips=None), feats, query, 600.0)[0]
    assert whole[:2] == (500.0, 508.0)


# ----------------------------------------------------------------------------- widgets
@pytest.fixture(scope="module")
def small_engine(tmp_path_factory, encoder):
    out = tmp_path_factory.mktemp("widget_index")
    return MomentSearch.build(TOY[:4], out, encoder=encoder, progress=False)


def test_search_widget_builds_rows_and_player(small_engine, monkeypatch):
    from course_lib import widgets

    monkeypatch.setattr(widgets, "static_mode", lambda: False)
    box = widgets.search_widget(small_engine, "a red circle moves left", k=3)
    assert len(box.result_rows.children) == 3
    # every row: fixed-width label column, timeline, thumbnail strip (so timelines line up)
    for row in box.result_rows.children:
        label, timeline, strip = row.children
        assert label.layout.width == widgets.LABEL_LAYOUT["width"]
        assert bytes(timeline.value)[:4] == bytes(strip.value)[:4] == b"\x89PNG"
    player = box.children[-1]
    _, play, slider = player.children[0].children
    assert play.max == slider.max >= 0 and bytes(player.children[1].value)[:4] == b"\x89PNG"


def test_static_fallback_shows_the_results(small_engine, monkeypatch):
    from course_lib import widgets

    monkeypatch.setenv("COURSE_STATIC_WIDGETS", "1")
    assert widgets.static_mode()
    view = widgets.search_widget(small_engine, "a blue square moves right", k=3)
    assert isinstance(view, widgets.StaticResults)
    assert len(view.results) == 3 and len(view.figure.axes) == 6
    for vid in view.results["vid"]:
        assert vid in view.html
    titles = [ax.get_title(loc="left") for ax in view.figure.axes]
    assert all(any(vid in t for t in titles) for vid in view.results["vid"])
    thumb = view.results["thumbnail"].iloc[0]
    assert thumb.dtype == np.uint8 and thumb.ndim == 3
