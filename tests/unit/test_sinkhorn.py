"""Tests for course_lib.similarity.sinkhorn: UCoFiA's convention, convergence, invariances,
stability, bank bias."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.errors import DataValidationError
from course_lib.similarity.sinkhorn import (
    apply_video_bias,
    fuse_with_video_bias,
    marginal_error,
    sinkhorn_log,
    video_bias_from_bank,
)

ITERS = (1, 2, 5, 10, 20, 50)


def _sims(seed: int, n: int, m: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, m, generator=g, dtype=torch.float64) * 2 - 1) * scale


def _ucofia_style(sims: torch.Tensor, tau: float, n_iters: int) -> tuple[torch.Tensor, ...]:
    """Straightforward re-derivation of UCoFiA's sinkhorn_knopp (float64, plain exp, no logs).

    K = exp(S / tau - max); b = 1 / column sums of K; then n_iters times a = 1 / (K b),
    b = 1 / (a^T K); returns (log_softmax(log a), log_softmax(log b)).
    """
    z = sims.double() / tau
    k = torch.exp(z - z.max())
    b = 1.0 / k.sum(0)
    for _ in range(n_iters):
        a = 1.0 / (k @ b)
        b = 1.0 / (a @ k)
    return torch.log_softmax(a.log(), 0), torch.log_softmax(b.log(), 0)


def test_ucofia_start_by_hand() -> None:
    # K = [[1, 2], [3, 4]]: b = 1 / (4, 6); a = 1 / (K b) = (12/7, 12/17);
    # b = 1 / (a^T K) = (119/456, 119/744) -> softmax-normalised b = (744, 456) / 1200
    sims = torch.log(torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64))
    expected = torch.log(torch.tensor([0.62, 0.38], dtype=torch.float64))
    torch.testing.assert_close(video_bias_from_bank(sims, 1.0, n_iters=1), expected)
    # the plain start b = 1 (the option) gives a = (1/3, 1/7), b = (21/16, 21/26) -> (13, 8) / 21
    plain = torch.log(torch.tensor([13 / 21, 8 / 21], dtype=torch.float64))
    torch.testing.assert_close(video_bias_from_bank(sims, 1.0, 1, column_init=False), plain)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tau", [1.0, 0.05])
def test_matches_ucofia_at_four_iterations(seed: int, tau: float) -> None:
    # UCoFiA's setting: logits (scale 100 x cosine) at tau = 1, 4 iterations; and a small tau
    n, m = 9 + seed, 5 + 2 * seed
    sims = _sims(seed, n, m, scale=0.3) * (100.0 if tau == 1.0 else 1.0)
    text_bias, video_bias = _ucofia_style(sims, tau, 4)
    res = sinkhorn_log(sims, tau=tau)  # defaults: UCoFiA's 4 iterations, column start
    torch.testing.assert_close(torch.log_softmax(res.log_row, 0), text_bias, atol=1e-10, rtol=0)
    torch.testing.assert_close(video_bias_from_bank(sims, tau), video_bias, atol=1e-10, rtol=0)
    # the plain start is a different (half-step later) iterate
    assert (video_bias_from_bank(sims, tau, column_init=False) - video_bias).abs().max() > 1e-6


@pytest.mark.parametrize("column_init", [True, False])
def test_converges_to_the_ucofia_fixed_point(column_init: bool) -> None:
    sims = _sims(11, 8, 6)
    _, video_bias = _ucofia_style(sims, 0.5, 2000)
    res = sinkhorn_log(sims, 0.5, n_iters=2000, return_plan=True, column_init=column_init)
    torch.testing.assert_close(torch.log_softmax(res.log_col, 0), video_bias, atol=1e-9, rtol=0)
    row_err, col_err = marginal_error(res.log_plan)
    assert row_err < 1e-9 and col_err < 1e-9
    # the plan is diag(a) K diag(b) with the uniform marginals: rows 1/N, columns 1/M
    rows = torch.logsumexp(res.log_plan, 1)
    torch.testing.assert_close(rows, torch.full_like(rows, -math.log(8)), atol=1e-9, rtol=0)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 12),
    m=st.integers(2, 12),
    tau=st.floats(0.1, 1.0),
)
def test_marginals_converge_to_uniform(seed: int, n: int, m: int, tau: float) -> None:
    sims = _sims(seed, n, m)
    errors = [marginal_error(sinkhorn_log(sims, tau, k, return_plan=True).log_plan) for k in ITERS]
    rows = [e[0] for e in errors]
    # the column update comes last: columns are exact after every iteration
    assert max(e[1] for e in errors) < 1e-9
    # row error (L1, at most 2): non-increasing (tiny slack for rounding), small after 50 iterations
    assert all(b <= a + 1e-9 for a, b in zip(rows, rows[1:], strict=False))
    assert rows[-1] < 1e-2


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), shift=st.floats(-50, 50), tau=st.floats(0.05, 2.0))
def test_invariant_to_constant_shift(seed: int, shift: float, tau: float) -> None:
    sims = _sims(seed, 7, 5)
    a = sinkhorn_log(sims, tau, 10, return_plan=True)
    b = sinkhorn_log(sims + shift, tau, 10, return_plan=True)
    torch.testing.assert_close(a.log_plan, b.log_plan, atol=1e-8, rtol=0)
    # the column start absorbs the factor exp(shift / tau) into b; a is unchanged
    torch.testing.assert_close(a.log_row, b.log_row, atol=1e-8, rtol=0)
    torch.testing.assert_close(a.log_col, b.log_col + shift / tau, atol=1e-8, rtol=0)
    torch.testing.assert_close(
        video_bias_from_bank(sims, tau), video_bias_from_bank(sims + shift, tau)
    )


def test_video_bias_and_per_text_offsets() -> None:
    # a text similar to everything (row offset) moves UCoFiA's bias after 4 iterations (its
    # column start sees the offset), but not the converged bias; the plain start (the option)
    # absorbs row offsets in its first row update, so it ignores them at any iteration count
    sims = _sims(1, 9, 6)
    offsets = torch.linspace(-3, 3, 9, dtype=torch.float64)[:, None]
    moved = video_bias_from_bank(sims, 0.1) - video_bias_from_bank(sims + offsets, 0.1)
    assert moved.abs().max() > 1e-3
    torch.testing.assert_close(
        video_bias_from_bank(sims, 0.1, n_iters=3000),
        video_bias_from_bank(sims + offsets, 0.1, n_iters=3000),
        atol=1e-6,
        rtol=0,
    )
    torch.testing.assert_close(
        video_bias_from_bank(sims, 0.1, column_init=False),
        video_bias_from_bank(sims + offsets, 0.1, column_init=False),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1.0, 100.0, 1000.0])
def test_stable_at_small_temperature(dtype: torch.dtype, scale: float) -> None:
    sims = _sims(2, 40, 30, scale).to(dtype)
    res = sinkhorn_log(sims, tau=0.01, n_iters=20, return_plan=True)
    for t in res:
        assert torch.isfinite(t).all()
    row_err, col_err = marginal_error(res.log_plan)
    # float32 log error ~ 6e-8 * max|S / tau| (= 6e-3 at scale 1000): loose bound there
    col_tol = 1e-8 if dtype == torch.float64 else 1e-7 * scale * 100
    assert col_err < col_tol and row_err <= 2.0  # L1 error of a distribution is at most 2


def test_hub_video_is_down_weighted() -> None:
    sims = _sims(3, 50, 8) * 0.1
    sims[:, 2] += 0.5  # video 2 is a hub: similar to every text
    bias = video_bias_from_bank(sims, tau=0.05)
    assert int(bias.argmin()) == 2
    fixed = apply_video_bias(sims, bias, tau=0.05)
    assert (fixed.argmax(1) == 2).float().mean() < (sims.argmax(1) == 2).float().mean()


def test_fuse_with_video_bias_averages_levels() -> None:
    test = {"video": _sims(4, 5, 6), "frame": _sims(5, 5, 6)}
    bank = {"video": _sims(6, 20, 6), "frame": _sims(7, 20, 6)}
    fused = fuse_with_video_bias(test, bank, tau=0.1)
    manual = (
        sum(apply_video_bias(test[k], video_bias_from_bank(bank[k], 0.1), 0.1) for k in test) / 2
    )
    torch.testing.assert_close(fused, manual)
    with pytest.raises(DataValidationError, match="granularities"):
        fuse_with_video_bias(test, {"video": bank["video"]})


@pytest.mark.parametrize(
    "sims, tau, iters, match",
    [
        (torch.zeros(3), 1.0, 4, "2-D"),
        (torch.zeros(0, 3), 1.0, 4, "empty"),
        (torch.tensor([[0.0, float("nan")]]), 1.0, 4, "NaN"),
        (torch.zeros(2, 2), 0.0, 4, "tau"),
        (torch.zeros(2, 2), 1.0, 0, "n_iters"),
    ],
)
def test_bad_input_raises(sims: torch.Tensor, tau: float, iters: int, match: str) -> None:
    with pytest.raises(DataValidationError, match=match):
        sinkhorn_log(sims, tau, iters)


def test_apply_video_bias_shape_mismatch() -> None:
    with pytest.raises(DataValidationError, match="bias"):
        apply_video_bias(torch.zeros(2, 3), torch.zeros(4))


@pytest.mark.slow
def test_10k_by_10k_float32_is_finite() -> None:
    # 10,000 x 10,000 float32 (400 MB) at tau = 0.01. ONE iteration (the column start and one
    # row/column pair: three streamed log-sum-exp passes, ~1.5-4 s each on one thread of a shared
    # CPU) keeps the test short; its speed is measured by benchmarks/bench_similarity.py, not here.
    g = torch.Generator().manual_seed(0)
    sims = torch.randn(10_000, 10_000, generator=g)
    res = sinkhorn_log(sims, tau=0.01, n_iters=1)
    assert torch.isfinite(res.log_row).all() and torch.isfinite(res.log_col).all()
    # exact column marginals: logsumexp_i(z_ij + log_row_i) + log_col_j = log(1/M)
    col = torch.logsumexp(sims[:, :500] / 0.01 + res.log_row[:, None], 0) + res.log_col[:500]
    torch.testing.assert_close(
        col, torch.full_like(col, -torch.log(torch.tensor(1e4)).item()), atol=1e-3, rtol=0
    )
