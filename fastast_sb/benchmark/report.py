"""Benchmark tables and plot: markdown, CSV and PNG in FastAST's layout.

One row per merge schedule: tokens per block, analytic GFLOPs, the FLOP
ratio against r = 0, the measured samples/s, the measured speed-up (same
run) and their quotient, then accuracy or mAP per schedule when a
checkpoint was evaluated ("Inf": merging at inference only; "Train+Inf": a
model also trained with merging), as in Table 1 of Behera et al.,
"FastAST: Accelerating Audio Spectrogram Transformer via Token Merging and
Cross-Model Knowledge Distillation", Interspeech 2024.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

Row = Dict[str, Any]
PathLike = Union[str, Path]

#: CSV columns always present, in order.
CSV_COLUMNS = [
    "r",
    "schedule",
    "tokens_per_block",
    "final_tokens",
    "gflops",
    "flop_ratio",
    "samples_per_s",
    "speedup",
    "speedup_per_flop_ratio",
]
#: Optional metric columns (present when a checkpoint was evaluated).
METRIC_COLUMNS = ["metric_inf", "metric_train_inf"]


def run_length(values: Sequence[int]) -> str:
    """Compact a list as runs: ``[16, 16, 8]`` -> ``"16x2, 8"``.

    Example
    -------
    >>> run_length([16] * 12), run_length([44, 44, 43, 0])
    ('16x12', '44x2, 43, 0')
    """
    parts: List[str] = []
    i = 0
    while i < len(values):
        j = i
        while j < len(values) and values[j] == values[i]:
            j += 1
        count = j - i
        parts.append(f"{values[i]}x{count}" if count > 1 else f"{values[i]}")
        i = j
    return ", ".join(parts)


def compact_tokens(counts: Sequence[int], schedule: Sequence[int]) -> str:
    """Tokens in, tokens out and the per-block r, in a few characters.

    Arguments
    ---------
    counts : sequence of int
        Tokens entering each block, then the final count.
    schedule : sequence of int
        r merged in each block.

    Returns
    -------
    str

    Example
    -------
    >>> compact_tokens([602, 586, 570], [16, 16])
    '602 -> 570 (r 16x2)'
    >>> compact_tokens([146, 146], [0])
    '146 (no merging)'
    """
    if not any(schedule):
        return f"{counts[0]} (no merging)"
    return f"{counts[0]} -> {counts[-1]} (r {run_length(list(schedule))})"


def _metric_cell(value: Optional[float], percent: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.2f}" if percent else f"{value:.4f}"


def has_metrics(rows: Sequence[Row]) -> List[str]:
    """Which metric columns the rows carry.

    Example
    -------
    >>> has_metrics([{"metric_inf": 0.5}])
    ['metric_inf']
    """
    return [c for c in METRIC_COLUMNS if any(c in row for row in rows)]


def format_markdown(
    rows: Sequence[Row],
    metric: str = "acc",
    header: Optional[Sequence[str]] = None,
    footer: Optional[Sequence[str]] = None,
) -> str:
    """The table in markdown, with optional lines before and after it.

    Arguments
    ---------
    rows : sequence of dict
        Benchmark rows (keys of ``CSV_COLUMNS``, ``tokens``, ``counts``
        and optionally the metric columns).
    metric : str
        "acc" (shown in %) or another name such as "mAP" (shown as is).
    header, footer : sequence of str, optional
        Markdown lines around the table.

    Returns
    -------
    str

    Example
    -------
    >>> row = {"r": "0", "schedule": [0], "counts": [146, 146],
    ...        "gflops": 1.5, "flop_ratio": 1.0, "samples_per_s": 10.0,
    ...        "speedup": 1.0, "speedup_per_flop_ratio": 1.0}
    >>> print(format_markdown([row]))  # doctest: +NORMALIZE_WHITESPACE
    | r | tokens per block | GFLOPs | FLOP ratio | samples/s | speed-up |
      speed-up / FLOP ratio |
    |---|---|---|---|---|---|---|
    | 0 | 146 (no merging) | 1.50 | 1.00x | 10.00 | 1.00x | 1.00 |
    """
    metrics = has_metrics(rows)
    percent = metric == "acc"
    unit = f"{metric} (%)" if percent else metric
    names = {
        "metric_inf": f"{unit} Inf",
        "metric_train_inf": f"{unit} Train+Inf",
    }
    cols = [
        "r",
        "tokens per block",
        "GFLOPs",
        "FLOP ratio",
        "samples/s",
        "speed-up",
        "speed-up / FLOP ratio",
    ] + [names[m] for m in metrics]
    lines = list(header or [])
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for row in rows:
        cells = [
            str(row["r"]),
            compact_tokens(row["counts"], row["schedule"]),
            f"{row['gflops']:.2f}",
            f"{row['flop_ratio']:.2f}x",
            f"{row['samples_per_s']:.2f}",
            f"{row['speedup']:.2f}x",
            f"{row['speedup_per_flop_ratio']:.2f}",
        ] + [_metric_cell(row.get(m), percent) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    lines.extend(footer or [])
    return "\n".join(lines)


def write_csv(rows: Sequence[Row], path: PathLike) -> Path:
    """Write the rows (lists space-joined) to ``path``.

    Example
    -------
    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "b.csv")
    >>> row = {"r": "8", "schedule": [8], "counts": [146, 138],
    ...        "gflops": 1.0, "flop_ratio": 1.1, "samples_per_s": 9.0,
    ...        "speedup": 1.05, "speedup_per_flop_ratio": 0.95}
    >>> open(write_csv([row], f)).readline().strip().split(",")[:4]
    ['r', 'schedule', 'tokens_per_block', 'final_tokens']
    """
    path = Path(path)
    columns = CSV_COLUMNS + has_metrics(rows)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            out = {c: row.get(c, "") for c in columns}
            out["schedule"] = " ".join(str(v) for v in row["schedule"])
            out["tokens_per_block"] = " ".join(str(v) for v in row["counts"])
            out["final_tokens"] = row["counts"][-1]
            writer.writerow(out)
    return path


def plot(
    rows: Sequence[Row],
    path: PathLike,
    title: str = "",
    metric: str = "acc",
) -> Path:
    """PNG: metric vs samples/s (one point per r), else speed-up vs FLOPs.

    With metric columns, each schedule is a point at its measured
    samples/s, one series per metric column. Without, the measured
    speed-up is drawn against the FLOP ratio beside the ideal diagonal.

    Example
    -------
    >>> import tempfile, os
    >>> row = {"r": "0", "samples_per_s": 5.0, "speedup": 1.0,
    ...        "flop_ratio": 1.0, "metric_inf": 0.9}
    >>> plot([row], os.path.join(tempfile.mkdtemp(), "p.png")).suffix
    '.png'
    """
    from matplotlib.figure import Figure  # no pyplot: no global state

    path = Path(path)
    fig = Figure(figsize=(6.0, 4.2), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    metrics = has_metrics(rows)
    percent = metric == "acc"
    if metrics:
        labels = {"metric_inf": "Inf", "metric_train_inf": "Train+Inf"}
        for m, marker in zip(metrics, ("o", "s")):
            pts = [(row["samples_per_s"], row[m], row["r"]) for row in rows]
            pts = [p for p in pts if p[1] is not None]
            xs = [p[0] for p in pts]
            ys = [100 * p[1] if percent else p[1] for p in pts]
            ax.plot(xs, ys, marker=marker, label=labels[m])
            for x, y, (_, _, r) in zip(xs, ys, pts):
                ax.annotate(
                    f"r={r}",
                    (x, y),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=8,
                )
        ax.set_xlabel("samples/s (measured)")
        ax.set_ylabel(f"{metric} (%)" if percent else metric)
        ax.legend()
    else:
        xs = [row["flop_ratio"] for row in rows]
        ys = [row["speedup"] for row in rows]
        top = max(xs + ys) * 1.05
        ax.plot(
            [1.0, top],
            [1.0, top],
            "--",
            color="gray",
            label="speed-up = FLOP ratio",
        )
        ax.plot(xs, ys, "o-", label="measured")
        for x, y, row in zip(xs, ys, rows):
            ax.annotate(
                f"r={row['r']}\n{row['samples_per_s']:.1f}/s",
                (x, y),
                textcoords="offset points",
                xytext=(4, -14),
                fontsize=8,
            )
        ax.set_xlabel("analytic FLOP ratio vs r=0")
        ax.set_ylabel("measured speed-up vs r=0 (same run)")
        ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return path
