"""Toy COREBA helpers (course_lib.experiments.ch05_coreba_toy) and chapter 4 figures."""

import json

import matplotlib
import numpy as np
import pytest
import torch

from course_lib.alignment import MaskedMultiHeadAttention, build_model
from course_lib.experiments.ch05_coreba_toy import (
    align_initialisation,
    load_toy_checkpoint,
    parameter_count,
    toy_model_config,
    toy_train_config,
    train_toy_model,
)
from course_lib.experiments.ch05_feature_sources import planted_features
from course_lib.training import save_checkpoint

matplotlib.use("Agg")

DIM = 16


class PlantedFeatures:
    """The parts of ToyFeatures that training uses, over planted synthetic features."""

    identity = "planted|test"
    dim = DIM

    def __init__(self, records):
        self.video, self.query = planted_features(records, dim=DIM, noise=0.1)


def tiny_splits():
    from course_lib.toyworld import moment_records

    return {"train": moment_records("train", 2, seed=0), "val": moment_records("val", 1, seed=0)}


def test_align_initialisation_copies_projections_and_query_maps():
    model = align_initialisation(build_model(toy_model_config(DIM, d=16, n_heads=2)))
    for a, b in zip(model.video_proj.parameters(), model.text_proj.parameters()):
        assert torch.equal(a, b)
    attentions = [m for m in model.modules() if isinstance(m, MaskedMultiHeadAttention)]
    assert attentions and all(torch.equal(m.q_proj.weight, m.k_proj.weight) for m in attentions)
    # the copies are independent parameters: training can move them apart
    assert model.video_proj.mlp[2].weight is not model.text_proj.mlp[2].weight
    with pytest.raises(ValueError, match="d_v >= clip_views"):
        align_initialisation(build_model(toy_model_config(DIM, d=16, n_heads=2)), clip_views=2)


def test_align_initialisation_with_two_clip_views_and_a_descriptor():
    """Video input [view 1, view 2, descriptor]: both views start equal, text copies view 1."""
    extra = 5
    config = toy_model_config(DIM, d=16, n_heads=2, d_v=2 * DIM + extra)
    torch.manual_seed(0)
    fresh = build_model(config)
    model = align_initialisation(build_model(config), clip_views=2)
    video_first, text_first = model.video_proj.mlp[2].weight, model.text_proj.mlp[2].weight
    assert torch.equal(video_first[:, :DIM], video_first[:, DIM : 2 * DIM])
    assert torch.equal(text_first, video_first[:, :DIM])
    assert not torch.equal(video_first[:, 2 * DIM :], torch.zeros_like(video_first[:, 2 * DIM :]))
    # later layers copied whole; the first LayerNorm sliced to the text width
    for (name, a), b in zip(model.video_proj.named_parameters(), model.text_proj.parameters()):
        assert torch.equal(a[..., : b.shape[-1]], b), name
    # the same text vector in both views gives the text projection's pre-activation
    word = torch.randn(DIM)
    both = torch.cat([word, word, torch.zeros(extra)])
    np_video = video_first @ both
    assert torch.allclose(np_video, 2 * text_first @ word, atol=1e-5)
    assert sum(p.numel() for p in fresh.parameters()) == parameter_count(model)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["rec", "baseline"])
def test_seeded_training_repeats_exactly(mode):
    splits = tiny_splits()
    features = PlantedFeatures(splits["train"] + splits["val"])
    config = toy_model_config(DIM, d=16, n_heads=2, mode=mode, n_recurrent=2)
    runs = [
        train_toy_model(config, toy_train_config(epochs=1, batch_size=8), splits, features)
        for _ in range(2)
    ]
    (model_a, info_a), (model_b, info_b) = runs
    assert info_a["metrics"] == info_b["metrics"] and info_a["epoch"] == 0
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values()):
        assert torch.equal(a, b)
    assert not model_a.training


def test_checkpoint_is_refused_for_other_clip_features(tmp_path):
    model = build_model(toy_model_config(DIM, d=16, n_heads=2))
    stem = tmp_path / "coreba_toy"
    save_checkpoint(stem, model, toy_train_config(), {"clip_identity": PlantedFeatures.identity})
    features = PlantedFeatures(tiny_splits()["val"])
    loaded, info = load_toy_checkpoint(features, stem=stem)
    assert parameter_count(loaded) == parameter_count(model) and not loaded.training
    assert info["clip_identity"] == features.identity
    features.identity = "another tiny CLIP"
    assert load_toy_checkpoint(features, stem=stem) is None
    assert load_toy_checkpoint(None, stem=tmp_path / "missing") is None


def test_figures_draw_and_validate():
    import matplotlib.pyplot as plt

    from course_lib.alignment.figures import _runs, draw_cfc_diagram, plot_attention_map

    assert _runs([2, 3, 4, 7, 9, 10]) == [(2, 5), (7, 8), (9, 11)]
    fig = draw_cfc_diagram()
    assert len(fig.axes[0].patches) >= 9
    weights = torch.rand(6, 4).softmax(-1).numpy()
    fig = plot_attention_map(weights, ["a", "b", "c", "balance 1"], relevant_clips=[2, 3])
    with pytest.raises(ValueError, match="token labels"):
        plot_attention_map(weights, ["a"])
    plt.close("all")


