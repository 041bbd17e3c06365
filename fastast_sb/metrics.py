"""Classification and tagging metrics over a whole evaluation set.

* accuracy: top-1 against the argmax of the targets (ESC-50, Speech
  Commands);
* mAP: mean over classes of the average precision (area under the
  precision-recall curve, summed over distinct score thresholds as in
  scikit-learn's ``average_precision_score``);
* mAUC: mean over classes of the ROC AUC (Mann-Whitney statistic, ties
  counted one half);
* d': ``sqrt(2) * Phi^-1(mAUC)``.

Classes without a positive example have no average precision (and classes
without a positive or without a negative have no AUC): they are skipped and
counted, never silently averaged in as zeros.

Under DDP every process holds the scores of its own part of the data;
:meth:`ScoreCollector.gather` collects them (``torch.distributed``
all-gather, padded to equal lengths; gloo works on CPU) and drops
duplicated example ids before anything is computed, so the numbers are those
of the whole set whatever the number of processes.

References: Gong et al., "AST: Audio Spectrogram Transformer", Interspeech
2021 (accuracy for ESC-50 and Speech Commands, mAP / mAUC / d' for
AudioSet); Gemmeke et al., "Audio Set", ICASSP 2017 (d').
"""

from __future__ import annotations

import math
import statistics
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist


class ScoreCollector:
    """Collect logits and targets batch by batch, then compute metrics.

    Example
    -------
    >>> col = ScoreCollector()
    >>> col.append(torch.tensor([[2.0, 1.0]]), torch.tensor([[1.0, 0.0]]))
    >>> col.append(torch.tensor([[2.0, 1.0]]), torch.tensor([[0.0, 1.0]]))
    >>> col.accuracy()
    0.5
    >>> col.gather() is col  # not distributed: nothing to gather
    True
    """

    def __init__(self) -> None:
        self.logits: List[torch.Tensor] = []
        self.targets: List[torch.Tensor] = []
        self.ids: Optional[List[str]] = []

    def append(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        ids: Optional[Sequence[str]] = None,
    ) -> None:
        """Add a batch: logits [B, C], targets [B, C] or indices [B].

        ``ids`` (one per example) let :meth:`gather` drop examples that
        several processes evaluated; without them duplicates are kept.
        """
        if ids is not None and len(ids) != logits.shape[0]:
            raise ValueError(
                f"{len(ids)} ids for a batch of {logits.shape[0]} logits"
            )
        self.logits.append(logits.detach().float().cpu())
        self.targets.append(targets.detach().float().cpu())
        if ids is None or self.ids is None:
            self.ids = None
        else:
            self.ids.extend(str(i) for i in ids)

    def __len__(self) -> int:
        return sum(x.shape[0] for x in self.logits)

    def stacked(self) -> Optional[tuple]:
        """(logits [N, C], targets) of everything collected, or None."""
        if not self.logits:
            return None
        return torch.cat(self.logits), torch.cat(self.targets)

    def accuracy(self) -> float:
        """Top-1 accuracy against the argmax of the targets."""
        logits, targets = self.stacked()
        return accuracy(logits, targets)

    def summary(self, multilabel: bool = False) -> Dict[str, float]:
        """``acc``, plus ``mAP``, ``mAUC``, ``dprime`` and the skipped-class
        counts when ``multilabel`` (see :func:`tagging_metrics`).

        Example
        -------
        >>> col = ScoreCollector()
        >>> col.append(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.eye(2))
        >>> col.summary(multilabel=True)["mAP"]
        1.0
        """
        logits, targets = self.stacked()
        out = {"acc": accuracy(logits, targets)}
        if multilabel:
            out.update(tagging_metrics(logits, targets))
        return out

    def gather(self) -> ScoreCollector:
        """All processes' scores (DDP), duplicates dropped by id.

        Every process of the group must call it (it is a collective); it
        returns ``self`` when ``torch.distributed`` is not initialised, the
        group has one process, or the caller runs inside SpeechBrain's
        ``run_on_main`` / ``main_process_only`` (other processes are not
        there to answer).

        Returns
        -------
        ScoreCollector
            A collector with the examples of every process, in rank order.
        """
        if not _collective_possible():
            return self
        world = dist.get_world_size()
        device = _comm_device()
        stacked = self.stacked()
        n_local = 0 if stacked is None else stacked[0].shape[0]
        n_cols = -1 if stacked is None else stacked[0].shape[1]
        t_cols = -1 if stacked is None else _cols(stacked[1])
        shape = torch.tensor([n_local, n_cols, t_cols], device=device)
        shapes = [torch.zeros_like(shape) for _ in range(world)]
        dist.all_gather(shapes, shape)
        shapes_l = [s.tolist() for s in shapes]
        n_max = max(s[0] for s in shapes_l)
        cols = {s[1] for s in shapes_l if s[0] > 0}
        tcols = {s[2] for s in shapes_l if s[0] > 0}
        if len(cols) > 1 or len(tcols) > 1:
            raise ValueError(
                f"processes collected scores of different widths {cols} / "
                f"targets {tcols}; expected one model and label set"
            )
        all_ids = [None] * world
        dist.all_gather_object(all_ids, self.ids)
        out = ScoreCollector()
        if n_max == 0:
            return out
        n_cols, t_cols = cols.pop(), tcols.pop()
        logits = _padded(stacked, 0, n_max, n_cols, device)
        targets = _padded(stacked, 1, n_max, t_cols, device)
        logit_parts = [torch.empty_like(logits) for _ in range(world)]
        target_parts = [torch.empty_like(targets) for _ in range(world)]
        dist.all_gather(logit_parts, logits)
        dist.all_gather(target_parts, targets)
        with_ids = all(ids is not None for ids in all_ids)
        seen = set()
        for rank, (n, _, _) in enumerate(shapes_l):
            if n == 0:
                continue
            lg = logit_parts[rank][:n].cpu()
            tg = target_parts[rank][:n].cpu()
            if t_cols == 0:
                tg = tg[:, 0]
            ids = all_ids[rank] if with_ids else None
            if ids is not None:
                keep = [i for i, k in enumerate(ids) if k not in seen]
                seen.update(ids)
                lg, tg = lg[keep], tg[keep]
                ids = [ids[i] for i in keep]
            out.append(lg, tg, ids)
        return out


