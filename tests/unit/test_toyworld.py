"""Tests for the toy world (course_lib.toyworld) and its figure helper (course_lib.viz)."""

from __future__ import annotations

import hashlib
import itertools
import math
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from course_lib import toyworld as tw
from course_lib.datasets import validate_corpus, validate_moment_records, validate_retrieval_pairs
from course_lib.timeline import CLIP_LEN
from course_lib.toyworld.captions import ACTION_PHRASES, COLOUR_WORDS, SCENE_PHRASES, SHAPE_WORDS
from course_lib.toyworld.motion import object_tracks
from course_lib.toyworld.scenes import scene_background
from course_lib.toyworld.script import clip_pool, video_spec
from course_lib.toyworld.spec import KINDS
from course_lib.viz import PlotInputError, plot_video_strip

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MOMENT_FIELDS = {
    "qid",
    "query",
    "vid",
    "duration",
    "relevant_windows",
    "relevant_clip_ids",
    "saliency_scores",
}


def _sha(frames: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()


# ---------------------------------------------------------------- vocabulary and ids


def test_vocabulary_sizes_and_distinct_colours():
    assert len(tw.COLOURS) >= 6 and len(tw.SHAPES) >= 5
    assert len(tw.SCENES) >= 5 and len(tw.ACTIONS) >= 10
    rgb = np.array([tw.COLOUR_RGB[c] for c in tw.COLOURS], dtype=float)
    dists = [np.linalg.norm(a - b) for a, b in itertools.combinations(rgb, 2)]
    assert min(dists) > 80, "object colours must be far apart in RGB"


def test_vid_roundtrip():
    vid = tw.make_vid("test_novel", "m", 3, 42)
    assert vid == "toy-test_novel-m3-00042"
    assert tw.parse_vid(vid) == ("test_novel", "m", 3, 42)


# ---------------------------------------------------------------- determinism


def test_render_is_bit_exact_after_cache_clear():
    vid = "toy-val-m0-00007"
    frames1, t1 = tw.render(vid, fps=0.5)
    video_spec.cache_clear()
    scene_background.cache_clear()
    frames2, t2 = tw.render(vid, fps=0.5)
    assert frames1.dtype == np.uint8 and frames1.shape == (len(t1), 64, 64, 3)
    assert _sha(frames1) == _sha(frames2) and np.array_equal(t1, t2)


def test_render_frame_matches_render():
    vid = "toy-train-m0-00003"
    frames, times = tw.render(vid, fps=0.5)
    for i in (0, len(times) // 2, len(times) - 1):
        assert np.array_equal(tw.render_frame(vid, float(times[i])), frames[i])


def test_frame_times_one_frame_per_clip():
    spec = video_spec("toy-test-m0-00001")
    _, times = tw.render(spec.vid, fps=0.5)
    assert len(times) == spec.duration / CLIP_LEN
    assert np.allclose(times, np.arange(len(times)) * 2.0 + 1.0)


def test_render_is_identical_in_another_process():
    vid = "toy-test-c1-00005"
    code = (
        "import hashlib, numpy as np; from course_lib.toyworld import render; "
        f"f, t = render({vid!r}, fps=1.0, size=48); "
        "print(hashlib.sha256(np.ascontiguousarray(f).tobytes()).hexdigest())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    frames, _ = tw.render(vid, fps=1.0, size=48)
    assert out.stdout.strip() == _sha(frames)


def test_views_are_deterministic():
    assert tw.moment_records("val", 2, seed=5) == tw.moment_records("val", 2, seed=5)
    assert tw.retrieval_pairs("test", 5, seed=2) == tw.retrieval_pairs("test", 5, seed=2)
    assert tw.moment_records("val", 2, seed=5) != tw.moment_records("val", 2, seed=6)


# ---------------------------------------------------------------- rendering content


@pytest.mark.parametrize("size", [32, 64, 100])
def test_other_sizes_scale_objects(size):
    vid = "toy-train-m0-00011"
    frames, _ = tw.render(vid, size=size)
    assert frames.shape[1:] == (size, size, 3)
    bg = np.asarray(scene_background(video_spec(vid).scene, size))
    changed = np.abs(frames[0].astype(float) - bg).sum(-1) > 30
    spec = video_spec(vid)
    n_visible = sum(not o.hidden for o in spec.objects)
    # each visible object covers roughly (0.26 * size)^2 * 0.5 pixels
    expected = n_visible * (0.26 * size) ** 2 * 0.5
    assert 0.3 * expected < changed.sum() < 2.5 * expected


def test_object_centre_has_object_colour():
    checked = 0
    for i in range(6):
        spec = video_spec(f"toy-train-m0-{i:05d}")
        t = 1.0
        tr = object_tracks(spec, np.array([t]))
        frame = tw.render_frame(spec.vid, t, size=64)
        for k in range(len(spec.objects)):
            busy = any(e.obj == k and e.nominal_start <= t <= e.nominal_end for e in spec.events)
            if tr.alpha[k, 0] < 1.0 or busy:
                continue
            x, y = int(tr.x[k, 0] * 64), int(tr.y[k, 0] * 64)
            assert np.abs(frame[y, x].astype(int) - tr.rgb[k, 0]).max() <= 3
            checked += 1
    assert checked >= 3


@pytest.mark.parametrize("scene", tw.SCENES)
def test_backgrounds_are_textured_and_distinct(scene):
    bg = np.asarray(scene_background(scene, 64))
    assert bg.std(axis=(0, 1)).mean() > 8, f"{scene} background looks flat"
    for other in tw.SCENES:
        if other != scene:
            assert np.abs(bg - np.asarray(scene_background(other, 64))).mean() > 20


def test_visible_objects_follow_appear_and_frame_samples():
    spec = next(
        video_spec(f"toy-train-m0-{i:05d}")
        for i in range(200)
        if any(
            e.action == "appear" and e.nominal_start > 1
            for e in video_spec(f"toy-train-m0-{i:05d}").events
        )
    )
    e = next(ev for ev in spec.events if ev.action == "appear" and ev.nominal_start > 1)
    pair = (e.colour, e.shape)
    assert pair not in tw.visible_objects(spec.vid, e.nominal_start - 0.5)
    assert pair in tw.visible_objects(spec.vid, e.end)
    for s in tw.frame_samples("train", 12, seed=1):
        assert s["objects"] == tw.visible_objects(s["vid"], s["t"])
        assert s["scene"] == video_spec(s["vid"]).scene


# ---------------------------------------------------------------- moment records


def _check_record(rec: dict) -> None:
    """The contract rules, checked independently of course_lib.datasets."""
    assert set(rec) == MOMENT_FIELDS
    dur = rec["duration"]
    assert isinstance(dur, float) and 30 <= dur <= 150 and dur % 2 == 0
    expected_ids = set()
    for st_, ed in rec["relevant_windows"]:
        assert 0 <= st_ < ed <= dur
        expected_ids |= set(range(math.floor(st_ / 2), math.ceil(ed / 2)))
    assert rec["relevant_clip_ids"] == sorted(expected_ids)
    assert len(rec["saliency_scores"]) == len(rec["relevant_clip_ids"])
    for row in rec["saliency_scores"]:
        assert len(row) == 3 and all(isinstance(s, int) and 0 <= s <= 4 for s in row)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    split=st.sampled_from(tw.SPLITS),
    seed=st.integers(0, 10_000),
    n_videos=st.integers(1, 3),
)
def test_moment_records_properties(split, seed, n_videos):
    records = tw.moment_records(split, n_videos, seed=seed)
    assert {r["vid"] for r in records} <= {
        tw.make_vid(split, "m", seed, i) for i in range(n_videos)
    }
    assert len({r["qid"] for r in records}) == len(records)
    for rec in records:
        _check_record(rec)
    validate_moment_records(records)


@pytest.mark.parametrize("split", tw.SPLITS)
def test_queries_are_answerable_and_windows_are_all_occurrences(split):
    for rec in tw.moment_records(split, 4, seed=3, with_attributes=True):
        a = rec["attributes"]
        spec = video_spec(rec["vid"])
        same = [e for e in spec.events if (e.colour, e.shape, e.action) == a[:3]]
        assert [[e.start, e.end] for e in same] == rec["relevant_windows"]
        assert len({e.obj for e in same}) == 1  # one object, so no ambiguous distractor
        others = [e for e in spec.events if e.obj != same[0].obj]
        assert all((e.colour, e.shape) != (a.colour, a.shape) for e in others)
        assert a.scene == spec.scene


def test_saliency_reflects_coverage():
    full, partial = [], []
    for rec in tw.moment_records("train", 30, seed=0):
        for cid, row in zip(rec["relevant_clip_ids"], rec["saliency_scores"], strict=True):
            inside = [
                min(ed, 2 * cid + 2) - max(st_, 2 * cid) for st_, ed in rec["relevant_windows"]
            ]
            (full if max(inside) >= 2 else partial).append(np.mean(row))
    assert np.mean(full) > np.mean(partial) + 1.0


def test_repeated_events_give_several_windows():
    records = tw.moment_records("train", 30, seed=0)
    assert any(len(r["relevant_windows"]) > 1 for r in records)


# ---------------------------------------------------------------- splits and novel combos


def test_splits_never_share_videos():
    vids = {
        split: {r["vid"] for r in tw.moment_records(split, 3)}
        | {p["vid"] for p in tw.retrieval_pairs(split, 20)}
        for split in tw.SPLITS
    }
    for a, b in itertools.combinations(tw.SPLITS, 2):
        assert not vids[a] & vids[b]
    specs = [video_spec(tw.make_vid(s, "m", 0, 0)) for s in tw.SPLITS]
    assert len({(s.duration, s.scene, s.events) for s in specs}) == len(specs)


def test_novel_combos_are_a_tenth_and_keep_every_part_in_train():
    n_valid = sum(
        tw.combo_allowed("test_novel", c, s, a)
        for c, s, a in itertools.product(tw.COLOURS, tw.SHAPES, tw.ACTIONS)
    )
    assert 0.08 < len(tw.NOVEL_COMBOS) / n_valid < 0.12
    train = [
        combo
        for combo in itertools.product(tw.COLOURS, tw.SHAPES, tw.ACTIONS)
        if tw.combo_allowed("train", *combo)
    ]
    for i, vocab in enumerate((tw.COLOURS, tw.SHAPES, tw.ACTIONS)):
        assert {c[i] for c in train} == set(vocab)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_novel_combos_never_occur_outside_test_novel(split):
    specs = [video_spec(tw.make_vid(split, "m", 0, i)) for i in range(150)]
    specs += [video_spec(p["vid"]) for p in tw.retrieval_pairs(split, 150, seed=1)]
    combos = {e.combo for s in specs for e in s.events}  # queried events and distractors
    assert combos and not combos & tw.NOVEL_COMBOS


def test_test_novel_queries_only_novel_combos():
    recs = tw.moment_records("test_novel", 10, with_attributes=True)
    assert len({r["vid"] for r in recs}) == 10  # every video has a novel query
    assert all(tuple(r["attributes"][:3]) in tw.NOVEL_COMBOS for r in recs)
    pairs = tw.retrieval_pairs("test_novel", 50, with_attributes=True)
    assert all(tuple(p["attributes"][:3]) in tw.NOVEL_COMBOS for p in pairs)


# ---------------------------------------------------------------- retrieval pairs


@pytest.mark.parametrize("split", tw.SPLITS)
def test_retrieval_pairs_have_unique_content(split):
    n = min(300, len(clip_pool(split)))
    pairs = tw.retrieval_pairs(split, n, seed=4, with_attributes=True)
    contents = [p["attributes"] for p in pairs]
    assert len(set(contents)) == n
    validate_retrieval_pairs([{k: v for k, v in p.items() if k != "attributes"} for p in pairs])
    for p in pairs[:40]:
        spec = video_spec(p["vid"])
        main = spec.events[spec.main_event]
        assert (main.colour, main.shape, main.action, spec.scene) == p["attributes"]
        assert 8 <= p["duration"] <= 16 and main.end - main.start >= 0.5 * p["duration"]


def test_retrieval_pairs_too_many_raises():
    available = len(clip_pool("test_novel"))
    with pytest.raises(ValueError, match=str(available + 1)):
        tw.retrieval_pairs("test_novel", available + 1)


# ---------------------------------------------------------------- corpus


def test_corpus_format_and_graded_relevance():
    corp = tw.corpus("test", 60, seed=2, with_attributes=True)
    durations = {v["vid"]: v["duration"] for v in corp["videos"]}
    assert len(durations) == 60
    multi = 0
    for q in corp["queries"]:
        a = q["attributes"]
        for m in q["relevant_moments"]:
            assert m["vid"] in durations and m["duration"] == durations[m["vid"]]
            assert 0 <= m["window"][0] < m["window"][1] <= m["duration"]
            assert isinstance(m["relevance"], int) and 0 <= m["relevance"] <= 4
            if m["relevance"] == 4:
                assert video_spec(m["vid"]).scene == a.scene
        multi += len({m["vid"] for m in q["relevant_moments"]}) > 1
    assert multi > len(corp["queries"]) / 4, "queries should often be relevant in several videos"
    validate_corpus(
        {
            "videos": corp["videos"],
            "queries": [{k: v for k, v in q.items() if k != "attributes"} for q in corp["queries"]],
        }
    )


def test_videos_showing_agrees_with_the_corpus_and_the_source_video():
    corp = tw.corpus("val", 40, seed=1, with_attributes=True)
    vids = [v["vid"] for v in corp["videos"]]
    several = 0
    for q in corp["queries"]:
        a = q["attributes"]
        same_scene = {
            m["vid"] for m in q["relevant_moments"] if video_spec(m["vid"]).scene == a.scene
        }
        shown = tw.videos_showing(a, vids)
        assert shown == same_scene
        several += len(shown) > 1
    assert several > 0  # the check covers queries with more than one right video
    for rec in tw.moment_records("test", 10, with_attributes=True):
        assert rec["vid"] in tw.videos_showing(rec["attributes"], [rec["vid"]])
        other_scene = next(s for s in tw.SCENES if s != rec["attributes"].scene)
        assert not tw.videos_showing(rec["attributes"]._replace(scene=other_scene), [rec["vid"]])


def test_corpus_n_queries_and_scale():
    corp = tw.corpus("val", 400, n_queries=50)
    assert len(corp["queries"]) == 50 and len(corp["videos"]) == 400
    with pytest.raises(ValueError, match="n_queries"):
        tw.corpus("val", 2, n_queries=10_000)


# ---------------------------------------------------------------- captions


def test_captions_use_synonyms_and_keep_meaning():
    rng = np.random.default_rng(0)
    caps = {tw.describe_event("red", "circle", "move_left", "beach", rng) for _ in range(60)}
    assert len(caps) >= 20
    for cap in caps:
        assert any(w in cap for w in COLOUR_WORDS["red"])
        assert any(w in cap for w in SHAPE_WORDS["circle"])
        assert any(p in cap for p in ACTION_PHRASES["move_left"])
    assert tw.describe_event("red", "circle", "move_left", "beach") == (
        "a red circle moves to the left on the beach"
    )
    assert any(
        p in tw.describe_event("blue", "star", "spin", "night", rng, with_scene=True)
        for p in SCENE_PHRASES["night"]
    )


def test_describe_frame():
    assert tw.describe_frame("snow", [("orange", "star")]) == "an orange star in the snow"


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "bad"),
    [
        (lambda: tw.moment_records("training", 2), "training"),
        (lambda: tw.retrieval_pairs("dev", 2), "dev"),
        (lambda: tw.corpus("TEST", 2), "TEST"),
        (lambda: tw.moment_records("train", 0), "0"),
        (lambda: tw.retrieval_pairs("train", -3), "-3"),
        (lambda: tw.corpus("train", 0), "0"),
        (lambda: tw.frame_samples("train", 0), "0"),
        (lambda: tw.moment_records("train", 2, seed=-1), "-1"),
        (lambda: tw.render("toy-train-x0-00001"), "toy-train-x0-00001"),
        (lambda: tw.render("video42"), "video42"),
        (lambda: tw.video_spec("toy-test-c0-99999"), "99999"),
        (lambda: tw.render("toy-train-m0-00001", size=7), "7"),
        (lambda: tw.render("toy-train-m0-00001", fps=0), "0"),
        (lambda: tw.render_frame("toy-train-m0-00001", t=1e6), "1000000"),
        (lambda: tw.visible_objects("toy-train-m0-00001", -1.0), "-1.0"),
        (lambda: tw.describe_event("pink", "circle", "spin"), "pink"),
    ],
)
def test_bad_input_raises_value_error_naming_it(call, bad):
    with pytest.raises(ValueError, match=bad):
        call()


