"""UCoFiA (ICCV 2023) for the course: multi-granularity video-text similarity.

Modules (one concept each):

- :mod:`~course_lib.similarity.isa` -- Interactive Similarity Aggregation and mean pooling.
- :mod:`~course_lib.similarity.granularity` -- video-sentence, frame-sentence, patch-word levels.
- :mod:`~course_lib.similarity.sinkhorn` -- log-space Sinkhorn-Knopp and query-bank video bias.
- :mod:`~course_lib.similarity.retrieval_metrics` -- R@K, median/mean rank, t2v and v2t.
- :mod:`~course_lib.similarity.model` -- the trainable UCoFiA head on frozen features.
"""

from course_lib.similarity.granularity import (
    frame_sentence_similarity,
    patch_word_similarity,
    select_patches,
    video_sentence_similarity,
)
from course_lib.similarity.isa import ISA, MeanAggregation, isa_aggregate, isa_weights, masked_mean
from course_lib.similarity.model import (
    UCoFiA,
    UCoFiAConfig,
    UCoFiAOutput,
    symmetric_ce_loss,
)
from course_lib.similarity.retrieval_metrics import (
    metrics_from_ranks,
    ranks_from_positives,
    retrieval_metrics,
)
from course_lib.similarity.sinkhorn import (
    SinkhornResult,
    apply_video_bias,
    fuse_with_video_bias,
    marginal_error,
    sinkhorn_log,
    video_bias_from_bank,
)

__all__ = [
    "ISA",
    "MeanAggregation",
    "SinkhornResult",
    "UCoFiA",
    "UCoFiAConfig",
    "UCoFiAOutput",
    "apply_video_bias",
    "frame_sentence_similarity",
    "fuse_with_video_bias",
    "isa_aggregate",
    "isa_weights",
    "marginal_error",
    "masked_mean",
    "metrics_from_ranks",
    "patch_word_similarity",
    "ranks_from_positives",
    "retrieval_metrics",
    "select_patches",
    "sinkhorn_log",
    "symmetric_ce_loss",
    "video_bias_from_bank",
    "video_sentence_similarity",
]
