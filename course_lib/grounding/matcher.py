"""Hungarian matching of predicted moments to ground-truth moments (DETR set prediction).

Moment-DETR (Lei et al. 2021, sec. 4.2) and QD-DETR assign each GT moment to exactly one of the
Q predicted moments by minimising a pairwise cost (DETR, Carion et al. 2020, eq. 1):

    C[q, n] = w_span * |b_q - b_n|_1  -  w_giou * GIoU(b_q, b_n)  -  w_class * p_q(foreground)

with spans ``b`` as normalised ``(center, width)`` for the L1 term and as ``(start, end)`` for
GIoU. ``scipy.optimize.linear_sum_assignment`` solves the assignment per sample.

Class convention (as Moment-DETR): logits have 2 classes, index 0 = foreground (a moment),
index 1 = background ("no object").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from course_lib.spans import generalized_temporal_iou, span_cxw_to_xx

FOREGROUND = 0
BACKGROUND = 1


def match_cost_matrix(
    pred_spans: torch.Tensor,
    pred_logits: torch.Tensor | None,
    tgt_spans: torch.Tensor,
    w_span: float = 10.0,
    w_giou: float = 1.0,
    w_class: float = 4.0,
) -> torch.Tensor:
    """Pairwise matching cost of one sample (DETR eq. 1 with Moment-DETR's terms).

    Args:
        pred_spans: (Q, 2) predicted ``(center, width)`` in [0, 1].
        pred_logits: (Q, 2) class logits (index 0 = foreground), or None to drop the class term.
        tgt_spans: (N, 2) GT ``(center, width)`` in [0, 1].
        w_span, w_giou, w_class: weights of the L1, -GIoU and -p(foreground) terms.

    Returns:
        (Q, N) cost; lower is a better match.
    """
    cost_span = torch.cdist(pred_spans, tgt_spans, p=1)  # L1 in (center, width)
    cost_giou = -generalized_temporal_iou(span_cxw_to_xx(pred_spans), span_cxw_to_xx(tgt_spans))
    cost = w_span * cost_span + w_giou * cost_giou
    if pred_logits is not None and w_class != 0:
        prob_fg = pred_logits.softmax(-1)[:, FOREGROUND]  # (Q,)
        cost = cost - w_class * prob_fg[:, None]
    return cost


@torch.no_grad()
def hungarian_match(
    pred_spans: torch.Tensor,
    pred_logits: torch.Tensor | None,
    tgt_spans: Sequence[torch.Tensor],
    w_span: float = 10.0,
    w_giou: float = 1.0,
    w_class: float = 4.0,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Optimal one-to-one assignment per sample of a batch.

    Args:
        pred_spans: (B, Q, 2) predicted ``(center, width)``.
        pred_logits: (B, Q, 2) class logits or None.
        tgt_spans: B tensors of shape (N_b, 2), N_b <= Q (may be 0).
        w_span, w_giou, w_class: cost weights (Moment-DETR defaults 10, 1, 4).

    Returns:
        B pairs ``(pred_idx, tgt_idx)`` of int64 tensors of length N_b, sorted by ``pred_idx``
        (prediction ``pred_idx[i]`` is matched to target ``tgt_idx[i]``).
    """
    from scipy.optimize import linear_sum_assignment  # imported here: no scipy at import time

    if pred_spans.ndim != 3 or pred_spans.shape[-1] != 2:
        raise ValueError(f"pred_spans must be (B, Q, 2), got {tuple(pred_spans.shape)}")
    if len(tgt_spans) != pred_spans.shape[0]:
        raise ValueError(f"{len(tgt_spans)} target sets for a batch of {pred_spans.shape[0]}")
    out = []
    for b, tgt in enumerate(tgt_spans):
        if len(tgt) > pred_spans.shape[1]:
            raise ValueError(
                f"sample {b} has {len(tgt)} targets but only {pred_spans.shape[1]} queries"
            )
        if len(tgt) == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            out.append((empty, empty))
            continue
        logits = None if pred_logits is None else pred_logits[b]
        cost = match_cost_matrix(pred_spans[b], logits, tgt.to(pred_spans), w_span, w_giou, w_class)
        rows, cols = linear_sum_assignment(cost.detach().cpu().double().numpy())
        out.append(
            (torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64))
        )
    return out


class HungarianMatcher(nn.Module):
    """``nn.Module`` wrapper around :func:`hungarian_match` holding the cost weights."""

    def __init__(self, w_span: float = 10.0, w_giou: float = 1.0, w_class: float = 4.0) -> None:
        super().__init__()
        if w_span == 0 and w_giou == 0 and w_class == 0:
            raise ValueError("at least one matching cost weight must be non-zero")
        self.w_span, self.w_giou, self.w_class = w_span, w_giou, w_class

    def forward(
        self,
        pred_spans: torch.Tensor,
        pred_logits: torch.Tensor | None,
        tgt_spans: Sequence[torch.Tensor],
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """See :func:`hungarian_match`."""
        return hungarian_match(
            pred_spans, pred_logits, tgt_spans, self.w_span, self.w_giou, self.w_class
        )
