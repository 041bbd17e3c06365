"""Classification metrics over a whole evaluation set.

References: AST (Gong et al., 2021) reports accuracy for ESC-50 and Speech
Commands and mAP for AudioSet.
"""

from __future__ import annotations

from typing import List, Optional

import torch


class ScoreCollector:
    """Collect logits and targets batch by batch, then compute metrics.

    Example
    -------
    >>> col = ScoreCollector()
    >>> col.append(torch.tensor([[2.0, 1.0]]), torch.tensor([[1.0, 0.0]]))
    >>> col.append(torch.tensor([[2.0, 1.0]]), torch.tensor([[0.0, 1.0]]))
    >>> col.accuracy()
    0.5
    """

    def __init__(self) -> None:
        self.logits: List[torch.Tensor] = []
        self.targets: List[torch.Tensor] = []

    def append(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch: logits [B, C], targets [B, C] or indices [B]."""
        self.logits.append(logits.detach().float().cpu())
        self.targets.append(targets.detach().float().cpu())

    def stacked(self) -> Optional[tuple]:
        """(logits [N, C], targets) of everything collected, or None."""
        if not self.logits:
            return None
        return torch.cat(self.logits), torch.cat(self.targets)

    def accuracy(self) -> float:
        """Top-1 accuracy against the argmax of the targets."""
        logits, targets = self.stacked()
        return accuracy(logits, targets)


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy; targets are indices [N] or scores [N, C].

    Example
    -------
    >>> accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
    0.5
    """
    if targets.ndim == 2:
        targets = targets.argmax(dim=-1)
    if logits.shape[0] == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return (logits.argmax(dim=-1) == targets.long()).float().mean().item()
