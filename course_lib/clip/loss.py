"""Symmetric InfoNCE (the CLIP loss) with a learnable temperature.

For L2-normalised image features ``u_i`` and text features ``v_j`` of a batch of ``B`` matching
pairs, CLIP (Radford et al. 2021, Fig. 3) computes logits ``s_ij = exp(t) * u_i . v_j`` with a
learnable log-scale ``t`` (initialised at ``log(1/0.07)``, clamped at ``log(100)``) and averages
two cross-entropies: image->text (rows) and text->image (columns):

    L = 1/2 * [ -1/B sum_i log softmax_j(s_ij)[i]  -  1/B sum_j log softmax_i(s_ij)[j] ]

When a caption also matches other images of the batch (same or less specific wording),
``positives[i, j]`` marks image ``i`` and text ``j`` as a match: the target of each row (image)
and each column (text) is then uniform over its matches (multi-positive InfoNCE), so the model is
not pushed away from correct but unpaired matches. ``positives=None`` is the identity matrix.

Extra captions (e.g. NegCLIP hard negatives: a true caption with one word swapped) are appended
after the ``B`` paired ones: ``text_feats`` is then ``(M, D)`` with ``M > B`` and ``positives``
``(B, M)``. Every image still has its own caption; a caption without any matching image in the
batch is only a negative (it has no text->image term).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

INIT_LOGIT_SCALE = math.log(1 / 0.07)
MAX_LOGIT_SCALE = math.log(100.0)


def symmetric_info_nce(
    image_feats: torch.Tensor,
    text_feats: torch.Tensor,
    logit_scale: torch.Tensor | float,
    positives: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE loss of a batch of matching (image, text) pairs (CLIP, Fig. 3).

    Args:
        image_feats: (B, D) L2-normalised image features.
        text_feats: (B, D) L2-normalised text features; row i matches ``image_feats[i]``.
        logit_scale: log of the inverse temperature ``t`` (scalar tensor or float).
        positives: optional (B, M) bool, ``positives[i, j]`` = image i matches text j; the
            diagonal ``[i, i]`` must be True. Default: only the diagonal (``M = B``).

    Returns:
        Scalar loss, the mean of the image->text and text->image cross-entropies.
    """
    paired = text_feats.shape[0] == image_feats.shape[0]
    if (
        image_feats.ndim != 2
        or text_feats.ndim != 2
        or image_feats.shape[1] != text_feats.shape[1]
        or text_feats.shape[0] < image_feats.shape[0]
        or (positives is None and not paired)
    ):
        raise ValueError(
            f"image_feats {tuple(image_feats.shape)} and text_feats {tuple(text_feats.shape)} "
            "must be (B, D) and (B, D), or (M >= B, D) with a (B, M) positives matrix"
        )
    # 1. scaled cosine-similarity logits, (B, B)
    scale = torch.as_tensor(logit_scale, dtype=image_feats.dtype).clamp(max=MAX_LOGIT_SCALE).exp()
    logits = scale * image_feats @ text_feats.T
    # 2. targets: the diagonal (plain InfoNCE) ...
    if positives is None:
        targets = torch.arange(len(logits), device=logits.device)
        return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
    # ... or uniform over each image's matching texts (rows) / each text's matching images (columns)
    positives = positives.to(device=logits.device, dtype=torch.bool)
    if positives.shape != logits.shape or not bool(positives.diagonal().all()):
        raise ValueError(
            f"positives must be {tuple(logits.shape)} with a True diagonal, "
            f"got {tuple(positives.shape)}"
        )
    pos = positives.to(logits.dtype)
    loss_i2t = -(pos * F.log_softmax(logits, dim=1)).sum(1) / pos.sum(1)
    # text -> image only for captions that match some image of the batch
    has_match = positives.any(dim=0)
    t2i = -(pos.T * F.log_softmax(logits.T, dim=1)).sum(1)[has_match]
    loss_t2i = t2i / pos.sum(0)[has_match]
    # 3. average the two directions
    return 0.5 * (loss_i2t.mean() + loss_t2i.mean())


class InfoNCELoss(nn.Module):
    """Symmetric InfoNCE with its own learnable log inverse temperature.

    Use this when the model has no ``logit_scale`` of its own (open_clip's CLIP has one; the
    training loop passes that instead, so the temperature is saved with the model).

    Args:
        init_logit_scale: initial log inverse temperature, default ``log(1/0.07)`` as in CLIP.
    """

    def __init__(self, init_logit_scale: float = INIT_LOGIT_SCALE) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))

    def forward(
        self,
        image_feats: torch.Tensor,
        text_feats: torch.Tensor,
        positives: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Loss of a batch; see :func:`symmetric_info_nce`."""
        return symmetric_info_nce(image_feats, text_feats, self.logit_scale, positives)
