"""Classification and tagging metrics over a whole evaluation set.

Accuracy is top-1 against the argmax of the targets; mAP the mean over
classes of the average precision (summed over distinct score thresholds, as
scikit-learn's ``average_precision_score``); mAUC the mean ROC AUC
(Mann-Whitney, ties count half); d' is ``sqrt(2) * Phi^-1(mAUC)``. Classes
without a positive (for AUC: or without a negative) are skipped and counted,
never averaged in as zeros. Under DDP, :meth:`ScoreCollector.gather`
all-gathers the scores (gloo works on CPU) and drops duplicated example ids,
so the numbers are those of the whole set.

References: Gong et al., "AST: Audio Spectrogram Transformer", Interspeech
2021; Gemmeke et al., "Audio Set", ICASSP 2017 (d').
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
        """Add a batch: logits [B, C], targets [B, C] or indices [B], and
        ``ids`` by which :meth:`gather` drops duplicates (else kept)."""
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
        return accuracy(*self.stacked())

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
        """A collector with every DDP process's examples in rank order,
        duplicates dropped by id. A collective; ``self`` without a group,
        with one process, or inside ``run_on_main`` / ``main_process_only``.
        """
        if not _collective_possible():
            return self
        device = _comm_device()
        lg, tg = self.stacked() or (torch.zeros(0, 0), torch.zeros(0, 0))
        tg_2d = tg[:, None] if tg.ndim == 1 else tg  # class indices [N]
        mine = [len(lg), lg.shape[1], tg.shape[1] if tg.ndim == 2 else 0]
        shapes = [
            t.tolist() for t in _all_gather(torch.tensor(mine, device=device))
        ]
        widths = {tuple(s[1:]) for s in shapes if s[0] > 0}
        if len(widths) > 1:
            raise ValueError(
                f"processes collected (scores, targets) of different widths "
                f"{widths}; expected one model and label set"
            )
        all_ids = [None] * len(shapes)
        dist.all_gather_object(all_ids, self.ids)
        out = ScoreCollector()
        n_max = max(s[0] for s in shapes)
        if n_max == 0:
            return out
        n_cols, t_cols = widths.pop()
        # Each process sends [n_max, logits | targets], zero-padded.
        block = torch.zeros(n_max, n_cols + max(t_cols, 1), device=device)
        if len(lg):
            block[: len(lg)] = torch.cat([lg, tg_2d], 1).to(device)
        with_ids = all(ids is not None for ids in all_ids)
        seen: set = set()
        for (n, _, _), part, ids in zip(shapes, _all_gather(block), all_ids):
            if n == 0:
                continue
            part = part[:n].cpu()
            lg, tg = part[:, :n_cols], part[:, n_cols:]
            tg = tg[:, 0] if t_cols == 0 else tg
            if with_ids:
                keep = [i for i, k in enumerate(ids) if k not in seen]
                seen.update(ids)
                lg, tg, ids = lg[keep], tg[keep], [ids[i] for i in keep]
            out.append(lg, tg, ids if with_ids else None)
        return out


def mean_over_processes(value: float, weight: float) -> float:
    """``sum(value * weight) / sum(weight)`` over DDP processes: ``value``
    is this process's mean (e.g. its validation loss), ``weight`` its number
    of examples. A collective, like :meth:`ScoreCollector.gather`.

    Example
    -------
    >>> mean_over_processes(0.5, 10)
    0.5
    """
    if not _collective_possible():
        return float(value)
    pair = [float(value) * float(weight), float(weight)]
    buf = torch.tensor(pair, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(buf)
    total, count = buf.tolist()
    return float(value) if count == 0 else total / count


def _collective_possible() -> bool:
    """True when every process of a DDP group can take part."""
    if not (dist.is_available() and dist.is_initialized()):
        return False
    from speechbrain.utils.distributed import ddp_prevent_block

    return dist.get_world_size() > 1 and not ddp_prevent_block()


def _comm_device() -> torch.device:
    """NCCL needs CUDA tensors; other backends take CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_gather(x: torch.Tensor) -> List[torch.Tensor]:
    """``x`` of every process, in rank order (a collective)."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x)
    return parts


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
    precision = tp / (last + 1)  # tp / (tp + fp)
    return float(np.sum(np.diff(np.r_[0.0, tp / tp[-1]]) * precision))


def _roc_auc_1d(s: np.ndarray, y: np.ndarray) -> float:
    """AUC of one class from mid-ranks (Mann-Whitney U / (P * N))."""
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    mid_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based, per value
    n_pos = int(y.sum())
    u = mid_rank[inverse][y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * (y.size - n_pos)))


def average_precision(
    scores: torch.Tensor, targets: torch.Tensor
) -> List[Optional[float]]:
    """Per-class average precision of [N, C] ``scores`` (logits or
    probabilities: only their order matters) against [N, C] multi-hot
    ``targets`` (>= 0.5 is positive); ``None`` for a class without positive.

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
    n_pos = y.sum(axis=0)
    return [
        _roc_auc_1d(s[:, c], y[:, c]) if 0 < n_pos[c] < len(y) else None
        for c in range(s.shape[1])
    ]


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
    """``mAP``, ``mAUC``, ``dprime`` (from mAUC; NaN over no class) of [N, C]
    scores against multi-hot targets, and the classes left out:
    ``ap_skipped`` (no positive), ``auc_skipped`` (no positive or negative).

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
