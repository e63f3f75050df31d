"""Chapter 5 checkers: the recurrent loop of COREBA's Algorithm 1, the saliency head (eq. 7) and
the saliency margin loss.

References come from the library (:class:`course_lib.alignment.RecurrentAlignment`, the score of
:class:`course_lib.alignment.heads.SaliencyEncoder`, :func:`course_lib.grounding.saliency_margin_loss`).
The input makers build a small seeded CFC block in eval mode with 1-4 turns and padded batches;
saliency-encoder outputs with padded clips full of garbage, batches of one and videos of a single
clip, and seeded projections ``w_f``, ``w_s``; and saliency pairs that are already separated
(hinge 0), violated, or marked invalid - including samples with no valid pair at all.
"""

from __future__ import annotations

import math
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


# ----------------------------------------------------------------------------- 5.2 saliency head
def saliency_scores(
    encoded: torch.Tensor, video_mask: torch.Tensor, w_f: nn.Linear, w_s: nn.Linear
) -> torch.Tensor:
    """Reference: the saliency score of every clip (COREBA eq. 7, QD-DETR's saliency predictor).

    ``S_i = (F^_i w_f) . (t^_s w_s) / sqrt(d)`` for every real clip ``i``, 0 at padded clips: the
    arithmetic of step 3 of :meth:`course_lib.alignment.heads.SaliencyEncoder.forward` (the
    library divides by ``sqrt(d)``, as QD-DETR's code; the paper prints ``d``).

    Args:
        encoded: (B, 1 + T, d) output of the saliency encoder over ``[t_s ; F_v]``: position 0 is
            the encoded saliency token ``t^_s``, positions 1..T the encoded clips ``F^``
            (padded clips may hold anything).
        video_mask: (B, T) bool, True = real clip.
        w_f: ``nn.Linear(d, d)`` applied to the clips.
        w_s: ``nn.Linear(d, d)`` applied to the saliency token.

    Returns:
        (B, T) scores, 0 at padded clips.
    """
    token, clips = encoded[:, 0], encoded[:, 1:]
    scores = (w_f(clips) * w_s(token)[:, None]).sum(-1) / math.sqrt(encoded.shape[-1])
    return scores.masked_fill(~video_mask, 0.0)


def _seeded_linear(rng: np.random.Generator, d: int) -> nn.Linear:
    """An ``nn.Linear(d, d)`` whose weights and bias come from ``rng`` (torch's RNG untouched)."""
    layer = nn.utils.skip_init(nn.Linear, d, d)  # no default init: nothing drawn from torch
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(rng.normal(size=(d, d)) / math.sqrt(d)))
        layer.bias.copy_(torch.tensor(rng.normal(size=d) * 0.5))
    return layer


def saliency_scores_inputs(seed: int = 0, trial: int = 0) -> tuple:
    """Inputs of trial ``trial`` of Exercise 5.2: saliency-encoder outputs of 1-3 videos of 1-7
    clips, width 4, 8 or 16, padded clips full of large garbage values, and two different seeded
    projections. About a third of the trials are a batch of one, a quarter have a video of a
    single clip, and some have no padding at all.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(encoded, video_mask, w_f, w_s)``, the positional arguments of ``saliency_scores``.
    """
    rng = trial_rng(seed, trial)
    b = 1 if rng.random() < 1 / 3 else int(rng.integers(2, 4))
    t = 1 if rng.random() < 1 / 4 else int(rng.integers(2, 8))
    d = int(rng.choice([4, 8, 16]))
    # 1. real clips per video: at least one; the first video padded in most trials
    n_real = rng.integers(1, t + 1, size=b)
    if t > 1 and rng.random() < 0.6:
        n_real[0] = rng.integers(1, t)
    elif rng.random() < 0.5:
        n_real[:] = t  # no padding at all
    mask = np.arange(t)[None] < n_real[:, None]
    # 2. encoder output [t_s ; clips]; padded clips hold garbage that a masked answer ignores
    encoded = rng.normal(size=(b, 1 + t, d))
    garbage = rng.normal(size=(b, t, d)) * 50.0 + 20.0
    encoded[:, 1:] = np.where(mask[..., None], encoded[:, 1:], garbage)
    return (
        torch.tensor(encoded, dtype=torch.float32),
        torch.tensor(mask),
        _seeded_linear(rng, d),  # w_f
        _seeded_linear(rng, d),  # w_s
    )


def check_saliency_scores(fn: Callable[..., torch.Tensor]) -> None:
    """Exercise 5.2: compare ``fn`` with :func:`saliency_scores` on 30 random inputs."""
    with torch.no_grad():
        check(
            fn,
            saliency_scores,
            saliency_scores_inputs,
            name="Exercise 5.2: saliency_scores",
            n=30,
            atol=1e-5,
        )


# ----------------------------------------------------------------------------- 5.3 margin loss
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
    """Inputs of trial ``trial`` of Exercise 5.3: scores with separated, violated and invalid pairs;
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
    """Exercise 5.3: compare ``fn`` with :func:`margin_loss` on 40 random inputs."""
    check(fn, margin_loss, margin_loss_inputs, name="Exercise 5.3: margin_loss", n=40, atol=1e-5)
