"""The plan of FastAST's paper tables: arms, runs and their commands.

Dataset-neutral: a :class:`Recipe` says what differs (train script,
splits, CNN teacher); ``recipes/<Dataset>/paper_tables.py`` give one and
:mod:`paper_report` runs the plan. Arms (:data:`ARMS`, one student size):
``ast``, ``tome`` (at ``--train_schedule``), ``tome_kd_cnn`` /
``tome_kd_cnn_tuned`` (taught by the CNN teacher fine-tuned on the split
first) and ``tome_kd_passt`` (a PaSST trained on the split; off by
default). Per split and seed, one ``python -m fastast_sb.benchmark`` run
times the ``ast`` and ``tome`` models together (Table 1).
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import ruamel.yaml

from fastast_sb.config import compose_yaml
from fastast_sb.experiments import Job, Late, keep_inputs
from fastast_sb.inference.export import find_checkpoint
from fastast_sb.models.ast import AST
from fastast_sb.tome.flops import clip_schedule
from fastast_sb.tome.merge import max_merge

ROOT = Path(__file__).resolve().parents[2]
HPARAMS = ROOT / "hparams"

#: Rough minutes per run (2-core CPU, one thread a run; recipes/ESC50/
#: README.md): used until this output root has finished runs of that kind.
DEFAULT_MINUTES = {"student": 20.0, "student_kd": 24.0, "teacher_cnn": 2.0}
DEFAULT_MINUTES.update(teacher_passt=45.0, table1=3.0)
KD, TUNED = ("kd_lambda", "kd_tau"), ("tuned_kd_lambda", "tuned_kd_tau")
#: arm -> (hparams file, teacher run, own options holding its λ and τ).
ARMS = {
    "ast": ("ast.yaml", None, None),
    "tome": ("tome.yaml", None, None),
    "tome_kd_cnn": ("tome_kd.yaml", "teacher_cnn", KD),
    "tome_kd_cnn_tuned": ("tome_kd.yaml", "teacher_cnn", TUNED),
    "tome_kd_passt": ("tome_kd_passt.yaml", "teacher_passt", KD),
}
DEFAULT_ARMS = "ast,tome,tome_kd_cnn,tome_kd_cnn_tuned"
#: Student settings this script sets (or refuses): what to use instead.
OWNED = {
    "fold": "--folds",
    "seed": "--seeds",
    "output_folder": "--output_root",
    "output_root": "--output_root",
    "tome_r": "--train_schedule",
    "r_sweep": "--table1_r",
    "teacher_checkpoint": "--teacher_init (the teacher is trained here)",
    "teacher_class_map": "(set by the recipe)",
    "kd_lambda": "--kd_lambda / --tuned_kd_lambda",
    "kd_tau": "--kd_tau / --tuned_kd_tau",
    "debug": "--number_of_epochs=1 (a --debug run saves no checkpoint)",
}


class UsageError(ValueError):
    """A bad option: printed as one line."""


@dataclass
class Recipe:
    """What differs between datasets: ``train.py`` and ``dataset.yaml``,
    the splits (``own`` options -> split name -> its train.py arguments),
    the CNN teacher's hparams file, its default arguments and those it and
    its students get from ``own`` (class map, labels), the PaSST teacher's
    defaults, the student defaults, extra own options, minutes per run
    kind (over :data:`DEFAULT_MINUTES`) and table notes."""

    title: str
    train: Path
    dataset_yaml: Path
    splits: Callable[[Dict[str, str]], Dict[str, List[str]]]
    cnn_teacher: str
    cnn_teacher_args: str
    cnn_teacher_extra: Callable[[Dict[str, str]], List[str]]
    cnn_student_extra: Callable[[Dict[str, str]], List[str]]
    passt_teacher_args: str
    student: str
    options: Dict[str, str] = field(default_factory=dict)
    minutes: Dict[str, float] = field(default_factory=dict)
    notes: Sequence[str] = ()


def own_defaults(recipe: Recipe) -> Dict[str, str]:
    """The script's own options and their defaults."""
    shared = ROOT.parent / "shared" / "data" / "teachers"
    return {
        "data_folder": "",
        "n_classes": "",
        "seeds": "1234",
        "jobs": "1",
        "threads": "1",
        "output_root": "results/paper_tables",
        "arms": DEFAULT_ARMS,
        "train_schedule": "flops:0.5",
        "kd_lambda": "0.1",
        "kd_tau": "1",
        "tuned_kd_lambda": "0.1",
        "tuned_kd_tau": "3",
        "teacher_init": str(shared / "mn04_as_mAP_432.pt"),
        "teacher_labels_csv": "",
        "cnn_teacher_args": recipe.cnn_teacher_args,
        "passt_teacher_args": recipe.passt_teacher_args,
        "table1_r": "",
        "table1_step": "8",
        "bench_repeats": "5",
        "dry_run": "False",
        "report_only": "False",
        **recipe.options,
    }


