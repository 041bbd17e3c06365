#!/usr/bin/env python3
"""With and without distillation, same seeds and epochs, then one table.

    python recipes/ESC50/kd_experiment.py --seeds=1234,1235,1236 --jobs=2 \\
        --data_folder=PATH --teacher_checkpoint=TEACHER.ckpt \\
        [--teacher_class_map=esc10 --teacher_labels_csv=CSV] \\
        [--key=value ...]

For every seed, ``train.py`` runs ``hparams/tome.yaml`` (no KD) and
``hparams/tome_kd.yaml`` (KD) with the same remaining arguments; the teacher
arguments go to the KD runs only. ``--jobs=N`` runs N trainings at once
(each with ``OMP_NUM_THREADS=1``); every run resumes from its own
checkpoints. Writes ``kd_experiment.md`` / ``.json`` under ``--output_root``
(default ``results/ESC50_kd``): per-seed test accuracy of both arms for
every ``r`` of ``r_sweep``, mean ± std over seeds, and the r-sweep table of
the first seed's KD run.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[2]
TRAIN = Path(__file__).resolve().parent / "train.py"
TEACHER_KEYS = (
    "--teacher_checkpoint",
    "--teacher_class_map",
    "--teacher_labels_csv",
    "--teacher_cache",
    "--kd_lambda",
    "--kd_tau",
    "--kd_tau2",
)
ARMS = (("no_kd", "tome"), ("kd", "tome_kd"))


def split_args(
    argv: Sequence[str],
) -> Tuple[Dict[str, str], List[str], List[str]]:
    """Own options, teacher-only arguments and shared arguments.

    Example
    -------
    >>> own, teacher, shared = split_args(
    ...     ["--seeds=1,2", "--teacher_checkpoint=t.ckpt", "--depth=4"])
    >>> own["seeds"], teacher, shared
    ('1,2', ['--teacher_checkpoint=t.ckpt'], ['--depth=4'])
    """
    own: Dict[str, str] = {
        "seeds": "1234,1235,1236",
        "jobs": "1",
        "output_root": "results/ESC50_kd",
    }
    teacher: List[str] = []
    shared: List[str] = []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key.lstrip("-") in own and key.startswith("--"):
            own[key[2:]] = value
        elif key in TEACHER_KEYS:
            teacher.append(arg)
        else:
            shared.append(arg)
    if not any(a.startswith("--teacher_checkpoint=") for a in teacher):
        raise SystemExit(
            "error: --teacher_checkpoint=PATH is required (the frozen "
            "teacher of the KD runs, e.g. a fine-tuned MobileNet checkpoint)"
        )
    return own, teacher, shared


def run_one(
    variant: str, seed: int, args: List[str], root: Path
) -> Tuple[Path, float]:
    """Train (or resume) one run; return its output folder and the seconds
    this invocation took (a resumed run counts only what it took now)."""
    log = root / "logs" / f"{variant}_seed{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        str(TRAIN),
        str(ROOT / "hparams" / f"{variant}.yaml"),
        *args,
        f"--seed={seed}",
        f"--output_root={root}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"error: {variant} seed {seed} failed; see {log}")
    found = sorted(root.glob(f"{variant}/fold*/seed{seed}/test_metrics.json"))
    if not found:
        raise SystemExit(
            f"error: no test_metrics.json for {variant} seed {seed}"
        )
    return found[-1].parent, wall


def mean_std(values: Sequence[float]) -> str:
    """``mean ± std`` in percent (sample std; 0 for one value).

    Example
    -------
    >>> mean_std([0.7, 0.8, 0.9])
    '80.00 ± 10.00'
    """
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * std:.2f}"


def summarise(runs: Dict[Tuple[str, int], Path], seeds: List[int]) -> dict:
    """Per-seed and mean ± std accuracies of both arms, for every r."""
    table: Dict[str, Dict[str, List[float]]] = {}
    for seed in seeds:
        for arm, _ in ARMS:
            path = runs[(arm, seed)] / "test_metrics.json"
            for row in json.loads(path.read_text())["r_sweep"]:
                per_arm = table.setdefault(str(row["r"]), {})
                per_arm.setdefault(arm, []).append(float(row["metric"]))
    confs = {s: teacher_confidence(runs[("kd", s)]) for s in seeds}
    return {
        "seeds": seeds,
        "acc": table,
        "teacher_conf": {str(s): c for s, c in confs.items() if c},
    }


def teacher_confidence(run: Path) -> List[float]:
    """``train_teacher_conf`` of every epoch of a KD run (empty if absent).

    The KD targets' mean top probability on the training batches (see
    :func:`fastast_sb.distill.target_confidence`).
    """
    path = run / "epoch_metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        confs = [r.get("train_teacher_conf") for r in csv.DictReader(f)]
    return [float(c) for c in confs if c]


def teacher_accuracy(checkpoint: str) -> Optional[float]:
    """Test accuracy of the teacher's own recipe run, if it is one.

    A checkpoint ``<run>/save/CKPT+.../embedding_model.ckpt`` written by a
    teacher recipe has ``<run>/test_metrics.json``; a released file has not.
    """
    parents = Path(checkpoint).resolve().parents
    metrics = parents[2] / "test_metrics.json" if len(parents) > 2 else None
    if metrics is None or not metrics.is_file():
        return None
    return float(json.loads(metrics.read_text())["r_sweep"][0]["metric"])


def write_report(summary: dict, first_kd: Path, root: Path) -> Path:
    """``kd_experiment.md`` / ``.json`` under ``root``."""
    seeds = summary["seeds"]
    names = [f"no KD s{s}" for s in seeds] + [f"KD s{s}" for s in seeds]
    names += ["no KD mean ± std", "KD mean ± std"]
    lines = [
        "| r | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for r, arms in summary["acc"].items():
        cells = [f"{100 * v:.2f}" for v in arms["no_kd"] + arms["kd"]]
        cells += [mean_std(arms["no_kd"]), mean_std(arms["kd"])]
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    sweep = (first_kd / "r_sweep.md").read_text(encoding="utf-8")
    teacher, head = summary.get("teacher_acc"), ""
    if teacher is not None:
        head = f"Teacher test accuracy: {100 * teacher:.2f} %\n\n"
    walls = ", ".join(
        f"{k} {v / 60:.1f} min" for k, v in summary.get("wall_s", {}).items()
    )
    confs = ", ".join(
        f"s{s} {c[0]:.3f} -> {c[-1]:.3f}"
        for s, c in summary.get("teacher_conf", {}).items()
    )
    if confs:
        head += (
            "KD targets' mean top probability on the training batches "
            f"(epoch 1 -> last): {confs}\n\n"
        )
    text = (
        head
        + "Test accuracy (%) per seed, with and without distillation\n\n"
        + "\n".join(lines)
        + (f"\n\nWall time per run (this invocation): {walls}" if walls else "")
        + f"\n\nr-sweep of the KD run, seed {seeds[0]}:\n\n"
        + sweep
    )
    (root / "kd_experiment.md").write_text(text, encoding="utf-8")
    (root / "kd_experiment.json").write_text(
        json.dumps(summary, indent=2), encoding="utf-8"
    )
    print(text)
    return root / "kd_experiment.md"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run both arms for every seed, then write the report."""
    own, teacher, shared = split_args(sys.argv[1:] if argv is None else argv)
    seeds = [int(s) for s in own["seeds"].split(",")]
    root = Path(own["output_root"]).resolve()
    jobs = []
    for seed in seeds:
        for arm, variant in ARMS:
            args = shared + (teacher if arm == "kd" else [])
            jobs.append((arm, seed, variant, args))
    with ThreadPoolExecutor(max_workers=int(own["jobs"])) as pool:
        done = list(pool.map(lambda j: run_one(j[2], j[1], j[3], root), jobs))
    runs = {(a, s): d for (a, s, _, _), (d, _) in zip(jobs, done)}
    summary = summarise(runs, seeds)
    summary["wall_s"] = {
        f"{a} s{s}": round(w, 1) for (a, s, _, _), (_, w) in zip(jobs, done)
    }
    ckpt = next(a for a in teacher if a.startswith("--teacher_checkpoint="))
    summary["teacher_acc"] = teacher_accuracy(ckpt.split("=", 1)[1])
    write_report(summary, runs[("kd", seeds[0])], root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
