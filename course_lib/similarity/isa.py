"""Interactive Similarity Aggregation (ISA) and its mean-pooling baseline.

UCoFiA (Wang et al., ICCV 2023, Sec. 3 "Interactive Similarity Aggregation") turns a vector of
similarities ``s = (s_1 .. s_n)`` between one query and ``n`` units (frames, patches or words)
into one score. Instead of averaging, every unit gets a weight that depends on *all* the
similarities through a learned ``n x n`` matrix ``W``:

    p = softmax(s / tau)                 (which units match best, a distribution)
    a = softmax((p W) / tau)             (interaction: W mixes the evidence of all units)
    ISA(s) = sum_i a_i s_i

This is the form of the authors' released code (``W`` initialised to the identity, ``tau = 0.01``
used in both softmaxes). With ``W = I`` it is a sharpened soft-max pooling; a uniform ``W``
(every entry ``1/n``) or ``tau -> inf`` gives exactly the mean.

Masks: padded units get ``-inf`` before both softmaxes, so their weight is exactly 0. A module
built for ``n_units`` accepts any length ``n <= n_units`` by using the top-left ``n x n`` block of
``W``; this is identical to padding the input to ``n_units`` with masked units, because masked
units have ``p_i = 0`` (their rows of ``W`` never contribute) and ``a_j = 0`` (their columns are
discarded). So the module is "fixed size, pad to max" with the padding done implicitly.
"""

from __future__ import annotations

import torch
from torch import nn

from course_lib.errors import DataValidationError


def _check_mask(sims: torch.Tensor, mask: torch.Tensor | None, what: str) -> torch.Tensor | None:
    """Validate ``mask``; return it as bool, or None when absent or all True (the fast path).

    Only the (small) mask itself is inspected, never its broadcast to ``sims``: broadcasting
    replicates rows, so "some vector is fully masked" can be read off the mask alone.

    Raises:
        DataValidationError: the mask does not broadcast, or some vector has no valid unit.
    """
    if mask is None:
        return None
    mask = mask.to(device=sims.device, dtype=torch.bool)
    try:
        shape = torch.broadcast_shapes(mask.shape, sims.shape)
    except RuntimeError as exc:
        shape = None
        cause: Exception | None = exc
    else:
        cause = None
    if shape != sims.shape:
        raise DataValidationError(
            f"{what}: mask of shape {tuple(mask.shape)} does not broadcast to similarities "
            f"of shape {tuple(sims.shape)}"
        ) from cause
    if not bool(mask.any(dim=-1).all()):
        raise DataValidationError(
            f"{what}: some similarity vector has every unit masked (mask shape "
            f"{tuple(mask.shape)}); each vector needs at least one valid unit"
        )
    return None if bool(mask.all()) else mask


