"""Does a number format keep a trained model's answers? fp32 vs the others.

Per format (:func:`fastast_sb.precision.prepare_model`) and merge schedule:
the share of clips whose top-1 class equals fp32's at the same schedule,
and the accuracy (single-label) or mAP (multi-label), with its change
against fp32 at r = 0. Issue 16's bar for a format to count as safe: at
least 99 % top-1 agreement and at most 0.5 points of accuracy lost.
``scripts/precision_parity.py`` is the command line.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch

from fastast_sb.benchmark.accuracy import EvalSet
from fastast_sb.metrics import accuracy, tagging_metrics
from fastast_sb.precision import autocast, prepare_model

#: Issue 16's bar: top-1 agreement with fp32 (fraction), accuracy loss (pts).
MIN_AGREEMENT = 0.99
MAX_LOSS_POINTS = 0.5
Row = Dict[str, Any]


def format_logits(
    model: torch.nn.Module,
    head: torch.nn.Module,
    feats: torch.Tensor,
    fmt: str,
    r: Any = None,
    batch_size: int = 16,
) -> torch.Tensor:
    """[M, C] logits of ``head(model(feats))`` in the concrete ``fmt``
    (``model`` already prepared for it), ``batch_size`` clips a pass.

    Example
    -------
    >>> from fastast_sb.models.ast import AST, ASTHead
    >>> m, h = AST(128, preset="tiny", depth=1), ASTHead(192, 3)
    >>> format_logits(m, h, torch.randn(3, 128, 128), "bf16", 0, 2).shape
    torch.Size([3, 3])
    """
    model.eval()
    head.eval()
    device = next(head.parameters()).device
    out: List[torch.Tensor] = []
    with torch.inference_mode(), autocast(device, fmt):
        for start in range(0, feats.shape[0], batch_size):
            x = feats[start : start + batch_size].to(device)
            out.append(head(model(x, r=r)).squeeze(1).float().cpu())
    return torch.cat(out)


def _metric(scores: torch.Tensor, targets: torch.Tensor, multilabel: bool):
    if multilabel:
        return "mAP", tagging_metrics(scores, targets)["mAP"]
    return "acc", accuracy(scores, targets)


def format_parity(
    model: torch.nn.Module,
    head: torch.nn.Module,
    data: EvalSet,
    formats: Sequence[str],
    specs: Sequence[Any] = (0,),
    multilabel: bool = False,
    batch_size: int = 16,
) -> List[Row]:
    """A row per (format, schedule): ``precision``, ``r``, ``metric``
    (``acc`` or ``mAP``), ``value``, ``change_points`` (against fp32 at
    the first schedule, in points), ``agreement`` (top-1 equal to fp32's
    at that schedule) and ``safe`` (issue 16's bar against fp32 at the
    same schedule; fp32 is always safe).

    Example
    -------
    >>> from fastast_sb.models.ast import AST, ASTHead
    >>> torch.manual_seed(0) and None
    >>> m, h = AST(128, preset="tiny", depth=1), ASTHead(192, 3)
    >>> data = EvalSet(torch.randn(4, 128, 128), torch.eye(3)[[0, 1, 2, 0]])
    >>> rows = format_parity(m, h, data, ["fp32", "bf16"], [0])
    >>> [(row["precision"], row["agreement"]) for row in rows][0]
    ('fp32', 1.0)
    """
    if not formats or formats[0] != "fp32":
        raise ValueError(f"formats must start with fp32, got {list(formats)}")
    rows: List[Row] = []
    reference: Dict[str, Any] = {}  # schedule -> fp32 (top-1, value)
    base = None
    for fmt in formats:
        prepared = prepare_model(model, fmt)
        for spec in specs:
            logits = format_logits(
                prepared, head, data.feats, fmt, spec, batch_size
            )
            top1 = logits.argmax(dim=1)
            name, value = _metric(logits, data.targets, multilabel)
            ref, ref_value = reference.setdefault(str(spec), (top1, value))
            base = value if base is None else base
            change = 100 * (value - base)
            loss = 100 * (ref_value - value)
            agreement = float((top1 == ref).float().mean())
            rows.append(
                {
                    "precision": fmt,
                    "r": str(spec),
                    "metric": name,
                    "value": value,
                    "change_points": change,
                    "agreement": agreement,
                    "safe": fmt == "fp32"
                    or (agreement >= MIN_AGREEMENT and loss <= MAX_LOSS_POINTS),
                }
            )
    return rows


def parity_markdown(rows: Sequence[Row]) -> str:
    """The rows of :func:`format_parity` as a markdown table.

    Example
    -------
    >>> print(parity_markdown([{"precision": "fp32", "r": "0", "metric": "acc",
    ...     "value": 0.8, "change_points": 0.0, "agreement": 1.0,
    ...     "safe": True}]))
    | format | r | acc (%) | vs fp32 r=0 (pts) | top-1 = fp32 (%) | safe |
    |---|---|---|---|---|---|
    | fp32 | 0 | 80.00 | +0.00 | 100.00 | yes |
    """
    metric = rows[0]["metric"] if rows else "acc"
    lines = [
        f"| format | r | {metric} (%) | vs fp32 r=0 (pts) | "
        "top-1 = fp32 (%) | safe |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['precision']} | {row['r']} | {100 * row['value']:.2f} | "
            f"{row['change_points']:+.2f} | {100 * row['agreement']:.2f} | "
            f"{'yes' if row['safe'] else 'no'} |"
        )
    return "\n".join(lines)