def split_args(
    argv: Sequence[str], recipe: Recipe
) -> Tuple[Dict[str, str], List[str]]:
    """Own options, and the student arguments (defaults, then ``argv``'s).

    Example
    -------
    >>> from paper_tables import ESC
    >>> argv = ["--data_folder=d", "--n_classes=10", "--depth=4", "--lr=1"]
    >>> own, student = split_args(argv, ESC)
    >>> own["seeds"], student[0], student[4]
    ('1234', '--depth=4', '--lr=1')
    """
    own = own_defaults(recipe)
    given: Dict[str, str] = {}
    for arg in argv:
        key, eq, value = arg.partition("=")
        name = key[2:] if key.startswith("--") else None
        if name in own:
            own[name] = value if eq else "True"
        elif name in OWNED:
            raise UsageError(f"{key}: set by this script; use {OWNED[name]}")
        elif name:
            given[name] = arg
        else:
            raise UsageError(f"{arg!r}: expected --key=value")
    student = {a.partition("=")[0][2:]: a for a in recipe.student.split()}
    student.update(given)
    for name in ("data_folder", "n_classes"):
        if not own[name]:
            raise UsageError(f"--{name} is required (given to every run)")
    for name in ("jobs", "threads", "bench_repeats", "table1_step", "seeds"):
        low = 0 if name == "seeds" else 1
        if not all(v.isdigit() and int(v) >= low for v in own[name].split(",")):
            what = "numbers" if name == "seeds" else "a number"
            raise UsageError(f"--{name}={own[name]}: expected {what} >= {low}")
    arms = own["arms"].split(",")
    bad = [a for a in arms if a not in ARMS]
    if bad or not arms:
        raise UsageError(
            f"--arms={own['arms']}: expected some of {', '.join(ARMS)}"
        )
    return own, list(student.values())


def table1_schedules(
    own: Dict[str, str], student: Sequence[str], recipe: Recipe
) -> List[str]:
    """Table 1's schedules: 0, step, 2 step, ... up to the largest constant
    r every block of this model can merge, then FLOP budgets down to 0.1
    (``--table1_r`` instead, space-separated).

    Example
    -------
    >>> from paper_tables import ESC
    >>> own = own_defaults(ESC)
    >>> table1_schedules(own, ESC.student.split(), ESC)[-6:]
    ['32', '36', 'flops:0.5', 'flops:0.35', 'flops:0.2', 'flops:0.1']
    """
    if own["table1_r"]:
        return own["table1_r"].split()
    n, depth = model_tokens(student, recipe)
    best = max_constant_r(n, depth)
    step = int(own["table1_step"])
    values = list(range(0, best + 1, step))
    if values[-1] != best:
        values.append(best)
    return [str(v) for v in values] + [
        f"flops:{b}" for b in ("0.5", "0.35", "0.2", "0.1")
    ]


