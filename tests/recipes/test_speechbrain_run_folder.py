"""The recipes make SpeechBrain's own run folder and honour its flags."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo") / "data"
    return make_demo_esc50(str(folder), clips_per_class_per_fold=1)


#: A one-block model on the demo data.
SMALL = {
    "n_classes": "5",
    "target_length": "208",
    "depth": "1",
    "embed_dim": "64",
    "batch_size": "4",
    "r_sweep": "[0, 8, 16]",
    "bench_repeats": "1",
}


def _args(data: Path, out: Path, *flags: str, **changes: str) -> list:
    """The small run into ``out``: SpeechBrain ``flags``, setting changes."""
    keys = {"data_folder": data, "output_folder": out, **SMALL, **changes}
    settings = [f"--{key}={value}" for key, value in keys.items()]
    return [str(ROOT / "hparams" / "tome.yaml"), *settings, *flags]


def _yaml(text: str) -> dict:
    return ruamel.yaml.YAML(typ="rt").load(text)


def test_debug_run_writes_speechbrains_run_folder(data, tmp_path):
    out = tmp_path / "run"
    result = train.run(
        _args(data, out, "--debug", "--debug_persistently", "--device=cpu")
        + ["--precision=auto", "--eval_precision=auto"]
    )
    assert Path(result["output_folder"]) == out
    for name in ("log.txt", "env.log", "train_log.txt", "hyperparams.yaml"):
        assert (out / name).is_file(), name
    assert "Beginning experiment!" in (out / "log.txt").read_text()
    copied = (out / "train.py").read_bytes()
    assert copied == (RECIPE / "train.py").read_bytes()
    hparams = (out / "hyperparams.yaml").read_text()
    assert hparams.startswith("# Generated ")
    assert _yaml(hparams)["output_folder"] == str(out)
    # --debug: two batches of two epochs, the short r sweep.
    assert [row["r"] for row in result["rows"]] == ["0", "8"]
    assert result["brain"].precision in ("bf16", "fp32")  # auto, resolved
    # The hyperparams.yaml written is still the one export reads (the
    # checkpoints of a --debug run stay with --debug_persistently).
    model = export_run(out, tmp_path / "model")
    assert (model / "embedding_model.ckpt").is_file()


def _refused(capsys, args: list) -> str:
    return one_line_refusal(train.main, capsys, args)


def test_bad_r_sweep_is_one_line_at_start(data, tmp_path, capsys):
    out = tmp_path / "run"
    err = _refused(capsys, _args(data, out, r_sweep="[0, quick]"))
    assert err.startswith("error: r_sweep entry 'quick': merge schedule")
    assert not (out / "save").exists() or not any((out / "save").glob("CKPT+*"))
    assert not (out / "epoch_metrics.csv").exists()


def test_int8_is_not_a_training_precision(data, tmp_path, capsys):
    out = tmp_path / "run"
    err = _refused(capsys, _args(data, out, "--precision=int8"))
    assert "precision=int8 is for inference only" in err
    assert not out.exists()


def test_precision_auto_in_the_yaml_is_resolved(data, tmp_path):
    from fastast_sb.runner import load_run

    variant = tmp_path / "auto.yaml"
    tome = ROOT / "hparams" / "tome.yaml"
    variant.write_text(f"inherit: {tome}\nprecision: auto\n")
    args = [str(variant)] + _args(data, tmp_path / "run")[1:]
    hparams, _ = load_run(args, train.DATASET_YAML)
    assert hparams["precision"] in ("bf16", "fp32")


def test_a_setting_given_twice_is_one_line(data, tmp_path, capsys):
    args = _args(data, tmp_path / "run", "--depth=2")
    err = _refused(capsys, args)
    assert 'command-line settings: found duplicate key "depth"' in err
