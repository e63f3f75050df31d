"""The fused attention path (course_lib.alignment.fused_attention) equals the explicit one.

Every equality test runs the same forward twice, fused (weights not asked for) and inside
``explicit_attention()``, and compares outputs within 1e-5, and gradients and the committed
checkpoints' outputs within 1e-5 of each tensor's largest entry (float32; gradients of a whole
model reach ~100 and a trained model's logits ~10, where float32 rounding alone is ~1e-5, and the
kernels differ between CPU instruction sets, e.g. the AVX2 pin of the Makefile); a counting
wrapper around ``F.scaled_dot_product_attention`` checks which path actually ran.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import pytest
import torch
import torch.nn.functional as F

from course_lib.alignment import (
    AttentionBlock,
    CFCBlock,
    CorebaConfig,
    MaskedMultiHeadAttention,
    attention_to_balance_tokens,
    build_model,
    explicit_attention,
    fused_masked_attention,
    masked_attention,
    self_attention,
)
from course_lib.alignment.fused_attention import fused_attention_enabled

TOL = dict(atol=1e-5, rtol=1e-5)
SMALL = dict(d_v=24, d_t=20, d=32, n_heads=4, dim_feedforward=64, max_clips=20, n_recurrent=3)
N_CLIPS, N_WORDS = (9, 6, 3), (5, 1, 3)  # sample 1's query is a single token


class SdpaCalls:
    """Counts calls of ``F.scaled_dot_product_attention``; records ``dropout_p`` and masks."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.dropout: list[float] = []
        self.masks: list[torch.Tensor] = []
        real = F.scaled_dot_product_attention

        def counting(*args, **kwargs):
            self.dropout.append(kwargs.get("dropout_p", 0.0))
            self.masks.append(kwargs.get("attn_mask"))
            return real(*args, **kwargs)

        monkeypatch.setattr(F, "scaled_dot_product_attention", counting)

    @property
    def count(self) -> int:
        return len(self.dropout)


@pytest.fixture
def sdpa(monkeypatch: pytest.MonkeyPatch) -> SdpaCalls:
    return SdpaCalls(monkeypatch)


def lengths_mask(lengths: Sequence[int]) -> torch.Tensor:
    """(B, max length) bool mask, True for the first ``lengths[b]`` positions of row b."""
    return torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]


def padded(lengths: Sequence[int], width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (B, N, width) features, zero at padded positions (the library's convention)."""
    mask = lengths_mask(lengths)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), mask.shape[1], width, generator=g) * mask[..., None]
    return x.requires_grad_(), mask


def flat(value) -> list[torch.Tensor]:
    """Every tensor of a (nested) output: tensor, tuple / list or dict, in a fixed order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for key in sorted(value) for t in flat(value[key])]
    return [t for item in value for t in flat(item)]


def outputs_and_grads(
    forward: Callable[[], object], leaves: Sequence[torch.Tensor]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Outputs of ``forward()`` and the gradients of a fixed random projection of them."""
    outs = flat(forward())
    g = torch.Generator().manual_seed(123)
    loss = sum((o * torch.randn(o.shape, generator=g)).sum() for o in outs)
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    grads = [torch.zeros_like(x) if d is None else d for x, d in zip(leaves, grads)]
    return [o.detach() for o in outs], grads


def assert_paths_agree(
    forward: Callable[[], object], leaves: Sequence[torch.Tensor], sdpa: SdpaCalls
) -> None:
    """Fused and explicit runs of ``forward`` agree (see :func:`assert_outputs_and_grads_close`)."""
    fused = outputs_and_grads(forward, leaves)
    calls = sdpa.count
    assert calls > 0, "the fused path did not run"
    with explicit_attention():
        explicit = outputs_and_grads(forward, leaves)
    assert sdpa.count == calls, "explicit_attention() still called the fused kernel"
    assert_outputs_and_grads_close(fused, explicit)


def assert_outputs_and_grads_close(got: tuple[list, list], want: tuple[list, list]) -> None:
    """Outputs within 1e-5; gradients within 1e-5 relative to their tensor's largest entry."""
    for out, expected in zip(got[0], want[0], strict=True):
        torch.testing.assert_close(out, expected, **TOL)
    for grad, expected in zip(got[1], want[1], strict=True):
        assert_close_at_scale(grad, expected)


def assert_close_at_scale(got: torch.Tensor, want: torch.Tensor) -> None:
    """Within 1e-5 of ``want``'s largest entry (at least 1): float32 rounding grows with it."""
    scale = max(1.0, want.abs().max().item()) if want.numel() else 1.0
    torch.testing.assert_close(got, want, atol=1e-5 * scale, rtol=1e-5)


