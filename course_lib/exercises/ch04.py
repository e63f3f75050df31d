"""Chapter 4 checkers: balance-token cross-attention (COREBA eq. 1-2) and one CFC pass (eq. 2-5).

References come from the library (:mod:`course_lib.alignment`). The input makers draw batches
with padded words whose features hold large garbage values (a correct mask ignores them),
queries without any real word (only the balance tokens can take their attention), zero balance
tokens, and small seeded sub-blocks in eval mode (so the forward pass is deterministic).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from course_lib.alignment import (
    AttentionBlock,
    CFCBlock,
    append_balance_tokens,
    masked_attention,
)
from course_lib.checks import check, trial_rng


# ----------------------------------------------------------------------------- 4.1 balanced attention
def balanced_cross_attention(
    video: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor, balance: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: single-head cross-attention from clips to ``[text ; balance tokens]``.

    ``A = softmax(V K^T / sqrt(d) + M)`` with ``K = [F_t ; B]`` (COREBA eq. 1), ``M = -inf`` at
    padded words and 0 elsewhere; output ``A K`` (no projections, one head).

    Args:
        video: (B, T, d) clip features (the queries).
        text: (B, L, d) word features; padded rows may hold anything.
        text_mask: (B, L) bool, True = real word.
        balance: (L_b, d) balance tokens, the same for every sample (``L_b`` may be 0).

    Returns:
        ``(output (B, T, d), weights (B, T, L + L_b))``; weights are 0 at padded words and every
        row sums to 1.
    """
    keys, key_mask = append_balance_tokens(text, text_mask, balance)
    out, weights = masked_attention(video[:, None], keys[:, None], keys[:, None], key_mask)
    return out[:, 0], weights[:, 0]


def balanced_cross_attention_inputs(
    seed: int = 0, trial: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs of trial ``trial`` of Exercise 4.1: a small batch with padded words, sometimes a query
    of padding only, and 0-4 balance tokens.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(video, text, text_mask, balance)``, the positional arguments of
        ``balanced_cross_attention``.
    """
    rng = trial_rng(seed, trial)
    b, t, length = int(rng.integers(1, 4)), int(rng.integers(2, 7)), int(rng.integers(2, 6))
    d = int(rng.choice([4, 8]))
    n_balance = int(rng.choice([0, 1, 3, 4]))
    # 1. masks: each sample keeps a prefix of real words
    n_real = rng.integers(1, length + 1, size=b)
    if n_balance > 0 and rng.random() < 0.5:
        n_real[0] = 0  # a query with no real word: only the balance tokens are left
    mask = np.arange(length)[None] < n_real[:, None]
    # 2. features; padded words get large garbage so that forgetting the mask shows
    text = rng.normal(size=(b, length, d))
    text[~mask] = rng.normal(size=(int((~mask).sum()), d)) * 50.0
    return (
        torch.tensor(rng.normal(size=(b, t, d)), dtype=torch.float32),  # video
        torch.tensor(text, dtype=torch.float32),  # text
        torch.tensor(mask),  # text_mask
        torch.tensor(rng.normal(size=(n_balance, d)), dtype=torch.float32),  # balance
    )


def check_balanced_cross_attention(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Exercise 4.1: compare ``fn`` with :func:`balanced_cross_attention` on 30 random batches."""
    check(
        fn,
        balanced_cross_attention,
        balanced_cross_attention_inputs,
        name="Exercise 4.1: balanced_cross_attention",
        n=30,
        atol=1e-5,
    )


# ----------------------------------------------------------------------------- 4.2 one CFC pass
def cfc_forward(
    vt_block: AttentionBlock,
    tv_block: AttentionBlock,
    sa_block: AttentionBlock,
    video: torch.Tensor,
    video_mask: torch.Tensor,
    text: torch.Tensor,
    text_mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference: one Coarse-to-Fine Cross-modal block from its three sub-blocks (eq. 2-5).

    Every block is called as ``block(x, x_mask, context, context_mask) -> (new_x, weights)``.

    Args:
        vt_block: video-queries / text-keys block (used twice: coarse eq. 2 and fine eq. 5).
        tv_block: text-queries / video-keys block (eq. 2).
        sa_block: self-attention block shared by both streams (eq. 3-4).
        video: F'_v (B, T, d); video_mask (B, T) True = real clip.
        text: balanced text F~_t (B, L, d); text_mask (B, L) True = real token.

    Returns:
        ``(F~_vt, F~_tv, F_fine)`` of shapes (B, T, d), (B, L, d), (B, T, d).
    """
    d = video.shape[-1]
    cfc = CFCBlock(d, n_heads=1, dim_feedforward=1)
    cfc.vt_block, cfc.tv_block, cfc.self_attention = vt_block, tv_block, sa_block
    out = cfc(video, video_mask, text, text_mask)
    return out.vt, out.tv, out.fine


def _seeded_block(d: int, seed: int) -> AttentionBlock:
    """A small AttentionBlock with seeded weights, in eval mode (no dropout)."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        block = AttentionBlock(d, n_heads=2, dim_feedforward=2 * d, dropout=0.1).eval()
    finally:
        torch.random.set_rng_state(generator_state)  # leave the caller's RNG untouched
    return block


def cfc_forward_inputs(seed: int = 0, trial: int = 0) -> tuple:
    """Inputs of trial ``trial`` of Exercise 4.2: three distinct seeded sub-blocks and a padded
    batch of video clips and text tokens.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(vt_block, tv_block, sa_block, video, video_mask, text, text_mask)``, the positional
        arguments of ``cfc_forward``.
    """
    rng = trial_rng(seed, trial)
    b, t, length, d = int(rng.integers(1, 4)), int(rng.integers(2, 7)), int(rng.integers(2, 6)), 8
    seeds = rng.integers(0, 2**31, size=3)
    vmask = np.arange(t)[None] < rng.integers(1, t + 1, size=b)[:, None]
    tmask = np.arange(length)[None] < rng.integers(1, length + 1, size=b)[:, None]
    video = rng.normal(size=(b, t, d)) * vmask[..., None]  # padded positions are 0 (convention)
    text = rng.normal(size=(b, length, d)) * tmask[..., None]
    return (
        _seeded_block(d, int(seeds[0])),  # vt_block
        _seeded_block(d, int(seeds[1])),  # tv_block
        _seeded_block(d, int(seeds[2])),  # sa_block
        torch.tensor(video, dtype=torch.float32),
        torch.tensor(vmask),
        torch.tensor(text, dtype=torch.float32),
        torch.tensor(tmask),
    )


def check_cfc_forward(fn: Callable[..., tuple[torch.Tensor, ...]]) -> None:
    """Exercise 4.2: compare ``fn`` with :func:`cfc_forward` on 20 random batches and blocks."""
    with torch.no_grad():
        check(
            fn, cfc_forward, cfc_forward_inputs, name="Exercise 4.2: cfc_forward", n=20, atol=1e-5
        )