def masked_mean(sims: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the last dimension, ignoring masked units.

    Args:
        sims: similarities, shape ``(..., n)``.
        mask: boolean, broadcastable to ``sims``; True marks a valid unit.

    Returns:
        Tensor of shape ``(...)``.
    """
    mask = _check_mask(sims, mask, "masked_mean")
    if mask is None:
        return sims.mean(-1)
    # zero the padded entries first so that NaN/inf padding cannot leak into the sum
    total = sims.masked_fill(~mask, 0.0).sum(-1)
    return total / mask.to(sims.dtype).sum(-1)


def isa_weights(
    sims: torch.Tensor,
    weight: torch.Tensor,
    tau: float = 0.01,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """ISA aggregation weights ``a = softmax(softmax(s / tau) W / tau)`` (UCoFiA, ISA).

    Args:
        sims: similarities, shape ``(..., n)``.
        weight: interaction matrix ``W`` of shape ``(m, m)`` with ``m >= n``; its top-left
            ``n x n`` block is used.
        tau: temperature of both softmaxes (UCoFiA uses 0.01 on cosine similarities).
        mask: boolean, broadcastable to ``sims``; True marks a valid unit.

    Returns:
        Weights of shape ``(..., n)``: non-negative, summing to 1, exactly 0 where masked.

    Raises:
        DataValidationError: ``n`` exceeds the size of ``W``, bad mask or ``tau <= 0``.
    """
    n = sims.shape[-1]
    if weight.ndim != 2 or weight.shape[0] != weight.shape[1] or weight.shape[0] < n:
        raise DataValidationError(
            f"isa_weights: interaction matrix of shape {tuple(weight.shape)} cannot aggregate "
            f"{n} units (need a square matrix of size >= {n})"
        )
    if not tau > 0:
        raise DataValidationError(f"isa_weights: temperature tau must be > 0, got {tau}")
    mask = _check_mask(sims, mask, "isa_weights")
    # step 1: which units match best, as a distribution over the valid units
    logits = sims / tau
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    p = torch.softmax(logits, dim=-1)
    # step 2: the interaction layer mixes the evidence of all units (masked p_i are 0)
    mixed = (p @ weight[:n, :n].to(sims.dtype)) / tau
    if mask is not None:
        mixed = mixed.masked_fill(~mask, float("-inf"))
    # step 3: sharpened softmax over the valid units gives the aggregation weights
    return torch.softmax(mixed, dim=-1)


def isa_aggregate(
    sims: torch.Tensor,
    weight: torch.Tensor,
    tau: float = 0.01,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Aggregate similarities with ISA: ``sum_i a_i s_i`` (UCoFiA, ISA).

    Args:
        sims: similarities, shape ``(..., n)``.
        weight: interaction matrix ``W``, shape ``(m, m)``, ``m >= n``.
        tau: temperature of both softmaxes.
        mask: boolean, broadcastable to ``sims``; True marks a valid unit.

    Returns:
        Aggregated similarity, shape ``(...)``.
    """
    a = isa_weights(sims, weight, tau, mask)
    mask = _check_mask(sims, mask, "isa_aggregate")
    safe = sims if mask is None else sims.masked_fill(~mask, 0.0)  # NaN padding stays out
    return (a * safe).sum(-1)


class ISA(nn.Module):
    """Interactive Similarity Aggregation over at most ``n_units`` units (UCoFiA, ISA).

    Args:
        n_units: the largest number of units (frames, patches, words) it aggregates.
        tau: temperature of both softmaxes (0.01 in UCoFiA).
        learnable: train ``W`` (True) or keep it fixed at its initial value.
        init: ``"identity"`` (UCoFiA's initialisation) or ``"uniform"`` (every entry ``1/n``,
            which makes ISA start as exact mean pooling).
    """

    def __init__(
        self, n_units: int, tau: float = 0.01, learnable: bool = True, init: str = "identity"
    ) -> None:
        super().__init__()
        if n_units < 1:
            raise DataValidationError(f"ISA: n_units must be >= 1, got {n_units}")
        if init == "identity":
            w = torch.eye(n_units)
        elif init == "uniform":
            w = torch.full((n_units, n_units), 1.0 / n_units)
        else:
            raise DataValidationError(f"ISA: init must be 'identity' or 'uniform', got {init!r}")
        self.weight = nn.Parameter(w, requires_grad=learnable)
        self.tau = float(tau)

    def weights(self, sims: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The aggregation weights ``a`` for ``sims`` of shape ``(..., n)``."""
        return isa_weights(sims, self.weight, self.tau, mask)

    def forward(self, sims: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Aggregate ``sims`` of shape ``(..., n)`` into shape ``(...)``."""
        return isa_aggregate(sims, self.weight, self.tau, mask)

    def extra_repr(self) -> str:
        return f"n_units={self.weight.shape[0]}, tau={self.tau}"


class MeanAggregation(nn.Module):
    """Masked mean pooling with the same call signature as :class:`ISA` (ablation baseline)."""

    def forward(self, sims: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Aggregate ``sims`` of shape ``(..., n)`` into shape ``(...)``."""
        return masked_mean(sims, mask)