def small_model(**overrides) -> torch.nn.Module:
    """A seeded tiny model in eval mode with an input-dependent span head."""
    torch.manual_seed(0)
    model = build_model(CorebaConfig(**{**SMALL, **overrides})).eval()
    torch.nn.init.normal_(model.decoder.span_head.layers[-1].weight, std=0.1)
    return model


# ----------------------------------------------------------------------- the attention function
def garbage_qkv(
    key_garbage: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Leaf q, k, v (3, 2, 5, 8) and a key mask; padded keys hold ``key_garbage``, values NaN."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 5, 8, generator=g) for _ in range(3))
    key_mask = lengths_mask([4, 1, 5])
    pad = ~key_mask[:, None, :, None]
    k, v = k.masked_fill(pad, key_garbage), v.masked_fill(pad, float("nan"))
    return q.requires_grad_(), k.requires_grad_(), v.requires_grad_(), key_mask


def test_fused_function_matches_explicit_with_garbage_at_padded_keys(sdpa: SdpaCalls) -> None:
    q, k, v, key_mask = garbage_qkv(1e4)  # huge keys and NaN values must not leak
    fused = outputs_and_grads(lambda: fused_masked_attention(q, k, v, key_mask), [q, k, v])
    explicit = outputs_and_grads(lambda: masked_attention(q, k, v, key_mask)[0], [q, k, v])
    assert sdpa.count == 1
    assert_outputs_and_grads_close(fused, explicit)


def test_nan_at_padded_keys_reaches_neither_output_nor_gradient() -> None:
    """Same output as the explicit path; its query gradient (0 * NaN in dS K) is NaN, ours not."""
    q, k, v, key_mask = garbage_qkv(float("nan"))
    out = fused_masked_attention(q, k, v, key_mask)
    torch.testing.assert_close(out, masked_attention(q, k, v, key_mask)[0], **TOL)
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_rows_without_a_real_key_give_zero_never_nan(sdpa: SdpaCalls) -> None:
    """Explicit softmax: 0/0 = NaN there; fused: exactly 0, with finite gradients."""
    q, k, v = (torch.randn(2, 2, 3, 4, requires_grad=True) for _ in range(3))
    key_mask = torch.tensor([[True, True, False], [False, False, False]])
    out = fused_masked_attention(q, k, v, key_mask)
    # handled here, not left to the kernel (some kernels return NaN for an all-masked row)
    assert sdpa.masks[-1].any(dim=-1).all()
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    torch.testing.assert_close(out[0], masked_attention(q, k, v, key_mask)[0][0], **TOL)
    assert masked_attention(q, k, v, key_mask)[0][1].isnan().all()  # what the explicit path does
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_block_with_an_empty_sample_matches_explicit_forward() -> None:
    """In a block, the padded queries of an all-padded sample are 0 on both paths."""
    torch.manual_seed(0)
    block = AttentionBlock(8, n_heads=2, dim_feedforward=16).eval()
    x, mask = padded([3, 0], 8, seed=1)
    fused, _ = self_attention(block, x, mask, need_weights=False)
    with explicit_attention():
        explicit, _ = self_attention(block, x, mask, need_weights=False)
    torch.testing.assert_close(fused, explicit, **TOL)
    assert torch.equal(fused[1], torch.zeros_like(fused[1]))
    fused.sum().backward()
    assert torch.isfinite(x.grad).all()  # the explicit path's gradient is NaN here


# ------------------------------------------------------------------------------------ modules
def test_multihead_attention_paths_agree(sdpa: SdpaCalls) -> None:
    torch.manual_seed(0)
    mha = MaskedMultiHeadAttention(16, n_heads=4, dropout=0.1).eval()
    query, _ = padded([5, 2, 4], 16, seed=1)
    context, key_mask = padded(N_WORDS, 16, seed=2)
    leaves = [query, context, *mha.parameters()]

    def forward():
        out, weights = mha(query, context, context, key_mask, need_weights=False)
        assert weights is None
        return out

    assert_paths_agree(forward, leaves, sdpa)


@pytest.mark.parametrize("kind", ["cross", "self"])
def test_attention_block_paths_agree(kind: str, sdpa: SdpaCalls) -> None:
    torch.manual_seed(0)
    block = AttentionBlock(16, n_heads=4, dim_feedforward=32).eval()
    x, x_mask = padded([5, 2, 4], 16, seed=1)
    context, c_mask = (x, x_mask) if kind == "self" else padded(N_WORDS, 16, seed=2)
    pos = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    leaves = [x, *block.parameters()] + ([context] if kind == "cross" else [])

    def forward():
        if kind == "self":
            return self_attention(block, x, x_mask, pos, need_weights=False)[0]
        return block(x, x_mask, context, c_mask, x_pos=pos, need_weights=False)[0]

    assert_paths_agree(forward, leaves, sdpa)


@pytest.mark.parametrize("switches", [{}, dict(use_tv_block=False, use_fine_alignment=False)])
def test_cfc_block_paths_agree(switches: dict, sdpa: SdpaCalls) -> None:
    torch.manual_seed(0)
    cfc = CFCBlock(d=16, n_heads=4, dim_feedforward=32, **switches).eval()
    video, vmask = padded(N_CLIPS, 16, seed=1)
    text, tmask = padded(N_WORDS, 16, seed=2)

    def forward():
        out = cfc(video, vmask, text, tmask, need_weights=False)
        assert out.attention == {}
        return out.vt, out.tv, out.fine

    assert_paths_agree(forward, [video, text, *cfc.parameters()], sdpa)


@pytest.mark.parametrize("mode", ["rec", "mod", "baseline"])
@pytest.mark.parametrize("n_balance", [0, 7])
def test_full_model_paths_agree(mode: str, n_balance: int, sdpa: SdpaCalls) -> None:
    model = small_model(mode=mode, n_balance_tokens=n_balance)
    video, vmask = padded(N_CLIPS, SMALL["d_v"], seed=1)
    text, tmask = padded(N_WORDS, SMALL["d_t"], seed=2)
    leaves = [video, text, *model.parameters()]
    assert_paths_agree(lambda: model(video, vmask, text, tmask), leaves, sdpa)


def test_encoder_alone_paths_agree(sdpa: SdpaCalls) -> None:
    """``model.encode`` (training's negative pairs call it) is fused by default."""
    model = small_model()
    video, vmask = padded(N_CLIPS, SMALL["d_v"], seed=1)
    text, tmask = padded(N_WORDS, SMALL["d_t"], seed=2)

    def forward():
        aligned, balanced, _, attentions = model.encode(video, vmask, text, tmask)
        assert attentions == [{}, {}, {}]
        return aligned, balanced

    assert_paths_agree(forward, [video, text, *model.parameters()], sdpa)


# -------------------------------------------------------------------- which path runs when
def count_attention_modules(model: torch.nn.Module, run: Callable[[], object]) -> int:
    """How many times ``run()`` calls a :class:`MaskedMultiHeadAttention`."""
    calls = []
    hooks = [
        m.register_forward_hook(lambda *_: calls.append(1))
        for m in model.modules()
        if isinstance(m, MaskedMultiHeadAttention)
    ]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return len(calls)


@pytest.mark.parametrize("mode, n_attention", [("rec", 3 * 5 + 2 + 2 * 2), ("baseline", 8)])
def test_every_attention_is_fused_when_no_weights_are_asked_for(
    mode: str, n_attention: int, sdpa: SdpaCalls, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit_calls = []
    monkeypatch.setattr(
        "course_lib.alignment.attention.masked_attention",
        lambda *a, **k: explicit_calls.append(1) or masked_attention(*a, **k),
    )
    model = small_model(mode=mode)
    batch = (*padded(N_CLIPS, SMALL["d_v"], 1), *padded(N_WORDS, SMALL["d_t"], 2))
    assert count_attention_modules(model, lambda: model(*batch)) == n_attention
    assert sdpa.count == n_attention and not explicit_calls
    # training mode: attention dropout goes to the kernel; eval mode passed 0
    assert set(sdpa.dropout) == {0.0}
    model.train()(*batch)
    assert set(sdpa.dropout[n_attention:]) == {model.config.dropout}
    assert not explicit_calls


def test_asked_for_weights_are_the_explicit_ones(sdpa: SdpaCalls) -> None:
    torch.manual_seed(0)
    mha = MaskedMultiHeadAttention(16, n_heads=4).eval()
    x, mask = padded([5, 2, 4], 16, seed=1)
    out, weights = mha(x, x, x, mask)  # need_weights=True is the default
    split = [mha._split(proj(x)) for proj in (mha.q_proj, mha.k_proj, mha.v_proj)]
    _, expected = masked_attention(*split, mask)
    assert torch.equal(weights, expected) and sdpa.count == 0
    with explicit_attention():
        assert torch.equal(mha(x, x, x, mask)[0], out)


@pytest.mark.parametrize("mode", ["rec", "baseline"])
def test_model_attention_maps_take_the_explicit_path(mode: str, sdpa: SdpaCalls) -> None:
    model = small_model(mode=mode)
    video, vmask = padded(N_CLIPS, SMALL["d_v"], seed=1)
    text, tmask = padded(N_WORDS, SMALL["d_t"], seed=2)
    # attention_to_balance_tokens (chapter figures) runs the encoder only: no fused call
    maps = attention_to_balance_tokens(model, video[1], vmask[1], text[1], tmask[1])
    assert sdpa.count == 0
    with explicit_attention():
        again = attention_to_balance_tokens(model, video[1], vmask[1], text[1], tmask[1])
    assert torch.equal(maps, again)
    # return_attention=True: the whole pass explicit, bit for bit the explicit model's
    with torch.no_grad():
        out = model(video, vmask, text, tmask, return_attention=True)
        with explicit_attention():
            reference = model(video, vmask, text, tmask)
    assert sdpa.count == 0
    for key in ("pred_spans", "pred_logits", "saliency_scores"):
        assert torch.equal(out[key], reference[key])
    expected_keys = {"vt_coarse"} if mode == "baseline" else {"vt_coarse", "tv", "sa_video"}
    assert expected_keys <= set(out["attention"]["encoder"][0])
    torch.testing.assert_close(out["attention"]["encoder"][0]["vt_coarse"][1].mean(0), maps, **TOL)
    assert len(out["attention"]["decoder"]) == model.config.n_decoder_layers


def test_explicit_attention_nests_resets_and_stays_in_its_thread() -> None:
    seen_in_thread = []
    assert fused_attention_enabled()
    with pytest.raises(RuntimeError), explicit_attention():
        with explicit_attention():
            assert not fused_attention_enabled()
        assert not fused_attention_enabled()  # the inner block restored the outer state
        thread = threading.Thread(target=lambda: seen_in_thread.append(fused_attention_enabled()))
        thread.start()
        thread.join()
        raise RuntimeError
    assert fused_attention_enabled() and seen_in_thread == [True]


# ------------------------------------------------------------------ committed checkpoints
def test_committed_toy_checkpoint_predicts_the_same_on_both_paths(tmp_path) -> None:
    from course_lib.clip.clip_encoder import committed_encoder
    from course_lib.experiments.ch05_coreba_toy import (
        ToyFeatures,
        load_toy_checkpoint,
        toy_train_config,
    )
    from course_lib.toyworld import moment_records
    from course_lib.training.loop import make_loader

    records = moment_records("test", 2, seed=0)  # 2 toy test videos of different lengths
    encoder = committed_encoder("video", device="cpu", progress=False)
    features = ToyFeatures(encoder, records, tmp_path)
    loaded = load_toy_checkpoint(features)
    assert loaded is not None, "data/coreba_toy.* is missing or does not fit the video encoder"
    model = loaded[0]
    loader = make_loader(records, features.video, features.query, toy_train_config(batch_size=8))
    with torch.no_grad():
        for batch in loader:  # the batches model_brief evaluates
            inputs = (batch["video"], batch["video_mask"], batch["query"], batch["query_mask"])
            fused = model(*inputs)
            with explicit_attention():
                explicit = model(*inputs)
            for got, want in zip(flat(fused), flat(explicit), strict=True):
                assert_close_at_scale(got, want)


def test_committed_checkpoint_keeps_its_keys_and_predictions() -> None:
    from safetensors.torch import load_file

    from course_lib.env import data_dir
    from course_lib.experiments.ch05_coreba_toy import load_toy_checkpoint

    stem = "coreba_toy"
    loaded = load_toy_checkpoint(None, stem=data_dir() / stem)
    assert loaded is not None, f"data/{stem}.* does not load"
    model = loaded[0]
    assert set(model.state_dict()) == set(load_file(str(data_dir() / f"{stem}.safetensors")))
    c = model.config
    video, vmask = padded((30, 12, 5), c.d_v, seed=1)
    text, tmask = padded((6, 1, 9), c.d_t, seed=2)
    with torch.no_grad():
        fused = model(video, vmask, text, tmask)
        with explicit_attention():
            explicit = model(video, vmask, text, tmask)
    for got, want in zip(flat(fused), flat(explicit), strict=True):
        assert_close_at_scale(got, want)