def mean_over_processes(value: float, weight: float) -> float:
    """Weighted mean of ``value`` over DDP processes (``value`` if alone).

    A collective, like :meth:`ScoreCollector.gather`: every process calls
    it, unless none can (no group, one process, inside ``run_on_main``).

    Arguments
    ---------
    value : float
        This process's mean (e.g. its average validation loss).
    weight : float
        Its number of examples.

    Returns
    -------
    float
        ``sum(value * weight) / sum(weight)`` over processes.

    Example
    -------
    >>> mean_over_processes(0.5, 10)
    0.5
    """
    if not _collective_possible():
        return float(value)
    device = _comm_device()
    buf = torch.tensor(
        [float(value) * float(weight), float(weight)],
        dtype=torch.float64,
        device=device,
    )
    dist.all_reduce(buf)
    total, count = buf.tolist()
    return float(value) if count == 0 else total / count


def _collective_possible() -> bool:
    """True when every process of a DDP group can take part."""
    if not (dist.is_available() and dist.is_initialized()):
        return False
    if dist.get_world_size() < 2:
        return False
    from speechbrain.utils.distributed import ddp_prevent_block

    return not ddp_prevent_block()


def _comm_device() -> torch.device:
    """NCCL needs CUDA tensors; other backends take CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _cols(targets: torch.Tensor) -> int:
    """Target width; 0 for class indices [N]."""
    return targets.shape[1] if targets.ndim == 2 else 0


def _padded(
    stacked: Optional[tuple],
    which: int,
    n_max: int,
    cols: int,
    device: torch.device,
) -> torch.Tensor:
    """[n_max, max(cols, 1)] float tensor: this process's rows, then zeros."""
    out = torch.zeros(n_max, max(cols, 1), device=device)
    if stacked is not None:
        x = stacked[which]
        x = x[:, None] if x.ndim == 1 else x
        out[: x.shape[0]] = x.to(device)
    return out


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


def _as_binary(
    scores: torch.Tensor, targets: torch.Tensor
) -> Tuple[np.ndarray, np.ndarray]:
    """float64 scores [N, C] and boolean labels [N, C] (targets >= 0.5)."""
    if scores.ndim != 2 or tuple(targets.shape) != tuple(scores.shape):
        raise ValueError(
            f"expected scores [N, C] and targets of the same shape, got "
            f"{tuple(scores.shape)} and {tuple(targets.shape)}"
        )
    s = scores.detach().cpu().double().numpy()
    y = targets.detach().cpu().numpy() >= 0.5
    return s, y