# ---------------------------------------------------------------- viz


@pytest.mark.parametrize("with_ax", [False, True])
def test_plot_video_strip(with_ax):
    rec = tw.moment_records("train", 1)[0]
    frames, times = tw.render(rec["vid"])
    saliency = np.zeros(len(times))
    saliency[rec["relevant_clip_ids"]] = np.mean(rec["saliency_scores"], axis=1)
    ax = plt.subplots()[1] if with_ax else None
    fig = plot_video_strip(frames, times, rec["relevant_windows"], saliency, ax=ax)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes[0].get_xticks()) == min(12, len(frames))
    plt.close(fig)


def test_plot_video_strip_draws_predicted_windows_with_a_legend():
    rec = tw.moment_records("train", 1)[0]
    frames, times = tw.render(rec["vid"], fps=0.5)
    fig = plot_video_strip(frames, times, rec["relevant_windows"], predicted=[[4.0, 10.0]])
    timeline = fig.axes[0].child_axes[0]
    bars = [c for c in timeline.collections if c.get_label() == "predicted"]
    assert len(bars) == 1 and np.allclose(bars[0].get_segments()[0][:, 0], [4.0, 10.0])
    labels = [t.get_text() for t in timeline.get_legend().get_texts()]
    assert labels == ["ground truth", "predicted"]
    plt.close(fig)


