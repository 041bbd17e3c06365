"""Task losses on logits: softmax cross-entropy or sigmoid BCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def task_loss(
    logits: torch.Tensor, targets: torch.Tensor, multilabel: bool = False
) -> torch.Tensor:
    """Mean loss of ``logits`` [B, C] against ``targets``: [B, C] soft or
    multi-hot, or [B] class indices (single-label only); ``multilabel``:
    sigmoid + BCE (AudioSet, AST's Speech Commands) instead of softmax CE.

    Example
    -------
    >>> logits = torch.tensor([[0.0, 0.0]])
    >>> round(task_loss(logits, torch.tensor([0])).item(), 4)
    0.6931
    >>> round(task_loss(logits, torch.tensor([[1.0, 0.0]]), True).item(), 4)
    0.6931
    """
    if targets.ndim == 1:
        if multilabel:
            raise ValueError(
                "multi-label loss needs targets [B, C], got class indices "
                f"of shape {tuple(targets.shape)}"
            )
        return F.cross_entropy(logits, targets.long())
    if targets.shape != logits.shape:
        raise ValueError(
            f"targets {tuple(targets.shape)} do not match logits "
            f"{tuple(logits.shape)}"
        )
    targets = targets.to(logits.dtype)
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, targets)
    return F.cross_entropy(logits, targets)
