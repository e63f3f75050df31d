"""Input projections: clip / token features of any width to the model width ``d``.

COREBA (Sec. 3.1) maps the frozen video features ``F_v (T, d_v)`` and text token features
``F_t (L, d_t)`` with three-layer MLPs to ``F'_v (T, d)`` and ``F'_t (L, d)``. Each layer
follows QD-DETR's ``LinearLayer``: LayerNorm -> Dropout -> Linear -> ReLU (no ReLU on the last
layer, so the output can be negative like any embedding).
"""

from __future__ import annotations

import torch
from torch import nn


class FeatureProjection(nn.Module):
    """Three-layer MLP projection with LayerNorm and dropout before every Linear.

    Args:
        d_in: input feature width (``d_v`` or ``d_t``).
        d: output width (model width).
        dropout: dropout applied to the input of every layer (QD-DETR's ``input_dropout``).
        n_layers: number of Linear layers (3 in COREBA).
    """

    def __init__(self, d_in: int, d: int, dropout: float = 0.5, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(n_layers):
            width_in = d_in if i == 0 else d
            layers += [nn.LayerNorm(width_in), nn.Dropout(dropout), nn.Linear(width_in, d)]
            if i < n_layers - 1:
                layers.append(nn.ReLU())
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Project features and zero padded positions.

        Args:
            x: (B, N, d_in) features.
            mask: (B, N) bool, True = real position.

        Returns:
            (B, N, d) projected features, exactly 0 at padded positions (even if the padded
            input held NaN or inf).
        """
        return self.mlp(x).masked_fill(~mask[..., None], 0.0)
