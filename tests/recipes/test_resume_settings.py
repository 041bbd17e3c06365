"""Rerunning into a run's folder: the same settings resume it, changed ones
stop before anything is written, unless deliberately continued."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import ruamel.yaml

from fastast_sb.inference.export import export_run
from tests.conftest import ROOT, one_line_refusal

RECIPE = ROOT / "recipes" / "ESC50"
sys.path.insert(0, str(RECIPE))

import train  # noqa: E402
from demo_data import make_demo_esc50  # noqa: E402

#: A one-epoch, one-block run on the demo data.
SMALL = {
    "n_classes": "5",
    "target_length": "208",
    "depth": "1",
    "embed_dim": "64",
    "number_of_epochs": "1",
    "batch_size": "8",
    "r_sweep": "[0]",
    "bench_repeats": "1",
}


def _args(data: Path, out: Path, **changes: str) -> list:
    """The small run into ``out``, with ``changes`` to its settings."""
    keys = {"data_folder": data, "output_folder": out, **SMALL, **changes}
    return [str(ROOT / "hparams" / "tome.yaml")] + [
        f"--{key}={value}" for key, value in keys.items()
    ]


def _snapshot(folder: Path) -> dict:
    """Every file under ``folder``: its bytes' hash and modification time."""
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _epochs(run: Path) -> list:
    with open(run / "epoch_metrics.csv", newline="") as f:
        return [row["epoch"] for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("resume")
    data = make_demo_esc50(str(root / "data"), clips_per_class_per_fold=1)
    run = root / "run"
    assert train.main(_args(data, run)) == 0
    return {"data": data, "run": run}


def _copy(finished: dict, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished["run"], run)
    return run


def _refused(capsys, args: list) -> str:
    return one_line_refusal(train.main, capsys, args)


def test_changed_lr_stops_before_writing(finished, capsys):
    run = finished["run"]
    before = _snapshot(run)
    err = _refused(capsys, _args(finished["data"], run, lr="0.001"))
    assert "lr: 0.0001 -> 0.001" in err
    assert "--output_folder=PATH" in err and "--continue_changed=True" in err
    assert _snapshot(run) == before


def test_changed_depth_stops_and_the_run_still_exports(
    finished, capsys, tmp_path
):
    run = finished["run"]
    before = _snapshot(run)
    err = _refused(capsys, _args(finished["data"], run, depth="2"))
    assert "depth: 1 -> 2" in err
    assert _snapshot(run) == before
    model = export_run(run, tmp_path / "model")
    assert (model / "embedding_model.ckpt").is_file()


def test_continue_changed_continues_with_the_new_settings(finished, tmp_path):
    run = _copy(finished, tmp_path)
    longer = {"lr": "0.001", "number_of_epochs": "2"}
    args = _args(finished["data"], run, **longer, continue_changed="True")
    assert train.main(args) == 0
    assert _epochs(run) == ["1", "2"]  # epoch 1 kept, epoch 2 trained
    record = json.loads((run / "save" / "fingerprint.json").read_text())
    assert record["settings"]["lr"] == 0.001
    # The new settings are the run's now: repeating them needs no flag.
    assert train.main(_args(finished["data"], run, **longer)) == 0


def test_continuing_into_a_checkpoint_that_does_not_fit_writes_nothing(
    finished, capsys, tmp_path
):
    run = _copy(finished, tmp_path)
    before = _snapshot(run)
    args = _args(finished["data"], run, depth="2", continue_changed="True")
    err = _refused(capsys, args)
    assert "does not fit the changed settings (depth)" in err
    assert _snapshot(run) == before


def test_places_and_run_options_may_change_on_resume(finished, tmp_path):
    run = _copy(finished, tmp_path)
    data = tmp_path / "moved"
    shutil.copytree(finished["data"], data)
    args = _args(data, run, num_workers="1", r_sweep="[0, 8]")
    assert train.main(args) == 0
    assert _epochs(run) == ["1"]  # resumed finished, nothing retrained
    with open(run / "r_sweep.csv", newline="") as f:
        assert [row["r"] for row in csv.DictReader(f)] == ["0", "8"]
    hparams = ruamel.yaml.YAML(typ="rt").load(run / "hyperparams.yaml")
    assert hparams["data_folder"] == str(data)
