"""Fused masked attention (PyTorch's ``scaled_dot_product_attention``) and the switch to it.

:func:`~course_lib.alignment.attention.masked_attention` writes the softmax out: that is what
the chapters teach and what their attention figures read. :func:`fused_masked_attention`
computes the same ``A V`` with ``A = softmax(Q K^T / sqrt(d_h) + M)`` in PyTorch's fused kernel,
which never hands the weights ``A`` back (and on GPUs never stores them).
:class:`~course_lib.alignment.attention.MaskedMultiHeadAttention` takes the fused path whenever
its caller does not ask for the weights (``need_weights=False``: training, evaluation,
prediction) and the explicit one whenever it does (``attention_to_balance_tokens``,
``CorebaModel.forward(return_attention=True)``, every block called directly).

PyTorch picks the kernel: on CPU, attention dropout > 0 (training with ``dropout > 0``) makes it
fall back to its math implementation, which does what the explicit path does, so the gain there
is on GPUs and in dropout-free runs (``benchmarks/bench_coreba.py`` measures both paths).

Inside ``with explicit_attention():`` every attention takes the explicit path, weights asked
for or not (reference runs, benchmarks). The switch is a :class:`contextvars.ContextVar`: it
only affects the thread (and asyncio task) that entered the block, and blocks nest.

Masking semantics are those of the explicit path: padded keys get ``M = -inf`` (weight exactly
0) *and* their values are zeroed, so garbage there (even NaN) cannot leak through ``0 * NaN``.
Their keys are zeroed too: the kernel adds ``M`` to the scores where the explicit path
overwrites them, and ``NaN + (-inf)`` is NaN. Where a row has no real key at all, the explicit softmax is ``0 / 0 = NaN``; the
fused path instead lets that row see its (zeroed) keys, so its output is exactly 0 (what any
finite weighting of zeroed values gives) and no NaN is passed on, forward or backward.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F

_FORCE_EXPLICIT: ContextVar[bool] = ContextVar("course_lib_explicit_attention", default=False)


@contextmanager
def explicit_attention() -> Iterator[None]:
    """Make every attention inside the ``with`` block take the explicit softmax path.

    Example::

        with explicit_attention():
            reference = model(video, video_mask, text, text_mask)
    """
    token = _FORCE_EXPLICIT.set(True)
    try:
        yield
    finally:
        _FORCE_EXPLICIT.reset(token)


def fused_attention_enabled() -> bool:
    """True unless the caller is inside :func:`explicit_attention`."""
    return not _FORCE_EXPLICIT.get()


def fused_masked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor,
    dropout: float = 0.0,
) -> torch.Tensor:
    """``softmax(Q K^T / sqrt(d_h) + M) V`` in one fused kernel, ``M = -inf`` at padded keys.

    Same inputs and output as :func:`~course_lib.alignment.attention.masked_attention`, without
    the weights.

    Args:
        q: (B, H, Lq, d_h) queries.
        k: (B, H, Lk, d_h) keys.
        v: (B, H, Lk, d_h) values.
        key_mask: (B, Lk) bool, True = real key; a row without a real key gives output 0.
        dropout: dropout probability on the attention weights (pass 0 in eval mode).

    Returns:
        output (B, H, Lq, d_h).
    """
    # 1. zero padded keys and values: garbage (even NaN) there cannot reach scores or sums
    padded = ~key_mask[:, None, :, None]
    k, v = k.masked_fill(padded, 0.0), v.masked_fill(padded, 0.0)
    # 2. a row without a real key sees all its (zeroed) keys: output exactly 0 instead of 0 / 0
    keep = key_mask | ~key_mask.any(dim=1, keepdim=True)
    # 3. fused kernel; the boolean mask (True = take part) gives padded keys -inf before softmax
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=keep[:, None, None, :], dropout_p=dropout
    )
