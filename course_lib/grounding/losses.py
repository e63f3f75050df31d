"""Training losses for DETR-style moment retrieval and saliency (highlight) prediction.

Moment losses (Moment-DETR, Lei et al. 2021, sec. 4.2; DETR, Carion et al. 2020, eq. 2), computed
on the prediction/target pairs chosen by :func:`course_lib.grounding.matcher.hungarian_match`:

* :func:`span_l1_loss` - L1 between matched ``(center, width)`` spans;
* :func:`span_giou_loss` - ``1 - GIoU`` of matched spans in ``(start, end)``;
* :func:`label_loss` - foreground/background cross-entropy over **all** Q predictions, the
  unmatched ones labelled background with class weight ``eos_coef`` (0.1) so the many "no moment"
  slots do not swamp the few matched ones.

Saliency losses (clip scores ``(B, L)``; masks are bool with True = real clip, False = padding):

* :func:`saliency_margin_loss` - hinge ``max(0, margin + s_low - s_high)`` over sampled
  (high, low) clip pairs, margin 0.2 (Moment-DETR sec. 4.2, saliency loss);
* :func:`negative_pair_loss` - saliency of *unmatched* query-video pairs pushed down,
  ``-log(1 - sigmoid(s))`` per clip (QD-DETR, Moon et al. CVPR 2023, sec. 3.3);
* :func:`rank_contrastive_loss` - QD-DETR's rank-aware contrastive loss (sec. 3.3): for every rank
  r, clips with saliency >= r are positives against all other clips of the video and of the
  negative pair (InfoNCE with temperature tau).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from course_lib.grounding.matcher import BACKGROUND, FOREGROUND
from course_lib.spans import paired_generalized_temporal_iou, span_cxw_to_xx

Indices = Sequence[tuple[torch.Tensor, torch.Tensor]]


def _matched(pred_spans: torch.Tensor, tgt_spans: Sequence[torch.Tensor], indices: Indices):
    """Stack matched (prediction, target) span pairs of a batch -> two (M, 2) tensors."""
    src = torch.cat([pred_spans[b, p] for b, (p, _) in enumerate(indices)])
    tgt = torch.cat([tgt_spans[b][t].to(pred_spans) for b, (_, t) in enumerate(indices)])
    return src, tgt


def span_l1_loss(
    pred_spans: torch.Tensor, tgt_spans: Sequence[torch.Tensor], indices: Indices
) -> torch.Tensor:
    """Mean L1 distance of matched normalised ``(center, width)`` spans (0 if nothing is matched).

    Args:
        pred_spans: (B, Q, 2) predictions.
        tgt_spans: B tensors (N_b, 2) of targets.
        indices: matcher output, B pairs ``(pred_idx, tgt_idx)``.
    """
    src, tgt = _matched(pred_spans, tgt_spans, indices)
    if len(src) == 0:
        return pred_spans.sum() * 0.0
    return F.l1_loss(src, tgt, reduction="mean")


def span_giou_loss(
    pred_spans: torch.Tensor, tgt_spans: Sequence[torch.Tensor], indices: Indices
) -> torch.Tensor:
    """Mean ``1 - GIoU`` of matched spans (converted to ``(start, end)``); in [0, 2]."""
    src, tgt = _matched(pred_spans, tgt_spans, indices)
    if len(src) == 0:
        return pred_spans.sum() * 0.0
    giou = paired_generalized_temporal_iou(span_cxw_to_xx(src), span_cxw_to_xx(tgt))
    return (1.0 - giou).mean()


def label_loss(pred_logits: torch.Tensor, indices: Indices, eos_coef: float = 0.1) -> torch.Tensor:
    """Foreground/background cross-entropy over all predictions (Moment-DETR's ``loss_label``).

    Args:
        pred_logits: (B, Q, 2) logits, index 0 = foreground, 1 = background.
        indices: matcher output; matched predictions are foreground, the rest background.
        eos_coef: class weight of background ("end of sequence") targets.

    Returns:
        Mean over the B*Q predictions of the class-weighted cross-entropy.
    """
    target = torch.full(
        pred_logits.shape[:2], BACKGROUND, dtype=torch.int64, device=pred_logits.device
    )
    for b, (p, _) in enumerate(indices):
        target[b, p.to(pred_logits.device)] = FOREGROUND
    weight = torch.ones(2, dtype=pred_logits.dtype, device=pred_logits.device)
    weight[BACKGROUND] = eos_coef
    ce = F.cross_entropy(pred_logits.transpose(1, 2), target, weight=weight, reduction="none")
    return ce.mean()


def moment_losses(
    pred_spans: torch.Tensor,
    pred_logits: torch.Tensor,
    tgt_spans: Sequence[torch.Tensor],
    indices: Indices,
    eos_coef: float = 0.1,
) -> dict[str, torch.Tensor]:
    """The three DETR moment losses as a dict ``{"span", "giou", "label"}`` (weight them outside)."""
    return {
        "span": span_l1_loss(pred_spans, tgt_spans, indices),
        "giou": span_giou_loss(pred_spans, tgt_spans, indices),
        "label": label_loss(pred_logits, indices, eos_coef),
    }


def sample_saliency_pairs(
    saliency: torch.Tensor,
    mask: torch.Tensor,
    n_pairs: int = 2,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample (high, low) clip pairs for :func:`saliency_margin_loss`.

    For each pair, the high clip is drawn among real clips with saliency > 0 and the low clip among
    real clips with strictly lower saliency than the high one.

    Args:
        saliency: (B, L) GT saliency (e.g. the sum of the three annotators).
        mask: (B, L) bool, True = real clip.
        n_pairs: pairs per sample.
        generator: torch random generator (seeded for reproducibility).

    Returns:
        ``(high_idx, low_idx, valid)``, each (B, n_pairs); ``valid`` is False where a sample has no
        such pair (all clips equally salient).
    """
    B = saliency.shape[0]
    high = torch.zeros(B, n_pairs, dtype=torch.int64)
    low = torch.zeros(B, n_pairs, dtype=torch.int64)
    valid = torch.zeros(B, n_pairs, dtype=torch.bool)
    sal, real = saliency.detach().cpu(), mask.detach().cpu().bool()
    for b in range(B):
        cand = torch.nonzero(real[b] & (sal[b] > 0)).flatten()
        # only high clips that have some strictly lower real clip
        cand = (
            cand[[bool((real[b] & (sal[b] < sal[b, c])).any()) for c in cand]]
            if len(cand)
            else cand
        )
        if len(cand) == 0:
            continue
        for k in range(n_pairs):
            h = cand[torch.randint(len(cand), (1,), generator=generator)].item()
            lows = torch.nonzero(real[b] & (sal[b] < sal[b, h])).flatten()
            high[b, k], low[b, k] = (
                h,
                lows[torch.randint(len(lows), (1,), generator=generator)].item(),
            )
            valid[b, k] = True
    return high.to(saliency.device), low.to(saliency.device), valid.to(saliency.device)


def saliency_margin_loss(
    scores: torch.Tensor,
    high_idx: torch.Tensor,
    low_idx: torch.Tensor,
    margin: float = 0.2,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Margin ranking loss between high- and low-saliency clips (Moment-DETR sec. 4.2).

    ``2 * mean over pairs of max(0, margin + s[low] - s[high])``; the factor 2 is Moment-DETR's
    code, which keeps the scale of the paper's two-term (intra- + inter-video) loss.

    Args:
        scores: (B, L) predicted clip saliency.
        high_idx, low_idx: (B, P) clip indices of each pair.
        margin: the margin (0.2).
        valid: optional (B, P) bool; invalid pairs are ignored.

    Returns:
        Scalar loss; 0 when every valid pair is separated by at least ``margin``.
    """
    pos = torch.gather(scores, 1, high_idx)
    neg = torch.gather(scores, 1, low_idx)
    hinge = torch.clamp(margin + neg - pos, min=0)
    if valid is None:
        return hinge.mean() * 2
    valid = valid.to(hinge.dtype)
    return (hinge * valid).sum() / valid.sum().clamp(min=1) * 2


def negative_pair_loss(neg_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """QD-DETR negative-pair loss: clip saliency of mismatched query-video pairs goes to 0.

    ``mean_b sum_i mask[b, i] * -log(1 - sigmoid(s[b, i]))`` (computed stably as softplus).

    Args:
        neg_scores: (B, L) saliency logits predicted for a video paired with another sample's query.
        mask: (B, L) bool, True = real clip.
    """
    return (F.softplus(neg_scores) * mask.to(neg_scores.dtype)).sum(1).mean()


def rank_contrastive_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    neg_scores: torch.Tensor | None = None,
    neg_mask: torch.Tensor | None = None,
    tau: float = 0.5,
    n_ranks: int = 12,
) -> torch.Tensor:
    """QD-DETR rank-aware contrastive saliency loss.

    For r = 1 .. n_ranks - 1: positives = real clips with ``label >= r``; the softmax (over
    ``s / tau``) runs over all real clips of the video and, if given, of the negative pair (whose
    labels count as 0). Loss_r = mean over the batch of ``-mean_{i in pos} log softmax_i`` (samples
    without positives contribute 0); the result is ``sum_r Loss_r / n_ranks`` as in QD-DETR's code.

    Args:
        scores: (B, L) predicted saliency of the matched query-video pairs.
        labels: (B, L) int GT saliency, 0 .. n_ranks (QVHighlights: sum of 3 annotators, 0-12).
        mask: (B, L) bool, True = real clip.
        neg_scores: optional (B, L') saliency of mismatched pairs (all negatives).
        neg_mask: (B, L') mask of ``neg_scores`` (default: ``mask``).
        tau: temperature.
        n_ranks: number of rank levels.
    """
    mask = mask.bool()
    if neg_scores is not None:
        neg_mask = mask if neg_mask is None else neg_mask.bool()
        scores = torch.cat([scores, neg_scores], dim=1)
        labels = torch.cat([labels, torch.zeros_like(neg_scores, dtype=labels.dtype)], dim=1)
        mask = torch.cat([mask, neg_mask], dim=1)
    # log-softmax over real clips only (padding gets a large negative logit, not -inf: no NaN)
    logits = (scores / tau).masked_fill(~mask, -1e4)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    total = scores.sum() * 0.0
    for r in range(1, n_ranks):
        pos = (labels >= r) & mask
        if not pos.any():
            continue
        has_pos = pos.any(1).to(scores.dtype)
        mean_log_prob_pos = (log_prob * pos).sum(1) / pos.sum(1).clamp(min=1)
        total = total + (-mean_log_prob_pos * has_pos).mean()
    return total / n_ranks
