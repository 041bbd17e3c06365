"""Timing protocol: warm-up, device sync, median, round-robin interleaving.

Fixed input shape, warm-up calls discarded, device synchronised after each
call, median over repeats. Compared configurations are timed round-robin
(one call of each per round), so a noisy machine's slow phases hit all
alike; speed-ups are medians of per-round ratios, never absolute times
compared across runs.
"""

from __future__ import annotations

import copy
import os
import platform
import statistics
import time
from typing import Any, Callable, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fastast_sb.models.ast import AST

Step = Callable[[], object]


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (no-op on CPU).

    Example
    -------
    >>> synchronize(torch.device("cpu"))
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model and its logical CPU count.

    Example
    -------
    >>> "logical CPUs" in device_name(torch.device("cpu"))
    True
    """
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            models = [x for x in f if x.startswith("model name")]
        name = models[0].split(":", 1)[1].strip() if models else name
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} logical CPUs"


def time_fn(
    fn: Step, device: torch.device, warmup: int = 1, repeats: int = 3
) -> float:
    """Median seconds of ``fn()`` after ``warmup`` discarded calls.

    Example
    -------
    >>> time_fn(lambda: None, torch.device("cpu")) >= 0
    True
    """
    (times,) = interleaved_times([fn], device, warmup, repeats)
    return statistics.median(times)


def interleaved_times(
    fns: Sequence[Step],
    device: torch.device,
    warmup: int = 1,
    repeats: int = 3,
) -> List[List[float]]:
    """``times[i][k]``: seconds of function i in round k, round-robin
    (after ``warmup`` discarded calls of each).

    Example
    -------
    >>> t = interleaved_times([lambda: None] * 2, torch.device("cpu"), 0, 3)
    >>> len(t), len(t[0])
    (2, 3)
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    for fn in fns:
        for _ in range(warmup):
            fn()
    synchronize(device)
    times: List[List[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[i].append(time.perf_counter() - start)
    return times


def paired_speedups(
    times: Sequence[Sequence[float]], ref: int = 0
) -> List[float]:
    """Speed-up over ``ref``: ``median_k(times[ref][k] / times[i][k])``.

    Example
    -------
    >>> paired_speedups([[2.0, 4.0, 2.0], [1.0, 1.0, 2.0]])
    [1.0, 2.0]
    """
    base = times[ref]
    for i, row in enumerate(times):
        if len(row) != len(base):
            raise ValueError(
                f"configuration {i} has {len(row)} rounds, the reference "
                f"has {len(base)}; expected equal counts"
            )
    return [
        1.0 if i == ref else statistics.median(b / t for b, t in zip(base, row))
        for i, row in enumerate(times)
    ]


def autocast_for(
    device: torch.device, dtype: Optional[torch.dtype]
) -> torch.autocast:
    """Autocast to ``dtype`` on ``device`` (disabled when ``dtype`` is None).

    Example
    -------
    >>> with autocast_for(torch.device("cpu"), None):
    ...     torch.ones(1).dtype
    torch.float32
    """
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def random_features(model: AST, batch_size: int, seed: int = 0) -> torch.Tensor:
    """Fixed random features [B, T, F] for ``model``, on its device.

    Example
    -------
    >>> random_features(AST(input_tdim=128, preset="tiny", depth=1), 2).shape
    torch.Size([2, 128, 128])
    """
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(
        batch_size, model.input_tdim, model.input_fdim, generator=gen
    )
    return feats.to(next(model.parameters()).device)


def forward_step(
    forward: Callable[[], torch.Tensor],
    device: torch.device,
    dtype: Optional[torch.dtype] = None,
) -> Step:
    """``forward()`` under inference mode and autocast to ``dtype``.

    Example
    -------
    >>> forward_step(lambda: torch.ones(2), torch.device("cpu"))().shape
    torch.Size([2])
    """

    def run() -> torch.Tensor:
        with torch.inference_mode(), autocast_for(device, dtype):
            return forward()

    return run


def optimizer_step(
    logits: Callable[[], torch.Tensor],
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    dtype: Optional[torch.dtype] = None,
) -> Step:
    """Training step: ``logits()`` [B, C], cross-entropy, backward, step.

    Example
    -------
    >>> lin = nn.Linear(3, 2)
    >>> opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    >>> x, y = torch.ones(2, 3), torch.tensor([0, 1])
    >>> optimizer_step(lambda: lin(x), y, opt)().ndim
    0
    """

    def run() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast_for(labels.device, dtype):
            out = logits()
        loss = F.cross_entropy(out.float(), labels)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return run


def inference_step(
    model: nn.Module,
    feats: torch.Tensor,
    r: Any = None,
    dtype: Optional[torch.dtype] = None,
    head: Optional[nn.Module] = None,
) -> Step:
    """One forward pass of an AST (eval mode) on [B, T, F] ``feats`` with
    merge schedule ``r`` (the model's own if ``None``), then ``head``.

    Example
    -------
    >>> m = AST(input_tdim=128, preset="tiny", depth=1).eval()
    >>> inference_step(m, torch.randn(1, 128, 128), r=4)().shape
    torch.Size([1, 1, 192])
    """

    def forward() -> torch.Tensor:
        out = model(feats, r=r)
        return out if head is None else head(out)

    return forward_step(forward, feats.device, dtype)


def schedule_steps(
    model: nn.Module,
    head: nn.Module,
    feats: torch.Tensor,
    specs: Sequence[Any],
    labels: Optional[torch.Tensor] = None,
    dtype: Optional[torch.dtype] = None,
) -> List[Step]:
    """One step per schedule: inference (``model`` and ``head``, eval mode,
    [B, 1, C] out), or with ``labels`` :func:`optimizer_step` on train-mode
    copies (one Adam), leaving ``model`` and ``head`` untouched.

    Example
    -------
    >>> from fastast_sb.models.ast import ASTHead
    >>> m, h = AST(input_tdim=128, preset="tiny", depth=1), ASTHead(192, 2)
    >>> x = random_features(m, 2)
    >>> [s().shape for s in schedule_steps(m, h, x, [0, 8])]
    [torch.Size([2, 1, 2]), torch.Size([2, 1, 2])]
    >>> schedule_steps(m, h, x, [8], torch.tensor([0, 1]))[0]().ndim
    0
    """
    if labels is None:
        model.eval()
        head.eval()
        return [inference_step(model, feats, r, dtype, head) for r in specs]
    tmodel, thead = copy.deepcopy(model).train(), copy.deepcopy(head).train()
    opt = torch.optim.Adam([*tmodel.parameters(), *thead.parameters()])

    def logits(r: Any) -> Callable[[], torch.Tensor]:
        return lambda: thead(tmodel(feats, r=r)).squeeze(1)  # [B, C]

    return [optimizer_step(logits(r), labels, opt, dtype) for r in specs]


def interleaved_throughput(
    model: AST,
    r_values: Sequence[Any],
    batch_size: int = 8,
    warmup: int = 1,
    repeats: int = 3,
    dtype: Optional[torch.dtype] = None,
) -> List[float]:
    """Median samples per second of ``model`` (in eval mode, its mode
    restored after) at each schedule, timed round-robin.

    Example
    -------
    >>> m = AST(input_tdim=128, preset="tiny", depth=1)
    >>> len(interleaved_throughput(m, [0, 8], 1, warmup=0, repeats=1))
    2
    """
    was_training = model.training
    model.eval()
    feats = random_features(model, batch_size)
    steps = [inference_step(model, feats, r, dtype) for r in r_values]
    times = interleaved_times(steps, feats.device, warmup, repeats)
    model.train(was_training)
    return [batch_size / statistics.median(t) for t in times]


def throughput(
    model: AST,
    r: Any,
    batch_size: int = 8,
    warmup: int = 1,
    repeats: int = 3,
    dtype: Optional[torch.dtype] = None,
) -> float:
    """Samples per second of ``model`` at merge schedule ``r``.

    Example
    -------
    >>> m = AST(input_tdim=128, preset="tiny", depth=1)
    >>> throughput(m, 0, batch_size=1, warmup=0, repeats=1) > 0
    True
    """
    return interleaved_throughput(
        model, [r], batch_size, warmup, repeats, dtype
    )[0]
