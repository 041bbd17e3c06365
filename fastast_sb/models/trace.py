"""What a forward pass reports beyond the embedding, and the cheap finite
check of its input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch


def all_finite(x: torch.Tensor) -> bool:
    """True when x holds no NaN/Inf.

    One reduction in the common case: a NaN or Inf makes the sum non-finite,
    and only a non-finite sum (which an overflow can also cause) pays for
    the element-wise test.

    Example
    -------
    >>> all_finite(torch.ones(3)), all_finite(torch.tensor([1.0, 1e38] * 9))
    (True, True)
    >>> all_finite(torch.tensor([0.0, float("nan")]))
    False
    """
    if bool(torch.isfinite(x.sum())):
        return True
    return bool(torch.isfinite(x).all())


@dataclass
class TokenTrace:
    """What :meth:`AST.forward_tokens` reports about one forward pass.

    Attributes
    ----------
    pooled : torch.Tensor
        [B, 1, D] embedding.
    tokens : torch.Tensor
        [B, N_out, D] tokens after the final norm.
    size : torch.Tensor or None
        [B, N_out, 1] patches per token (None when nothing merged).
    source : torch.Tensor or None
        [B, N_out, N_in] source map (when traced).
    counts : list of int
        Tokens entering each block, then the final count.
    schedule : list of int
        r merged in each block (after clipping).
    flops : int
        Analytic FLOPs of patch embedding and encoder blocks.
    """

    pooled: torch.Tensor
    tokens: torch.Tensor
    size: Optional[torch.Tensor]
    source: Optional[torch.Tensor]
    counts: List[int]
    schedule: List[int]
    flops: int
