"""Tests for course_lib.training (criterion, loops, checkpoints, feature sources)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.alignment import CorebaConfig, build_model
from course_lib.errors import CheckpointError, DataValidationError
from course_lib.experiments.ch05_feature_sources import planted_features
from course_lib.metrics import validate_submission
from course_lib.spans import temporal_iou, window_to_clip_ids
from course_lib.training import (
    MomentTrainingConfig,
    SetCriterion,
    forward_with_negatives,
    load_checkpoint,
    make_loader,
    make_optimizer,
    predict,
    read_checkpoint_info,
    roll_queries,
    saliency_forward,
    save_checkpoint,
    train,
    train_step,
)
from course_lib.training.checkpoint import append_history, read_history

MODES = ("rec", "mod", "baseline")
DIM = 16
SMALL = dict(d_v=DIM, d_t=DIM, d=32, n_heads=4, dim_feedforward=64, max_clips=20, n_queries=4)
QUERIES = ("red ball jumps", "blue cube spins", "green cone falls", "white star rolls")


def record(qid: int, duration: float, window: list[float], query: str) -> dict:
    """A valid moment record with one window; saliency 4/3/2 from the window's centre outwards."""
    ids = window_to_clip_ids(window)
    centre = (ids[0] + ids[-1]) / 2
    scores = [[max(2, 4 - int(abs(c - centre)))] * 3 for c in ids]
    return {
        "qid": qid,
        "query": query,
        "vid": f"synth-{qid}",
        "duration": duration,
        "relevant_windows": [window],
        "relevant_clip_ids": ids,
        "saliency_scores": scores,
    }


def synthetic_records() -> list[dict]:
    """Four short videos (10-14 clips), one planted window each."""
    windows = ([2.0, 8.0], [10.0, 18.0], [14.0, 24.0], [0.0, 6.0])
    durations = (20.0, 24.0, 28.0, 20.0)
    return [record(i, d, w, q) for i, (d, w, q) in enumerate(zip(durations, windows, QUERIES))]


def small_config(**overrides) -> CorebaConfig:
    return CorebaConfig(**{**SMALL, **overrides})


def train_config(**overrides) -> MomentTrainingConfig:
    base = dict(batch_size=4, epochs=1, progress=False, device="cpu", seed=0, max_clips=20)
    return MomentTrainingConfig(**{**base, **overrides})


def setup(mode: str = "rec", seed: int = 0, **model_overrides):
    """Seeded model, records, loader over planted features, and the batch of all 4 samples."""
    recs = synthetic_records()
    videos, queries = planted_features(recs, dim=DIM, seed=seed)
    cfg = train_config()
    loader = make_loader(recs, videos, queries, cfg)
    torch.manual_seed(seed)
    model = build_model(small_config(mode=mode, **model_overrides))
    return model, recs, loader, next(iter(loader)), cfg


def losses_of(model, batch, cfg, seed: int = 0) -> dict:
    """Criterion terms with the saliency-pair sampling RNG fixed."""
    torch.manual_seed(seed)
    outputs = forward_with_negatives(model, batch)
    torch.manual_seed(seed)
    return SetCriterion(cfg)(outputs, batch)


def pad_batch(batch: dict, extra: int = 1) -> dict:
    """The same batch with ``extra`` padded clips (features 7.0, mask False) at the end."""
    out = dict(batch)
    b, t, d = batch["video"].shape
    out["video"] = torch.cat([batch["video"], torch.full((b, extra, d), 7.0)], dim=1)
    out["video_mask"] = F.pad(batch["video_mask"], (0, extra), value=False)
    out["saliency"] = F.pad(batch["saliency"], (0, extra))
    out["relevant"] = F.pad(batch["relevant"], (0, extra), value=False)
    out["saliency_raw"] = F.pad(batch["saliency_raw"], (0, 0, 0, extra))
    return out


# ----------------------------------------------------------------------------- config