def model_tokens(student: Sequence[str], recipe: Recipe) -> Tuple[int, int]:
    """Tokens (patches + CLS + DIST) and depth of the student model."""
    text = compose_yaml(recipe.dataset_yaml, HPARAMS / "ast.yaml")
    doc = ruamel.yaml.YAML(typ="rt").load(text)
    keys = ("target_length", "fstride", "tstride", "depth")
    values = {k: int(doc[k]) for k in keys}
    for arg in student:
        key, _, value = arg.partition("=")
        if key[2:] in values:
            values[key[2:]] = int(value)
    model = AST(
        input_tdim=values.pop("target_length"),
        embed_dim=64,  # token counts do not depend on the width
        num_heads=1,
        **values,
    )
    return model.num_tokens, model.depth


def max_constant_r(num_tokens: int, depth: int) -> int:
    """The largest r that every one of ``depth`` blocks merges unclipped.

    Example
    -------
    >>> max_constant_r(258, 6)
    36
    """
    return max(
        r
        for r in range(max_merge(num_tokens) + 1)
        if clip_schedule(num_tokens, [r] * depth) == [r] * depth
    )


def teacher_checkpoint(run: Path) -> str:
    """``<run>/save/CKPT+.../embedding_model.ckpt`` the run tested."""
    found = re.search(
        r"^test_checkpoint: *(\S+)",
        (run / "hyperparams.yaml").read_text(encoding="utf-8"),
        re.M,
    )
    which = found[1] if found else "last"
    return str(find_checkpoint(run, which) / "embedding_model.ckpt")


@dataclass
class Plan:
    """The jobs, where each arm's runs are, and the notes' facts."""

    jobs: List[Job]
    students: Dict[str, List[Path]]
    teachers: Dict[str, List[Path]]
    table1: List[Path]
    schedules: List[str]
    own: Dict[str, str]
    student: List[str]


