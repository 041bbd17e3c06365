#!/usr/bin/env python3
"""5-fold cross-validation on ESC-50, aggregated the AST way.

    python recipes/ESC50/cross_validate.py hparams/tome.yaml \
        --data_folder=PATH [--folds=1,2,3,4,5] [--key=value ...]

Runs ``train.py`` once per held-out fold (each run resumes from its own
checkpoints if interrupted), then reports the mean over folds of the
per-epoch validation accuracy at the epoch where that mean is best (AST's
protocol), plus the mean r-sweep table over folds. Writes
``cv_summary.md`` / ``cv_summary.json`` in ``<output_root>/<variant>/``.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

RECIPE_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(RECIPE_DIR))

import train  # noqa: E402

from fastast_sb.dataio import DataError  # noqa: E402
from fastast_sb.runner import recipe_main  # noqa: E402


def read_epoch_metrics(path: Path) -> Dict[int, float]:
    """Validation accuracy per epoch (the last row per epoch wins)."""
    with open(path, newline="", encoding="utf-8") as f:
        return {
            int(r["epoch"]): float(r["valid_acc"]) for r in csv.DictReader(f)
        }


def aggregate(per_fold: Dict[int, Dict[int, float]]) -> Dict[str, object]:
    """Mean accuracy over folds per epoch and the best epoch.

    Example
    -------
    >>> aggregate({1: {1: 0.5, 2: 0.7}, 2: {1: 0.6, 2: 0.8}})["best_epoch"]
    2
    """
    epochs = sorted(set.intersection(*(set(v) for v in per_fold.values())))
    if not epochs:
        raise ValueError("the folds share no finished epoch")
    mean = {e: statistics.mean(f[e] for f in per_fold.values()) for e in epochs}
    best = max(epochs, key=lambda e: mean[e])
    return {
        "best_epoch": best,
        "best_mean_acc": mean[best],
        "per_fold_acc_at_best": {k: v[best] for k, v in per_fold.items()},
        "last_epoch": epochs[-1],
        "last_mean_acc": mean[epochs[-1]],
        "mean_acc_per_epoch": mean,
    }


def _split_folds(argv: Sequence[str]) -> tuple:
    folds, rest = [1, 2, 3, 4, 5], []
    for arg in argv:
        if arg.startswith("--folds="):
            text = arg.split("=", 1)[1]
            try:
                folds = [int(x) for x in text.split(",")]
            except ValueError:
                raise DataError(
                    f"--folds={text} is not a comma-separated list of fold "
                    "numbers, e.g. --folds=1,2,3"
                ) from None
        else:
            rest.append(arg)
    return folds, rest


def run(argv: Sequence[str]) -> Dict[str, object]:
    """Train every fold, then aggregate; returns the summary."""
    folds, rest = _split_folds(argv)
    per_fold: Dict[int, Dict[int, float]] = {}
    sweeps: List[List[dict]] = []
    for fold in folds:
        result = train.run([*rest, f"--fold={fold}"])
        run_dir = Path(result["output_folder"])
        per_fold[fold] = read_epoch_metrics(run_dir / "epoch_metrics.csv")
        sweeps.append(result["rows"])
    summary = aggregate(per_fold)
    summary["r_sweep_mean"] = [
        {
            "r": rows[0]["r"],
            "metric": statistics.mean(float(r["metric"]) for r in rows),
            "speedup": statistics.mean(float(r["speedup"]) for r in rows),
        }
        for rows in zip(*sweeps)
    ]
    lines = [
        f"Folds {folds}: mean accuracy {100 * summary['best_mean_acc']:.2f} % "
        f"at epoch {summary['best_epoch']} (best mean epoch, AST protocol); "
        f"{100 * summary['last_mean_acc']:.2f} % at the last epoch.",
        "",
        "| r | mean test acc (%) | mean speed-up |",
        "|---|---|---|",
    ]
    lines += [
        f"| {row['r']} | {100 * row['metric']:.2f} | {row['speedup']:.2f}x |"
        for row in summary["r_sweep_mean"]
    ]
    text = "\n".join(lines) + "\n"
    out_root = run_dir.parents[1]
    (out_root / "cv_summary.md").write_text(text, encoding="utf-8")
    (out_root / "cv_summary.json").write_text(
        json.dumps(summary, indent=2, default=str), encoding="utf-8"
    )
    print(text)
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: 0, or 1 with one line of error text."""
    return recipe_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
