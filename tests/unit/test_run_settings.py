"""What a run trains, key by key, and the check of a resumed run's folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastast_sb.config import run_settings
from fastast_sb.resume import (
    FINGERPRINT_FILE,
    RunError,
    check_resume,
    write_fingerprint,
)
from fastast_sb.runner import parse_r_sweep, resolve_precision_flags
from tests.conftest import ROOT

DATASET = ROOT / "recipes" / "ESC50" / "dataset.yaml"
VARIANT = ROOT / "hparams" / "tome.yaml"
PLACES = {"data_folder": "/data/esc50", "output_root": "/runs"}


def _settings(**overrides) -> dict:
    return run_settings(DATASET, VARIANT, overrides={**PLACES, **overrides})


def test_training_keys_differ_and_places_and_run_options_do_not():
    base = _settings()
    assert _settings(lr=1.0e-4) == base  # the default, written differently
    elsewhere = _settings(
        data_folder="/mnt/esc50",
        output_root="/elsewhere",
        output_folder="/x",
        num_workers=8,
        precision="bf16",
        r_sweep=[0, 8],
        bench_repeats=1,
    )
    assert elsewhere == base
    for key, value in (("lr", 1e-3), ("depth", 2), ("seed", 7), ("fold", 4)):
        changed = _settings(**{key: value})
        assert [k for k in base if base[k] != changed[k]] == [key]


def test_loader_options_merge_key_by_key_like_hyperpyyaml():
    base = _settings()
    same = _settings(train_dataloader_opts={"shuffle": True})
    assert same == base
    changed = _settings(train_dataloader_opts={"shuffle": False})
    assert changed["train_dataloader_opts"] != base["train_dataloader_opts"]
    assert (
        '"batch_size": {"!ref": "<batch_size>"}'
        in (changed["train_dataloader_opts"])
    )


def _run_folder(tmp_path: Path, settings: dict) -> Path:
    save = tmp_path / "save"
    (save / "CKPT+2026-01-01+00-00-00+00").mkdir(parents=True)
    write_fingerprint(save, settings)
    return save


def test_mismatch_names_keys_both_values_and_both_ways_on(tmp_path):
    save = _run_folder(tmp_path, _settings())
    with pytest.raises(RunError) as err:
        check_resume(save, _settings(lr=1e-3, depth=2))
    msg = str(err.value)
    assert "\n" not in msg
    assert "depth: 12 -> 2" in msg and "lr: 0.0001 -> 0.001" in msg
    assert "--output_folder=PATH" in msg and "--continue_changed=True" in msg
    assert check_resume(save, _settings()) == []


def test_continue_changed_returns_the_changed_keys(tmp_path):
    save = _run_folder(tmp_path, _settings())
    changed = _settings(lr=1e-3)
    assert check_resume(save, changed, continue_changed=True) == ["lr"]


def test_no_checkpoint_no_check_and_old_runs_resume(tmp_path):
    save = tmp_path / "save"
    write_fingerprint(save, _settings())
    assert check_resume(save, _settings(depth=2)) == []  # nothing trained
    (save / FINGERPRINT_FILE).unlink()
    (save / "CKPT+2026-01-01+00-00-00+00").mkdir()
    assert check_resume(save, _settings(depth=2)) == []  # made before


def test_fingerprint_file_holds_readable_settings_and_hash(tmp_path):
    path = write_fingerprint(tmp_path, _settings())
    record = json.loads(path.read_text())
    assert record["settings"]["depth"] == 12
    assert record["settings"]["lr"] == 1e-4
    assert len(record["sha256"]) == 64


def test_bad_r_sweep_is_a_run_error_naming_the_entry():
    with pytest.raises(RunError, match=r"r_sweep entry 'quick': merge"):
        parse_r_sweep([0, "quick"])
    with pytest.raises(RunError, match=r"r_sweep=8: expected a list"):
        parse_r_sweep(8)


def test_precision_flags_resolved_before_speechbrain_parses_them():
    args = resolve_precision_flags(
        [
            "a.yaml",
            "--device=cpu",
            "--precision=auto",
            "--eval_precision",
            "auto",
        ]
    )
    assert args[2] in ("--precision=bf16", "--precision=fp32")
    assert args[4] in ("bf16", "fp32")
    with pytest.raises(RunError, match="precision=int8 is for inference"):
        resolve_precision_flags(["a.yaml", "--precision=int8"])
    with pytest.raises(RunError, match="'fp16' needs a CUDA device"):
        resolve_precision_flags(["a.yaml", "--device=cpu", "--precision=fp16"])
