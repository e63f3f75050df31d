"""Evaluation metrics for moment retrieval, highlight detection and corpus moment retrieval.

* :mod:`~course_lib.metrics.qvhighlights` - MR mAP / R1@IoU and HL mAP / HIT@1 (moment_detr
  ``standalone_eval/eval.py``).
* :mod:`~course_lib.metrics.vcmr` - VCMR / SVMR / VR R@K, IoU>=t (TVRetrieval
  ``standalone_eval/eval.py``).
* :mod:`~course_lib.metrics.ndcg` - NDCG@K, IoU>t with graded relevance (TVR-Ranking
  ``modules/ndcg_iou.py``; SPR's IoU>=t variant as an option).
* :mod:`~course_lib.metrics.submission` - official submission files: validate, write, read.
* :mod:`~course_lib.metrics.grounding` - R@1/R@5 at IoU 0.3/0.5/0.7 and mIoU for MR-only datasets
  (Charades-STA, ActivityNet Captions, TaCoS; 2D-TAN ``lib/core/eval.py``, IoU>=t as lighthouse).

By default every metric behaves exactly like the official code named above, including taking
each prediction list in the order given (the official scripts never re-sort by score); other
behaviour (``rank_by_score``, stricter input checks, other conventions) is an explicit option.
Every function rejects malformed input with :class:`course_lib.errors.MetricInputError`.
"""

from course_lib.metrics.grounding import eval_grounding
from course_lib.metrics.ndcg import dcg, ndcg_iou
from course_lib.metrics.qvhighlights import (
    IOU_THRESHOLDS,
    binary_ap,
    detection_ap,
    eval_highlight,
    eval_moment_retrieval,
    eval_qvhighlights,
    hl_hit_at_1,
    interpolated_ap,
    top1_iou,
)
from course_lib.metrics.submission import (
    read_submission,
    validate_ground_truth,
    validate_submission,
    write_submission,
)
from course_lib.metrics.vcmr import eval_vcmr, vcmr_recall

__all__ = [
    "IOU_THRESHOLDS",
    "binary_ap",
    "dcg",
    "detection_ap",
    "eval_grounding",
    "eval_highlight",
    "eval_moment_retrieval",
    "eval_qvhighlights",
    "eval_vcmr",
    "hl_hit_at_1",
    "interpolated_ap",
    "ndcg_iou",
    "read_submission",
    "top1_iou",
    "validate_ground_truth",
    "validate_submission",
    "vcmr_recall",
    "write_submission",
]
