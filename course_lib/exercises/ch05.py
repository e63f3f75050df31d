"""Chapter 5 checkers: the recurrent loop of COREBA's Algorithm 1 and the saliency margin loss.

References come from the library (:class:`course_lib.alignment.RecurrentAlignment`,
:func:`course_lib.grounding.saliency_margin_loss`). The input makers build a small seeded CFC
block in eval mode with 1-4 turns and padded batches, and saliency pairs that are already
separated (hinge 0), violated, or marked invalid - including samples with no valid pair at all.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from course_lib.alignment import CFCBlock, RecurrentAlignment
from course_lib.checks import check, trial_rng
from course_lib.grounding import saliency_margin_loss


# ----------------------------------------------------------------------------- 5.1 Algorithm 1
def recurrent_alignment(
    cfc: CFCBlock,
    n_turns: int,
    video: torch.Tensor,
    video_mask: torch.Tensor,
    text: torch.Tensor,
    text_mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: COREBA Algorithm 1 with one weight-shared CFC block (REC_N).

    ``for n in 1..N_r: (F~_vt, F~_tv, F_fine) = CFC(F'_v, F~_t); F'_v += F_fine; F~_t += F~_tv``.

    Args:
        cfc: a CFC block; ``cfc(video, video_mask, text, text_mask)`` returns a
            :class:`~course_lib.alignment.CFCOutput` with fields ``vt``, ``tv``, ``fine``.
        n_turns: number of turns ``N_r`` (>= 1).
        video: F'_v (B, T, d); video_mask (B, T) True = real clip.
        text: F~_t (B, L, d); text_mask (B, L) True = real token.

    Returns:
        The final ``(F'_v, F~_t)``.
    """
    ram = RecurrentAlignment(n_turns, share_weights=True, d=4, n_heads=1, dim_feedforward=1)
    ram.blocks = nn.ModuleList([cfc])  # reuse the given block at every turn
    video, text, _ = ram(video, video_mask, text, text_mask)
    return video, text


def _seeded_cfc(d: int, seed: int) -> CFCBlock:
    """A small CFC block with seeded weights, in eval mode; the caller's RNG is left untouched."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        block = CFCBlock(d, n_heads=2, dim_feedforward=2 * d, dropout=0.1).eval()
    finally:
        torch.random.set_rng_state(state)
    return block


def recurrent_alignment_inputs(seed: int = 0, trial: int = 0) -> tuple:
    """Inputs of trial ``trial`` of Exercise 5.1: a seeded CFC block, 1-4 turns and a padded batch
    (padded positions are 0).

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(cfc, n_turns, video, video_mask, text, text_mask)``, the positional arguments of
        ``recurrent_alignment``.
    """
    rng = trial_rng(seed, trial)
    b, t, length, d = int(rng.integers(1, 4)), int(rng.integers(2, 7)), int(rng.integers(2, 6)), 8
    vmask = np.arange(t)[None] < rng.integers(1, t + 1, size=b)[:, None]
    tmask = np.arange(length)[None] < rng.integers(1, length + 1, size=b)[:, None]
    return (
        _seeded_cfc(d, int(rng.integers(0, 2**31))),  # cfc
        int(rng.integers(1, 5)),  # n_turns
        torch.tensor(rng.normal(size=(b, t, d)) * vmask[..., None], dtype=torch.float32),
        torch.tensor(vmask),
        torch.tensor(rng.normal(size=(b, length, d)) * tmask[..., None], dtype=torch.float32),
        torch.tensor(tmask),
    )


def check_recurrent_alignment(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Exercise 5.1: compare ``fn`` with :func:`recurrent_alignment` on 20 random inputs."""
    with torch.no_grad():
        check(
            fn,
            recurrent_alignment,
            recurrent_alignment_inputs,
            name="Exercise 5.1: recurrent_alignment",
            n=20,
            atol=1e-4,
        )


# ----------------------------------------------------------------------------- 5.2 margin loss
def margin_loss(
    scores: torch.Tensor,
    high_idx: torch.Tensor,
    low_idx: torch.Tensor,
    margin: float,
    valid: torch.Tensor,
) -> torch.Tensor:
    """Reference: saliency margin ranking loss (Moment-DETR Sec. 4.2, COREBA eq. 9).

    ``2 * sum_valid max(0, margin + s[low] - s[high]) / max(1, #valid)``.

    Args:
        scores: (B, T) predicted clip saliency.
        high_idx, low_idx: (B, P) int64 clip indices of each (more salient, less salient) pair.
        margin: the margin (0.2 in QD-DETR).
        valid: (B, P) bool; invalid pairs do not count.

    Returns:
        A scalar tensor (0 when no pair is valid).
    """
    return saliency_margin_loss(scores, high_idx, low_idx, margin, valid)


def margin_loss_inputs(seed: int = 0, trial: int = 0) -> tuple:
    """Inputs of trial ``trial`` of Exercise 5.2: scores with separated, violated and invalid pairs;
    sometimes no valid pair at all.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(scores, high_idx, low_idx, margin, valid)``, the positional arguments of ``margin_loss``.
    """
    rng = trial_rng(seed, trial)
    b, t, p = int(rng.integers(1, 4)), int(rng.integers(3, 9)), int(rng.integers(1, 4))
    scores = rng.normal(size=(b, t))
    high = rng.integers(0, t, size=(b, p))
    low = rng.integers(0, t, size=(b, p))
    valid = rng.random((b, p)) < 0.7
    if rng.random() < 0.3:
        scores[0, high[0, 0]] = scores[0, low[0, 0]] + 5.0  # well separated: hinge exactly 0
    if rng.random() < 0.15:
        valid[:] = False  # no valid pair: the loss is 0, not NaN
    margin = float(rng.choice([0.2, 0.5, 1.0]))
    return (
        torch.tensor(scores, dtype=torch.float32),
        torch.tensor(high, dtype=torch.int64),
        torch.tensor(low, dtype=torch.int64),
        margin,
        torch.tensor(valid),
    )


def check_margin_loss(fn: Callable[..., torch.Tensor]) -> None:
    """Exercise 5.2: compare ``fn`` with :func:`margin_loss` on 40 random inputs."""
    check(fn, margin_loss, margin_loss_inputs, name="Exercise 5.2: margin_loss", n=40, atol=1e-5)
