"""Run the plan of :mod:`paper_plan` and write FastAST's two tables.

:func:`main` prints the estimate (``--dry_run``: also every command), runs
what is missing (:func:`fastast_sb.experiments.run_jobs`) and writes
``table1`` / ``table2`` (``.md``, ``.csv``), ``accuracy_vs_throughput.png``
and ``wall_times.json`` under ``--output_root``
(:mod:`fastast_sb.paper_tables`), from whatever runs have finished.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

from paper_plan import (
    ARMS,
    DEFAULT_MINUTES,
    Plan,
    Recipe,
    UsageError,
    build_plan,
)

from fastast_sb.experiments import ExperimentError, run_jobs
from fastast_sb.walltimes import WallTimes, estimate

#: How Table 2 names a teacher run.
TEACHERS = {"teacher_cnn": "MobileNetV3 mn04", "teacher_passt": "PaSST"}


def write_tables(plan: Plan, recipe: Recipe) -> Dict[str, Path]:
    """Both tables and the PNG from the runs that have finished."""
    from fastast_sb.paper_tables import (
        Arm,
        sweep_curve,
        table1_rows,
        table2_rows,
        write_paper_tables,
    )

    own = plan.own
    done = [p for p in plan.table1 if p.is_file()]
    table1 = table1_rows(done) if done else []
    arms = []
    curves = {}
    for arm, paths in plan.students.items():
        finished = [p for p in paths if p.is_file()]
        _, run, kd = ARMS[arm]
        teacher = "-"
        if run:
            lam, tau = own[kd[0]], own[kd[1]]
            teacher = f"{TEACHERS[run]} (λ={lam}, τ={tau})"
        trained = [p for p in plan.teachers.get(run, []) if p.is_file()]
        schedule = own["train_schedule"]
        arms.append(Arm(arm, finished, schedule, teacher, trained))
        curves[arm] = sweep_curve(finished)
    splits = ", ".join(recipe.splits(own))
    student = " ".join(plan.student)
    facts = (
        f"{recipe.title}, {own['n_classes']} classes, test splits {splits}, "
        f"seeds {own['seeds']}; students `{student}`; mean ± std over "
        "splits and seeds."
    )
    notes1 = [
        facts,
        "Inf-only: the plain AST (hparams/ast.yaml) merged at inference; "
        f"Train+Inf: hparams/tome.yaml trained at {own['train_schedule']}. "
        "Drop: points below the same group's r = 0 mean. S/s: samples/s "
        "of one `python -m fastast_sb.benchmark` run per split and seed "
        "(both models evaluated, one timing per schedule, interleaved, "
        f"{own['threads']} thread(s), batch 8; the architecture is the "
        "same, so one number serves both groups), mean over runs.",
    ]
    notes2 = [
        facts,
        "Teacher acc: the teacher's own test accuracy on each split. "
        f"Training schedule: {own['train_schedule']} (the ast arm merges "
        "there at inference only); speed-up: at that schedule against "
        "r = 0, measured in each run's own test sweep, mean over runs.",
        *recipe.notes,
    ]
    paths = write_paper_tables(
        Path(own["output_root"]).resolve(),
        table1,
        table2_rows(arms),
        curves,
        notes1,
        notes2,
        title=f"{recipe.title}: accuracy against measured throughput",
    )
    return paths


def _flag(own: Dict[str, str], key: str) -> bool:
    """An own on/off option (``--dry_run`` alone reads as on).

    Example
    -------
    >>> _flag({"dry_run": "True"}, "dry_run"), _flag({"x": "false"}, "x")
    (True, False)
    """
    return own[key] not in ("False", "false", "0")


def main(argv: Optional[Sequence[str]], recipe: Recipe) -> int:
    """Print the plan's estimate (``--dry_run``: and every command), run
    what is missing (not with ``--report_only``), write the tables; 0, or
    1 with one line of error."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        plan = build_plan(argv, recipe)
        n_jobs = int(plan.own["jobs"])
        threads = int(plan.own["threads"])
    except (UsageError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    root = Path(plan.own["output_root"]).resolve()
    walls = WallTimes(root / "wall_times.json")
    todo = [j for j in plan.jobs if not j.finished]
    minutes = {**DEFAULT_MINUTES, **recipe.minutes}
    est = estimate(plan.jobs, walls, minutes, n_jobs)
    dry = _flag(plan.own, "dry_run")
    report_only = _flag(plan.own, "report_only")
    print(
        f"{len(plan.jobs)} runs planned, {len(plan.jobs) - len(todo)} "
        f"finished; Table 1 schedules: {' '.join(plan.schedules)}"
    )
    changed = walls.changed(plan.jobs)
    if dry:
        for job in plan.jobs:
            state = "done" if job.finished else "todo"
            if job.name in changed:
                state = "done with another command"
            print(f"[{state}] {job.name}:\n  {job.preview()}")
    print(f"Estimate (--jobs={n_jobs}):")
    print("\n".join(est.lines()))
    if dry:
        return 0
    if changed:
        print(
            f"error: finished runs in {root} were made with other commands "
            f"({', '.join(changed)}; see wall_times.json): use another "
            "--output_root, or delete those runs",
            file=sys.stderr,
        )
        return 1
    error = None
    try:
        if not report_only:  # else: the tables of what has finished
            run_jobs(plan.jobs, root / "logs", walls, minutes, n_jobs, threads)
    except ExperimentError as err:
        error = err
    paths = write_tables(plan, recipe)
    print(paths["table1_md"].read_text(encoding="utf-8"))
    print(paths["table2_md"].read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
