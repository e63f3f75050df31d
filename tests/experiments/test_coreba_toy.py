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
    assert sum(p.numel() for p in model.parameters()) == parameter_count(model)
    wider = toy_model_config(DIM, d=16, n_heads=2, d_v=DIM + 5)
    with pytest.raises(ValueError, match="d_v=21, d_t=16"):
        align_initialisation(build_model(wider))


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
def test_toy_features_of_the_video_encoder_feed_model_and_baseline(tmp_path):
    """Clip features and query tokens share the encoder's width; the baseline scores them."""
    from course_lib.clip.clip_encoder import committed_encoder
    from course_lib.errors import DataValidationError
    from course_lib.experiments.ch05_coreba_toy import baseline_brief, input_widths, toy_features
    from course_lib.spans import num_clips
    from course_lib.toyworld import moment_records

    encoder = committed_encoder("video", device="cpu", progress=False)
    records = moment_records("val", 1, seed=0)
    features = toy_features(encoder, records, cache_root=tmp_path)
    rec, d = records[0], encoder.embed_dim
    clips = features.video(rec["vid"])
    assert clips.shape == (num_clips(rec["duration"]), d) and clips.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(clips, axis=1), 1.0, atol=2e-3)  # float16 cache
    assert input_widths(features, rec) == {"d_v": d, "d_t": d}
    assert features.identity == encoder.identity and features.dim == d
    brief = baseline_brief(records, features)
    assert 0.0 <= brief["MR-full-mAP"] <= 100.0
    with pytest.raises(DataValidationError, match="12345678"):
        features.query(12345678)


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
