"""The r sweep of FastAST's Table 1: accuracy and speed per merge schedule.

After training, each schedule is applied at inference only (the trained
weights are unchanged) and evaluated on the test set; throughput is
measured in the same run, so the speed-up column is a ratio of numbers
taken minutes apart on the same machine.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Dict, List, Sequence

from fastast_sb.benchmark import interleaved_throughput
from fastast_sb.models.ast import AST
from fastast_sb.tome.flops import token_counts
from fastast_sb.tome.schedule import RSpec, describe

COLUMNS = [
    "r",
    "metric",
    "drop",
    "samples_per_s",
    "speedup",
    "flop_ratio",
    "final_tokens",
]


def r_sweep(
    model: AST,
    evaluate: Callable[[RSpec], float],
    r_values: Sequence[RSpec],
    batch_size: int = 8,
    repeats: int = 3,
) -> List[Dict[str, object]]:
    """Evaluate and time ``model`` at each schedule.

    Arguments
    ---------
    model : AST
        The trained encoder.
    evaluate : callable
        ``evaluate(r) -> metric`` on the test set with merging ``r``.
    r_values : sequence
        Schedules; the first is the reference for drop and speed-up
        (normally 0).
    batch_size, repeats : int
        Throughput measurement settings.

    Returns
    -------
    list of dict
        One row per schedule with the keys of ``COLUMNS``.
    """
    rows: List[Dict[str, object]] = []
    speeds = interleaved_throughput(
        model, r_values, batch_size=batch_size, repeats=repeats
    )
    for r, sps in zip(r_values, speeds):
        metric = float(evaluate(r))
        counts = token_counts(model.num_tokens, model.schedule(r))
        rows.append(
            {
                "r": describe(r),
                "metric": metric,
                "samples_per_s": sps,
                "flop_ratio": model.flops(0) / model.flops(r),
                "final_tokens": counts[-1],
            }
        )
    ref = rows[0]
    for row in rows:
        row["drop"] = float(ref["metric"]) - float(row["metric"])
        row["speedup"] = float(row["samples_per_s"]) / float(
            ref["samples_per_s"]
        )
    return rows


def format_markdown(rows: Sequence[Dict[str, object]], metric: str) -> str:
    """Table 1 layout in markdown.

    Example
    -------
    >>> print(format_markdown([{"r": "0", "metric": 0.5, "drop": 0.0,
    ...     "samples_per_s": 10.0, "speedup": 1.0, "flop_ratio": 1.0,
    ...     "final_tokens": 146}], "acc"))
    ... # doctest: +NORMALIZE_WHITESPACE
    | r | acc (%) | drop (pts) | samples/s | speed-up | FLOP ratio |
      tokens out |
    |---|---|---|---|---|---|---|
    | 0 | 50.00 | 0.00 | 10.0 | 1.00x | 1.00x | 146 |
    """
    lines = [
        f"| r | {metric} (%) | drop (pts) | samples/s | speed-up | "
        "FLOP ratio | tokens out |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['r']} | {100 * float(row['metric']):.2f} | "
            f"{100 * float(row['drop']):.2f} | "
            f"{float(row['samples_per_s']):.1f} | "
            f"{float(row['speedup']):.2f}x | {float(row['flop_ratio']):.2f}x "
            f"| {row['final_tokens']} |"
        )
    return "\n".join(lines)


def write_tables(
    rows: Sequence[Dict[str, object]], folder: str, metric: str = "acc"
) -> Dict[str, str]:
    """Write ``r_sweep.md`` and ``r_sweep.csv`` into ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "r_sweep.md"
    md.write_text(format_markdown(rows, metric) + "\n", encoding="utf-8")
    path_csv = out / "r_sweep.csv"
    with open(path_csv, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in COLUMNS})
    return {"markdown": str(md), "csv": str(path_csv)}