def test_plot_video_strip_bad_shapes():
    with pytest.raises(PlotInputError, match="timestamps"):
        plot_video_strip(np.zeros((3, 8, 8, 3), np.uint8), np.zeros(4))
    with pytest.raises(PlotInputError, match="frames"):
        plot_video_strip(np.zeros((3, 8, 8)), np.zeros(3))


def test_moment_qids_are_unique_across_splits_and_seeds():
    seen: set[int] = set()
    for split in tw.SPLITS:
        for seed in (0, 1):
            qids = [r["qid"] for r in tw.moment_records(split, 3, seed=seed)]
            assert not seen & set(qids), f"qids of {split}/seed {seed} repeat another draw's"
            seen |= set(qids)


# ---------------------------------------------------------------- property tests over seeds
_SEEDS = st.integers(0, 10_000)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed_a=_SEEDS, seed_b=_SEEDS, pair=st.sampled_from(list(itertools.combinations(tw.SPLITS, 2)))
)
def test_splits_never_share_videos_for_any_seeds(seed_a, seed_b, pair):
    a, b = pair
    vids_a = {r["vid"] for r in tw.moment_records(a, 2, seed=seed_a)}
    vids_a |= {p["vid"] for p in tw.retrieval_pairs(a, 5, seed=seed_a)}
    vids_b = {r["vid"] for r in tw.moment_records(b, 2, seed=seed_b)}
    vids_b |= {p["vid"] for p in tw.retrieval_pairs(b, 5, seed=seed_b)}
    assert vids_a and vids_b and not vids_a & vids_b
    assert all(tw.parse_vid(v).split == a for v in vids_a)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(split=st.sampled_from(["train", "val", "test"]), seed=_SEEDS, index=st.integers(0, 99_999))