def test_config_defaults_are_qd_detr_and_validated():
    cfg = MomentTrainingConfig()
    assert (cfg.lr, cfg.weight_decay, cfg.grad_clip, cfg.batch_size) == (1e-4, 1e-4, 0.1, 32)
    assert cfg.loss_weights() == {
        "span": 10.0,
        "giou": 1.0,
        "label": 4.0,
        "saliency_margin": 1.0,
        "rank_contrastive": 1.0,
        "neg_pair": 1.0,
    }
    assert (cfg.eos_coef, cfg.saliency_margin) == (0.1, 0.2)
    assert MomentTrainingConfig(**json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(DataValidationError, match="lr"):
        MomentTrainingConfig(lr=0.0)
    with pytest.raises(DataValidationError, match="w_span"):
        MomentTrainingConfig(w_span=-1.0)


# ----------------------------------------------------------------------------- criterion


@pytest.mark.parametrize("mode", MODES)
def test_criterion_terms_finite_and_weighted(mode):
    model, _, _, batch, cfg = setup(mode)
    terms = losses_of(model, batch, cfg)
    names = {"span", "giou", "label", "saliency_margin", "rank_contrastive", "neg_pair"}
    aux = {f"{k}_0" for k in ("span", "giou", "label")}  # 2 decoder layers -> 1 aux layer
    assert set(terms) == names | aux | {"total"}
    assert all(torch.isfinite(v) and v >= 0 for v in terms.values())
    weights = cfg.loss_weights()
    expected = sum(weights[k.removesuffix("_0")] * v for k, v in terms.items() if k != "total")
    assert torch.allclose(terms["total"], expected)
    # changing one weight changes the total by exactly that term's share
    heavier = losses_of(model, batch, dataclasses.replace(cfg, w_neg_pair=3.0))
    assert torch.allclose(heavier["total"] - terms["total"], 2.0 * terms["neg_pair"], atol=1e-5)
    no_aux = losses_of(model, batch, dataclasses.replace(cfg, aux_loss=False))
    assert "span_0" not in no_aux and no_aux["total"] < terms["total"]


def test_negatives_roll_the_queries():
    text = torch.arange(3.0)[:, None, None].expand(3, 2, 1)
    mask = torch.tensor([[True, True], [True, False], [True, True]])
    rolled, rolled_mask = roll_queries(text, mask)
    assert rolled[:, 0, 0].tolist() == [1.0, 2.0, 0.0]  # sample b gets query b + 1
    assert rolled_mask.tolist() == [[True, False], [True, True], [True, True]]
    model, _, _, batch, cfg = setup()
    model.eval()
    out = forward_with_negatives(model, batch)
    neg_text, neg_mask = roll_queries(batch["query"], batch["query_mask"])
    vm = batch["video_mask"]
    neg = saliency_forward(model, batch["video"], vm, neg_text, neg_mask)
    assert torch.allclose(out["saliency_scores_neg"], neg)
    assert not torch.allclose(out["saliency_scores"], neg)
    # saliency_forward reproduces the model's own saliency on matched pairs
    own = saliency_forward(model, batch["video"], vm, batch["query"], batch["query_mask"])
    assert torch.allclose(own, out["saliency_scores"], atol=1e-6)
    # the negative-pair term is -log(1 - sigmoid) over the real clips of the mismatched pairs
    terms = SetCriterion(cfg)(out, batch)
    manual = (F.softplus(neg) * vm).sum(1).mean()
    assert torch.allclose(terms["neg_pair"], manual)
    # a batch of one has no mismatched pair
    single = {k: v[:1] if torch.is_tensor(v) else v[:1] for k, v in batch.items()}
    assert "saliency_scores_neg" not in forward_with_negatives(model, single)
    assert SetCriterion(cfg)(forward_with_negatives(model, single), single)["neg_pair"] == 0


@pytest.mark.parametrize("mode", MODES)
def test_padded_clip_does_not_change_losses(mode):
    model, _, _, batch, cfg = setup(mode)
    model.eval()
    plain = losses_of(model, batch, cfg)
    padded = losses_of(model, pad_batch(batch, extra=2), cfg)
    for key, value in plain.items():
        assert torch.allclose(value, padded[key], atol=1e-5), key


# ----------------------------------------------------------------------------- training


@pytest.mark.slow
def test_overfit_tiny_batch_hits_planted_windows():
    model, recs, loader, batch, _ = setup("rec", dropout=0.0, input_dropout=0.0)
    cfg = train_config(lr=2e-3)
    criterion = SetCriterion(cfg)
    optimizer, _ = make_optimizer(model, cfg)
    torch.manual_seed(0)
    totals = [train_step(model, batch, criterion, optimizer, cfg.grad_clip)["total"]]
    for _ in range(40):
        totals.append(train_step(model, batch, criterion, optimizer, cfg.grad_clip)["total"])
    assert totals[-1] < 0.5 * totals[0]
    submission = predict(model, loader, cfg)
    hits = 0
    for pred, rec in zip(submission, recs):
        top = torch.tensor([pred["pred_relevant_windows"][0][:2]])
        hits += float(temporal_iou(top, torch.tensor(rec["relevant_windows"])).max()) >= 0.5
        # the most salient predicted clip lies inside the planted window
        best = max(
            range(len(pred["pred_saliency_scores"])), key=pred["pred_saliency_scores"].__getitem__
        )
        assert best in rec["relevant_clip_ids"], (rec["qid"], best)
    assert hits >= 3, submission


@pytest.mark.parametrize("mode", MODES)
def test_predict_output_is_a_valid_submission(mode):
    model, recs, loader, _, cfg = setup(mode)
    submission = predict(model, loader, dataclasses.replace(cfg, max_windows=3))
    validate_submission(submission, recs)
    for pred, rec in zip(submission, recs):
        assert (pred["qid"], pred["vid"], pred["query"]) == (rec["qid"], rec["vid"], rec["query"])
        windows = pred["pred_relevant_windows"]
        assert 1 <= len(windows) <= 3
        assert all(0 <= st < ed <= rec["duration"] for st, ed, _ in windows)
        scores = [w[2] for w in windows]
        assert scores == sorted(scores, reverse=True)
        assert len(pred["pred_saliency_scores"]) == int(rec["duration"] / 2)
    assert model.training  # predict restores the mode


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path):
    model, recs, loader, _, cfg = setup("mod")
    model.eval()
    before = predict(model, loader, cfg)
    save_checkpoint(tmp_path / "ckpt", model, cfg, {"epoch": 4, "metrics": {"MR-full-mAP": 1.5}})
    loaded, info = load_checkpoint(tmp_path / "ckpt")  # model rebuilt from the sidecar config
    assert (info["epoch"], info["metrics"]) == (4, {"MR-full-mAP": 1.5})
    assert loaded.config == model.config and MomentTrainingConfig(**info["train_config"]) == cfg
    assert predict(loaded, loader, cfg) == before
    # the hash lives in a sha256sum-format manifest next to the weights, not in the json
    weights = tmp_path / "ckpt.safetensors"
    manifest = (tmp_path / "ckpt.sha256").read_text()
    assert manifest == f"{hashlib.sha256(weights.read_bytes()).hexdigest()}  ckpt.safetensors\n"
    assert "weights_sha256" not in info
    # a corrupted weights file is refused
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(CheckpointError, match="SHA256"):
        load_checkpoint(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing")


def test_tampered_or_unmanifested_checkpoint_is_refused(tmp_path):
    """One flipped byte, or weights without their .sha256 manifest: refused, naming the file."""
    model, *_, cfg = setup()
    save_checkpoint(tmp_path / "ckpt", model, cfg, {"epoch": 0})
    weights, manifest = tmp_path / "ckpt.safetensors", tmp_path / "ckpt.sha256"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted or was modified") as refused:
        load_checkpoint(tmp_path / "ckpt", model)
    assert str(weights) in str(refused.value)
    # a missing manifest: the message names the manifest and the weights
    save_checkpoint(tmp_path / "ckpt", model, cfg, {"epoch": 0})
    manifest.unlink()
    with pytest.raises(CheckpointError, match="manifest") as refused:
        load_checkpoint(tmp_path / "ckpt", model)
    assert str(manifest) in str(refused.value) and str(weights) in str(refused.value)
    # a checkpoint of the old convention (hash only in the json) says how to write the manifest
    info = json.loads((tmp_path / "ckpt.json").read_text())
    info["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (tmp_path / "ckpt.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="sha256sum ckpt.safetensors > ckpt.sha256"):
        load_checkpoint(tmp_path / "ckpt", model)


def test_resume_matches_uninterrupted_run(tmp_path):
    recs = synthetic_records()
    videos, queries = planted_features(recs, dim=DIM)
    cfg = train_config(batch_size=2, epochs=3, lr=1e-3)

    def run(out_dir, epochs, resume=False):
        config = dataclasses.replace(cfg, epochs=epochs)
        torch.manual_seed(123)  # model init (overwritten on resume)
        model = build_model(small_config(n_recurrent=2))
        tr = make_loader(recs, videos, queries, config, shuffle=True)
        va = make_loader(recs, videos, queries, config)
        return model, train(model, tr, va, config, out_dir=out_dir, resume=resume)

    full_model, full = run(tmp_path / "full", 3)
    _, first = run(tmp_path / "split", 2)
    resumed_model, second = run(tmp_path / "split", 3, resume=True)
    assert [h["epoch"] for h in full] == [0, 1, 2]
    assert [h["epoch"] for h in first] == [0, 1] and [h["epoch"] for h in second] == [2]
    # every row is timed; the times differ between runs, everything else must not
    assert all(h.pop("seconds") > 0 for h in full + first + second)
    # json text compares NaN metrics (empty length buckets) as equal
    assert json.dumps(first) == json.dumps(full[:2]) and json.dumps(second) == json.dumps(full[2:])
    # the run directory's history has every epoch once, the resumed one included
    stored = read_history(tmp_path / "split")
    assert [h["epoch"] for h in stored] == [0, 1, 2]
    untimed = [{k: v for k, v in h.items() if k != "seconds"} for h in stored]
    assert json.dumps(untimed) == json.dumps(full)
    for (name, a), b in zip(full_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), name
    # best checkpoint = highest MR-full-mAP + HL-min-VeryGood-mAP so far
    best = max(full, key=lambda h: h["score"])
    info = read_checkpoint_info(tmp_path / "full" / "best")
    assert info["epoch"] == best["epoch"] and math.isclose(info["score"], best["score"])
    state = torch.load(tmp_path / "full" / "last_state.pt", weights_only=True)
    assert state["epoch"] == 2


def test_resume_without_out_dir_is_refused():
    model, _, loader, _, cfg = setup()
    with pytest.raises(CheckpointError, match="out_dir"):
        train(model, loader, None, cfg, out_dir=None, resume=True)


# ----------------------------------------------------------------------------- features


def test_planted_features_put_the_query_in_its_window():
    recs = synthetic_records()
    videos, queries = planted_features(recs, dim=DIM, noise=0.1)
    for rec in recs:
        clips, tokens = torch.as_tensor(videos(rec["vid"])), torch.as_tensor(queries(rec["qid"]))
        assert clips.shape == (int(rec["duration"] / 2), DIM) and tokens.shape[1] == DIM
        sim = clips @ tokens.mean(0)
        inside = torch.zeros(len(clips), dtype=torch.bool)
        inside[rec["relevant_clip_ids"]] = True
        assert sim[inside].min() > sim[~inside].max()
    with pytest.raises(DataValidationError, match="nope"):
        videos("nope")


def test_toy_feature_sources_with_a_random_tiny_clip(tmp_path):
    from course_lib.clip import TINY_MODEL_NAME, ClipEncoder
    from course_lib.experiments.ch05_feature_sources import toy_feature_sources
    from course_lib.toyworld import moment_records

    encoder = ClipEncoder.from_config(TINY_MODEL_NAME, device="cpu", progress=False)
    recs = moment_records("train", 1, seed=0)[:2]
    videos, queries = toy_feature_sources(encoder, recs, cache_root=tmp_path)
    feats = videos(recs[0]["vid"])
    assert feats.shape == (int(recs[0]["duration"] / 2), encoder.embed_dim)
    assert queries(recs[1]["qid"]).shape[1] == encoder.embed_dim
    assert list(tmp_path.rglob("*.npz"))  # video features were cached on disk
    with pytest.raises(DataValidationError, match="query"):
        queries(-1)


def test_history_replaces_rows_of_a_rerun_epoch(tmp_path):
    """A crash after writing epoch 1's row but before its state re-runs epoch 1: one row each."""
    assert read_history(tmp_path) == []
    for epoch, loss in ((0, 3.0), (1, 2.0), (1, 1.5)):
        rows = append_history(tmp_path, {"epoch": epoch, "loss": loss})
    assert rows == read_history(tmp_path) == [{"epoch": 0, "loss": 3.0}, {"epoch": 1, "loss": 1.5}]
    (tmp_path / "history.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="history"):
        read_history(tmp_path)


def test_gradient_scaler_state_is_saved_and_restored(tmp_path):
    """A float16 run's loss scale survives a resume (CPU GradScaler: the same state dict)."""
    from course_lib.training import load_training_state, save_training_state

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=5)
    # 1. an overflow halves the scale, a finite step counts towards growth
    for grad in (float("inf"), 1.0):
        optimizer.zero_grad()
        scaler.scale(model(torch.ones(1, 3)).sum() * grad).backward()
        scaler.step(optimizer)
        scaler.update()
    saved = scaler.state_dict()
    assert saved["scale"] == 2.0**9 and saved["_growth_tracker"] == 1
    save_training_state(
        tmp_path, model, optimizer, scheduler, MomentTrainingConfig(), {"epoch": 0}, 0.5, scaler
    )
    # 2. a fresh scaler gets the saved scale back; without a saved one it keeps its own
    fresh = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=5)
    load_training_state(tmp_path, model, optimizer, scheduler, fresh)
    assert fresh.state_dict() == saved
    save_training_state(
        tmp_path, model, optimizer, scheduler, MomentTrainingConfig(), {"epoch": 0}, 0.5
    )
    untouched = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    load_training_state(tmp_path, model, optimizer, scheduler, untouched)
    assert untouched.get_scale() == 2.0**10
