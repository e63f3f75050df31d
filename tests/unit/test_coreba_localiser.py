"""The chapter-5 moment model as a search localiser (course_lib.localisers.CorebaLocaliser)."""

import numpy as np
import pytest
import torch

from course_lib.alignment import build_model
from course_lib.experiments.ch05_coreba_toy import toy_model_config
from course_lib.experiments.ch05_feature_sources import planted_features
from course_lib.localisers import CorebaLocaliser, Query, localise_long, saliency_curve
from course_lib.toyworld import moment_records
from course_lib.training import MomentTrainingConfig
from course_lib.training.loop import make_loader, predict

DIM = 16


@pytest.fixture(scope="module")
def setup():
    records = moment_records("val", 3, seed=5)
    video, query = planted_features(records, dim=DIM)
    torch.manual_seed(0)
    model = build_model(toy_model_config(DIM, d=16, n_heads=2, n_recurrent=2)).eval()
    return records, video, query, model


def _query(rec, query_source) -> Query:
    tokens = query_source(rec["qid"])
    return Query(rec["query"], tokens.mean(0) / np.linalg.norm(tokens.mean(0)))


@pytest.mark.parametrize("mode", ["rec", "baseline"])
def test_localiser_gives_the_chapter5_predictions(setup, mode):
    records, video, query, _ = setup
    torch.manual_seed(1)
    model = build_model(toy_model_config(DIM, d=16, n_heads=2, mode=mode)).eval()
    config = MomentTrainingConfig(batch_size=4, progress=False)
    expected = predict(model, make_loader(records, video, query, config), config)
    for rec, sub in zip(records, expected, strict=True):
        localiser = CorebaLocaliser(model, query_tokens=lambda q, r=rec: query(r["qid"]))
        got = localiser(video(rec["vid"]), _query(rec, query), rec["duration"])
        # same moments; a batch of one has no padding, so floats differ in the last digits
        assert len(got) == len(sub["pred_relevant_windows"]) > 0
        np.testing.assert_allclose(got, sub["pred_relevant_windows"], atol=1e-3)
        saliency = localiser.saliency(video(rec["vid"]), _query(rec, query), rec["duration"])
        n = len(sub["pred_saliency_scores"])
        np.testing.assert_allclose(saliency[:n], sub["pred_saliency_scores"], atol=1e-5)


def test_localiser_window_defaults_to_the_model_and_long_videos_slide(setup):
    records, video, query, model = setup
    rec = records[0]
    localiser = CorebaLocaliser(model, query_tokens=lambda q: query(rec["qid"]))
    assert localiser.window_clips == model.config.max_clips == 75
    # a 10-minute video (300 clips) is cut into overlapping 75-clip windows, not refused
    long_feats = np.concatenate([video(rec["vid"])] * 8)[:300]
    moments = localise_long(localiser, long_feats, _query(rec, query), 600.0)
    assert moments and all(0 <= st < ed <= 600.0 for st, ed, _ in moments)
    assert any(st >= 150.0 for st, _, _ in moments) or len(moments) == 10
    curve = saliency_curve(localiser, long_feats, _query(rec, query), 600.0)
    assert curve.shape == (300,) and np.isfinite(curve).all()


def test_localiser_restores_training_mode_and_checks_widths(setup):
    records, video, query, model = setup
    rec = records[0]
    model.train()
    localiser = CorebaLocaliser(model, query_tokens=lambda q: query(rec["qid"])[:, :8])
    with pytest.raises(ValueError, match="same D"):
        localiser(video(rec["vid"]), _query(rec, query), rec["duration"])
    assert model.training
    model.eval()


def test_localiser_uses_encoder_tokens_by_default(setup):
    records, video, _, model = setup

    class FakeEncoder:
        def encode_text_tokens(self, texts):
            tokens = torch.ones(len(texts), 4, DIM) / np.sqrt(DIM)
            return tokens, torch.tensor([[True, True, True, False]] * len(texts))

    query = Query("a red circle", np.ones(DIM, np.float32) / np.sqrt(DIM), encoder=FakeEncoder())
    moments = CorebaLocaliser(model)(video(records[0]["vid"]), query, records[0]["duration"])
    assert 0 < len(moments) <= MomentTrainingConfig().max_windows
    assert query.tokens().shape == (3, DIM)  # padding dropped, as chapter 5's features


def test_committed_localiser_is_coreba_only_for_the_encoder_it_was_trained_on(tmp_path):
    import json
    from types import SimpleNamespace

    from course_lib.env import data_dir
    from course_lib.localisers import BaselineLocaliser, CorebaLocaliser, committed_localiser

    info = json.loads((data_dir() / "coreba_toy.json").read_text())
    trained_on = SimpleNamespace(identity=info["clip_identity"])
    localiser = committed_localiser(trained_on)
    assert isinstance(localiser, CorebaLocaliser) and not localiser.model.training
    assert isinstance(
        committed_localiser(SimpleNamespace(identity="another encoder")), BaselineLocaliser
    )
    assert isinstance(
        committed_localiser(trained_on, data=tmp_path), BaselineLocaliser
    )  # no checkpoint
