"""The set criterion of COREBA / QD-DETR: Hungarian matching + moment and saliency losses.

COREBA eq. 8-11 (inherited from QD-DETR, Moon et al. CVPR 2023, Sec. 3.3-3.4)::

    L_mr   = w_span * L1(b, b^) + w_giou * (1 - gIoU(b, b^)) + w_label * CE(fg/bg)     (eq. 8)
    L_marg, L_neg = -log(1 - sigmoid(S(v_b, q_{b+1}))), L_cont (rank contrastive)     (eq. 9)
    L_hl   = w_margin * L_marg + w_neg * L_neg + w_rank * L_cont                      (eq. 10)
    L      = L_mr + L_hl  (+ L_mr of every earlier decoder layer)                    (eq. 11)

Matched pairs come from :class:`course_lib.grounding.HungarianMatcher`; the individual losses are
:mod:`course_lib.grounding.losses`. Negative pairs roll the queries by one position within the
batch (sample ``b`` gets the query of sample ``(b + 1) mod B``, as QD-DETR's code) and run the
encoder and saliency head a second time. Saliency losses only ever look at real clips: the model
writes 0 (don't-care) at padded clips.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from course_lib.alignment.heads import clip_positions, sine_embedding
from course_lib.grounding import (
    HungarianMatcher,
    moment_losses,
    negative_pair_loss,
    rank_contrastive_loss,
    saliency_margin_loss,
    sample_saliency_pairs,
)
from course_lib.training.config import MomentTrainingConfig

MOMENT_TERMS = ("span", "giou", "label")
SALIENCY_TERMS = ("saliency_margin", "rank_contrastive", "neg_pair")
MAX_SCORE = 4  # QVHighlights annotators score 0-4


def roll_queries(
    text: torch.Tensor, text_mask: torch.Tensor, shift: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mismatched query-video pairs: sample ``b`` gets the query of sample ``(b + shift) mod B``.

    Args:
        text: (B, L, D) token features; text_mask: (B, L) bool, True = real token.
        shift: how far to roll (1 = the next sample's query, QD-DETR).

    Returns:
        The rolled ``(text, text_mask)``.
    """
    return torch.roll(text, -shift, dims=0), torch.roll(text_mask, -shift, dims=0)


def saliency_forward(
    model: nn.Module,
    video: torch.Tensor,
    video_mask: torch.Tensor,
    text: torch.Tensor,
    text_mask: torch.Tensor,
) -> torch.Tensor:
    """Clip saliency only (COREBA eq. 7): encoder + saliency head, no moment decoder.

    Mirrors :meth:`course_lib.alignment.CorebaModel.forward` up to the saliency scores, so the
    negative pairs of eq. 9 do not pay for the decoder.

    Returns:
        (B, T) saliency scores, 0 at padded clips.
    """
    model._check_inputs(video, video_mask, text, text_mask)
    aligned, *_ = model.encode(video, video_mask, text, text_mask, need_weights=False)
    pos = sine_embedding(clip_positions(video_mask)[..., None], model.config.d)
    pos = pos.masked_fill(~video_mask[..., None], 0.0)
    _, saliency = model.saliency_encoder(aligned, video_mask, pos)
    return saliency


def forward_with_negatives(model: nn.Module, batch: dict, negatives: bool = True) -> dict:
    """Run the model on a collated batch; add the saliency of rolled (mismatched) pairs.

    Args:
        model: a :class:`~course_lib.alignment.CorebaModel`.
        batch: output of :func:`course_lib.datasets.collate_moments` (tensors on the model's device).
        negatives: also compute ``"saliency_scores_neg"`` (B, T) when the batch has >= 2 samples.

    Returns:
        The model's output dict, plus ``"saliency_scores_neg"`` when negatives were computed.
    """
    video, vmask = batch["video"], batch["video_mask"]
    text, tmask = batch["query"], batch["query_mask"]
    outputs = model(video, vmask, text, tmask)
    if negatives and video.shape[0] > 1:
        neg_text, neg_mask = roll_queries(text, tmask)
        outputs["saliency_scores_neg"] = saliency_forward(model, video, vmask, neg_text, neg_mask)
    return outputs


class SetCriterion(nn.Module):
    """Hungarian matching + weighted moment and saliency losses (COREBA eq. 8-11).

    Args:
        config: the :class:`~course_lib.training.config.MomentTrainingConfig` with costs and weights.

    Attributes:
        weight_dict: weight of every base term; auxiliary terms ``span_0``, ``giou_0``, ... use
            the weight of their base name.
    """

    def __init__(self, config: MomentTrainingConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or MomentTrainingConfig()
        self.matcher = HungarianMatcher(c.cost_span, c.cost_giou, c.cost_class)
        self.weight_dict = c.loss_weights()

    def weight_of(self, name: str) -> float:
        """Weight of a loss term (``span_1`` -> weight of ``span``)."""
        return self.weight_dict[re.sub(r"_\d+$", "", name)]

    def moment_terms(self, out: dict, tgt_spans: list[torch.Tensor], suffix: str = "") -> dict:
        """Match one decoder layer's predictions to the targets; its L1, gIoU and CE (eq. 8)."""
        indices = self.matcher(out["pred_spans"], out["pred_logits"], tgt_spans)
        terms = moment_losses(
            out["pred_spans"], out["pred_logits"], tgt_spans, indices, self.config.eos_coef
        )
        return {f"{k}{suffix}": v for k, v in terms.items()}

    def saliency_terms(self, outputs: dict, batch: dict) -> dict:
        """The three highlight losses of eq. 9 (margin, negative pair, rank-aware contrastive)."""
        c = self.config
        scores, mask = outputs["saliency_scores"], batch["video_mask"]
        # 1. margin ranking on sampled (high, low) pairs of real clips (mean annotator score)
        high, low, valid = sample_saliency_pairs(batch["saliency"], mask, c.n_saliency_pairs)
        margin = saliency_margin_loss(scores, high, low, c.saliency_margin, valid)
        # 2. rank-aware contrastive on the summed annotator scores (0-12 for 3 annotators)
        raw = batch["saliency_raw"]
        labels, n_ranks = raw.sum(-1), MAX_SCORE * raw.shape[-1]
        neg = outputs.get("saliency_scores_neg")
        rank = rank_contrastive_loss(scores, labels, mask, neg, mask, c.rank_tau, n_ranks)
        # 3. negative pairs: saliency of mismatched query-video pairs pushed down
        neg_pair = negative_pair_loss(neg, mask) if neg is not None else scores.sum() * 0.0
        return {"saliency_margin": margin, "rank_contrastive": rank, "neg_pair": neg_pair}

    def forward(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        """All named loss terms and their weighted sum ``"total"`` (eq. 11).

        Args:
            outputs: :func:`forward_with_negatives` output (``saliency_scores_neg`` optional).
            batch: the collated batch (``spans``, ``saliency``, ``saliency_raw``, ``video_mask``).

        Returns:
            ``{"span", "giou", "label", "saliency_margin", "rank_contrastive", "neg_pair",
            "span_0", "giou_0", "label_0", ..., "total"}`` (unweighted terms + weighted total).
        """
        device = outputs["pred_spans"].device
        tgt_spans = [s.to(device) for s in batch["spans"]]
        terms = self.moment_terms(outputs, tgt_spans)
        terms.update(self.saliency_terms(outputs, batch))
        if self.config.aux_loss:
            for i, aux in enumerate(outputs.get("aux_outputs", [])):
                terms.update(self.moment_terms(aux, tgt_spans, suffix=f"_{i}"))
        terms["total"] = sum(self.weight_of(k) * v for k, v in terms.items())
        return terms
