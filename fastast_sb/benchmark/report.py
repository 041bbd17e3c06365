"""The benchmark's Table-1 layout, its notes and its PNG.

:func:`benchmark_layout`: r, tokens per block, analytic GFLOPs, FLOP ratio,
measured samples/s, speed-up and their quotient, then accuracy or mAP with
merging at inference only ("Inf") and of a model trained with merging
("Train+Inf"), as in Table 1 of Behera et al., "FastAST: Accelerating Audio
Spectrogram Transformer via Token Merging and Cross-Model Knowledge
Distillation", Interspeech 2024; :mod:`fastast_sb.tables` writes it.
"""

from __future__ import annotations

import itertools
import math
from functools import partial
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from fastast_sb.tables import Column, PathLike, Row, column


def run_length(values: Sequence[int]) -> str:
    """Compact a list as runs: ``[16, 16, 8]`` -> ``"16x2, 8"``.

    Example
    -------
    >>> run_length([16] * 12), run_length([44, 44, 43, 0])
    ('16x12', '44x2, 43, 0')
    """
    runs = [(v, len(list(g))) for v, g in itertools.groupby(values)]
    return ", ".join(f"{v}x{n}" if n > 1 else f"{v}" for v, n in runs)


def compact_tokens(counts: Sequence[int], schedule: Sequence[int]) -> str:
    """Tokens in and out (``counts``: per block, then final) and the r's.

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


#: Optional metric columns of the benchmark (a checkpoint was evaluated).
_METRICS = {"metric_inf": "Inf", "metric_train_inf": "Train+Inf"}
METRIC_COLUMNS = list(_METRICS)
_BENCHMARK = [
    column("r", "r"),
    Column(None, "schedule"),
    Column(
        "tokens per block",
        "tokens_per_block",
        lambda row: compact_tokens(row["counts"], row["schedule"]),
        lambda row: row["counts"],
    ),
    Column(None, "final_tokens", value=lambda row: row["counts"][-1]),
    column("GFLOPs", "gflops", ".2f"),
    column("FLOP ratio", "flop_ratio", ".2f", "x"),
    column("samples/s", "samples_per_s", ".2f"),
    column("speed-up", "speedup", ".2f", "x"),
    column("speed-up / FLOP ratio", "speedup_per_flop_ratio", ".2f"),
]
#: CSV columns of the benchmark always present, in order.
CSV_COLUMNS = [c.key for c in _BENCHMARK]
#: ``--latency``: ms per clip at batch 1.
_LATENCY = column("latency (ms, batch 1)", "latency_ms", ".1f")


def has_metrics(rows: Sequence[Row]) -> List[str]:
    """Which metric columns the rows carry.

    Example
    -------
    >>> has_metrics([{"metric_inf": 0.5}])
    ['metric_inf']
    """
    return [c for c in METRIC_COLUMNS if any(c in row for row in rows)]


def benchmark_layout(rows: Sequence[Row], metric: str = "acc") -> List[Column]:
    """The benchmark's columns and the metric columns ``rows`` carry
    ("acc" in %, another metric such as "mAP" as is).

    Example
    -------
    >>> [c.title for c in benchmark_layout([{"metric_inf": 0.5}])][-1]
    'acc (%) Inf'
    """
    percent = metric == "acc"
    unit = f"{metric} (%)" if percent else metric
    layout = list(_BENCHMARK)
    if any("precision" in row for row in rows):
        layout.insert(0, column("precision", "precision"))
    if any("latency_ms" in row for row in rows):
        layout.append(_LATENCY)
    return layout + [
        Column(f"{unit} {_METRICS[m]}", m, partial(_metric_cell, m, percent))
        for m in has_metrics(rows)
    ]


def _metric_cell(key: str, percent: bool, row: Row) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.2f}" if percent else f"{value:.4f}"


def benchmark_notes(
    meta: Dict[str, Any], hf: Optional[Dict[str, float]] = None
) -> Tuple[List[str], List[str]]:
    """Markdown lines before and after the table: the run's ``meta``
    (``BenchmarkResult.meta``) and the ``--compare-hf`` numbers ``hf``.

    Example
    -------
    >>> meta = {"mode": "infer", "model": "AST", "tdim": 128, "tokens": 146,
    ...         "batch": 1, "command": "c", "device": "cuda", "machine": "m",
    ...         "dtype": "fp32", "threads": 1, "torch": "2", "warmup": 1,
    ...         "repeats": 3}
    >>> header, footer = benchmark_notes(meta)
    >>> header[0], footer
    ('# AST / FastAST inference: AST, T=128 (146 tokens), batch 1', [])
    """
    what = "training steps" if meta["mode"] == "train" else "inference"
    load = f", load average {meta['load']}" if "load" in meta else ""
    header = [
        f"# AST / FastAST {what}: {meta['model']}, T={meta['tdim']} "
        f"({meta['tokens']} tokens), batch {meta['batch']}",
        "",
        f"- command: `{meta['command']}`",
        f"- device: {meta['device']} ({meta['machine']}), dtype "
        f"{meta['dtype']}, {meta['threads']} threads, torch {meta['torch']}"
        + load,
    ]
    if "latency_clip_s" in meta:
        header.append(
            f"- latency: one clip ({meta['tdim']} frames, "
            f"{meta['latency_clip_s']:.2f} s of audio) per call, batch 1, "
            "timed in the same rounds"
        )
    if meta["device"] == "cpu" and meta["mode"] == "infer":
        tokens = meta["cpu_batch_tokens"]
        split = f"at most {tokens} tokens per encoder pass" if tokens else "off"
        header.append(
            f"- CPU sub-batching: {split} (AST.cpu_batch_tokens: whole "
            "examples, same numbers as one pass)"
        )
    header += [
        f"- protocol: {meta['warmup']} warm-up call(s) discarded per "
        f"configuration, then {meta['repeats']} rounds timing every "
        "configuration once, round-robin, device synchronised; samples/s "
        "from the median time; speed-up = median over rounds of the "
        "per-round time ratio to the first row (r=0; in fp32 when formats "
        "are compared; same run); FLOP ratio = analytic "
        "FLOPs at r=0 / at r",
        "",
    ]
    footer = []
    if hf is not None:
        footer = [
            "",
            f"transformers `ASTForAudioClassification` (sdpa, r=0): "
            f"{hf['samples_per_s']:.2f} samples/s; ours at r=0 / HF = "
            f"**{hf['ratio']:.3f}** (same rounds, median per-round ratio)",
        ]
    return header, footer


def _label(row: Row) -> str:
    """``r=8``, or ``int8 r=8`` for a row of a format comparison."""
    prefix = f"{row['precision']} " if "precision" in row else ""
    return f"{prefix}r={row['r']}"


def plot(
    rows: Sequence[Row], path: PathLike, title: str = "", metric: str = "acc"
) -> Path:
    """PNG: each metric column against the measured samples/s (one point
    per r), without metrics the speed-up against the FLOP ratio and the
    ideal diagonal.

    Example
    -------
    >>> import tempfile, os
    >>> row = {"r": "0", "samples_per_s": 5.0, "speedup": 1.0,
    ...        "flop_ratio": 1.0, "metric_inf": 0.9}
    >>> plot([row], os.path.join(tempfile.mkdtemp(), "p.png")).suffix
    '.png'
    """
    from matplotlib.figure import Figure  # no pyplot: no global state

    fig = Figure(figsize=(6.0, 4.2), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    metrics = has_metrics(rows)
    percent = metric == "acc"
    note = {"textcoords": "offset points", "fontsize": 8}
    if metrics:
        for m, marker in zip(metrics, ("o", "s")):
            pts = [row for row in rows if row[m] is not None]
            xs = [row["samples_per_s"] for row in pts]
            ys = [(100 if percent else 1) * row[m] for row in pts]
            ax.plot(xs, ys, marker=marker, label=_METRICS[m])
            for x, y, row in zip(xs, ys, pts):
                ax.annotate(_label(row), (x, y), xytext=(4, 4), **note)
        ax.set_xlabel("samples/s (measured)")
        ax.set_ylabel(f"{metric} (%)" if percent else metric)
        ax.legend()
    else:
        xs = [row["flop_ratio"] for row in rows]
        ys = [row["speedup"] for row in rows]
        top = max(xs + ys) * 1.05
        ideal = "speed-up = FLOP ratio"
        ax.plot([1.0, top], [1.0, top], "--", color="gray", label=ideal)
        ax.plot(xs, ys, "o-", label="measured")
        for x, y, row in zip(xs, ys, rows):
            text = f"{_label(row)}\n{row['samples_per_s']:.1f}/s"
            ax.annotate(text, (x, y), xytext=(4, -14), **note)
        ax.set_xlabel("analytic FLOP ratio vs r=0")
        ax.set_ylabel("measured speed-up vs r=0 (same run)")
        ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
