"""Chapter 1 checkers: the CLIP loss, frame sampling per clip, and masked clip pooling."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from course_lib.checks import check, trial_rng
from course_lib.clip.features import pool_clip_features
from course_lib.clip.frames import clip_timestamps
from course_lib.clip.loss import MAX_LOGIT_SCALE, symmetric_info_nce

__all__ = [
    "check_clip_timestamps",
    "check_info_nce_loss",
    "check_pool_clip_features",
    "info_nce_loss",
]


# ----------------------------------------------------------------------------- 1.1 InfoNCE
def info_nce_loss(
    image_feats: torch.Tensor, text_feats: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Reference: symmetric InfoNCE of B matching pairs (CLIP, Fig. 3), diagonal targets.

    Args:
        image_feats: (B, D) L2-normalised image features.
        text_feats: (B, D) L2-normalised text features; row i matches image i.
        logit_scale: scalar tensor, the log inverse temperature (``exp`` gives the scale).

    Returns:
        Scalar tensor: the mean of the image->text and text->image cross-entropies.
    """
    return symmetric_info_nce(image_feats, text_feats, logit_scale)


def info_nce_loss_inputs(
    seed: int = 0, trial: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs of trial ``trial`` of Exercise 1.1: unit-norm features, B >= 2, texts correlated with
    their images, scale inside the clamp.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(image_feats, text_feats, logit_scale)``, the positional arguments of ``info_nce_loss``.
    """
    rng = trial_rng(seed, trial)
    b, d = int(rng.integers(2, 9)), int(rng.integers(3, 17))
    image = rng.normal(size=(b, d))
    text = image + rng.normal(size=(b, d)) * float(rng.choice([0.3, 1.0, 3.0]))
    scale = float(rng.uniform(0.0, MAX_LOGIT_SCALE))  # log(1) .. log(100): no clamping needed
    return (
        F.normalize(torch.tensor(image, dtype=torch.float32), dim=-1),
        F.normalize(torch.tensor(text, dtype=torch.float32), dim=-1),
        torch.tensor(scale, dtype=torch.float32),
    )


def check_info_nce_loss(
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
) -> None:
    """Exercise 1.1: compare ``fn`` with :func:`info_nce_loss` on 20 random batches."""
    check(fn, info_nce_loss, info_nce_loss_inputs, name="Exercise 1.1: info_nce_loss", atol=1e-5)


# ----------------------------------------------------------------------------- 1.2 timestamps
def clip_timestamps_inputs(seed: int = 0, trial: int = 0) -> tuple[float, float, int]:
    """Inputs of trial ``trial`` of Exercise 1.2: durations that are multiples of the clip length,
    not multiples, and shorter than a clip.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(duration, clip_len, frames_per_clip)``, the positional arguments of ``clip_timestamps``.
    """
    rng = trial_rng(seed, trial)
    clip_len = float(rng.choice([1.0, 2.0, 4.0]))
    kind = int(rng.integers(3))
    if kind == 0:  # a whole number of clips
        duration = clip_len * int(rng.integers(1, 8))
    elif kind == 1:  # a partial last clip (tenths of a second, never a multiple)
        duration = clip_len * int(rng.integers(1, 6)) + round(float(rng.uniform(0.1, 0.9)), 1)
    else:  # shorter than one clip
        duration = round(float(rng.uniform(0.1, 0.9)) * clip_len, 2)
    return duration, clip_len, int(rng.integers(1, 5))


def check_clip_timestamps(fn: Callable[[float, float, int], tuple[np.ndarray, np.ndarray]]) -> None:
    """Exercise 1.2: compare ``fn`` with :func:`~course_lib.clip.frames.clip_timestamps`."""
    check(
        fn, clip_timestamps, clip_timestamps_inputs, name="Exercise 1.2: clip_timestamps", atol=1e-9
    )


# ----------------------------------------------------------------------------- 1.3 pooling
def pool_clip_features_inputs(
    seed: int = 0, trial: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Inputs of trial ``trial`` of Exercise 1.3: frames of several clips with a mask; one clip
    fully masked, one without frames.

    Args:
        seed: seed of the check (the checker uses 0).
        trial: trial number, from 0; the same (seed, trial) always gives the same inputs.

    Returns:
        ``(frame_feats, clip_index, mask, n_clips)``, the positional arguments of
        ``pool_clip_features``.
    """
    rng = trial_rng(seed, trial)
    n_clips, d = int(rng.integers(3, 7)), int(rng.integers(2, 7))
    index = np.sort(rng.integers(0, n_clips - 1, size=int(rng.integers(n_clips, 3 * n_clips))))
    index[:2] = 0  # clip 0 always has two frames ...
    mask = rng.random(len(index)) < 0.7
    mask[index == 0] = False  # ... that are both masked out; the last clip has no frames at all
    feats = rng.normal(size=(len(index), d)) * rng.uniform(0.2, 5.0, size=(len(index), 1))
    return (
        torch.tensor(feats, dtype=torch.float32),
        torch.from_numpy(index.astype(np.int64)),
        torch.from_numpy(mask),
        n_clips,
    )


def check_pool_clip_features(
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor],
) -> None:
    """Exercise 1.3: compare ``fn`` with :func:`~course_lib.clip.features.pool_clip_features`."""
    check(
        fn,
        pool_clip_features,
        pool_clip_features_inputs,
        name="Exercise 1.3: pool_clip_features",
        atol=1e-5,
    )
