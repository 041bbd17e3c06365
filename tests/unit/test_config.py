"""Every variant loads with every dataset; schedules from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from fastast_sb.config import compose_yaml, load_hparams
from fastast_sb.models.ast import AST
from fastast_sb.teachers.effnet import EfficientNetTeacher
from fastast_sb.teachers.passt import PaSST
from fastast_sb.tome.schedule import parse_schedule
from tests.conftest import ROOT, SHARED_DATA

DATASETS = sorted((ROOT / "recipes").glob("*/dataset.yaml"))
VARIANTS = sorted((ROOT / "hparams").glob("*.yaml"))


def _placeholders(variant: Path, dataset: Path, tmp: Path) -> dict:
    text = compose_yaml(dataset, variant)
    overrides = {"data_folder": str(tmp), "output_root": str(tmp)}
    if "teacher_checkpoint: !PLACEHOLDER" in text:
        n = 10
        overrides["n_classes"] = n
        ckpt = tmp / "teacher.ckpt"
        if "effnet" in variant.name:
            net = EfficientNetTeacher(n, model_name="efficientnet-b0")
            overrides["teacher_model_name"] = "efficientnet-b0"
        elif "passt" in variant.name:
            net = PaSST(input_tdim=128, preset="mini", num_classes=n)
        else:
            mn = SHARED_DATA / "teachers" / "mn04_as_mAP_432.pt"
            if not mn.is_file():
                pytest.skip(f"teacher weights not found at {mn}")
            overrides["teacher_class_map"] = "esc10"
            return {**overrides, "teacher_checkpoint": str(mn)}
        torch.save(net.state_dict(), ckpt)
        overrides["teacher_checkpoint"] = str(ckpt)
    if "teacher_init: !PLACEHOLDER" in text:
        mn = SHARED_DATA / "teachers" / "mn04_as_mAP_432.pt"
        if not mn.is_file():
            pytest.skip(f"teacher weights not found at {mn}")
        overrides["teacher_init"] = str(mn)
        overrides["n_classes"] = 10
    return overrides


@pytest.mark.parametrize("dataset", DATASETS, ids=lambda p: p.parent.name)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda p: p.stem)
def test_every_variant_loads_with_every_dataset(variant, dataset, tmp_path):
    overrides = _placeholders(variant, dataset, tmp_path)
    if "passt" in variant.name:
        overrides["target_length"] = 128
    hparams, resolved = load_hparams(dataset, variant, overrides=overrides)
    assert hparams["variant"] == variant.stem
    for key in ("compute_features", "embedding_model", "classifier"):
        assert key in hparams["modules"]
    assert "!PLACEHOLDER" not in resolved
    assert str(tmp_path) in hparams["output_folder"]


def _tome(**overrides) -> dict:
    base = {"data_folder": "/nowhere", "depth": 3}
    hparams, _ = load_hparams(
        ROOT / "recipes" / "ESC50" / "dataset.yaml",
        ROOT / "hparams" / "tome.yaml",
        overrides={**base, **overrides},
    )
    return hparams


@pytest.mark.parametrize(
    "text, expected",
    [
        ("tome_r: 8", [8, 8, 8]),
        ("tome_r: ramp:8:-1", [16, 8, 0]),
        ("tome_r: [30, 20]", [30, 20, 0]),
        ("tome_r: 30,20", [30, 20, 0]),
    ],
)
def test_schedule_overrides_from_the_command_line(text, expected):
    hparams = _tome(**load_hyperpyyaml(text))
    model: AST = hparams["embedding_model"]
    assert model.schedule() == expected
    assert hparams["r_train"] == model.r


def test_flop_budget_override_halves_flops():
    hparams = _tome(**load_hyperpyyaml("tome_r: flops:0.5"))
    model: AST = hparams["embedding_model"]
    assert model.r == parse_schedule("flops:0.5")
    assert hparams["r_train"] == parse_schedule("flops:0.5")
    ratio = model.flops() / model.flops(0)
    assert abs(ratio - 0.5) < 0.05 * 0.5


def test_unknown_override_is_refused():
    with pytest.raises(KeyError, match="Override 'tome_rr' not found"):
        _tome(tome_rr=3)


def test_named_class_map_resolves_from_any_working_directory(
    tmp_path, monkeypatch
):
    mn = SHARED_DATA / "teachers" / "mn04_as_mAP_432.pt"
    if not mn.is_file():
        pytest.skip(f"teacher weights not found at {mn}")
    monkeypatch.chdir(tmp_path)  # not the repository root
    hparams, _ = load_hparams(
        ROOT / "recipes" / "ESC50" / "dataset.yaml",
        ROOT / "hparams" / "tome_kd.yaml",
        overrides={
            "data_folder": "/nowhere",
            "depth": 1,
            "teacher_class_map": "esc10",
            "teacher_checkpoint": str(mn),
            "n_classes": 10,
        },
    )
    assert hparams["project_root"] == str(ROOT.resolve())
    assert Path(hparams["teacher_class_maps"]["esc10"]).is_file()
