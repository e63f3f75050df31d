"""Tests for the chapter-2 experiment (features, training, ablation) and its exercise checkers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib.checks import ExerciseError
from course_lib.errors import DataValidationError
from course_lib.exercises import ch02
from course_lib.experiments.ch02_ucofia import (
    DEFAULT_VARIANTS,
    RetrievalFeatures,
    Variant,
    config_for,
    evaluate,
    extract_retrieval_features,
    find_confusions,
    frame_times,
    run_ablation,
    top1_counts,
    train_ucofia,
)


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny tensors run faster (and steadier on a shared CPU) with one thread."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def synthetic_features(n: int, seed: int, dim: int = 16, n_frames: int = 4) -> RetrievalFeatures:
    """Pairs sharing a random concept vector per pair (+ noise): learnable, with padding."""
    g = torch.Generator().manual_seed(seed)
    concept = torch.randn(n, dim, generator=g)

    def noisy(*shape: int) -> torch.Tensor:
        c = concept.view(n, *([1] * (len(shape) - 1)), dim)
        return c + 1.5 * torch.randn(n, *shape[1:], dim, generator=g)

    frame_mask = torch.arange(n_frames)[None] < torch.randint(2, n_frames + 1, (n, 1), generator=g)
    word_mask = torch.arange(7)[None] < torch.randint(3, 8, (n, 1), generator=g)
    return RetrievalFeatures(
        frames=noisy(n, n_frames) * frame_mask[..., None],
        frame_mask=frame_mask,
        patches=noisy(n, n_frames, 5) * frame_mask[..., None, None],
        sentence=noisy(n),
        words=noisy(n, 7) * word_mask[..., None],
        word_mask=word_mask,
        vids=[f"v{i}" for i in range(n)],
        captions=[f"caption {i}" for i in range(n)],
    )


# ----------------------------------------------------------------------------- features
@pytest.fixture(scope="module")
def encoder():
    from course_lib.clip import TINY_MODEL_NAME, ClipEncoder

    return ClipEncoder.from_config(TINY_MODEL_NAME, pretrained=None, device="cpu", progress=False)


@pytest.mark.parametrize("top_k", [None, 2])
def test_extract_features_shapes_and_cache_round_trip(encoder, tmp_path, top_k) -> None:
    from course_lib.toyworld import retrieval_pairs

    pairs = retrieval_pairs("val", 4, seed=0)
    feats = extract_retrieval_features(
        encoder, pairs, fps=0.5, n_frames=6, top_k=top_k, cache_root=tmp_path
    )
    n_p = encoder.num_patches - 1 if top_k is None else top_k
    dim = encoder.embed_dim
    assert feats.frames.shape == (4, 6, dim) and feats.patches.shape == (4, 6, n_p, dim)
    assert feats.sentence.shape == (4, dim) and feats.words.shape[::2] == (4, dim)
    # masks: 8-16 s clips at 0.5 fps have 4-6 frames; padding is zero
    counts = [len(frame_times(p["duration"], 0.5, 6)) for p in pairs]
    assert feats.frame_mask.sum(1).tolist() == counts
    assert not feats.frames[~feats.frame_mask].any()
    assert feats.word_mask[:, 0].all() and feats.word_mask.sum(1).max() == feats.words.shape[1]
    # the sentence is the end-of-text token and equals encode_text
    torch.testing.assert_close(
        feats.sentence, encoder.encode_text(feats.captions), atol=1e-5, rtol=1e-4
    )
    # cache: one file, and loading returns identical tensors
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    again = extract_retrieval_features(
        encoder, pairs, fps=0.5, n_frames=6, top_k=top_k, cache_root=tmp_path
    )
    assert again.vids == feats.vids and again.captions == feats.captions
    for name in ("frames", "frame_mask", "patches", "sentence", "words", "word_mask"):
        assert torch.equal(getattr(again, name), getattr(feats, name)), name
    # a different setting is a different cache entry
    extract_retrieval_features(
        encoder, pairs[:2], fps=0.5, n_frames=3, top_k=top_k, cache_root=tmp_path
    )
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_extract_features_rejects_bad_pairs(encoder, tmp_path) -> None:
    with pytest.raises(DataValidationError, match="no pairs"):
        extract_retrieval_features(encoder, [], cache_root=tmp_path)
    with pytest.raises(DataValidationError, match="pair 0 lacks"):
        extract_retrieval_features(encoder, [{"vid": "x", "caption": "a"}], cache_root=tmp_path)


@pytest.mark.parametrize(
    ("duration", "fps", "n_frames", "expected"),
    [(8.0, 0.5, 6, [1, 3, 5, 7]), (16.0, 0.5, 4, [1, 5, 11, 15]), (1.0, 0.5, 4, [0.5])],
)
def test_frame_times(duration, fps, n_frames, expected) -> None:
    np.testing.assert_allclose(frame_times(duration, fps, n_frames), expected)


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("granularities", [("video",), ("patch",), ("video", "frame", "patch")])
def test_training_reduces_loss_and_is_deterministic(granularities) -> None:
    train = synthetic_features(48, seed=0)
    cfg = config_for(train, granularities=granularities, n_heads=2)
    model, hist = train_ucofia(train, cfg, epochs=4, batch_size=16, lr=3e-3, seed=0)
    assert hist["loss"][-1] < hist["loss"][0]
    _, again = train_ucofia(train, cfg, epochs=4, batch_size=16, lr=3e-3, seed=0)
    assert again["loss"] == hist["loss"]
    assert not model.training


def test_model_selection_uses_validation() -> None:
    train, val = synthetic_features(32, seed=0), synthetic_features(16, seed=1)
    cfg = config_for(train, n_heads=2)
    _, hist = train_ucofia(train, cfg, epochs=3, batch_size=16, lr=3e-3, seed=0, val=val)
    assert len(hist["val_rsum"]) == 3
    assert hist["best_epoch"] == 1 + int(np.argmax(hist["val_rsum"]))


def test_evaluate_sinkhorn_and_baseline() -> None:
    train, test = synthetic_features(32, seed=0), synthetic_features(16, seed=2)
    base = evaluate(None, test, sinkhorn=False)
    assert set(base) == {"t2v", "v2t"} and 0 <= base["t2v"]["R1"] <= 100
    model, _ = train_ucofia(train, config_for(train, n_heads=2), epochs=1, batch_size=16, seed=0)
    with_sk = evaluate(model, test, bank_features=train, sinkhorn=True, tau=0.01)
    assert with_sk["t2v"]["MedR"] >= 1


def test_top1_counts_and_confusions() -> None:
    sims = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.2, 0.1], [0.7, 0.1, 0.3]])
    assert top1_counts(sims).tolist() == [3, 0, 0]
    from course_lib.toyworld import Attributes

    attrs = [
        Attributes("red", "circle", "bounce", "city"),
        Attributes("blue", "circle", "bounce", "city"),
        Attributes("red", "star", "bounce", "city"),
    ]
    fine = torch.eye(3)
    # text 1 (blue) retrieves video 0 (red): a colour confusion fixed by the fine level
    assert find_confusions(sims, fine, attrs, "colour") == [(1, 0)]
    assert find_confusions(sims, fine, attrs, "shape") == [(2, 0)]
    assert find_confusions(sims, torch.ones(3, 3), attrs, "colour") == []  # fine level no better


# ----------------------------------------------------------------------------- ablation
def test_ablation_table_rows_and_columns() -> None:
    train, val, test = (synthetic_features(n, seed=s) for n, s in [(32, 0), (16, 1), (16, 2)])
    trained: dict = {}
    table = run_ablation(
        train,
        val,
        test,
        seed=0,
        epochs=2,
        batch_size=16,
        trained=trained,
        base_config={"n_heads": 2},
    )
    assert list(table.index) == [v.name for v in DEFAULT_VARIANTS]
    expected = {
        "sinkhorn",
        "tau",
        "best_epoch",
        "val t2v R@1",
        "t2v R@1",
        "t2v R@5",
        "t2v R@10",
        "t2v MedR",
        "v2t R@1",
    }
    assert set(table.columns) == expected
    assert set(trained) == {v.model for v in DEFAULT_VARIANTS if v.model}
    # Sinkhorn rows have a tau chosen from the grid, the others none
    for v in DEFAULT_VARIANTS:
        tau = table.loc[v.name, "tau"]
        assert (tau in (0.005, 0.01, 0.02, 0.05)) if v.sinkhorn else math.isnan(tau)
    assert ((table["t2v R@1"] >= 0) & (table["t2v R@10"] <= 100)).all()
    # reusing the trained models gives the same table (deterministic, no retraining)
    again = run_ablation(train, val, test, seed=0, epochs=2, batch_size=16, trained=trained)
    assert again.equals(table)
    with pytest.raises(DataValidationError, match="unknown model"):
        run_ablation(train, val, test, variants=[Variant("x", "nope")])


# ----------------------------------------------------------------------------- checkers
def _sinkhorn_stale_column_bias(sims, tau, n_iters):
    """Wrong: returns the column bias from before the last row update."""
    z, log_a = sims / tau, torch.zeros(sims.shape[0], dtype=sims.dtype)
    for _ in range(n_iters):
        log_b = -math.log(sims.shape[1]) - torch.logsumexp(z + log_a[:, None], dim=0)
        log_a = -math.log(sims.shape[0]) - torch.logsumexp(z + log_b[None], dim=1)
    return log_a, log_b


def _sinkhorn_rows_first(sims, tau, n_iters):
    """Wrong: starts with a row update (UCoFiA starts with a column normalisation)."""
    k, b = torch.exp(sims / tau), torch.ones(sims.shape[1], dtype=sims.dtype)
    for _ in range(n_iters):
        a = (1 / sims.shape[0]) / (k @ b)
        b = (1 / sims.shape[1]) / (k.T @ a)
    return a.log(), b.log()


def _isa_ignores_mask(sims, W, tau, mask):
    a = torch.softmax(torch.softmax(sims / tau, -1) @ W / tau, -1)
    return (a * sims).sum(-1)


def _isa_single_softmax(sims, W, tau, mask):
    logits = sims / tau if mask is None else (sims / tau).masked_fill(~mask, -torch.inf)
    a = torch.softmax(logits, -1)
    return (a * sims.masked_fill(a == 0, 0)).sum(-1)


def _recall_zero_based(sims):
    ranks = (sims > sims.diagonal()[:, None]).sum(1).float()  # 0-based: off by one
    out = {f"R{k}": float(100 * (ranks <= k).float().mean()) for k in (1, 5, 10)}
    return {**out, "MedR": float(ranks.median())}


def _recall_mean_rank(sims):
    ranks = 1 + (sims > sims.diagonal()[:, None]).sum(1).float()
    out = {f"R{k}": float(100 * (ranks <= k).float().mean()) for k in (1, 5, 10)}
    return {**out, "MedR": float(ranks.mean())}


CHECKERS = {
    "sinkhorn": (
        ch02.check_sinkhorn_log,
        ch02.sinkhorn_log,
        [_sinkhorn_stale_column_bias, _sinkhorn_rows_first],
    ),
    "isa": (ch02.check_isa_aggregate, ch02.isa_aggregate, [_isa_ignores_mask, _isa_single_softmax]),
    "recall": (
        ch02.check_recall_and_median_rank,
        ch02.recall_and_median_rank,
        [_recall_zero_based, _recall_mean_rank],
    ),
}


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_checker_accepts_reference_and_rejects_wrong(name, capsys) -> None:
    checker, reference, wrong_fns = CHECKERS[name]
    assert checker(reference) is None
    assert "[OK]" in capsys.readouterr().out
    for wrong in wrong_fns:
        with pytest.raises(ExerciseError):
            checker(wrong)


def test_recall_checker_matches_a_simple_correct_implementation(capsys) -> None:
    def recall(sims):
        ranks = 1 + (sims > sims.diagonal()[:, None]).sum(1)
        out = {f"R{k}": 100.0 * float((ranks <= k).float().mean()) for k in (1, 5, 10)}
        return {**out, "MedR": float(np.median(ranks.numpy()))}

    ch02.check_recall_and_median_rank(recall)
    assert "[OK]" in capsys.readouterr().out


def test_checker_reports_a_stub(capsys) -> None:
    def stub(*args):
        raise NotImplementedError("sinkhorn_log")

    ch02.check_sinkhorn_log(stub)
    assert "[TODO]" in capsys.readouterr().out
