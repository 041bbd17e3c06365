"""Knowledge-distillation losses (CMKD convention).

FastAST students learn from a frozen teacher with the Cross-Model Knowledge
Distillation (CMKD) loss::

    loss = lam * L_task(psi(z_s), y)
           + (1 - lam) * L_kd(psi(z_s), psi(z_t / tau))

Both terms are :func:`fastast_sb.losses.task_loss`: softmax cross-entropy
for single-label data (the KD term is then the KL divergence plus a constant
teacher entropy), sigmoid BCE for multi-label data. The paper scales only
the teacher logits by ``tau``; Hinton et al.'s ``tau ** 2`` factor is a
switch, off by default.

References
----------
Y. Gong, S. Khurana, A. Rouditchenko, J. Glass, "CMKD: CNN/Transformer-Based
Cross-Model Knowledge Distillation for Audio Classification", arXiv:2203.06760,
2022.

G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural
Network", NeurIPS Deep Learning Workshop, 2015.
"""

from typing import Dict

import torch

from fastast_sb.losses import task_loss

__all__ = ["cmkd_loss", "target_confidence"]


def _check_targets(
    targets: torch.Tensor, logits: torch.Tensor, multilabel: bool
) -> None:
    """Raise ``ValueError`` when ``targets`` do not fit ``logits [B, C]``."""
    batch, num_classes = logits.shape
    if targets.dim() == 1:
        if multilabel:
            raise ValueError(
                f"multi-label targets must be [B, C] = [{batch}, "
                f"{num_classes}] floats, got class indices of shape "
                f"{tuple(targets.shape)}"
            )
        if targets.dtype.is_floating_point or targets.dtype == torch.bool:
            raise ValueError(
                "single-label targets of shape [B] must be integer class "
                f"indices, got dtype {targets.dtype}"
            )
        if targets.shape[0] != batch:
            raise ValueError(
                f"targets have batch size {targets.shape[0]}, logits have "
                f"{batch} (logits shape {tuple(logits.shape)})"
            )
        return
    if targets.shape != logits.shape:
        raise ValueError(
            f"targets of shape {tuple(targets.shape)} do not match logits of "
            f"shape {tuple(logits.shape)}; expected class indices [B] or "
            "(soft) targets [B, C]"
        )
    if not targets.dtype.is_floating_point:
        raise ValueError(
            f"targets of shape [B, C] must be floating point, got dtype "
            f"{targets.dtype}"
        )


def _check_logits(logits: torch.Tensor, tau: float, who: str) -> None:
    """Raise ``ValueError`` unless ``tau > 0`` and ``logits`` are ``[B, C]``."""
    if not tau > 0.0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if logits.dim() != 2:
        raise ValueError(
            f"{who} logits must be [B, C], got shape {tuple(logits.shape)}"
        )


def cmkd_loss(
    student_logits: torch.Tensor,
    targets: torch.Tensor,
    teacher_logits: torch.Tensor,
    lam: float = 0.1,
    tau: float = 1.0,
    multilabel: bool = False,
    tau2: bool = False,
) -> Dict[str, torch.Tensor]:
    """Compute the CMKD loss ``lam * task + (1 - lam) * kd``.

    Arguments
    ---------
    student_logits : torch.Tensor
        Student logits ``[B, C]``.
    targets : torch.Tensor
        Ground truth. Single-label: class indices ``[B]`` (integer) or
        probability targets ``[B, C]`` (one-hot, label-smoothed or mixed by
        mixup). Multi-label: ``[B, C]`` floats in ``[0, 1]``.
    teacher_logits : torch.Tensor
        Teacher logits ``[B, C]`` (detached: no gradient reaches the teacher).
    lam : float
        Weight of the task loss, in ``[0, 1]``; ``1 - lam`` weighs the KD loss.
    tau : float
        Temperature dividing the teacher logits, ``> 0``.
    multilabel : bool
        Sigmoid / BCE (AudioSet) instead of softmax / cross-entropy.
    tau2 : bool
        Multiply the KD term by ``tau ** 2`` (Hinton et al.).

    Returns
    -------
    dict
        ``"total"``, ``"task"`` and ``"kd"``, each a scalar tensor (means over
        the batch; over batch and classes for the multi-label BCE terms).

    Example
    -------
    >>> student, teacher = torch.zeros(2, 3), torch.zeros(2, 3)
    >>> out = cmkd_loss(student, torch.tensor([0, 2]), teacher)
    >>> sorted(out)
    ['kd', 'task', 'total']
    >>> round(out["total"].item(), 4)  # log(3) for both terms
    1.0986
    >>> soft = torch.full((2, 3), 0.5)
    >>> out = cmkd_loss(student, soft, teacher, multilabel=True)
    >>> round(out["kd"].item(), 4)  # log(2)
    0.6931
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    _check_logits(student_logits, tau, "student")
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"student logits of shape {tuple(student_logits.shape)} and "
            f"teacher logits of shape {tuple(teacher_logits.shape)} differ; "
            "expected the same [B, C] (map the teacher classes first)"
        )
    _check_targets(targets, student_logits, multilabel)

    z_t = teacher_logits.detach().to(student_logits.dtype) / tau
    soft = torch.sigmoid(z_t) if multilabel else torch.softmax(z_t, dim=-1)
    task = task_loss(student_logits, targets, multilabel)
    kd = task_loss(student_logits, soft, multilabel)
    if tau2:
        kd = kd * tau**2
    total = lam * task + (1.0 - lam) * kd
    return {"total": total, "task": task, "kd": kd}


def target_confidence(
    teacher_logits: torch.Tensor, tau: float = 1.0, multilabel: bool = False
) -> torch.Tensor:
    """How sure the KD targets ``psi(z_t / tau)`` of teacher logits [B, C]
    are: a scalar tensor.

    Single-label: the batch mean of the largest softmax probability (in
    ``[1 / C, 1]``). Multi-label: the mean over batch and classes of the
    sigmoid's ``max(p, 1 - p)`` (in ``[0.5, 1]``). A near one-hot teacher
    teaches little beyond the labels; a larger ``tau`` lowers this number.

    Example
    -------
    >>> import math
    >>> z = torch.tensor([[0.0, math.log(3.0)]])
    >>> round(target_confidence(z).item(), 4)  # softmax [0.25, 0.75]
    0.75
    >>> round(target_confidence(z, multilabel=True).item(), 4)  # 0.5, 0.75
    0.625
    """
    _check_logits(teacher_logits, tau, "teacher")
    z = teacher_logits.detach().float() / tau
    if multilabel:
        p = torch.sigmoid(z)
        return torch.maximum(p, 1.0 - p).mean()
    return torch.softmax(z, dim=-1).max(dim=-1).values.mean()
