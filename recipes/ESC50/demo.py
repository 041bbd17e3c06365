#!/usr/bin/env python3
"""The main job on embedded demonstration data: ``make demo``.

The full FastAST pipeline through the real ESC-50 recipe (``train.py``) on a
small synthetic set in ESC-50 layout (``demo_data.py``; not ESC-50):

1. a PaSST teacher (``hparams/teacher_passt.yaml``),
2. a FastAST student with token merging, without distillation
   (``hparams/tome.yaml``),
3. the same student taught by the frozen teacher
   (``hparams/tome_kd_passt.yaml``, lambda 0.1, tau 1),

then one r-sweep table: test accuracy without and with distillation and the
speed-up measured for each merge rate.

    python recipes/ESC50/demo.py [--output_folder demo_output]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List

RECIPE_DIR = Path(__file__).resolve().parent
ROOT = RECIPE_DIR.parents[1]
sys.path.insert(0, str(RECIPE_DIR))

import train  # noqa: E402
from demo_data import make_demo_esc50  # noqa: E402

#: Settings that fit the 2 s demonstration clips and a few CPU minutes.
DEMO_OVERRIDES = [
    "--n_classes=5",
    "--fold=5",
    "--target_length=208",
    "--batch_size=16",
    "--lr_decay_start=4",
    "--timem=40",
    "--bench_repeats=5",
    "--depth=4",
    "--lr=5e-4",
]
TEACHER = ["--number_of_epochs=8"]
STUDENT = ["--tome_r=8", "--number_of_epochs=6", "--r_sweep=[0, 8, 16, 24]"]


def _run(variant: str, data: Path, out: Path, *extra: str) -> Dict:
    folders = [f"--data_folder={data}", f"--output_root={out}"]
    hparams = str(ROOT / "hparams" / variant)
    return train.run([hparams, *folders, *DEMO_OVERRIDES, *extra])


def combined_table(teacher: float, plain: List[Dict], kd: List[Dict]) -> str:
    """One markdown table: accuracy without / with KD, measured speed.

    Example
    -------
    >>> row = {"r": "0", "metric": 0.5, "speedup": 1.0, "flop_ratio": 1.0}
    >>> print(combined_table(0.9, [row], [row]).splitlines()[-1])
    | 0 | 50.00 | 50.00 | 1.00x | 1.00x |
    """
    lines = [
        f"Teacher (PaSST) test accuracy: {100 * teacher:.2f} %",
        "",
        "| r | acc, no KD (%) | acc, KD (%) | speed-up (measured) | "
        "FLOP ratio |",
        "|---|---|---|---|---|",
    ]
    for a, b in zip(plain, kd):
        lines.append(
            f"| {a['r']} | {100 * a['metric']:.2f} | {100 * b['metric']:.2f} "
            f"| {b['speedup']:.2f}x | {b['flop_ratio']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> int:
    """Generate the data, train teacher and students, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_folder", default="demo_output")
    args = parser.parse_args()
    out = Path(args.output_folder).resolve()
    start = time.time()
    data = make_demo_esc50(str(out / "data"))
    teacher = _run("teacher_passt.yaml", data, out, *TEACHER)
    plain = _run("tome.yaml", data, out, *STUDENT)
    ckpt = sorted(Path(teacher["output_folder"], "save").glob("CKPT+*"))[-1]
    flag = f"--teacher_checkpoint={ckpt / 'embedding_model.ckpt'}"
    kd = _run("tome_kd_passt.yaml", data, out, *STUDENT, flag)
    table = combined_table(
        teacher["rows"][0]["metric"], plain["rows"], kd["rows"]
    )
    (out / "demo_summary.md").write_text(table + "\n", encoding="utf-8")
    print("\n" + table)
    print(f"\nDemo finished in {time.time() - start:.0f} s; outputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
