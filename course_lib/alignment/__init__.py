"""COREBA alignment: balance tokens, Coarse-to-Fine Cross-modal blocks, recurrent alignment.

Implements "Coarse-to-Fine Recurrently Aligned Transformer with Balance Tokens for Video
Moment Retrieval and Highlight Detection" (COREBA) with QD-DETR / DAB-DETR heads:

* :mod:`~course_lib.alignment.projection`: 3-layer MLP input projections.
* :mod:`~course_lib.alignment.balance`: balance tokens (COREBA eq. 1).
* :mod:`~course_lib.alignment.attention`: masked multi-head attention + post-norm block.
* :mod:`~course_lib.alignment.fused_attention`: the fused-kernel path taken whenever attention
  weights are not asked for, and :func:`explicit_attention` to force the explicit softmax.
* :mod:`~course_lib.alignment.cfc`: the CFC block (COREBA eqs. 2-5).
* :mod:`~course_lib.alignment.ram`: the Recurrent Alignment Mechanism (Algorithm 1), MOD_N.
* :mod:`~course_lib.alignment.baseline_encoder`: QD-DETR's text-to-video encoder.
* :mod:`~course_lib.alignment.heads`: saliency encoder (eq. 7) and DAB-DETR moment decoder.
* :mod:`~course_lib.alignment.decode`: model outputs -> windows in seconds and per-clip saliency.
* :mod:`~course_lib.alignment.model`: :class:`CorebaConfig`, :func:`build_model`.

Mask convention everywhere: a bool mask with ``True`` = real position (clip, word or balance
token) and ``False`` = padding. Padded positions never give attention, and every module sets
its outputs at padded positions to exactly 0 (don't-care for losses: mask them).

Span convention: ``pred_spans`` are ``(center, width)`` normalised by the video duration;
``pred_logits`` class 0 = foreground, class 1 = background (moment_detr / QD-DETR).
"""

from course_lib.alignment.attention import (
    AttentionBlock,
    MaskedMultiHeadAttention,
    masked_attention,
    self_attention,
)
from course_lib.alignment.balance import BalanceTokens, append_balance_tokens
from course_lib.alignment.baseline_encoder import T2VEncoder
from course_lib.alignment.cfc import CFCBlock, CFCOutput
from course_lib.alignment.fused_attention import explicit_attention, fused_masked_attention
from course_lib.alignment.heads import MomentDecoder, SaliencyEncoder, sine_embedding
from course_lib.alignment.model import (
    ABLATIONS,
    CorebaConfig,
    CorebaModel,
    ablation_config,
    attention_to_balance_tokens,
    build_model,
)
from course_lib.alignment.projection import FeatureProjection
from course_lib.alignment.ram import RecurrentAlignment

__all__ = [
    "ABLATIONS",
    "AttentionBlock",
    "BalanceTokens",
    "CFCBlock",
    "CFCOutput",
    "CorebaConfig",
    "CorebaModel",
    "FeatureProjection",
    "MaskedMultiHeadAttention",
    "MomentDecoder",
    "RecurrentAlignment",
    "SaliencyEncoder",
    "T2VEncoder",
    "ablation_config",
    "append_balance_tokens",
    "attention_to_balance_tokens",
    "build_model",
    "explicit_attention",
    "fused_masked_attention",
    "masked_attention",
    "self_attention",
    "sine_embedding",
]