def _average_precision_1d(s: np.ndarray, y: np.ndarray) -> float:
    """AP of one class: sum over distinct thresholds of dRecall * precision."""
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    # Last position of each run of equal scores: one threshold per run.
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _roc_auc_1d(s: np.ndarray, y: np.ndarray) -> float:
    """AUC of one class from mid-ranks (Mann-Whitney U / (P * N))."""
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    mid_rank = ends - (counts - 1) / 2.0  # 1-based average rank per value
    ranks = mid_rank[inverse]
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def average_precision(
    scores: torch.Tensor, targets: torch.Tensor
) -> List[Optional[float]]:
    """Per-class average precision; ``None`` for classes without positives.

    Arguments
    ---------
    scores : torch.Tensor
        [N, C] logits or probabilities (only their order matters).
    targets : torch.Tensor
        [N, C] multi-hot labels (values >= 0.5 count as positive).

    Returns
    -------
    list
        C floats in [0, 1], or ``None`` where a class has no positive.

    Example
    -------
    >>> s = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.3]])
    >>> y = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    >>> [None if a is None else round(a, 4) for a in average_precision(s, y)]
    [0.8333, None]
    """
    s, y = _as_binary(scores, targets)
    return [
        _average_precision_1d(s[:, c], y[:, c]) if y[:, c].any() else None
        for c in range(s.shape[1])
    ]


def roc_auc(
    scores: torch.Tensor, targets: torch.Tensor
) -> List[Optional[float]]:
    """Per-class ROC AUC; ``None`` for classes lacking positives or negatives.

    Example
    -------
    >>> s = torch.tensor([[0.9], [0.5], [0.5], [0.1]])
    >>> roc_auc(s, torch.tensor([[1.0], [1.0], [0.0], [0.0]]))
    [0.875]
    """
    s, y = _as_binary(scores, targets)
    out: List[Optional[float]] = []
    for c in range(s.shape[1]):
        n_pos = int(y[:, c].sum())
        ok = 0 < n_pos < y.shape[0]
        out.append(_roc_auc_1d(s[:, c], y[:, c]) if ok else None)
    return out


def d_prime(auc: float) -> float:
    """Sensitivity index ``sqrt(2) * Phi^-1(auc)`` (inf at AUC 1).

    Example
    -------
    >>> d_prime(0.5)
    0.0
    >>> round(d_prime(0.9), 4)
    1.8124
    """
    if not 0.0 <= auc <= 1.0:
        raise ValueError(f"AUC must be in [0, 1], got {auc}")
    if auc in (0.0, 1.0):
        return math.copysign(math.inf, auc - 0.5)
    return math.sqrt(2.0) * statistics.NormalDist().inv_cdf(auc)


def _mean(values: Sequence[Optional[float]]) -> Tuple[float, int]:
    """Mean of the defined values and how many were ``None``."""
    kept = [v for v in values if v is not None]
    mean = float(np.mean(kept)) if kept else math.nan
    return mean, len(values) - len(kept)


def tagging_metrics(
    scores: torch.Tensor, targets: torch.Tensor
) -> Dict[str, float]:
    """mAP, mAUC and d' with the classes that could not be scored counted.

    Arguments
    ---------
    scores : torch.Tensor
        [N, C] logits (or probabilities).
    targets : torch.Tensor
        [N, C] multi-hot labels.

    Returns
    -------
    dict
        ``mAP``; ``mAUC``; ``dprime`` (from mAUC); ``ap_skipped`` (classes
        without a positive, left out of mAP); ``auc_skipped`` (classes
        without a positive or a negative, left out of mAUC). A mean over
        no class is NaN.

    Example
    -------
    >>> s = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]])
    >>> m = tagging_metrics(s, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
    >>> m["mAP"], m["mAUC"], m["ap_skipped"], m["auc_skipped"]
    (1.0, 1.0, 1, 1)
    """
    m_ap, ap_skipped = _mean(average_precision(scores, targets))
    m_auc, auc_skipped = _mean(roc_auc(scores, targets))
    return {
        "mAP": m_ap,
        "mAUC": m_auc,
        "dprime": math.nan if math.isnan(m_auc) else d_prime(m_auc),
        "ap_skipped": ap_skipped,
        "auc_skipped": auc_skipped,
    }
