"""Toy COREBA helpers (course_lib.training.coreba_toy) and chapter 4 figures."""

import matplotlib
import pytest
import torch

from course_lib.alignment import MaskedMultiHeadAttention, build_model
from course_lib.training import planted_features, save_checkpoint
from course_lib.training.coreba_toy import (
    align_initialisation,
    load_toy_checkpoint,
    parameter_count,
    toy_model_config,
    toy_train_config,
    train_toy_model,
)

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
    with pytest.raises(ValueError, match="d_v == d_t"):
        align_initialisation(build_model(toy_model_config(DIM, d=16, n_heads=2, d_t=8)))


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
