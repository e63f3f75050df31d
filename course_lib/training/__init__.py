"""Training moment models (COREBA, QD-DETR) for joint moment retrieval and highlight detection.

* :mod:`~course_lib.training.config` - :class:`MomentTrainingConfig`, every hyper-parameter (QD-DETR);
* :mod:`~course_lib.training.criterion` - :class:`SetCriterion` (COREBA eq. 8-11): Hungarian
  matching, span L1 / gIoU / label CE, saliency margin, rank-aware contrastive and negative-pair
  losses, auxiliary decoder losses;
* :mod:`~course_lib.training.loop` - :func:`train`, :func:`evaluate`, :func:`predict`;
* :mod:`~course_lib.training.checkpoint` - safetensors + json checkpoints, resumable state;
"""

from course_lib.training.checkpoint import (
    load_checkpoint,
    load_training_state,
    read_checkpoint_info,
    save_checkpoint,
    save_training_state,
)
from course_lib.training.config import DEFAULT_BEST_METRICS, MomentTrainingConfig
from course_lib.training.criterion import (
    SetCriterion,
    forward_with_negatives,
    roll_queries,
    saliency_forward,
)
from course_lib.training.loop import (
    evaluate,
    make_loader,
    make_optimizer,
    predict,
    selection_score,
    train,
    train_one_epoch,
    train_step,
)

__all__ = [
    "DEFAULT_BEST_METRICS",
    "SetCriterion",
    "MomentTrainingConfig",
    "evaluate",
    "forward_with_negatives",
    "load_checkpoint",
    "load_training_state",
    "make_loader",
    "make_optimizer",
    "predict",
    "read_checkpoint_info",
    "roll_queries",
    "saliency_forward",
    "save_checkpoint",
    "save_training_state",
    "selection_score",
    "train",
    "train_one_epoch",
    "train_step",
]
