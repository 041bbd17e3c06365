"""DDP on CPU: two gloo processes train ESC-50 (demo data) with FastAST.

The run merges tokens in training and distils from a frozen teacher
(multi-label CMKD; random teacher weights: the point is that the teacher,
which is not a Brain module, is never wrapped or synchronised). The
validation set (5 clips: not divisible by 2) is split between the two
processes and their scores gathered; the gathered accuracy and mAP must
equal a single-process evaluation of the saved checkpoint on the same data.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, load_recipe_module

ESC50 = ROOT / "recipes" / "ESC50"


_load = load_recipe_module


def _variant(folder: Path) -> Path:
    """tome_kd.yaml with a small random-weight teacher over 5 classes."""
    path = folder / "tome_kd_random_teacher.yaml"
    path.write_text(
        f"inherit: {ROOT / 'hparams' / 'tome_kd.yaml'}\n"
        "teacher_checkpoint: null\n"
        "teacher_class_map: {a: [0], b: [1], c: [2], d: [3], e: [4]}\n"
    )
    return path


def _args(variant: Path, data: Path, out: Path) -> list:
    return [
        str(variant),
        f"--data_folder={data}",
        f"--output_root={out}",
        "--depth=1",
        "--target_length=208",
        "--n_classes=5",
        "--fold=5",
        "--number_of_epochs=1",
        "--batch_size=4",
        "--tome_r=16",
        "--r_sweep=[16]",
        "--bench_repeats=1",
        "--multilabel=True",  # BCE: the run also reports mAP
        "--noprogressbar",
    ]


@pytest.mark.slow
def test_two_process_gloo_run_matches_single_process(tmp_path):
    demo = _load("esc50_demo_data", ESC50 / "demo_data.py")
    data = demo.make_demo_esc50(
        str(tmp_path / "data"), clips_per_class_per_fold=1
    )
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(ESC50 / "train.py"),
        *_args(_variant(tmp_path), data, out),
        "--distributed_backend=gloo",
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    run_dir = out / "tome_kd" / "fold5" / "seed1234"
    with open(run_dir / "epoch_metrics.csv", newline="") as f:
        (epoch,) = list(csv.DictReader(f))
    ddp_test = json.loads((run_dir / "test_metrics.json").read_text())

    # Single process, same output folder: resumes the finished run (no
    # training) and evaluates the checkpoint on the same clips (fold 5 is
    # both the validation and the test fold).
    train = _load("esc50_train_single", ESC50 / "train.py")
    result = train.run(_args(_variant(tmp_path), data, out))
    single = result["brain"].last_metrics
    assert len(result["brain"].scores) == 5
    assert float(epoch["valid_acc"]) == pytest.approx(single["acc"], abs=1e-9)
    assert float(epoch["valid_mAP"]) == pytest.approx(single["mAP"], abs=1e-6)
    assert float(epoch["valid_mAUC"]) == pytest.approx(single["mAUC"], abs=1e-6)
    # The DDP run's own test sweep ran on the main process only.
    assert ddp_test["r_sweep"][0]["metric"] == pytest.approx(single["acc"])
