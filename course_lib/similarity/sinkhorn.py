"""Sinkhorn-Knopp normalisation of a (texts x videos) similarity matrix, in log space.

Some videos ("hubs") are similar to almost every text and steal the top rank; others are never
retrieved. UCoFiA (Sec. 3 "Normalization", following DSL / QB-Norm-style inference) fixes this by
scaling the kernel ``K = exp(S / tau)`` to a doubly-stochastic-like matrix

    P = diag(a) K diag(b),   rows of P sum to 1/N,  columns of P sum to 1/M,

with the Sinkhorn-Knopp iterations ``a <- r / (K b)``, ``b <- c / (K^T a)``. A video that is
over-represented gets a small ``b_j``. At evaluation UCoFiA computes ``log b`` on a *query bank*
(training texts x test videos) and adds it to the test similarities of every granularity before
averaging them.

Default: UCoFiA's ``sinkhorn_knopp`` (Ziyang412/UCoFiA, ``eval_t2v/main_ucofia.py`` and
``modules/modeling_ucofia.py``) at its settings: the kernel is ``exp(S)`` of the logits
(``tau = 1``), the iteration *starts with a column normalisation* ``b = 1 / (K^T 1)``, then runs
``n_iters = 4`` (row, column) update pairs, and the per-video bias is ``log_softmax(log b)``.
UCoFiA targets marginals 1 instead of ``1/N`` and ``1/M``; that scales ``a`` and ``b`` by
constants, which the log-softmax removes, so :func:`video_bias_from_bank` equals UCoFiA's video
bias. ``column_init=False`` (explicit option) starts from ``b = 1`` instead, the plain
Sinkhorn-Knopp start without UCoFiA's first column normalisation.

Everything here runs in log space (``log a = log r - logsumexp(S/tau + log b)``), so nothing
overflows or underflows even at ``tau = 0.01`` with large similarities (UCoFiA subtracts the
matrix maximum before ``exp`` instead). Work is done in the input dtype (float16/bfloat16 are
promoted to float32). In float32 the absolute error of the log quantities is about
``1e-7 * max|S / tau|``; pass float64 when you need tight marginals at very small temperatures.
``S / tau`` is never materialised: row/column log-sum-exps stream over row blocks, so the extra
memory is one ``block_rows x M`` buffer rather than another ``N x M`` matrix.
Note: these in-place block kernels are for evaluation; they do not support autograd.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import torch

from course_lib.errors import DataValidationError


class SinkhornResult(NamedTuple):
    """Output of :func:`sinkhorn_log`.

    Attributes:
        log_row: ``(N,)`` log row scaling ``log a``.
        log_col: ``(M,)`` log column scaling ``log b``.
        log_plan: ``(N, M)`` log of ``P = diag(a) exp(S / tau) diag(b)``, or None when not asked.
    """

    log_row: torch.Tensor
    log_col: torch.Tensor
    log_plan: torch.Tensor | None


def _checked(sims: torch.Tensor, tau: float, name: str) -> torch.Tensor:
    """Validate ``sims`` and ``tau``; return ``sims`` as float32 or float64 (no copy if already)."""
    if not isinstance(sims, torch.Tensor) or sims.ndim != 2:
        shape = tuple(sims.shape) if isinstance(sims, torch.Tensor) else type(sims).__name__
        raise DataValidationError(f"{name} must be a 2-D (texts x videos) tensor, got {shape}")
    if sims.shape[0] == 0 or sims.shape[1] == 0:
        raise DataValidationError(f"{name} is empty (shape {tuple(sims.shape)})")
    if not tau > 0:
        raise DataValidationError(f"temperature tau must be > 0, got {tau}")
    if not bool(torch.isfinite(sims).all()):
        raise DataValidationError(f"{name} contains NaN or inf values")
    return sims if sims.dtype in (torch.float32, torch.float64) else sims.float()


def _lse_rows(
    sims: torch.Tensor, inv_tau: float, log_col: torch.Tensor, block: int
) -> torch.Tensor:
    """``logsumexp_j (sims_ij / tau + log_col_j)`` for every row i, in row blocks."""
    n, m = sims.shape
    out = torch.empty(n, dtype=sims.dtype, device=sims.device)
    buf = torch.empty(min(block, n), m, dtype=sims.dtype, device=sims.device)
    for i in range(0, n, block):
        b = buf[: min(block, n - i)]
        torch.add(log_col, sims[i : i + block], alpha=inv_tau, out=b)  # z_ij + log b_j
        mx = b.amax(dim=1, keepdim=True)  # subtract the row max before exp: no overflow
        out[i : i + block] = b.sub_(mx).exp_().sum(dim=1).log_() + mx[:, 0]
    return out


def _lse_cols(
    sims: torch.Tensor, inv_tau: float, log_row: torch.Tensor, block: int
) -> torch.Tensor:
    """``logsumexp_i (sims_ij / tau + log_row_i)`` for every column j, streamed over row blocks."""
    n, m = sims.shape
    mx = torch.full((m,), float("-inf"), dtype=sims.dtype, device=sims.device)
    acc = torch.zeros(m, dtype=sims.dtype, device=sims.device)
    buf = torch.empty(min(block, n), m, dtype=sims.dtype, device=sims.device)
    for i in range(0, n, block):
        b = buf[: min(block, n - i)]
        torch.add(log_row[i : i + block, None], sims[i : i + block], alpha=inv_tau, out=b)
        new = torch.maximum(mx, b.amax(dim=0))  # running column max
        acc.mul_(torch.exp(mx - new))  # rescale the running sum to the new max
        acc.add_(b.sub_(new).exp_().sum(dim=0))
        mx = new
    return acc.log_() + mx


def sinkhorn_log(
    sims: torch.Tensor,
    tau: float = 1.0,
    n_iters: int = 4,
    return_plan: bool = False,
    block_rows: int = 256,
    column_init: bool = True,
) -> SinkhornResult:
    """Log-space Sinkhorn-Knopp scaling of ``K = exp(sims / tau)`` to uniform marginals.

    Default (UCoFiA ``sinkhorn_knopp``): a column normalisation first (``log a = 0``,
    ``log b_j = -log M - logsumexp_i(S_ij / tau)``), then ``n_iters`` pairs of a row update and a
    column update. The column update comes last, so the column sums are exact (``1/M``) after
    any number of iterations and the row sums approach ``1/N``.

    Args:
        sims: ``(N, M)`` similarity matrix (texts x videos), finite.
        tau: temperature; the kernel is ``exp(sims / tau)`` (UCoFiA: 1 on its logits).
        n_iters: number of (row, column) update pairs after the start (UCoFiA: 4).
        return_plan: also return the ``(N, M)`` log transport plan.
        block_rows: rows processed at once in the log-sum-exps (memory bound).
        column_init: start with UCoFiA's column normalisation (default); False starts from
            ``log b = 0`` (explicit option).

    Returns:
        A :class:`SinkhornResult` (``log_row``, ``log_col``, ``log_plan`` or None).

    Raises:
        DataValidationError: not 2-D, empty, non-finite, ``tau <= 0`` or ``n_iters < 1``.
    """
    if n_iters < 1:
        raise DataValidationError(f"n_iters must be >= 1, got {n_iters}")
    sims = _checked(sims, tau, "sims")
    n, m = sims.shape
    inv_tau = 1.0 / tau  # the log kernel z = sims / tau is formed block by block, never in full
    log_r, log_c = -math.log(n), -math.log(m)  # uniform target marginals
    log_row = torch.zeros(n, dtype=sims.dtype, device=sims.device)
    log_col = torch.zeros(m, dtype=sims.dtype, device=sims.device)
    if column_init:
        # start: b_j = c_j / sum_i K_ij (columns of K normalised, a = 1)
        log_col = log_c - _lse_cols(sims, inv_tau, log_row, block_rows)
    for _ in range(n_iters):
        # rows: a_i = r_i / sum_j K_ij b_j
        log_row = log_r - _lse_rows(sims, inv_tau, log_col, block_rows)
        # columns: b_j = c_j / sum_i a_i K_ij
        log_col = log_c - _lse_cols(sims, inv_tau, log_row, block_rows)
    plan = sims * inv_tau + log_row[:, None] + log_col[None, :] if return_plan else None
    return SinkhornResult(log_row, log_col, plan)


def marginal_error(log_plan: torch.Tensor) -> tuple[float, float]:
    """L1 distance of a plan's row and column sums from the uniform marginals.

    Args:
        log_plan: ``(N, M)`` log transport plan (e.g. ``sinkhorn_log(...).log_plan``).

    Returns:
        ``(row_error, col_error)``: ``sum_i |P_i. - 1/N|`` and ``sum_j |P_.j - 1/M|``.
    """
    n, m = log_plan.shape
    rows = torch.logsumexp(log_plan, dim=1).exp()
    cols = torch.logsumexp(log_plan, dim=0).exp()
    return float((rows - 1.0 / n).abs().sum()), float((cols - 1.0 / m).abs().sum())


def video_bias_from_bank(
    bank_sims: torch.Tensor, tau: float = 1.0, n_iters: int = 4, column_init: bool = True
) -> torch.Tensor:
    """Per-video log bias from a query bank (UCoFiA ``sinkhorn_knopp``'s second output).

    Runs :func:`sinkhorn_log` on ``bank_sims`` (bank texts, e.g. the training captions, x test
    videos) and returns ``log b`` normalised with a log-softmax, as UCoFiA does (a constant shift
    that does not change any ranking; it makes biases of different granularities comparable).
    At ``tau = 1`` on logits and the defaults it equals UCoFiA's video bias.

    Args:
        bank_sims: ``(N_bank, V)`` similarities of bank texts to the videos being searched.
        tau: temperature of the kernel (``1/logit_scale`` for cosine similarities; use 1.0 when
            ``bank_sims`` are already logits, as in UCoFiA).
        n_iters: Sinkhorn iterations (4 in UCoFiA).
        column_init: start with UCoFiA's column normalisation (see :func:`sinkhorn_log`).

    Returns:
        ``(V,)`` log bias; add it with :func:`apply_video_bias`.
    """
    log_col = sinkhorn_log(bank_sims, tau=tau, n_iters=n_iters, column_init=column_init).log_col
    return torch.log_softmax(log_col, dim=0)


def apply_video_bias(sims: torch.Tensor, bias: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Add a per-video log bias to a ``(Q, V)`` similarity matrix: ``sims + tau * bias``.

    ``bias`` lives in log-kernel units (``sims / tau``); multiplying by ``tau`` keeps the result
    in the units of ``sims``. Ranking by the result equals ranking by ``sims / tau + bias``.

    Args:
        sims: ``(Q, V)`` similarities of the test texts.
        bias: ``(V,)`` from :func:`video_bias_from_bank` (same ``tau``).
        tau: the temperature used to compute ``bias``.

    Returns:
        ``(Q, V)`` biased similarities.
    """
    if sims.ndim != 2 or bias.ndim != 1 or bias.shape[0] != sims.shape[1]:
        raise DataValidationError(
            f"apply_video_bias: bias of shape {tuple(bias.shape)} does not match the video "
            f"axis of sims {tuple(sims.shape)}"
        )
    return sims + tau * bias.to(sims.dtype)[None, :]


def fuse_with_video_bias(
    test_sims: Mapping[str, torch.Tensor],
    bank_sims: Mapping[str, torch.Tensor],
    tau: float = 1.0,
    n_iters: int = 4,
) -> torch.Tensor:
    """UCoFiA fusion: normalise every granularity with its own bank bias, then average.

    Args:
        test_sims: granularity name -> ``(Q, V)`` test similarities.
        bank_sims: granularity name -> ``(N_bank, V)`` bank similarities (same keys).
        tau: temperature for every granularity.
        n_iters: Sinkhorn iterations.

    Returns:
        ``(Q, V)`` mean of the biased granularity similarities.
    """
    if set(test_sims) != set(bank_sims) or not test_sims:
        raise DataValidationError(
            f"granularities differ: test {sorted(test_sims)} vs bank {sorted(bank_sims)}"
        )
    fused = [
        apply_video_bias(test_sims[k], video_bias_from_bank(bank_sims[k], tau, n_iters), tau)
        for k in sorted(test_sims)
    ]
    return torch.stack(fused).mean(0)
