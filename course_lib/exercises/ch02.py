"""Chapter 2 checkers: ISA aggregation, log-space Sinkhorn-Knopp, R@K and median rank."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from course_lib.checks import check, trial_rng
from course_lib.similarity import isa_aggregate as _isa_aggregate
from course_lib.similarity import retrieval_metrics
from course_lib.similarity import sinkhorn_log as _sinkhorn_log


# ----------------------------------------------------------------------------- Sinkhorn
def sinkhorn_log(sims: torch.Tensor, tau: float, n_iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: log row and column scalings of ``exp(sims / tau)`` after ``n_iters`` iterations.

    As UCoFiA's ``sinkhorn_knopp``: starts with a column normalisation (``log a = 0``,
    ``log b = -log M - logsumexp_i(sims_ij / tau)``), then each iteration updates the rows, then
    the columns, towards the uniform marginals ``1/N`` (rows) and ``1/M`` (columns).

    Args:
        sims: ``(N, M)`` similarities.
        tau: temperature (> 0).
        n_iters: number of (row, column) update pairs after the column normalisation.

    Returns:
        ``(log_a (N,), log_b (M,))``.
    """
    result = _sinkhorn_log(sims, tau=tau, n_iters=n_iters)
    return result.log_row, result.log_col


def sinkhorn_log_inputs(seed: int = 0, trial: int = 0) -> tuple[torch.Tensor, float, int]:
    """Inputs of trial ``trial`` of Exercise 2.2: cosine-like similarities with N != M; tiny
    temperatures make a naive exp overflow.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(sims, tau, n_iters)``, the positional arguments of ``sinkhorn_log``.
    """
    rng = trial_rng(seed, trial)
    n, m = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    m = m + 1 if m == n else m  # rectangular, so swapped row/column roles show
    sims = torch.tensor(rng.uniform(-1.0, 1.0, size=(n, m)), dtype=torch.float64)
    tau = float(rng.choice([0.001, 0.01, 0.1, 1.0]))  # exp(1 / 0.001) overflows even float64
    return sims, tau, int(rng.integers(1, 6))


def check_sinkhorn_log(fn: Callable[[torch.Tensor, float, int], tuple]) -> None:
    """Exercise 2.2: compare ``fn`` with :func:`sinkhorn_log` on 20 random inputs."""
    check(
        fn,
        sinkhorn_log,
        sinkhorn_log_inputs,
        name="Exercise 2.2: sinkhorn_log",
        atol=1e-6,
        rtol=1e-6,
    )


# ----------------------------------------------------------------------------- ISA
def isa_aggregate(
    sims: torch.Tensor, W: torch.Tensor, tau: float, mask: torch.Tensor | None
) -> torch.Tensor:
    """Reference: ISA ``sum_i a_i s_i`` with ``a = softmax(softmax(s / tau) W / tau)``.

    Masked units (mask False) get ``-inf`` before both softmaxes, so their weight is 0 and their
    (arbitrary) similarity never reaches the result.

    Args:
        sims: ``(..., n)`` similarities.
        W: ``(n, n)`` interaction matrix.
        tau: temperature of both softmaxes.
        mask: ``(..., n)`` bool (True = valid unit) or None.

    Returns:
        ``(...)`` aggregated similarities.
    """
    return _isa_aggregate(sims, W, tau, mask)


def isa_aggregate_inputs(
    seed: int = 0, trial: int = 0
) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor | None]:
    """Inputs of trial ``trial`` of Exercise 2.1: batched similarities, a random (not identity) W,
    padded units holding large decoys.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(sims, W, tau, mask)``, the positional arguments of ``isa_aggregate`` (``mask`` may be
        None).
    """
    rng = trial_rng(seed, trial)
    n = int(rng.integers(2, 9))
    batch = tuple(int(b) for b in rng.integers(1, 4, size=int(rng.integers(1, 3))))
    sims = rng.uniform(-1.0, 1.0, size=(*batch, n))
    weight = torch.tensor(rng.normal(size=(n, n)), dtype=torch.float64)
    tau = float(rng.choice([0.01, 0.1, 1.0]))
    if rng.random() < 0.25:
        return torch.tensor(sims, dtype=torch.float64), weight, tau, None
    # random padding, at least one valid unit per vector; padded units look like perfect matches
    mask = rng.random(size=sims.shape) < 0.6
    mask[..., 0] |= ~mask.any(axis=-1)
    sims = np.where(mask, sims, 5.0)
    return torch.tensor(sims, dtype=torch.float64), weight, tau, torch.tensor(mask)


def check_isa_aggregate(fn: Callable[..., torch.Tensor]) -> None:
    """Exercise 2.1: compare ``fn`` with :func:`isa_aggregate` on 20 random inputs."""
    check(fn, isa_aggregate, isa_aggregate_inputs, name="Exercise 2.1: isa_aggregate", atol=1e-6)


# ----------------------------------------------------------------------------- R@K, MedR
def recall_and_median_rank(sims: torch.Tensor) -> dict[str, float]:
    """Reference: text-to-video ``R1, R5, R10`` (percent) and ``MedR`` of a square matrix.

    Text ``i`` matches video ``i``; the rank of text ``i`` is ``1 +`` the number of videos that
    score higher than video ``i`` in row ``i``.

    Args:
        sims: ``(N, N)`` similarities without ties.

    Returns:
        ``{"R1": float, "R5": float, "R10": float, "MedR": float}``.
    """
    t2v = retrieval_metrics(sims)["t2v"]
    return {k: t2v[k] for k in ("R1", "R5", "R10", "MedR")}


def recall_and_median_rank_inputs(seed: int = 0, trial: int = 0) -> tuple[torch.Tensor]:
    """Inputs of trial ``trial`` of Exercise 2.3: square similarities with a boosted diagonal (so
    R@1 is not always 0), no ties.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(sims,)``, the positional argument of ``recall_and_median_rank``.
    """
    rng = trial_rng(seed, trial)
    n = int(rng.integers(2, 40))
    sims = rng.normal(size=(n, n)) + float(rng.uniform(0.0, 3.0)) * np.eye(n)
    return (torch.tensor(sims, dtype=torch.float32),)


def check_recall_and_median_rank(fn: Callable[[torch.Tensor], dict]) -> None:
    """Exercise 2.3: compare ``fn`` with :func:`recall_and_median_rank` on 30 random matrices."""
    check(
        fn,
        recall_and_median_rank,
        recall_and_median_rank_inputs,
        name="Exercise 2.3: recall_and_median_rank",
        n=30,
    )
