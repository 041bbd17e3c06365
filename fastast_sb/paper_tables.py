"""FastAST's two tables, aggregated over finished runs (folds, seeds).

- Table 1 (speed against accuracy): per merge schedule r, accuracy
  mean ± std, its drop from r = 0 and the measured samples/s, in two column
  groups: *Inf-only* (a plain AST merged at inference) and *Train+Inf* (a
  ToMe model trained with merging). Input: the ``benchmark.csv`` of one
  ``python -m fastast_sb.benchmark --checkpoint AST_RUN
  --train-inf-checkpoint TOME_RUN`` per fold and seed (both models in one
  timed run: one timing per schedule serves both groups).
- Table 2 (distillation): per arm, the teacher's own test accuracy, the
  student's at r = 0 and at the training schedule (mean ± std over runs)
  and the speed-up measured at that schedule. Input: the recipe runs'
  ``test_metrics.json``.
- A PNG of accuracy against measured samples/s, one curve per arm.

Written with :mod:`fastast_sb.tables` (markdown + CSV). Reference: S. R.
Behera et al., "FastAST: Accelerating Audio Spectrogram Transformer via
Token Merging and Cross-Model Knowledge Distillation", Interspeech 2024.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from fastast_sb.tables import Column, Row, column, write_table

PathLike = Union[str, Path]

#: Table 1's column groups: (key prefix, title, benchmark.csv column).
GROUPS = (
    ("inf", "Inf-only", "metric_inf"),
    ("train_inf", "Train+Inf", "metric_train_inf"),
)


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (0 for one value; NaN for none).

    Example
    -------
    >>> [round(v, 6) for v in mean_std([0.7, 0.8, 0.9])]
    [0.8, 0.1]
    """
    values = [float(v) for v in values]
    if not values:
        return math.nan, math.nan
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), std


def _pm(mean_key: str, std_key: str, row: Row) -> str:
    mean, std = row.get(mean_key), row.get(std_key)
    if mean is None or math.isnan(mean):
        return "-"
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def _num(key: str, spec: str, scale: float, suffix: str, row: Row) -> str:
    value = row.get(key)
    if value is None or math.isnan(value):
        return "-"
    return f"{scale * value:{spec}}{suffix}"


def pm_column(title: str, key: str) -> Column:
    """A ``mean ± std`` cell in percent from ``{key}_mean`` / ``_std``
    (``-`` when missing); the CSV gets the mean.

    Example
    -------
    >>> pm_column("acc", "a").cell({"a_mean": 0.8, "a_std": 0.1})
    '80.00 ± 10.00'
    """
    return Column(
        title,
        f"{key}_mean",
        lambda row: _pm(f"{key}_mean", f"{key}_std", row),
    )


def num_column(
    title: Optional[str], key: str, spec: str, scale: float = 1.0, suffix=""
) -> Column:
    """A number cell (``-`` when missing or NaN).

    Example
    -------
    >>> num_column("S/s", "sps", ".1f").cell({"sps": 30.25})
    '30.2'
    """
    return Column(title, key, lambda row: _num(key, spec, scale, suffix, row))


#: Table 1: r, then per group accuracy, drop and S/s (CSV: std, n too).
TABLE1: List[Column] = [column("r", "r")]
for _key, _title, _ in GROUPS:
    TABLE1 += [
        pm_column(f"{_title} Accuracy (%)", f"{_key}_acc"),
        Column(None, f"{_key}_acc_std"),
        num_column(f"{_title} Drop (pts)", f"{_key}_drop", ".2f", 100.0),
        num_column(f"{_title} S/s", f"{_key}_sps", ".1f"),
    ]
TABLE1 += [
    num_column(None, "speedup", ".3f"),
    num_column(None, "flop_ratio", ".3f"),
    Column(None, "final_tokens"),
    Column(None, "n_runs"),
]

#: Table 2: one row per arm.
TABLE2: List[Column] = [
    column("arm", "arm"),
    column("teacher", "teacher"),
    pm_column("teacher acc (%)", "teacher_acc"),
    Column(None, "teacher_acc_std"),
    pm_column("student acc (%) at r=0", "acc_r0"),
    Column(None, "acc_r0_std"),
    pm_column("student acc (%) at the training schedule", "acc_train"),
    Column(None, "acc_train_std"),
    num_column("speed-up (measured)", "speedup", ".2f", 1.0, "x"),
    column("runs", "n_runs"),
    Column(None, "train_schedule"),
]


