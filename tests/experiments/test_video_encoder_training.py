"""Tests for chapter 1's clip captions and the video-encoder training harness."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.experiments.ch01_clip_captions import (
    ClipMeaning,
    clip_caption,
    clip_samples,
    meaning_matches,
    negative_caption,
    render_clips,
    split_samples,
)
from course_lib.timeline import CLIP_LEN
from course_lib.toyworld import make_vid, video_spec


def test_clip_actions_are_the_events_covering_at_least_a_second():
    vid = make_vid("train", "m", 0, 0)
    spec = video_spec(vid)
    for sample in clip_samples(vid):
        start, end = sample.clip * CLIP_LEN, (sample.clip + 1) * CLIP_LEN
        expected = {e.combo for e in spec.events if min(e.end, end) - max(e.start, start) >= 1.0}
        assert set(sample.actions) == expected
        assert sample.scene == spec.scene


def test_captions_are_true_and_hard_negatives_false():
    rng = np.random.default_rng(0)
    samples = split_samples("train", 3)
    swapped_actions = 0
    for sample in samples * 5:
        text, meaning = clip_caption(sample, rng)
        assert text and meaning_matches(meaning, sample), (text, meaning, sample)
        wrong_text, wrong = negative_caption(sample, meaning, rng)
        assert not meaning_matches(wrong, sample), (wrong_text, wrong, sample)
        swapped_actions += wrong.action != meaning.action
    assert swapped_actions > 50  # the action is what negatives change most


def test_meaning_matching_rules():
    vid = make_vid("train", "m", 0, 0)
    sample = next(s for s in clip_samples(vid) if s.actions)
    colour, shape, action = sample.actions[0]
    assert meaning_matches(ClipMeaning(colour, shape, action, sample.scene), sample)
    assert meaning_matches(ClipMeaning(None, shape, action, None), sample)
    assert meaning_matches(ClipMeaning(None, None, action, None), sample)
    other_scene = "beach" if sample.scene != "beach" else "city"
    assert not meaning_matches(ClipMeaning(colour, shape, action, other_scene), sample)
    others = {a for _, _, a in sample.actions}
    absent = next(a for a in ("spin", "grow", "shrink", "bounce", "appear") if a not in others)
    assert not meaning_matches(ClipMeaning(colour, shape, absent, None), sample)


def test_rendered_clips_are_deterministic_frames_of_the_clip():
    from course_lib.toyworld import render_frame

    samples = clip_samples(make_vid("val", "m", 0, 1))[:3]
    frames = render_clips(samples, frames=4, size=32)
    assert frames.shape == (3, 4, 32, 32, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames, render_clips(samples, frames=4, size=32))
    np.testing.assert_array_equal(frames[2, 1], render_frame(samples[2].vid, 2 * CLIP_LEN + 0.75, size=32))


@pytest.mark.slow
def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    import torch

    from course_lib.clip.video_encoder import VideoTowerConfig
    from course_lib.experiments.ch01_video_encoder import VideoTrainingConfig, train

    tower = VideoTowerConfig(image_size=32, width=32, layers=1, heads=2, embed_dim=128)
    config = VideoTrainingConfig(
        tower=tower, train_videos=2, batch_size=8, steps=3, warmup=1, inflate=False, attribute_weight=1.0
    )
    whole, _, history = train(config, tmp_path / "whole", log_every=10)
    train(config, tmp_path / "parts", max_seconds=0.0)  # stops (and saves) after one step
    parts, _, resumed = train(config, tmp_path / "parts", log_every=10)
    assert resumed == history and len(history) == 3
    for (name, a), b in zip(whole.state_dict().items(), parts.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    with pytest.raises(ValueError, match="another run's settings"):
        train(VideoTrainingConfig(tower=tower, train_videos=2, steps=4, inflate=False), tmp_path / "parts")


def test_attribute_targets_mark_what_a_clip_shows_and_what_a_caption_names():
    import torch

    from course_lib.experiments import ch01_video_encoder as ve

    labels = ve.attribute_labels()
    assert len(labels) == len(set(labels)) == 6 + 6 + 11 + 5
    sample = next(s for s in clip_samples(make_vid("train", "m", 0, 0)) if s.actions)
    # a clip's loss is lowest for logits that are high exactly on what it shows
    shown = {("scene", sample.scene)} | {("action", a) for _, _, a in sample.actions}
    shown |= {(g, v) for c, s in sample.objects for g, v in (("colour", c), ("shape", s))}
    right = torch.tensor([[10.0 if label in shown else -10.0 for label in labels]])
    assert ve._clip_attribute_loss(right, [sample]) < 1e-3
    assert ve._clip_attribute_loss(-right, [sample]) > 5.0
    # a caption is scored only on the groups it names: naming only the action ignores colour
    meaning = ClipMeaning(None, None, "spin", None)
    logits = torch.zeros(1, len(labels))
    logits[0, labels.index(("action", "spin"))] = 20.0
    assert ve._text_attribute_loss(logits, [meaning]) < 1e-3
    logits[0, labels.index(("colour", "red"))] = 50.0  # unnamed group: no effect
    assert ve._text_attribute_loss(logits, [meaning]) < 1e-3
    assert ve._text_attribute_loss(logits, [ClipMeaning("blue", None, None, None)]) > 10.0


@pytest.mark.slow
def test_pretraining_steps_change_the_video_tower_and_never_the_text_tower(tmp_path):
    import torch

    from course_lib.clip.video_encoder import VideoTowerConfig
    from course_lib.experiments.ch01_video_encoder import VideoTrainingConfig, build_model, train

    tower = VideoTowerConfig(image_size=32, width=32, layers=1, heads=2, embed_dim=128)
    config = VideoTrainingConfig(
        tower=tower, train_videos=2, batch_size=8, steps=2, warmup=1, inflate=False,
        pretrain_steps=2,
    )  # fmt: skip
    before, _ = build_model(tower, config.seed, inflate=False, attribute_head=True)
    after, _, history = train(config, tmp_path / "run", log_every=10)
    changed = {
        name.split(".")[0]
        for (name, a), b in zip(before.state_dict().items(), after.state_dict().values(), strict=True)
        if not torch.equal(a, b)
    }
    assert changed == {"visual", "attribute_head"} and len(history) == 2
