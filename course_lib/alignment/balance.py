"""Balance tokens (COREBA eq. 1).

Video clips that match no query word still have to put their attention somewhere; with a
softmax over words only, they are forced onto some word and inject noise. COREBA appends
``L_b`` learnable *balance tokens* ``B (L_b, d)`` to the projected text tokens,

    F~_t = [F'_t ; B]  in R^{(L + L_b) x d}            (COREBA eq. 1)

so irrelevant clips can attend to the balance tokens instead. Balance tokens are always real
(never padded), so the key padding mask is extended with ``True``.
"""

from __future__ import annotations

import torch
from torch import nn


def append_balance_tokens(
    text: torch.Tensor, text_mask: torch.Tensor, tokens: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Append the same learnable tokens to every text sequence of a batch (COREBA eq. 1).

    Args:
        text: (B, L, d) projected text tokens.
        text_mask: (B, L) bool, True = real word.
        tokens: (L_b, d) balance tokens (``L_b`` may be 0).

    Returns:
        balanced text (B, L + L_b, d) and its mask (B, L + L_b); the last ``L_b`` entries of the
        mask are True.
    """
    batch = text.shape[0]
    expanded = tokens[None].expand(batch, -1, -1).to(text.dtype)
    real = torch.ones(batch, tokens.shape[0], dtype=torch.bool, device=text_mask.device)
    return torch.cat([text, expanded], dim=1), torch.cat([text_mask, real], dim=1)


class BalanceTokens(nn.Module):
    """``L_b`` learnable balance tokens appended to the text (COREBA eq. 1).

    Args:
        n_tokens: number of balance tokens ``L_b`` (0 disables them: identity).
        d: model width.
    """

    def __init__(self, n_tokens: int, d: int) -> None:
        super().__init__()
        if n_tokens < 0:
            raise ValueError(f"n_tokens must be >= 0, got {n_tokens}")
        self.n_tokens = n_tokens
        self.tokens = nn.Parameter(torch.randn(n_tokens, d) * 0.02)

    def forward(
        self, text: torch.Tensor, text_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``([F'_t; B], mask)``; see :func:`append_balance_tokens`."""
        return append_balance_tokens(text, text_mask, self.tokens)
