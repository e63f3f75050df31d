"""Tests for course_lib.alignment (COREBA: balance tokens, CFC, RAM, QD-DETR heads)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from course_lib.alignment import (
    ABLATIONS,
    CFCBlock,
    CorebaConfig,
    ablation_config,
    attention_to_balance_tokens,
    build_model,
    masked_attention,
)
from course_lib.errors import DataValidationError

MODES = ("rec", "mod", "baseline")
N_BALANCE = (0, 1, 7)
SMALL = dict(d_v=24, d_t=20, d=32, n_heads=4, dim_feedforward=64, max_clips=20, n_recurrent=3)


def small_config(**overrides) -> CorebaConfig:
    """A tiny config so every test runs in milliseconds."""
    return CorebaConfig(**{**SMALL, **overrides})


def make_model(seed: int = 0, **overrides):
    """A seeded tiny model in eval mode whose spans depend on the input.

    DAB-DETR zero-initialises the last span-head layer (untrained spans = anchors), which would
    make span comparisons vacuous, so the tests give it small random weights.
    """
    torch.manual_seed(seed)
    model = build_model(small_config(**overrides)).eval()
    last = model.decoder.span_head.layers[-1]
    torch.nn.init.normal_(last.weight, std=0.1)
    torch.nn.init.normal_(last.bias, std=0.1)
    return model


def make_batch(seed: int = 0, n_clips=(9, 6, 3), n_words=(5, 2, 4)):
    """Random features with variable lengths; padded positions hold zeros."""
    g = torch.Generator().manual_seed(seed)
    b, t, length = len(n_clips), max(n_clips), max(n_words)
    vmask = torch.arange(t)[None] < torch.tensor(n_clips)[:, None]
    tmask = torch.arange(length)[None] < torch.tensor(n_words)[:, None]
    video = torch.randn(b, t, SMALL["d_v"], generator=g) * vmask[..., None]
    text = torch.randn(b, length, SMALL["d_t"], generator=g) * tmask[..., None]
    return video, vmask, text, tmask


def with_garbage(x: torch.Tensor, mask: torch.Tensor, seed: int) -> torch.Tensor:
    """Replace padded positions by large random values and one NaN."""
    g = torch.Generator().manual_seed(seed)
    garbage = torch.randn(x.shape, generator=g) * 1e3
    out = torch.where(mask[..., None], x, garbage)
    pad = (~mask).nonzero()
    out[pad[0, 0], pad[0, 1], 0] = float("nan")
    return out


variants = pytest.mark.parametrize("mode", MODES)
balances = pytest.mark.parametrize("n_balance", N_BALANCE)


@variants
@balances
def test_output_shapes(mode: str, n_balance: int) -> None:
    model = make_model(mode=mode, n_balance_tokens=n_balance)
    video, vmask, text, tmask = make_batch()
    out = model(video, vmask, text, tmask)
    assert out["pred_spans"].shape == (3, 10, 2)
    assert out["pred_logits"].shape == (3, 10, 2)
    assert out["saliency_scores"].shape == (3, 9)
    assert len(out["aux_outputs"]) == model.config.n_decoder_layers - 1
    assert out["aux_outputs"][0]["pred_spans"].shape == (3, 10, 2)
    spans = out["pred_spans"]
    assert torch.all((spans > 0) & (spans < 1))
    assert torch.all(out["saliency_scores"][~vmask] == 0)
    assert torch.isfinite(out["saliency_scores"]).all()


@variants
@balances
def test_padding_never_changes_real_outputs(mode: str, n_balance: int) -> None:
    model = make_model(mode=mode, n_balance_tokens=n_balance)
    video, vmask, text, tmask = make_batch()
    clean = model(video, vmask, text, tmask)
    assert not torch.allclose(clean["pred_spans"][0], clean["pred_spans"][1])  # input-dependent
    dirty = model(with_garbage(video, vmask, 1), vmask, with_garbage(text, tmask, 2), tmask)
    for key in ("pred_spans", "pred_logits"):
        torch.testing.assert_close(dirty[key], clean[key], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        dirty["saliency_scores"][vmask], clean["saliency_scores"][vmask], atol=1e-5, rtol=1e-5
    )
    # the amount of padding does not matter either: each sample alone, trimmed
    for i in range(3):
        t, length = int(vmask[i].sum()), int(tmask[i].sum())
        alone = model(
            video[i : i + 1, :t],
            vmask[i : i + 1, :t],
            text[i : i + 1, :length],
            tmask[i : i + 1, :length],
        )
        for key in ("pred_spans", "pred_logits"):
            torch.testing.assert_close(alone[key][0], clean[key][i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            alone["saliency_scores"][0], clean["saliency_scores"][i, :t], atol=1e-5, rtol=1e-5
        )


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_rec_vs_mod() -> None:
    rec1, rec3 = make_model(mode="rec", n_recurrent=1), make_model(mode="rec", n_recurrent=3)
    mod3 = make_model(mode="mod", n_recurrent=3)
    assert n_params(rec3) == n_params(rec1)
    assert n_params(mod3.encoder) == 3 * n_params(rec3.encoder)
    assert n_params(mod3) - n_params(rec3) == 2 * n_params(rec3.encoder)
    # REC_N reuses one block object; MOD_N has distinct blocks
    assert len({id(rec3.encoder.block_for_turn(i)) for i in range(3)}) == 1
    assert len({id(mod3.encoder.block_for_turn(i)) for i in range(3)}) == 3


@variants
@pytest.mark.parametrize("n_balance", (1, 7))
def test_balance_tokens_receive_gradient(mode: str, n_balance: int) -> None:
    model = make_model(mode=mode, n_balance_tokens=n_balance).train()
    out = model(*make_batch())
    (out["pred_spans"].sum() + out["saliency_scores"].pow(2).sum()).backward()
    grad = model.balance.tokens.grad
    assert grad is not None and grad.shape == (n_balance, 32)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_shared_self_attention_is_one_module_for_both_streams() -> None:
    block = CFCBlock(d=32, n_heads=4, dim_feedforward=64).eval()
    calls: dict[str, list[int]] = {"sa": [], "vt": []}
    block.self_attention.register_forward_hook(lambda m, a, o: calls["sa"].append(a[0].shape[1]))
    block.vt_block.register_forward_hook(lambda m, a, o: calls["vt"].append(a[0].shape[1]))
    video, vmask = torch.randn(2, 6, 32), torch.ones(2, 6, dtype=torch.bool)
    text, tmask = torch.randn(2, 4, 32), torch.ones(2, 4, dtype=torch.bool)
    out = block(video, vmask, text, tmask)
    assert calls["sa"] == [6, 4]  # video stream, then text stream, same module
    assert calls["vt"] == [6, 6]  # coarse (eq. 2) and fine (eq. 5) pass of the same VT-block
    assert (
        out.vt.shape == (2, 6, 32) and out.tv.shape == (2, 4, 32) and out.fine.shape == (2, 6, 32)
    )
    # exactly three attention blocks own parameters: VT, TV and the shared SA
    assert {name.split(".")[0] for name, _ in block.named_parameters()} == {
        "vt_block",
        "tv_block",
        "self_attention",
    }


def test_cfc_ablation_switches() -> None:
    torch.manual_seed(0)
    block = CFCBlock(
        d=32, n_heads=4, dim_feedforward=64, use_tv_block=False, use_fine_alignment=False
    ).eval()
    assert block.tv_block is None
    video, vmask = torch.randn(1, 5, 32), torch.ones(1, 5, dtype=torch.bool)
    text, tmask = torch.randn(1, 3, 32), torch.ones(1, 3, dtype=torch.bool)
    out = block(video, vmask, text, tmask)
    assert torch.equal(out.fine, out.vt)
    assert set(out.attention) == {"vt_coarse", "sa_video", "sa_text"}


@pytest.mark.slow
@variants
def test_loss_decreases_on_tiny_batch(mode: str) -> None:
    model = make_model(mode=mode, dropout=0.0, input_dropout=0.0).train()
    batch = make_batch()
    g = torch.Generator().manual_seed(3)
    target_spans = torch.rand(3, 10, 2, generator=g) * 0.8 + 0.1
    target_sal = torch.rand(3, 9, generator=g) * batch[1]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):
        out = model(*batch)
        loss = F.mse_loss(out["pred_spans"], target_spans) + F.mse_loss(
            out["saliency_scores"], target_sal
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@variants
def test_state_dict_round_trip(mode: str, tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    model = make_model(seed=0, mode=mode)
    batch = make_batch()
    expected = model(*batch)
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    torch.save(model.state_dict(), tmp_path / "m.pt")
    for state in (
        load_file(str(tmp_path / "m.safetensors")),
        torch.load(tmp_path / "m.pt", weights_only=True),
    ):
        other = make_model(seed=1, mode=mode)
        assert not torch.equal(other(*batch)["pred_logits"], expected["pred_logits"])
        other.load_state_dict(state)
        got = other(*batch)
        for key in ("pred_spans", "pred_logits", "saliency_scores"):
            assert torch.equal(got[key], expected[key])


@variants
def test_eval_mode_is_deterministic(mode: str) -> None:
    model = make_model(mode=mode)
    batch = make_batch()
    a, b = model(*batch), model(*batch)
    assert torch.equal(a["pred_spans"], b["pred_spans"])
    assert torch.equal(a["saliency_scores"], b["saliency_scores"])
    model.train()  # dropout makes training mode random: the check above is meaningful
    assert not torch.equal(model(*batch)["saliency_scores"], a["saliency_scores"])


@variants
@balances
def test_attention_to_balance_tokens(mode: str, n_balance: int) -> None:
    model = make_model(mode=mode, n_balance_tokens=n_balance)
    video, vmask, text, tmask = make_batch()
    att = attention_to_balance_tokens(model, video[1], vmask[1], text[1], tmask[1])
    assert att.shape == (9, 5 + n_balance)
    torch.testing.assert_close(att.sum(-1), torch.ones(9))
    assert torch.all(att[:, 2:5] == 0)  # padded words of sample 1 get no attention
    if n_balance:
        assert torch.all(att[:, 5:] > 0)
    assert not model.training


def test_masked_attention_matches_sdpa_on_real_keys() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 5, 8, generator=g) for _ in range(3))
    key_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    k[0, :, 3:] = float("nan")
    v[0, :, 3:] = float("nan")
    out, weights = masked_attention(q, k, v, key_mask)
    ref0 = F.scaled_dot_product_attention(q[:1], k[:1, :, :3], v[:1, :, :3])
    ref1 = F.scaled_dot_product_attention(q[1:], k[1:], v[1:])
    torch.testing.assert_close(out, torch.cat([ref0, ref1]), atol=1e-5, rtol=1e-5)
    assert torch.all(weights[0, :, :, 3:] == 0)


def test_bad_inputs_name_the_problem() -> None:
    model = make_model()
    video, vmask, text, tmask = make_batch()
    with pytest.raises(DataValidationError, match="video_feats"):
        model(video[..., :5], vmask, text, tmask)
    with pytest.raises(DataValidationError, match="text_mask"):
        model(video, vmask, text, tmask.float())
    empty = vmask.clone()
    empty[2] = False
    with pytest.raises(DataValidationError, match=r"video_mask.*\[2\]"):
        model(video, empty, text, tmask)
    long = torch.zeros(1, 21, 24)
    with pytest.raises(DataValidationError, match="max_clips"):
        model(long, torch.ones(1, 21, dtype=torch.bool), text[:1], tmask[:1])
    with pytest.raises(DataValidationError, match="mode"):
        small_config(mode="recurrent")


def test_ablation_configs_change_one_thing_each() -> None:
    configs = [ablation_config(name, **SMALL) for name in ABLATIONS]
    changed = []
    for a, b in zip(configs[:-1], configs[1:]):
        da, db = dataclasses.asdict(a), dataclasses.asdict(b)
        changed.append({key for key in da if da[key] != db[key]})
    assert changed == [{"n_balance_tokens"}, {"mode"}, {"n_recurrent"}]
    assert configs[-1] == small_config(n_balance_tokens=7, mode="rec", n_recurrent=3)
