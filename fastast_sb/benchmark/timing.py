"""Timing protocol: warm-up, device sync, median, round-robin interleaving.

Every measurement follows one protocol: fixed input shape, warm-up calls
discarded, device synchronised after each call, median over repeats.
Configurations compared with each other are timed round-robin (one call of
each per round), so the slow phases of a shared, noisy machine hit all of
them alike, and speed-ups are medians of per-round ratios: numbers measured
seconds apart in the same run, never absolute times compared across runs.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Callable, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fastast_sb.models.ast import AST
from fastast_sb.tome.schedule import RSpec

Step = Callable[[], object]


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (no-op on CPU).

    Example
    -------
    >>> synchronize(torch.device("cpu"))
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(
    fn: Step,
    device: torch.device,
    warmup: int = 1,
    repeats: int = 3,
) -> float:
    """Median seconds of ``fn()`` after ``warmup`` discarded calls.

    Arguments
    ---------
    fn : callable
        The work to time (no arguments).
    device : torch.device
        Synchronised after every call.
    warmup, repeats : int
        Discarded calls, timed calls.

    Returns
    -------
    float
        Median seconds per call.

    Example
    -------
    >>> time_fn(lambda: None, torch.device("cpu")) >= 0
    True
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_times(
    fns: Sequence[Step],
    device: torch.device,
    warmup: int = 1,
    repeats: int = 3,
) -> List[List[float]]:
    """Seconds of every call of each function, timed round-robin.

    All functions get ``warmup`` discarded calls first; then each of the
    ``repeats`` rounds times every function once, in turn.

    Arguments
    ---------
    fns : sequence of callables
        The configurations to compare.
    device : torch.device
        Synchronised after every call.
    warmup, repeats : int
        Discarded calls per function, rounds.

    Returns
    -------
    list of list of float
        ``times[i][k]``: seconds of function i in round k.

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
            times[i].append(time_fn(fn, device, warmup=0, repeats=1))
    return times


def paired_speedups(
    times: Sequence[Sequence[float]], ref: int = 0
) -> List[float]:
    """Speed-up of each configuration over ``ref``: median per-round ratio.

    Arguments
    ---------
    times : sequence of sequences
        From :func:`interleaved_times` (same number of rounds each).
    ref : int
        Index of the reference configuration (its speed-up is 1.0).

    Returns
    -------
    list of float
        ``median_k(times[ref][k] / times[i][k])`` for each i.

    Example
    -------
    >>> paired_speedups([[2.0, 4.0, 2.0], [1.0, 1.0, 2.0]])
    [1.0, 2.0]
    """
    base = times[ref]
    out = []
    for i, row in enumerate(times):
        if i == ref:
            out.append(1.0)
            continue
        if len(row) != len(base):
            raise ValueError(
                f"configuration {i} has {len(row)} rounds, the reference "
                f"has {len(base)}; expected equal counts"
            )
        out.append(statistics.median(b / t for b, t in zip(base, row)))
    return out


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


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


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
    return feats.to(_device_of(model))


def inference_step(
    model: nn.Module,
    feats: torch.Tensor,
    r: RSpec = None,
    dtype: Optional[torch.dtype] = None,
    head: Optional[nn.Module] = None,
) -> Step:
    """One forward pass of an AST at merge schedule ``r`` (no grad).

    Arguments
    ---------
    model : nn.Module
        An :class:`~fastast_sb.models.ast.AST` (put it in eval mode).
    feats : torch.Tensor
        [B, T, F] input on the model's device.
    r : optional
        Merge schedule for the call (the model's own if ``None``).
    dtype : torch.dtype, optional
        Autocast dtype; fp32 when ``None``.
    head : nn.Module, optional
        Classifier applied to the pooled embedding (logits out).

    Returns
    -------
    callable
        Runs the forward pass.

    Example
    -------
    >>> m = AST(input_tdim=128, preset="tiny", depth=1).eval()
    >>> inference_step(m, torch.randn(1, 128, 128), r=4)().shape
    torch.Size([1, 1, 192])
    """
    device = feats.device

    def run() -> torch.Tensor:
        with torch.inference_mode(), autocast_for(device, dtype):
            out = model(feats, r=r)
            return out if head is None else head(out)

    return run


def train_step(
    model: nn.Module,
    head: nn.Module,
    feats: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    r: RSpec = None,
    dtype: Optional[torch.dtype] = None,
) -> Step:
    """One training step: forward, cross-entropy, backward, optimiser step.

    Arguments
    ---------
    model : nn.Module
        An :class:`~fastast_sb.models.ast.AST` in train mode.
    head : nn.Module
        [B, 1, D] -> [B, 1, C] classifier.
    feats : torch.Tensor
        [B, T, F] input.
    labels : torch.Tensor
        [B] class indices.
    optimizer : torch.optim.Optimizer
        Over the parameters of ``model`` and ``head``.
    r : optional
        Merge schedule (merging in training).
    dtype : torch.dtype, optional
        Autocast dtype; fp32 when ``None``.

    Returns
    -------
    callable
        Runs the step and returns the loss.

    Example
    -------
    >>> from fastast_sb.models.ast import ASTHead
    >>> m = AST(input_tdim=32, embed_dim=16, depth=1, num_heads=2)
    >>> h = ASTHead(16, 3)
    >>> opt = torch.optim.SGD([*m.parameters(), *h.parameters()], lr=0.1)
    >>> step = train_step(m, h, torch.randn(2, 32, 128),
    ...                   torch.tensor([0, 2]), opt, r=8)
    >>> step().ndim
    0
    """
    device = feats.device

    def run() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast_for(device, dtype):
            logits = head(model(feats, r=r)).squeeze(1)  # [B, C]
        loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return run


def throughput(
    model: AST,
    r: RSpec,
    batch_size: int = 8,
    warmup: int = 1,
    repeats: int = 3,
    dtype: Optional[torch.dtype] = None,
) -> float:
    """Samples per second of ``model`` at merge schedule ``r``.

    Arguments
    ---------
    model : AST
        The encoder (its head costs nothing in comparison).
    r : schedule
        Merge schedule for this measurement.
    batch_size : int
        Examples per forward pass.
    warmup, repeats : int
        Discarded runs, measured runs (median).
    dtype : torch.dtype, optional
        Autocast dtype (e.g. torch.bfloat16); fp32 when ``None``.

    Returns
    -------
    float
        Samples per second.

    Example
    -------
    >>> m = AST(input_tdim=128, preset="tiny", depth=1)
    >>> throughput(m, 0, batch_size=1, warmup=0, repeats=1) > 0
    True
    """
    was_training = model.training
    model.eval()
    feats = random_features(model, batch_size)
    step = inference_step(model, feats, r, dtype)
    seconds = time_fn(step, feats.device, warmup, repeats)
    model.train(was_training)
    return batch_size / seconds


def interleaved_throughput(
    model: AST,
    r_values: Sequence[RSpec],
    batch_size: int = 8,
    warmup: int = 1,
    repeats: int = 3,
    dtype: Optional[torch.dtype] = None,
) -> List[float]:
    """Samples per second for each schedule, timed round-robin.

    Each repeat times every schedule once, in turn, so slow phases of a
    shared, noisy machine hit all schedules alike; the median per schedule
    is reported.

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


def training_copy(model: nn.Module) -> nn.Module:
    """A deep copy in train mode, so timing steps leave ``model`` untouched.

    Example
    -------
    >>> m = AST(input_tdim=128, preset="tiny", depth=1).eval()
    >>> training_copy(m).training, m.training
    (True, False)
    """
    return copy.deepcopy(model).train()
