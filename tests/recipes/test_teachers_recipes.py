"""Teachers trained through the recipes feed the distillation variants."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, shared_data

sys.path.insert(0, str(ROOT / "recipes" / "ESC50"))

import train  # noqa: E402
from demo_data import make_demo_esc50  # noqa: E402


def _common(data: Path, out: Path) -> list:
    return [
        f"--data_folder={data}",
        f"--output_root={out}",
        "--n_classes=5",
        "--fold=5",
        "--target_length=208",
        "--batch_size=8",
        "--bench_repeats=1",
        "--r_sweep=[0]",
    ]


def _checkpoint(run_dir: str) -> Path:
    ckpts = sorted(Path(run_dir, "save").glob("CKPT+*"))
    assert ckpts, f"no checkpoint in {run_dir}"
    return ckpts[-1] / "embedding_model.ckpt"


@pytest.mark.parametrize(
    "teacher, student",
    [
        ("teacher_effnet.yaml", "tome_kd_effnet.yaml"),
        ("teacher_passt.yaml", "tome_kd_passt.yaml"),
    ],
)
def test_teacher_trains_an_epoch_and_feeds_tome_kd(tmp_path, teacher, student):
    data = make_demo_esc50(str(tmp_path / "data"))
    extra = ["--depth=2"] if "passt" in teacher else []
    result = train.run(
        [
            str(ROOT / "hparams" / teacher),
            *_common(data, tmp_path / "t"),
            "--number_of_epochs=1",
            *extra,
        ]
    )
    assert result["rows"][0]["r"] == "n/a"
    assert 0.0 <= result["rows"][0]["metric"] <= 1.0
    ckpt = _checkpoint(result["output_folder"])
    kd = train.run(
        [
            str(ROOT / "hparams" / student),
            *_common(data, tmp_path / "s"),
            f"--teacher_checkpoint={ckpt}",
            "--depth=1",
            "--debug",
        ]
    )
    brain = kd["brain"]
    assert brain.teacher is not None and not brain.teacher.training
    assert kd["rows"][0]["r"] == "0"


def test_mobilenet_teacher_finetunes_and_feeds_tome_kd(tmp_path):
    data = shared_data("esc10")
    init = shared_data("teachers", "mn04_as_mAP_432.pt")
    common = [
        f"--data_folder={data}",
        "--n_classes=10",
        "--fold=4",
        "--batch_size=4",
        "--bench_repeats=1",
        "--r_sweep=[0]",
        "--debug",
    ]
    result = train.run(
        [
            str(ROOT / "hparams" / "teacher_mobilenet.yaml"),
            *common,
            f"--output_root={tmp_path / 't'}",
            f"--teacher_init={init}",
            "--debug_persistently",
        ]
    )
    ckpt = _checkpoint(result["output_folder"])
    kd = train.run(
        [
            str(ROOT / "hparams" / "tome_kd.yaml"),
            *common,
            f"--output_root={tmp_path / 's'}",
            f"--teacher_checkpoint={ckpt}",
            "--teacher_class_map=esc10",
            f"--teacher_labels_csv={init.parent / 'class_labels_indices.csv'}",
            "--depth=1",
        ]
    )
    assert kd["brain"].teacher is not None
