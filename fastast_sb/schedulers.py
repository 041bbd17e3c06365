"""AST's learning-rate schedule as a pure function of epoch and step.

AST (Gong et al., 2021) keeps the base rate for the first epochs, then
multiplies it by ``decay_factor`` every ``decay_every`` epochs (``MultiStepLR``
with milestones ``range(decay_start, ..., decay_every)``); AudioSet adds a
linear warm-up. A pure function of (epoch, step) needs no checkpointed
state, so resumed runs follow it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ASTLRSchedule:
    """Step decay after ``decay_start`` epochs, optional linear warm-up.

    Arguments
    ---------
    lr : float
        Base learning rate.
    decay_start : int
        First milestone: after this many finished epochs the rate decays.
    decay_factor : float
        Multiplier per milestone (AST: 0.85 for ESC-50 / Speech Commands,
        0.5 for AudioSet).
    decay_every : int
        Epochs between milestones.
    warmup_steps : int
        Optimiser steps of linear warm-up (0: none).

    Example
    -------
    >>> sched = ASTLRSchedule(1.0, decay_start=5, decay_factor=0.5)
    >>> [sched(epoch, 10**6) for epoch in (1, 5, 6, 7)]
    [1.0, 1.0, 0.5, 0.25]
    >>> ASTLRSchedule(1.0, 5, 0.5, warmup_steps=100)(1, 49)
    0.5
    """

    lr: float
    decay_start: int = 5
    decay_factor: float = 0.85
    decay_every: int = 1
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 < self.decay_factor <= 1:
            raise ValueError(
                f"decay_factor must be in (0, 1], got {self.decay_factor}"
            )
        if self.decay_every < 1 or self.decay_start < 0:
            raise ValueError(
                f"need decay_every >= 1 and decay_start >= 0, got "
                f"{self.decay_every} and {self.decay_start}"
            )

    def __call__(self, epoch: int, step: int) -> float:
        """Rate for a batch of ``epoch`` (1-based) at optimiser ``step``."""
        decays = max(0, (epoch - 1 - self.decay_start) // self.decay_every + 1)
        lr = self.lr * self.decay_factor**decays
        if self.warmup_steps > 0 and step < self.warmup_steps:
            lr *= (step + 1) / self.warmup_steps
        return lr
