"""``python -m course_lib.qvhighlights``: a fake release in the exact layout, train -> predict -> eval.

The fake release (:mod:`course_lib.qvhighlights.fake_release`, shared with the appendix notebook
A1) has the QVHighlights files and feature widths (CLIP 512, SlowFast 2304, CLIP text 512) with
tiny random features, including the 76-row quirk (SlowFast one row longer than CLIP for a 150-s
video) and a short video whose streams differ by a row below max_v_l.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from course_lib.datasets import read_jsonl
from course_lib.errors import CheckpointError, DataValidationError
from course_lib.metrics import eval_qvhighlights, validate_submission
from course_lib.qvhighlights import (
    DEFAULT_CONFIG,
    FeatureSettings,
    ReleaseFeatures,
    ReleaseLayout,
    join_streams,
    l2_normalize,
    load_run_config,
    read_split,
    temporal_endpoint_features,
)
from course_lib.qvhighlights.__main__ import main
from course_lib.qvhighlights.fake_release import (
    QUERIES,
    VIDEOS,
    write_fake_release,
    write_small_config,
)
from course_lib.training.loop import autocast_dtype

BRIEF = ("MR-full-mAP", "MR-full-R1@0.5", "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1")


@pytest.fixture
def release(tmp_path):
    """A fake release in the flat layout."""
    return write_fake_release(tmp_path / "qvh")


def small_config(tmp_path, **training) -> str:
    """The shipped config with a narrow model and two CPU epochs (a few seconds)."""
    return str(write_small_config(tmp_path / "small.json", **training))


def raw(path, key: str = "features") -> np.ndarray:
    """An array as stored, read independently of the library."""
    with np.load(path, allow_pickle=False) as archive:
        return archive[key].astype(np.float32)


# ----------------------------------------------------------------------------- end to end
def test_train_predict_eval_end_to_end_on_the_cpu(release, tmp_path, capsys):
    run, config = tmp_path / "run", small_config(tmp_path)
    train = ["train", "--release", str(release), "--run-dir", str(run), "--device", "cpu"]
    # 1. train two epochs: one line per epoch, a complete run folder
    assert main([*train, "--config", config]) == 0
    out = capsys.readouterr().out
    assert "8 train / 3 val queries" in out and "d_v 2818, d_t 512" in out
    assert "epoch 1/2" in out and "epoch 2/2" in out and "best epoch" in out
    for name in ("run_config.json", "best.safetensors", "best.sha256", "last_state.pt"):
        assert (run / name).is_file(), name
    stored = json.loads((run / "run_config.json").read_text())
    assert stored["training"]["device"] is None and stored["release"] == str(release.resolve())
    # 2. the same command again continues (nothing left); --epochs 3 extends by one epoch
    assert main([*train, "--config", config]) == 0
    assert "nothing to train" in capsys.readouterr().out
    assert main([*train, "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "epoch 3/3" in out and "epoch 1/3" not in out
    assert [row["epoch"] for row in json.loads((run / "history.json").read_text())] == [0, 1, 2]
    # 3. predict: official submission files, in file order, one saliency score per 2-s clip
    assert main(["predict", "--run-dir", str(run)]) == 0
    for split in ("val", "test"):
        lines = read_jsonl(run / f"hl_{split}_submission.jsonl")
        records = read_jsonl(release / f"highlight_{split}_release.jsonl")
        assert [p["qid"] for p in lines] == [r["qid"] for r in records]
        for pred, rec in zip(lines, records):
            assert set(pred) == {
                "qid",
                "query",
                "vid",
                "pred_relevant_windows",
                "pred_saliency_scores",
            }
            assert len(pred["pred_saliency_scores"]) == int(rec["duration"] / 2)
            scores = [w[2] for w in pred["pred_relevant_windows"]]
            assert scores == sorted(scores, reverse=True)
            assert all(
                0 <= st < ed <= rec["duration"] for st, ed, _ in pred["pred_relevant_windows"]
            )
    val_gt = release / "highlight_val_release.jsonl"
    validate_submission(read_jsonl(run / "hl_val_submission.jsonl"), read_jsonl(val_gt))
    # 4. eval: the official metrics, printed and written next to the submission
    submission = run / "hl_val_submission.jsonl"
    assert main(["eval", "--submission", str(submission), "--ground-truth", str(val_gt)]) == 0
    out = capsys.readouterr().out
    written = json.loads((run / "hl_val_submission_metrics.json").read_text())
    expected = eval_qvhighlights(read_jsonl(submission), read_jsonl(val_gt))["brief"]
    assert written["brief"] == pytest.approx(dict(expected), nan_ok=True)
    assert all(key in out for key in BRIEF)


def test_a_resumed_run_refuses_other_settings(release, tmp_path, capsys):
    run, config = tmp_path / "run", small_config(tmp_path, epochs=1)
    train = ["train", "--release", str(release), "--run-dir", str(run), "--config", config]
    assert main([*train, "--video-features", "clip"]) == 0
    assert "clip (max_v_l 75" in capsys.readouterr().out
    assert main([*train, "--video-features", "slowfast"]) == 1
    err = capsys.readouterr().err
    assert "features.video_features: 'clip' -> 'slowfast'" in err and str(run) in err


def test_the_fake_release_has_the_layout_and_quirks_and_repeats_for_a_seed(release, tmp_path):
    # the generator is library code (the appendix notebook A1 runs on it): pin what it writes
    layout = ReleaseLayout(release)
    for split, queries in QUERIES.items():
        records = read_split(layout, split)
        assert [r["qid"] for r in records] == [q[0] for q in queries]
        assert all(("relevant_windows" in r) == (split != "test") for r in records)
    for vid, (_, n_clip, n_slowfast) in VIDEOS.items():
        assert raw(release / "clip_features" / f"{vid}.npz").shape == (n_clip, 512)
        assert raw(release / "slowfast_features" / f"{vid}.npz").shape == (n_slowfast, 2304)
    assert VIDEOS["quirkA_0.0_150.0"][1:] == (75, 76)  # the 76-row quirk is there
    assert raw(release / "clip_text_features" / "qid2.npz", "last_hidden_state").shape == (40, 512)
    # the same seed writes the same records and arrays (npz bytes hold a zip timestamp)
    again = write_fake_release(tmp_path / "again")
    files = sorted(p.relative_to(release) for p in release.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for name in files:
        if name.suffix == ".jsonl":
            assert (again / name).read_text() == (release / name).read_text(), name
        else:
            key = "last_hidden_state" if name.parts[0] == "clip_text_features" else "features"
            np.testing.assert_array_equal(raw(again / name, key), raw(release / name, key))


# ----------------------------------------------------------------------------- conventions
def test_both_streams_follow_moment_detr_on_the_76_row_quirk(release):
    features = ReleaseFeatures(ReleaseLayout(release), FeatureSettings("clip+slowfast"))
    vid = "quirkA_0.0_150.0"
    video = features.video(vid)
    # independent re-derivation: cut to 75, x / (|x| + 1e-5) per stream, SlowFast first, tef
    slowfast = raw(release / "slowfast_features" / f"{vid}.npz")[:75]
    clip = raw(release / "clip_features" / f"{vid}.npz")[:75]
    assert len(slowfast) == 75 and len(clip) == 75
    parts = [x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-5) for x in (slowfast, clip)]
    tef = np.stack([np.arange(75) / 75, np.arange(1, 76) / 75], axis=1)
    np.testing.assert_allclose(video, np.concatenate([*parts, tef], axis=1), rtol=1e-5, atol=1e-6)
    assert video.shape == (75, 2304 + 512 + 2) and video.dtype == np.float32


def test_streams_are_cut_to_the_shortest_below_max_v_l(release):
    features = ReleaseFeatures(ReleaseLayout(release), FeatureSettings("clip+slowfast"))
    video = features.video("shortB_10.0_50.0")  # CLIP 20 rows, SlowFast 21
    assert video.shape == (20, 2818)
    np.testing.assert_allclose(video[-1, -2:], [19 / 20, 1.0], rtol=1e-6)
    norms = np.linalg.norm(video[:, :2304], axis=1), np.linalg.norm(video[:, 2304:2816], axis=1)
    for n in norms:
        np.testing.assert_allclose(n, 1.0, atol=1e-4)


@pytest.mark.parametrize(
    ("settings", "width"),
    [
        (FeatureSettings("clip"), 514),
        (FeatureSettings("slowfast"), 2306),
        (FeatureSettings("clip", tef=False), 512),
    ],
)
def test_each_choice_of_video_features_has_its_width(release, settings, width):
    features = ReleaseFeatures(ReleaseLayout(release), settings)
    assert features.widths({"vid": "midC_0.0_100.0", "qid": 5}) == {"d_v": width, "d_t": 512}


def test_without_normalisation_the_stored_values_pass_through(release):
    settings = FeatureSettings("clip", normalize_v=False, normalize_t=False, tef=False)
    features = ReleaseFeatures(ReleaseLayout(release), settings)
    vid = "midC_0.0_100.0"
    np.testing.assert_array_equal(
        features.video(vid), raw(release / "clip_features" / f"{vid}.npz")
    )
    tokens = raw(release / "clip_text_features" / "qid5.npz", "last_hidden_state")
    np.testing.assert_array_equal(features.query(5), tokens)


def test_query_tokens_are_cut_to_max_q_l_and_normalised(release):
    features = ReleaseFeatures(ReleaseLayout(release), FeatureSettings())
    tokens = features.query(2)  # 40 tokens stored
    stored = raw(release / "clip_text_features" / "qid2.npz", "last_hidden_state")[:32]
    np.testing.assert_allclose(
        tokens, stored / (np.linalg.norm(stored, axis=1, keepdims=True) + 1e-5), rtol=1e-6
    )


def test_tef_l2_and_the_gap_warning():
    np.testing.assert_allclose(
        temporal_endpoint_features(4), [[0, 0.25], [0.25, 0.5], [0.5, 0.75], [0.75, 1.0]]
    )
    np.testing.assert_array_equal(l2_normalize(np.zeros((2, 3))), np.zeros((2, 3)))
    with pytest.warns(UserWarning, match=r"video 'v1': feature streams have \[75, 10\] rows"):
        joined = join_streams([np.ones((80, 4)), np.ones((10, 3))], name="video 'v1'")
    assert joined.shape == (10, 9)


def test_the_moment_detr_checkout_layout_is_read_too(tmp_path):
    write_fake_release(tmp_path, annotations_sub="data", features_sub="features")
    layout = ReleaseLayout(tmp_path)
    assert layout.annotation_path("val") == tmp_path / "data" / "highlight_val_release.jsonl"
    assert [r["qid"] for r in read_split(layout, "test")] == [21, 22]
    features = ReleaseFeatures(layout, FeatureSettings())
    assert features.video("valD_30.0_90.0").shape == (30, 2818)


def test_the_shipped_config_holds_the_papers_settings():
    config = load_run_config()
    model = config.model_config(d_v=2818, d_t=512)
    assert (model.n_balance_tokens, model.n_recurrent, model.mode, model.d) == (7, 3, "rec", 256)
    assert (model.n_saliency_layers, model.n_decoder_layers, model.max_clips) == (2, 2, 75)
    t = config.training
    assert (t.epochs, t.lr, t.batch_size, t.max_clips, t.max_tokens, t.clip_len) == (
        200,
        1e-4,
        32,
        75,
        32,
        2.0,
    )
    assert (t.w_span, t.w_giou, t.w_label, t.w_saliency_margin, t.w_neg_pair) == (10, 1, 4, 1, 1)
    assert config.features == FeatureSettings("clip+slowfast", 75, 32, True, True, True)
    assert t.amp and autocast_dtype("cpu", t.amp) is None  # mixed precision on CUDA only


# ----------------------------------------------------------------------------- bad input
def test_missing_files_are_named(release, tmp_path, capsys):
    (release / "highlight_train_release.jsonl").unlink()
    args = ["train", "--release", str(release), "--run-dir", str(tmp_path / "r")]
    assert main(args) == 1
    assert "highlight_train_release.jsonl not found" in capsys.readouterr().err
    with pytest.raises(DataValidationError, match="release folder not found"):
        ReleaseLayout(tmp_path / "nowhere")
    features = ReleaseFeatures(ReleaseLayout(release), FeatureSettings())
    (release / "slowfast_features" / "midC_0.0_100.0.npz").unlink()
    with pytest.raises(DataValidationError, match=r"slowfast_features/midC_0\.0_100\.0\.npz"):
        features.video("midC_0.0_100.0")


def test_bad_feature_files_are_named(release):
    features = ReleaseFeatures(ReleaseLayout(release), FeatureSettings())
    np.savez(release / "clip_features" / "midC_0.0_100.0.npz", feats=np.ones((50, 512)))
    with pytest.raises(DataValidationError, match=r"midC_0\.0_100\.0\.npz: no array 'features'"):
        features.video("midC_0.0_100.0")
    features.video("quirkA_0.0_150.0")  # fixes the widths: 2304 and 512
    np.savez(release / "clip_features" / "valD_30.0_90.0.npz", features=np.ones((30, 300)))
    with pytest.raises(DataValidationError, match=r"valD_30\.0_90\.0\.npz: 'features' has 300 col"):
        features.video("valD_30.0_90.0")


def test_bad_records_are_named_with_their_file(release):
    path = release / "highlight_val_release.jsonl"
    records = read_jsonl(path)
    records[1]["relevant_windows"] = [[40, 70]]  # past the 60-s video
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    with pytest.raises(DataValidationError, match=r"highlight_val_release\.jsonl: .*qid=12"):
        read_split(ReleaseLayout(release), "val")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"training": {"warp": 1}}, r"section 'training': unknown MomentTrainingConfig field"),
        ({"model": {"d_v": 2818}}, r"section 'model' sets d_v"),
        ({"features": {"video_features": "rgb"}}, r"video_features='rgb'"),
        ({"training": {"max_clips": 90}}, r"max_clips=90 contradicts the features"),
        ({"features": {"tef": "yes"}}, r"tef='yes' must be true or false"),
        ({"optimiser": {}}, r"unknown section\(s\)"),
    ],
)
def test_bad_config_files_are_named(tmp_path, change, message):
    data = json.loads(DEFAULT_CONFIG.read_text())
    for section, fields in change.items():
        data.setdefault(section, {}).update(fields)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataValidationError, match=rf"bad\.json: .*{message}|{message}"):
        load_run_config(path)


def test_predict_without_a_run_and_eval_of_a_wrong_submission_fail_clearly(
    release, tmp_path, capsys
):
    assert main(["predict", "--run-dir", str(tmp_path / "empty")]) == 1
    assert "no QVHighlights run in" in capsys.readouterr().err
    gt = release / "highlight_val_release.jsonl"
    records = read_jsonl(gt)
    sub = tmp_path / "sub.jsonl"
    line = {"qid": records[0]["qid"], "query": "q", "vid": records[0]["vid"]}
    line |= {"pred_relevant_windows": [[0, 10, 0.5]], "pred_saliency_scores": [0.0] * 30}
    sub.write_text(json.dumps(line) + "\n")
    assert main(["eval", "--submission", str(sub), "--ground-truth", str(gt)]) == 1
    assert "ERROR:" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="no QVHighlights run"):
        from course_lib.qvhighlights import predict_run

        predict_run(tmp_path / "empty")


def test_a_mixed_precision_step_runs_the_autocast_and_scaler_path_on_the_cpu(release):
    """The GPU path's code (autocast forward, float32 losses, scaled backward) on the CPU."""
    import torch

    from course_lib.alignment import build_model
    from course_lib.training import SetCriterion, make_optimizer, predict, train_step
    from course_lib.training.loop import make_loader

    config = load_run_config(DEFAULT_CONFIG)
    features = ReleaseFeatures(ReleaseLayout(release), config.features)
    records = read_split(ReleaseLayout(release), "train")
    model = build_model(config.model_config(2818, 512), d=32, n_heads=4, dim_feedforward=64)
    training = replace(config.training, num_workers=0)
    batch = next(iter(make_loader(records[:4], features.video, features.query, training)))
    optimizer, _ = make_optimizer(model, training)
    scaler = torch.amp.GradScaler("cpu")
    losses = train_step(
        model, batch, SetCriterion(training), optimizer, 0.1, torch.bfloat16, scaler
    )
    assert all(math.isfinite(v) for v in losses.values())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    loader = make_loader(records[:2], features.video, features.query, training)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # decoding casts the outputs back
        lines = predict(model, loader, training, progress=False)
    assert len(lines) == 2 and all(
        isinstance(w[2], float) for w in lines[0]["pred_relevant_windows"]
    )


def test_a_device_that_is_not_there_is_refused(release, tmp_path, capsys, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    monkeypatch.delenv("COURSE_DEVICE", raising=False)  # tests/conftest.py pins the CPU
    args = ["train", "--release", str(release), "--run-dir", str(tmp_path / "r")]
    assert main([*args, "--config", small_config(tmp_path), "--device", "cuda"]) == 1
    assert "CUDA is not available" in capsys.readouterr().err
    assert (
        json.loads((tmp_path / "r" / "run_config.json").read_text())["training"]["device"] is None
    )
