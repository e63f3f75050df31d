"""Chapter 0 checkers: the warm-up exercise (cosine similarity matrix)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from course_lib.checks import check, trial_rng


def cosine_similarity_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Reference: all-pairs cosine similarity.

    Args:
        a: (N, D) float tensor.
        b: (M, D) float tensor.

    Returns:
        (N, M) tensor with ``out[i, j] = <a_i, b_j> / (|a_i| |b_j|)``.
    """
    # normalise rows (eps guards all-zero rows), then one matrix product
    a_unit = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b_unit = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return a_unit @ b_unit.T


def cosine_similarity_matrix_inputs(
    seed: int = 0, trial: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs of trial ``trial`` of Exercise 0.1: two float32 matrices with different row counts
    (so a transpose bug shows).

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(a, b)``, the positional arguments of ``cosine_similarity_matrix``.
    """
    rng = trial_rng(seed, trial)
    n, d = int(rng.integers(2, 7)), int(rng.integers(2, 9))
    m = n + int(rng.integers(1, 4))
    scale = float(rng.choice([0.01, 1.0, 100.0]))  # the answer must not depend on vector length
    a = torch.tensor(rng.normal(size=(n, d)) * scale, dtype=torch.float32)
    b = torch.tensor(rng.normal(size=(m, d)), dtype=torch.float32)
    return a, b


def check_cosine_similarity_matrix(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> None:
    """Exercise 0.1: compare ``fn`` with :func:`cosine_similarity_matrix` on 20 random inputs."""
    check(
        fn,
        cosine_similarity_matrix,
        cosine_similarity_matrix_inputs,
        name="Exercise 0.1: cosine_similarity_matrix",
        atol=1e-5,
    )