def test_novel_combos_never_in_any_non_novel_video(split, seed, index):
    for kind in KINDS:  # untrimmed videos and trimmed clips, queried events and distractors
        # a split has a fixed number of distinct trimmed-clip contents; untrimmed ids are unbounded
        i = index % len(clip_pool(split)) if kind == "c" else index
        spec = video_spec(tw.make_vid(split, kind, seed, i))
        assert not {e.combo for e in spec.events} & tw.NOVEL_COMBOS


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(split=st.sampled_from(tw.SPLITS), seed=_SEEDS, n=st.integers(1, 30))
def test_retrieval_pairs_properties(split, seed, n):
    pairs = tw.retrieval_pairs(split, n, seed=seed, with_attributes=True)
    assert len(pairs) == n and len({p["attributes"] for p in pairs}) == n  # distinct content
    assert all(8 <= p["duration"] <= 16 for p in pairs)
    validate_retrieval_pairs([{k: v for k, v in p.items() if k != "attributes"} for p in pairs])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(split=st.sampled_from(tw.SPLITS), seed=_SEEDS, n_videos=st.integers(2, 12))
def test_corpus_properties(split, seed, n_videos):
    corp = tw.corpus(split, n_videos, seed=seed)
    durations = {v["vid"]: v["duration"] for v in corp["videos"]}
    assert len(durations) == n_videos
    for q in corp["queries"]:
        for m in q["relevant_moments"]:
            assert 0 <= m["window"][0] < m["window"][1] <= durations[m["vid"]]
            assert 0 <= m["relevance"] <= 4
    validate_corpus(corp)


# ---------------------------------------------------------------- toy video -> mp4 -> frames
def test_toy_video_mp4_round_trip(tmp_path):
    """Encode-decode round trip: same frame count, mean absolute error < 8/255."""
    from course_lib.video import read_frames, write_video

    vid = tw.make_vid("val", "m", 0, 1)
    frames, times = tw.render(vid, fps=2.0)
    path = write_video(tmp_path / f"{vid}.mp4", frames, fps=2.0)
    back, back_times = read_frames(path, fps=2.0, offset=float(times[0]))  # toy: clip centres
    assert back.shape == frames.shape
    np.testing.assert_allclose(back_times, times, atol=1e-6)
    error = np.abs(back.astype(np.float64) - frames.astype(np.float64)).mean() / 255
    assert error < 8 / 255, f"mean absolute error {error * 255:.2f}/255"