def _read_csv(path: PathLike) -> List[Dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _floats(values: Sequence[str]) -> List[float]:
    return [float(v) for v in values if v not in ("", None)]


def table1_rows(benchmark_csvs: Sequence[PathLike]) -> List[Row]:
    """Table 1 from one ``benchmark.csv`` per run (fold, seed), schedules
    in the first file's order: per group ``{g}_acc_mean`` / ``_std`` over
    runs, ``{g}_drop`` = mean at r = 0 (the first row) minus mean at r,
    ``{g}_sps`` the mean samples/s; ``speedup`` and ``flop_ratio`` means.

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> head = "r,samples_per_s,speedup,flop_ratio,final_tokens,"
    >>> head += "metric_inf,metric_train_inf\\n"
    >>> for i, (a, b) in enumerate([(0.8, 0.6), (0.6, 0.4)]):
    ...     body = f"0,10,1,1,258,{a},0.7\\n8,20,2,1.5,210,{b},0.7\\n"
    ...     _ = open(os.path.join(d, f"{i}.csv"), "w").write(head + body)
    >>> rows = table1_rows([os.path.join(d, f"{i}.csv") for i in (0, 1)])
    >>> [(r["r"], r["inf_acc_mean"], round(r["inf_drop"], 2)) for r in rows]
    [('0', 0.7, 0.0), ('8', 0.5, 0.2)]
    """
    if not benchmark_csvs:
        raise ValueError("no benchmark.csv to aggregate; expected one per run")
    runs = [_read_csv(p) for p in benchmark_csvs]
    order = [row["r"] for row in runs[0]]
    by_r: Dict[str, List[Dict[str, str]]] = {r: [] for r in order}
    for path, rows in zip(benchmark_csvs, runs):
        if [row["r"] for row in rows] != order:
            raise ValueError(
                f"{path} has schedules {[row['r'] for row in rows]}; "
                f"expected {order} as in {benchmark_csvs[0]}"
            )
        for row in rows:
            by_r[row["r"]].append(row)
    out: List[Row] = []
    for r in order:
        rows = by_r[r]
        row: Row = {"r": r, "n_runs": len(rows)}
        for key in ("speedup", "flop_ratio"):
            row[key] = mean_std(_floats([x[key] for x in rows]))[0]
        row["final_tokens"] = rows[0].get("final_tokens", "")
        sps = mean_std(_floats([x["samples_per_s"] for x in rows]))[0]
        for key, _, source in GROUPS:
            values = _floats([x.get(source, "") for x in rows])
            mean, std = mean_std(values)
            row[f"{key}_acc_mean"], row[f"{key}_acc_std"] = mean, std
            ref = out[0][f"{key}_acc_mean"] if out else mean
            row[f"{key}_drop"] = ref - mean
            row[f"{key}_sps"] = sps if values else math.nan
        out.append(row)
    return out


def sweep_rows(path: PathLike) -> Dict[str, Dict[str, float]]:
    """A recipe run's ``test_metrics.json`` rows by schedule text.

    Example
    -------
    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "t.json")
    >>> _ = open(f, "w").write('{"r_sweep": [{"r": "0", "metric": 0.5}]}')
    >>> sweep_rows(f)
    {'0': {'r': '0', 'metric': 0.5}}
    """
    rows = json.loads(Path(path).read_text(encoding="utf-8"))["r_sweep"]
    return {str(row["r"]): row for row in rows}


@dataclass
class Arm:
    """One row of Table 2: the students' ``test_metrics.json`` (one per
    fold and seed), their training ``schedule`` (text), and the teacher's
    name and runs' ``test_metrics.json`` (none: no teacher)."""

    name: str
    students: Sequence[PathLike]
    schedule: str
    teacher: str = "-"
    teachers: Sequence[PathLike] = ()


def table2_rows(arms: Sequence[Arm]) -> List[Row]:
    """Table 2: per arm, teacher accuracy (its first sweep row), student
    accuracy at r = 0 and at the training schedule (mean ± std over runs)
    and the mean speed-up measured at that schedule in the runs' sweeps.

    Example
    -------
    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "t.json")
    >>> _ = open(f, "w").write('{"r_sweep": [{"r": "0", "metric": 0.5, '
    ...     '"speedup": 1.0}, {"r": "16", "metric": 0.4, "speedup": 1.5}]}')
    >>> row = table2_rows([Arm("tome", [f, f], "16")])[0]
    >>> row["acc_r0_mean"], row["acc_train_mean"], row["speedup"]
    (0.5, 0.4, 1.5)
    """
    out: List[Row] = []
    for arm in arms:
        sweeps = [sweep_rows(p) for p in arm.students]
        teacher = [next(iter(sweep_rows(p).values())) for p in arm.teachers]
        row: Row = {
            "arm": arm.name,
            "teacher": arm.teacher,
            "train_schedule": arm.schedule,
            "n_runs": len(sweeps),
        }
        pairs = {
            "teacher_acc": [t["metric"] for t in teacher],
            "acc_r0": [s["0"]["metric"] for s in sweeps if "0" in s],
            "acc_train": [
                s[arm.schedule]["metric"] for s in sweeps if arm.schedule in s
            ],
        }
        for key, values in pairs.items():
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std(values)
        speedups = [
            s[arm.schedule]["speedup"] for s in sweeps if arm.schedule in s
        ]
        row["speedup"] = mean_std(speedups)[0]
        out.append(row)
    return out


def sweep_curve(paths: Sequence[PathLike]) -> List[Tuple[str, float, float]]:
    """(r, mean samples/s, mean accuracy) per schedule over runs' sweeps
    (schedules of the first run, those every run has).

    Example
    -------
    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "t.json")
    >>> _ = open(f, "w").write('{"r_sweep": [{"r": "0", "metric": 0.5, '
    ...     '"samples_per_s": 10.0}]}')
    >>> sweep_curve([f, f])
    [('0', 10.0, 0.5)]
    """
    sweeps = [sweep_rows(p) for p in paths]
    if not sweeps:
        return []
    keep = [r for r in sweeps[0] if all(r in s for s in sweeps)]
    return [
        (
            r,
            mean_std([s[r]["samples_per_s"] for s in sweeps])[0],
            mean_std([s[r]["metric"] for s in sweeps])[0],
        )
        for r in keep
    ]


def plot_curves(
    curves: Dict[str, Sequence[Tuple[str, float, float]]],
    path: PathLike,
    title: str = "",
) -> Path:
    """PNG: accuracy (%) against measured samples/s, one curve per name of
    ``curves`` (points ``(r, samples/s, accuracy)``, labelled by r).

    Example
    -------
    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "p.png")
    >>> plot_curves({"tome": [("0", 10.0, 0.5), ("8", 12.0, 0.45)]}, f).suffix
    '.png'
    """
    from matplotlib.figure import Figure  # no pyplot: no global state

    fig = Figure(figsize=(6.4, 4.4), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    markers = "os^vD<>p*h"
    for (name, points), marker in zip(curves.items(), markers * 10):
        if not points:
            continue
        points = sorted(points, key=lambda p: p[1])  # by throughput
        xs = [p[1] for p in points]
        ys = [100 * p[2] for p in points]
        ax.plot(xs, ys, marker=marker, label=name)
        for r, x, y in zip((p[0] for p in points), xs, ys):
            ax.annotate(
                f"r={r}",
                (x, y),
                xytext=(3, 3),
                textcoords="offset points",
                fontsize=7,
            )
    ax.set_xlabel("samples/s (measured)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    if any(curves.values()):
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def write_paper_tables(
    folder: PathLike,
    table1: Sequence[Row],
    table2: Sequence[Row],
    curves: Dict[str, Sequence[Tuple[str, float, float]]],
    notes1: Sequence[str] = (),
    notes2: Sequence[str] = (),
    title: str = "",
) -> Dict[str, Path]:
    """``table1.md`` / ``.csv``, ``table2.md`` / ``.csv`` (each table's
    notes below it) and ``accuracy_vs_throughput.png`` in ``folder``.

    Example
    -------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> row = {"arm": "ast", "teacher": "-", "n_runs": 0, "speedup": 1.0}
    >>> paths = write_paper_tables(d, [], [row], {})
    >>> sorted(paths)
    ['png', 'table1_csv', 'table1_md', 'table2_csv', 'table2_md']
    """
    folder = Path(folder)
    paths: Dict[str, Path] = {}
    for stem, rows, layout, notes in (
        ("table1", table1, TABLE1, notes1),
        ("table2", table2, TABLE2, notes2),
    ):
        footer = ["", *notes] if notes else []
        written = write_table(rows, layout, folder, stem, footer=footer)
        paths[f"{stem}_md"], paths[f"{stem}_csv"] = (
            written["md"],
            written["csv"],
        )
    paths["png"] = plot_curves(
        curves, folder / "accuracy_vs_throughput.png", title
    )
    return paths


__all__ = [
    "Arm",
    "GROUPS",
    "TABLE1",
    "TABLE2",
    "mean_std",
    "num_column",
    "plot_curves",
    "pm_column",
    "sweep_curve",
    "sweep_rows",
    "table1_rows",
    "table2_rows",
    "write_paper_tables",
]
