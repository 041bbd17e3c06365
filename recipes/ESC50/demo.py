#!/usr/bin/env python3
"""The main job on embedded demonstration data: ``make demo``.

The full FastAST pipeline through the real ESC-50 recipe (``train.py``) on a
synthetic set in ESC-50 layout (``demo_data.py``; not ESC-50), offline:

1. a PaSST teacher (``hparams/teacher_passt.yaml``) trained on its own,
   correctly labelled clips, standing in for a teacher pretrained on more
   and better data (AudioSet in the paper); it never sees the student's
   training clips;
2. a FastAST student with token merging, without distillation
   (``hparams/tome.yaml``), on fewer clips of which :data:`LABEL_NOISE`
   carry a wrong label (as weakly labelled data does);
3. the same student taught by the frozen teacher
   (``hparams/tome_kd_passt.yaml``, lambda 0.1, tau 1);

then one sweep from no merging to the most each block can merge (constant
r, then FLOP budgets): test accuracy without and with distillation against
the speed-up, timed in interleaved rounds until the ratios are stable; the
table and a few sentences are printed, the plot is ``tradeoff.png``.

    python recipes/ESC50/demo.py [--output_folder demo_output] [--quick]

``--quick`` runs the same story on a few clips for one epoch (for tests).
Each stage's output goes to ``<stage>.log`` in the output folder; its
warnings also show on the screen.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence

RECIPE_DIR = Path(__file__).resolve().parent
ROOT = RECIPE_DIR.parents[1]
sys.path.insert(0, str(RECIPE_DIR))

#: Third-party messages that say nothing about this run: SpeechBrain's
#: image logger (unused) without torchvision, and the empty checkpoint of
#: a teacher's parameter-free ``Identity`` classifier.
SPURIOUS = ("torchvision is not available", "Saving an empty state_dict")


def _drop_spurious(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(SPURIOUS)


# Before SpeechBrain is imported: its train_logger warns on import.
for _name in (
    "speechbrain.utils.train_logger",
    "speechbrain.utils.checkpoints",
):
    logging.getLogger(_name).addFilter(_drop_spurious)

import torch  # noqa: E402
from demo_data import make_demo_esc50, subset_esc50  # noqa: E402
from demo_report import (  # noqa: E402
    combined_table,
    distillation_sentence,
    merging_sentence,
    plot_tradeoff,
)

from fastast_sb.models.ast import AST  # noqa: E402
from fastast_sb.timing import (  # noqa: E402
    device_name,
    inference_step,
    interleaved_times,
    random_features,
)
from fastast_sb.tome.flops import clip_schedule, encoder_flops  # noqa: E402
from fastast_sb.tome.schedule import BUDGET_TOLERANCE  # noqa: E402

#: Settings that fit the 1.3 s demonstration clips and a few CPU minutes.
COMMON = [
    "--n_classes=5",
    "--fold=5",
    "--target_length=128",
    "--batch_size=16",
    "--timem=24",
    "--lr=5e-4",
    "--bench_repeats=1",
    "--bench_batch_size=2",
    "--noprogressbar",
]
DEPTH = 8  # deep enough to reach flops:0.2 with 146 tokens
BUDGETS = (0.5, 0.3, 0.2)
SECONDS = 1.3
DISTRACTOR = 0.3
#: Share of the student's training clips labelled as another class.
LABEL_NOISE = 0.4


@dataclass(frozen=True)
class DemoSize:
    """Clips per class (per training fold; in the test fold) and epochs."""

    teacher_clips: int
    student_clips: int
    test_clips: int
    teacher_epochs: int
    student_epochs: int
    timing_s: float  # at most this long timing the sweep


FULL = DemoSize(16, 8, 40, 6, 8, 40.0)
QUICK = DemoSize(1, 1, 2, 1, 1, 2.0)


def sweep_schedules(model: AST) -> List[str]:
    """No merging, half and all of the largest constant r every block can
    merge, then the FLOP budgets of :data:`BUDGETS` this model reaches.

    Example
    -------
    >>> sweep_schedules(AST(input_tdim=128, preset="tiny", depth=8))
    ['0', '8', '16', 'flops:0.5', 'flops:0.3', 'flops:0.2']
    """
    n, depth, dim = model.num_tokens, model.depth, model.embed_dim
    r_max = max(
        r for r in range(n) if clip_schedule(n, [r] * depth) == [r] * depth
    )
    most = encoder_flops(n, clip_schedule(n, [n] * depth), dim)
    least = most / encoder_flops(n, [0] * depth, dim)
    budgets = [b for b in BUDGETS if least <= b * (1 + BUDGET_TOLERANCE)]
    return ["0", str(r_max // 2), str(r_max), *(f"flops:{b}" for b in budgets)]


def _median_and_error(values: Sequence[float]) -> tuple:
    """Median and its standard error (normal approximation from the MAD).

    Example
    -------
    >>> _median_and_error([1.0, 1.0, 1.0])
    (1.0, 0.0)
    """
    med = statistics.median(values)
    mad = statistics.median(abs(v - med) for v in values)
    return med, 1.2533 * 1.4826 * mad / len(values) ** 0.5


def stable_speedups(
    model: AST,
    schedules: Sequence[str],
    batch_size: int = 8,
    tolerance: float = 0.02,
    min_rounds: int = 8,
    max_seconds: float = 60.0,
) -> Dict[str, Any]:
    """Speed-up of each schedule over the first: the median of per-round
    time ratios, timed round-robin until every median's standard error is
    under ``tolerance`` of it (or ``max_seconds`` have passed).

    Returns ``speedup`` and ``error`` (per schedule) and ``rounds``.

    Example
    -------
    >>> m = AST(input_tdim=128, preset="tiny", depth=1)
    >>> out = stable_speedups(m, ["0", "8"], 1, min_rounds=2, max_seconds=0)
    >>> out["speedup"][0], out["rounds"]
    (1.0, 2)
    """
    model.eval()
    feats = random_features(model, batch_size)
    steps = [inference_step(model, feats, r) for r in schedules]
    # One thread: on a shared CPU two threads wait for each other whenever
    # one is descheduled, which swamps the difference between schedules.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        times = interleaved_times(steps, feats.device, 2, min_rounds)
        while True:
            ratios = [[b / t for b, t in zip(times[0], row)] for row in times]
            stats = [_median_and_error(r) for r in ratios]
            stable = all(err <= tolerance * med for med, err in stats)
            if stable or time.perf_counter() - start >= max_seconds:
                break
            more = interleaved_times(steps, feats.device, 0, 4)
            times = [a + b for a, b in zip(times, more)]
    finally:
        torch.set_num_threads(threads)
    return {
        "speedup": [med for med, _ in stats],
        "error": [err for _, err in stats],
        "rounds": len(times[0]),
        "stable": stable,
    }


class StageError(RuntimeError):
    """A recipe stage exited non-zero (its log names the cause)."""


def _warnings(text: str) -> List[str]:
    """Warning lines of a stage's output and log, less :data:`SPURIOUS`.

    Example
    -------
    >>> _warnings("a - WARNING - x\\nSaving an empty state_dict\\nok")
    ['a - WARNING - x']
    """
    marks = (" - WARNING - ", " - ERROR - ", "WARNING:", "Warning: ")
    return [
        line
        for line in text.splitlines()
        if any(m in line for m in marks)
        and not any(s in line for s in SPURIOUS)
    ]


def run_stage(name: str, variant: str, data: Path, out: Path, *extra: str):
    """Train and test one variant with ``train.py`` in its own process
    (its output in ``<out>/<name>.log``; warnings, less the spurious, on
    the screen) and return its ``test_metrics.json`` rows and run folder.
    """
    cmd = [
        sys.executable,
        str(RECIPE_DIR / "train.py"),
        str(ROOT / "hparams" / variant),
        f"--data_folder={data}",
        f"--output_root={out}",
        *COMMON,
        *extra,
    ]
    log = out / f"{name}.log"
    # SpeechBrain's log.txt in the run folder keeps the level of each line.
    pattern = f"{name}/fold*/seed*/log.txt"
    seen = {p: p.stat().st_size for p in out.glob(pattern)}
    with open(log, "w", encoding="utf-8") as f:
        code = subprocess.run(
            cmd, stdout=f, stderr=subprocess.STDOUT
        ).returncode
    text = log.read_text(encoding="utf-8")
    new = [p.read_bytes()[seen.get(p, 0) :] for p in out.glob(pattern)]
    for line in _warnings(text + b"".join(new).decode("utf-8", "replace")):
        print(f"    {name}: {line.strip()}", file=sys.stderr)
    if code != 0:
        last = text.strip().splitlines()[-1:] or ["(no output)"]
        raise StageError(f"{name} failed (exit {code}): {last[0]} - see {log}")
    (run_dir,) = {p.parent for p in out.glob(f"{name}/fold*/seed*/*.json")}
    rows = json.loads((run_dir / "test_metrics.json").read_text())["r_sweep"]
    return rows, run_dir


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the data, train teacher and students, tell the story;
    1 with one line of error when a stage fails."""
    try:
        return demo(argv)
    except StageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def demo(argv: Sequence[str] | None = None) -> int:
    """The demo (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_folder", default="demo_output")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    out = Path(args.output_folder).resolve()
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    start = time.time()
    pool = make_demo_esc50(
        str(out / "data"),
        size.teacher_clips + size.student_clips,
        SECONDS,
        size.test_clips,
        DISTRACTOR,
    )
    t_data = subset_esc50(
        pool, str(out / "teacher_data"), 0, size.teacher_clips
    )
    s_data = subset_esc50(
        pool,
        str(out / "student_data"),
        size.teacher_clips,
        size.student_clips,
        LABEL_NOISE,
    )
    n_test = 5 * size.test_clips
    n_teacher, n_student = 20 * size.teacher_clips, 20 * size.student_clips
    clip = 1.0 / n_test
    probe = AST(input_tdim=128, preset="tiny", depth=DEPTH)
    schedules = sweep_schedules(probe)
    student = [
        f"--depth={DEPTH}",
        "--tome_r=8",
        f"--number_of_epochs={size.student_epochs}",
        f"--r_sweep=[{', '.join(schedules)}]",
    ]
    wrong = round(LABEL_NOISE * n_student)
    labels = (
        f"Demo data (synthetic, 5 classes): the teacher trains on {n_teacher}"
        f" correctly labelled clips, the student on {n_student} others of "
        f"which {wrong} ({100 * LABEL_NOISE:.0f} %) carry a wrong label; "
        f"both test on the same {n_test} (one clip = {100 * clip:.1f} points)."
    )
    print(labels)
    print(f"1/3 PaSST teacher, {size.teacher_epochs} epochs ...", flush=True)
    teacher, t_dir = run_stage(
        "teacher_passt",
        "teacher_passt.yaml",
        t_data,
        out,
        "--depth=4",
        "--s_patchout_t=3",  # of 12 time columns (10 of 50 at 5 s)
        f"--number_of_epochs={size.teacher_epochs}",
    )
    t_acc = teacher[0]["metric"]
    print(f"    teacher test accuracy {100 * t_acc:.1f} %", flush=True)
    print(f"2/3 FastAST student, no KD, sweep {schedules} ...", flush=True)
    plain, _ = run_stage("tome", "tome.yaml", s_data, out, *student)
    ckpt = sorted(Path(t_dir, "save").glob("CKPT+*"))[-1]
    flag = f"--teacher_checkpoint={ckpt / 'embedding_model.ckpt'}"
    print("3/3 FastAST student taught by the teacher ...", flush=True)
    kd, _ = run_stage(
        "tome_kd_passt", "tome_kd_passt.yaml", s_data, out, *student, flag
    )
    print("Timing the sweep in interleaved rounds ...", flush=True)
    model = probe  # the students' architecture; timing needs no weights
    timing = stable_speedups(model, schedules, max_seconds=size.timing_s)
    speed = timing["speedup"]
    acc_plain = [row["metric"] for row in plain]
    acc_kd = [row["metric"] for row in kd]
    table = combined_table(schedules, plain, kd, timing)
    png = plot_tradeoff(
        out / "tradeoff.png", schedules, speed, acc_plain, acc_kd, t_acc
    )
    state = "stable" if timing["stable"] else "NOT yet stable (time cap)"
    where = device_name(next(model.parameters()).device)
    story = [
        f"Teacher (PaSST, own {n_teacher} clips) test accuracy: "
        f"{100 * t_acc:.1f} %",
        "",
        table,
        "",
        f"Speed-ups: medians of per-round time ratios over {timing['rounds']}"
        f" interleaved rounds (batch 8, one thread, {where}), {state}; ± is the"
        " median's standard error.",
        "Without KD: " + merging_sentence(schedules, acc_plain, speed, clip),
        "With KD: " + merging_sentence(schedules, acc_kd, speed, clip),
        f"The student's {n_student} training clips carry {wrong} wrong labels"
        f" ({100 * LABEL_NOISE:.0f} %); the teacher learned from its own "
        f"{n_teacher} correctly labelled clips.",
        distillation_sentence(t_acc, acc_plain, acc_kd, clip, n_student),
        f"Plot: {png}",
    ]
    text = "\n".join(story)
    (out / "demo_summary.md").write_text(text + "\n", encoding="utf-8")
    print("\n" + text)
    print(f"\nDemo finished in {time.time() - start:.0f} s; outputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
