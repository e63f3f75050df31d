"""Moment grounding heads' training pieces: Hungarian matching and DETR-style losses.

* :mod:`~course_lib.grounding.matcher` - cost matrix and optimal assignment (scipy).
* :mod:`~course_lib.grounding.losses` - span L1 / GIoU / label losses and saliency losses
  (margin ranking, QD-DETR negative-pair and rank-aware contrastive).
"""

from course_lib.grounding.losses import (
    label_loss,
    moment_losses,
    negative_pair_loss,
    rank_contrastive_loss,
    saliency_margin_loss,
    sample_saliency_pairs,
    span_giou_loss,
    span_l1_loss,
)
from course_lib.grounding.matcher import HungarianMatcher, hungarian_match, match_cost_matrix

__all__ = [
    "HungarianMatcher",
    "hungarian_match",
    "label_loss",
    "match_cost_matrix",
    "moment_losses",
    "negative_pair_loss",
    "rank_contrastive_loss",
    "saliency_margin_loss",
    "sample_saliency_pairs",
    "span_giou_loss",
    "span_l1_loss",
]