def build_plan(argv: Sequence[str], recipe: Recipe) -> Plan:
    """Every job for the options in ``argv`` (nothing runs).

    Example
    -------
    >>> from paper_tables import ESC
    >>> plan = build_plan(["--data_folder=d", "--n_classes=10", "--folds=4",
    ...                    "--arms=ast,tome", "--output_root=/tmp/x"], ESC)
    >>> [j.name for j in plan.jobs]
    ['ast_fold4_seed1234', 'tome_fold4_seed1234', 'table1_fold4_seed1234']
    """
    own, student = split_args(argv, recipe)
    root = Path(own["output_root"]).resolve()
    arms = own["arms"].split(",")
    seeds = [int(s) for s in own["seeds"].split(",")]
    splits = recipe.splits(own)
    schedules = table1_schedules(own, student, recipe)
    train_r = own["train_schedule"]
    sweep = [s for s in ["0", train_r] + schedules]
    sweep = list(dict.fromkeys(sweep))  # unique, 0 and the schedule first
    r_sweep = f"--r_sweep=[{', '.join(sweep)}]"
    common = [f"--data_folder={own['data_folder']}"]
    common.append(f"--n_classes={own['n_classes']}")
    py = [sys.executable, str(recipe.train)]
    # A run's command names the checkout and the output root by alias: a
    # results folder kept in git stays finished in another clone.
    aliases = ((str(root), "<output_root>"), (str(ROOT), "<repo>"))
    jobs: List[Job] = []
    students: Dict[str, List[Path]] = {a: [] for a in arms}
    teachers: Dict[str, List[Path]] = {}
    table1: List[Path] = []

    def run_dir(arm: str, split: str, seed: int) -> Path:
        return root / "runs" / arm / split / f"seed{seed}"

    def add(name, yaml, args, out, kind, after=()) -> Job:
        job = Job(
            name,
            [
                *py,
                str(HPARAMS / yaml),
                *common,
                *args,
                f"--output_folder={out}",
            ],
            out / "test_metrics.json",
            kind,
            after,
            started=out / "save",
        )
        jobs.append(job)
        return job

    needed = {ARMS[a][1] for a in arms if ARMS[a][1]}
    if "teacher_cnn" in needed and not Path(own["teacher_init"]).is_file():
        raise UsageError(
            f"--teacher_init={own['teacher_init']}: no such file; expected "
            "the EfficientAT MobileNetV3 AudioSet weights (mn04_as_mAP_432.pt)"
        )
    for split, split_args_ in splits.items():
        seed0 = seeds[0]
        tjobs: Dict[str, Job] = {}
        for teacher in sorted(needed):
            out = run_dir(teacher, split, seed0)
            if teacher == "teacher_cnn":
                yaml, extra = (
                    recipe.cnn_teacher,
                    [
                        f"--teacher_init={own['teacher_init']}",
                        *recipe.cnn_teacher_extra(own),
                        *shlex.split(own["cnn_teacher_args"]),
                    ],
                )
            else:
                yaml = "teacher_passt.yaml"
                extra = shlex.split(own["passt_teacher_args"])
            tjobs[teacher] = add(
                f"{teacher}_{split}",
                yaml,
                [*split_args_, *extra, "--r_sweep=[0]", f"--seed={seed0}"],
                out,
                teacher,
            )
            teachers.setdefault(teacher, []).append(out / "test_metrics.json")
        for seed in seeds:
            runs = {}
            for arm in arms:
                out = run_dir(arm, split, seed)
                args = [*split_args_, *student, r_sweep, f"--seed={seed}"]
                yaml, teacher, kd = ARMS[arm]
                kind, after = "student", ()
                if arm != "ast":
                    args.append(f"--tome_r={train_r}")
                if teacher:
                    teacher_run = tjobs[teacher].done.parent
                    args += [
                        Late(
                            f"--teacher_checkpoint=<{teacher_run}/save/CKPT+.../"
                            "embedding_model.ckpt>",
                            lambda t=teacher_run: (
                                "--teacher_checkpoint=" + teacher_checkpoint(t)
                            ),
                        ),
                        f"--kd_lambda={own[kd[0]]}",
                        f"--kd_tau={own[kd[1]]}",
                    ]
                    if teacher == "teacher_cnn":
                        args += recipe.cnn_student_extra(own)
                    kind, after = "student_kd", (tjobs[teacher].name,)
                runs[arm] = add(
                    f"{arm}_{split}_seed{seed}", yaml, args, out, kind, after
                )
                students[arm].append(out / "test_metrics.json")
            if "ast" in runs and "tome" in runs:
                table1.append(
                    _bench_job(
                        jobs, runs, split, seed, root, schedules, own, student
                    )
                )
    for job in jobs:
        job.aliases = aliases
    keep_inputs(jobs)  # results kept without checkpoints: rerun if read
    return Plan(jobs, students, teachers, table1, schedules, own, student)


def _bench_job(jobs, runs, split, seed, root, schedules, own, student) -> Path:
    out = root / "table1_runs" / f"{split}_seed{seed}"
    device = [a.split("=", 1)[1] for a in student if a.startswith("--device=")]
    args = [
        *(sys.executable, "-m", "fastast_sb.benchmark"),
        *("--checkpoint", str(runs["ast"].done.parent)),
        *("--train-inf-checkpoint", str(runs["tome"].done.parent)),
        *("--r", *schedules, "--batch", "8", "--out", str(out)),
        *("--repeats", own["bench_repeats"], "--threads", own["threads"]),
    ]
    if device:
        args += ["--device", device[-1]]
    jobs.append(
        Job(
            f"table1_{split}_seed{seed}",
            args,
            out / "benchmark.csv",
            "table1",
            (runs["ast"].name, runs["tome"].name),
            exclusive=True,
        )
    )
    return out / "benchmark.csv"
