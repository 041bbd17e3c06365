"""Number formats side by side in one benchmark run (``--precision``).

Each format gets its model (:func:`fastast_sb.precision.prepare_model`:
the same module under autocast for bf16 / fp16, an int8 copy for int8) and
a step per merge schedule; all steps are timed in the same round-robin
rounds, so speed-ups over fp32 at r = 0 are per-round ratios of one run.
``--latency`` adds one step per row on a single clip (batch 1).
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Optional, Sequence

import torch
from torch import nn

from fastast_sb.precision import DTYPES, prepare_model, resolve_precision
from fastast_sb.timing import Step, inference_step, schedule_steps


def resolve_formats(names: Sequence[str], device: torch.device) -> List[str]:
    """Concrete formats for ``names`` on ``device``, fp32 first (added
    when missing: it is the reference), each once.

    Example
    -------
    >>> resolve_formats(["int8", "fp32", "int8"], torch.device("cpu"))
    ['fp32', 'int8']
    >>> resolve_formats(["bf16"], torch.device("cpu"))
    ['fp32', 'bf16']
    """
    formats = ["fp32"]
    for name in names:
        concrete = resolve_precision(name, device)
        if concrete not in formats:
            formats.append(concrete)
    return formats


def format_models(model: nn.Module, formats: Sequence[str]) -> Dict[str, Any]:
    """``{format: model to run}`` (int8: a quantized copy of ``model``).

    Example
    -------
    >>> net = nn.Linear(4, 4)
    >>> models = format_models(net, ["fp32", "bf16", "int8"])
    >>> models["bf16"] is net, models["int8"] is net
    (True, False)
    """
    return {f: prepare_model(model, f) for f in formats}


def format_steps(
    models: Dict[str, Any],
    head: nn.Module,
    feats: torch.Tensor,
    specs: Sequence[Any],
    labels: Optional[torch.Tensor] = None,
) -> List[Step]:
    """One step per (format, schedule), formats outer, in ``models``'
    order (see :func:`fastast_sb.timing.schedule_steps`).

    Example
    -------
    >>> from fastast_sb.models.ast import AST, ASTHead
    >>> m, h = AST(128, preset="tiny", depth=1), ASTHead(192, 2)
    >>> models = format_models(m, ["fp32", "int8"])
    >>> x = torch.randn(1, 128, 128)
    >>> [s().shape for s in format_steps(models, h, x, [0, 8])][-1]
    torch.Size([1, 1, 2])
    """
    steps: List[Step] = []
    for f, model in models.items():
        steps += schedule_steps(
            model, head, feats, specs, labels, DTYPES.get(f)
        )
    return steps


def latency_steps(
    models: Dict[str, Any],
    head: nn.Module,
    clip: torch.Tensor,
    specs: Sequence[Any],
) -> List[Step]:
    """Inference on one clip [1, T, F] per (format, schedule).

    Example
    -------
    >>> from fastast_sb.models.ast import AST, ASTHead
    >>> m, h = AST(128, preset="tiny", depth=1).eval(), ASTHead(192, 2)
    >>> steps = latency_steps({"fp32": m}, h, torch.randn(1, 128, 128), [0])
    >>> steps[0]().shape
    torch.Size([1, 1, 2])
    """
    if clip.shape[0] != 1:
        raise ValueError(f"latency needs one clip, got a batch of {len(clip)}")
    return [
        inference_step(model, clip, spec, DTYPES.get(f), head)
        for f, model in models.items()
        for spec in specs
    ]


@contextlib.contextmanager
def embedding_model(tagger: Any, model: nn.Module) -> Iterator[Any]:
    """``tagger`` with ``model`` as its embedding model, restored after.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> t = SimpleNamespace(mods=nn.ModuleDict({"embedding_model": nn.ReLU()}))
    >>> with embedding_model(t, nn.Tanh()) as inner:
    ...     type(inner.mods.embedding_model).__name__
    'Tanh'
    >>> type(t.mods.embedding_model).__name__
    'ReLU'
    """
    if tagger is None:
        yield tagger
        return
    original = tagger.mods["embedding_model"]
    tagger.mods["embedding_model"] = model
    try:
        yield tagger
    finally:
        tagger.mods["embedding_model"] = original


def add_format_metrics(
    rows: List[Dict[str, Any]],
    specs: Sequence[Any],
    tagger: Any,
    train_inf: Any,
    models: Dict[str, Any],
    manifest: Any,
    batch_size: int = 16,
) -> str:
    """Accuracy / mAP columns of rows laid out formats outer, schedules
    inner (:func:`fastast_sb.benchmark.accuracy.add_metrics` per format,
    each checkpoint in that format); the metric name."""
    from fastast_sb.benchmark import accuracy

    other_models: Dict[str, Any] = {}
    if train_inf is not None:
        model = train_inf.mods.embedding_model
        other_models = format_models(model, list(models))
    n, metric = len(specs), "acc"
    for i, (f, model) in enumerate(models.items()):
        with contextlib.ExitStack() as stack:
            inf = stack.enter_context(embedding_model(tagger, model))
            other = stack.enter_context(
                embedding_model(train_inf, other_models.get(f))
            )
            metric = accuracy.add_metrics(
                rows[i * n : (i + 1) * n],
                specs,
                inf,
                manifest,
                other,
                batch_size,
                DTYPES.get(f),
            )
    return metric