@pytest.mark.slow
def test_motion_features_extend_clip_features(tmp_path):
    """[plain CLIP, moving-pixel CLIP, descriptor]; the baseline still reads the plain part."""
    from course_lib.clip import ClipEncoder
    from course_lib.clip.motion import DESCRIPTOR_PER_CELL
    from course_lib.experiments.ch05_coreba_toy import (
        MotionToyFeatures,
        ToyFeatures,
        baseline_brief,
        checkpoint_stem,
        toy_features,
    )
    from course_lib.toyworld import moment_records

    encoder = ClipEncoder.tiny(device="cpu", progress=False)
    records = moment_records("val", 1, seed=0)
    vid = records[0]["vid"]
    plain = ToyFeatures(encoder, records, cache_root=tmp_path)
    motion = toy_features(encoder, records, "clip+motion", cache_root=tmp_path)
    assert isinstance(motion, MotionToyFeatures) and motion.clip_views == 2
    feats = motion.video(vid)
    d = encoder.embed_dim
    assert feats.shape == (len(plain.video(vid)), 2 * d + 9 * DESCRIPTOR_PER_CELL)
    np.testing.assert_array_equal(feats[:, :d], plain.video(vid))
    np.testing.assert_array_equal(motion.text_space(vid), plain.video(vid))
    np.testing.assert_allclose(np.linalg.norm(motion.summed_view(vid), axis=1), 1.0, atol=1e-5)

    # the chapter-3 baseline is the same on both (it reads the plain CLIP part)
    def finite(brief):  # NaN (no long moments) never equals itself
        return {k: v for k, v in brief.items() if not np.isnan(v)}

    assert finite(baseline_brief(records, motion)) == finite(baseline_brief(records, plain))
    summed = finite(baseline_brief(records, motion, motion.summed_view))
    assert summed != finite(baseline_brief(records, plain))
    assert checkpoint_stem("clip+motion") == "coreba_toy_motion"
    for bad in (lambda: toy_features(encoder, records, "flow"), lambda: checkpoint_stem("flow")):
        with pytest.raises(ValueError, match="flow"):
            bad()


def test_word_features_append_word_embeddings_to_query_tokens(tmp_path):
    """clip+motion+words: the video input of clip+motion, query tokens [CLIP token, word]."""
    from course_lib.clip import ClipEncoder
    from course_lib.errors import DataValidationError
    from course_lib.experiments.ch05_coreba_toy import ToyFeatures, checkpoint_stem, toy_features
    from course_lib.toyworld import moment_records

    encoder = ClipEncoder.tiny(device="cpu", progress=False)
    records = moment_records("val", 1, seed=0)
    plain = ToyFeatures(encoder, records, cache_root=tmp_path)
    words = toy_features(encoder, records, "clip+motion+words", cache_root=tmp_path)
    motion = toy_features(encoder, records, "clip+motion", cache_root=tmp_path)
    rec, d = records[0], encoder.embed_dim
    np.testing.assert_array_equal(words.video(rec["vid"]), motion.video(rec["vid"]))
    tokens = words.query(rec["qid"])
    assert tokens.shape == (len(plain.query(rec["qid"])), 2 * d)
    np.testing.assert_array_equal(tokens[:, :d], plain.query(rec["qid"]))
    np.testing.assert_allclose(np.linalg.norm(tokens[:, d:], axis=1), 1.0, atol=1e-5)
    assert checkpoint_stem("clip+motion+words") == "coreba_toy_words"
    with pytest.raises(DataValidationError, match="12345678"):
        words.query(12345678)


def test_align_initialisation_copies_only_the_clip_columns_of_wider_tokens():
    """Query tokens [CLIP (DIM), extra]: the text projection copies the CLIP block only."""
    extra = 6
    config = toy_model_config(DIM, d=16, n_heads=2, d_v=2 * DIM + 5, d_t=DIM + extra)
    torch.manual_seed(0)
    fresh_text = build_model(config).text_proj.mlp[2].weight.detach().clone()
    torch.manual_seed(0)
    model = align_initialisation(build_model(config), clip_views=2, clip_dim=DIM)
    video_first, text_first = model.video_proj.mlp[2].weight, model.text_proj.mlp[2].weight
    assert torch.equal(text_first[:, :DIM], video_first[:, :DIM])
    assert torch.equal(text_first[:, DIM:], fresh_text[:, DIM:])  # the extra columns: random start
    with pytest.raises(ValueError, match="d_t >= clip_dim"):
        align_initialisation(build_model(config), clip_views=2, clip_dim=DIM + extra + 1)


def test_checkpoint_is_refused_for_other_feature_kinds(tmp_path):
    model = build_model(toy_model_config(DIM, d=16, n_heads=2))
    stem = tmp_path / "coreba_toy"
    info = {"clip_identity": PlantedFeatures.identity, "video_features": "clip+motion"}
    save_checkpoint(stem, model, toy_train_config(), info)
    features = PlantedFeatures(tiny_splits()["val"])
    features.kind = "clip"
    assert load_toy_checkpoint(features, stem=stem) is None
    features.kind = "clip+motion"
    assert load_toy_checkpoint(features, stem=stem) is not None


def test_extending_a_run_equals_the_longer_run(tmp_path):
    """Train 1 epoch, resume to 2: same weights and the same 2-epoch history as 2 at once."""
    splits = tiny_splits()
    features = PlantedFeatures(splits["train"] + splits["val"])
    config = toy_model_config(DIM, d=16, n_heads=2, n_recurrent=2)
    runs = {}
    for name, steps in (("at once", [2]), ("extended", [1, 2])):
        for epochs in steps:
            train_config = toy_train_config(epochs=epochs, batch_size=4)
            runs[name] = train_toy_model(
                config, train_config, splits, features, out_dir=tmp_path / name, resume=True
            )
    (model_a, info_a), (model_b, info_b) = runs["at once"], runs["extended"]
    assert [h["epoch"] for h in info_b["history"]] == [0, 1]

    def vals(info):  # as text: NaN (no long moments) never equals itself
        return json.dumps([h["val"] for h in info["history"]], sort_keys=True)

    assert vals(info_a) == vals(info_b)
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="out_dir"):
        train_toy_model(config, toy_train_config(epochs=1), splits, features, resume=True)
