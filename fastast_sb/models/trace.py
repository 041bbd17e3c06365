"""What a forward pass reports beyond the embedding; a cheap finite check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import Tensor


def all_finite(x: Tensor) -> bool:
    """True when x holds no NaN/Inf.

    One reduction in the common case: only a non-finite sum (NaN, Inf or an
    overflow) pays for the element-wise test.

    Example
    -------
    >>> all_finite(torch.ones(3)), all_finite(torch.tensor([1.0, 1e38] * 9))
    (True, True)
    >>> all_finite(torch.tensor([0.0, float("nan")]))
    False
    """
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


@dataclass
class TokenTrace:
    """What :meth:`AST.forward_tokens` reports about one forward pass."""

    pooled: Tensor  #: [B, 1, D] embedding
    tokens: Tensor  #: [B, N_out, D] tokens after the final norm
    size: Optional[Tensor]  #: [B, N_out, 1] patches per token (None: unmerged)
    source: Optional[Tensor]  #: [B, N_out, N_in] source map (when traced)
    counts: List[int]  #: tokens entering each block, then the final count
    schedule: List[int]  #: r merged in each block (after clipping)
    flops: int  #: analytic FLOPs of patch embedding and encoder blocks
