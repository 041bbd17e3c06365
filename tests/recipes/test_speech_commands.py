"""Speech Commands recipe on real v0.02 clips (../shared/data)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch

from fastast_sb.augment import NoiseRoll
from tests.conftest import ROOT, load_recipe_module, shared_data

RECIPE = ROOT / "recipes" / "SpeechCommands"
sys.path.insert(0, str(RECIPE))

import prepare_speech_commands as prep  # noqa: E402


def _load_train():
    return load_recipe_module("speech_commands_train", RECIPE / "train.py")


def _rows(path) -> list:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _listed(data: Path, name: str) -> set:
    return {
        line.strip()[: -len(".wav")]
        for line in (data / name).read_text().splitlines()
        if line.strip()
    }


def test_prepare_35_words_follows_the_official_lists(tmp_path):
    data = shared_data("speech_commands")
    paths = prep.prepare_speech_commands(str(data), str(tmp_path), 35)
    test = _rows(paths["test"])
    valid = _rows(paths["valid"])
    train = _rows(paths["train"])
    assert {r["ID"] for r in test} == _listed(data, "testing_list.txt")
    assert {r["ID"] for r in valid} == _listed(data, "validation_list.txt")
    assert len(train) + len(valid) + len(test) == 2820  # no background
    assert all(r["label"] == r["ID"].split("/")[0] for r in train)
    classes = Path(paths["classes"]).read_text().split()
    assert classes == sorted(classes) and len(classes) == 35
    assert "_background_noise_" not in {r["label"] for r in train}


def test_prepare_12_classes_unknown_and_silence(tmp_path):
    data = shared_data("speech_commands")
    paths = prep.prepare_speech_commands(str(data), str(tmp_path), 12)
    info = json.loads((tmp_path / "prepare.json").read_text())
    for split in ("train", "valid", "test"):
        per_class = info["per_class"][split]
        n_known = sum(per_class[w] for w in prep.CORE_WORDS)
        assert per_class["_unknown_"] == round(n_known * 0.10)
        assert per_class["_silence_"] == round(n_known * 0.10)
    train = _rows(paths["train"])
    unknown = [r for r in train if r["label"] == "_unknown_"]
    assert all(r["word"] not in prep.CORE_WORDS for r in unknown)
    silence = [r for r in train if r["label"] == "_silence_"]
    # Silence clips are 1 s cuts written into the output folder only.
    for row in silence[:5]:
        path = Path(row["wav"])
        assert path.parent == tmp_path / "silence"
        assert sf.info(str(path)).frames == 16000
    # Deterministic, and not redone when already prepared.
    again = prep.prepare_speech_commands(str(data), str(tmp_path / "b"), 12)
    assert Path(again["train"]).read_text().replace(
        str(tmp_path / "b"), ""
    ) == Path(paths["train"]).read_text().replace(str(tmp_path), "")


def test_prepare_errors_are_clear(tmp_path, monkeypatch):
    with pytest.raises(prep.DataError, match="v0.02 not found at .*--download"):
        prep.prepare_speech_commands(str(tmp_path), str(tmp_path / "out"))
    with pytest.raises(prep.DataError, match="n_classes=30; .* 35 .* or 12"):
        prep.prepare_speech_commands(str(tmp_path), str(tmp_path / "o"), 30)

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr("urllib.request.urlretrieve", offline)
    with pytest.raises(prep.DataError, match="could not download .*Offline"):
        prep.download_speech_commands(str(tmp_path / "dl"))


def test_noise_roll_matches_its_definition():
    x = torch.randn(3, 20, 4)
    aug = NoiseRoll(max_shift=5)
    torch.manual_seed(1)
    y = aug(x)
    torch.manual_seed(1)
    strength = torch.rand(3, 1, 1)
    noise = torch.rand_like(x) * strength / 10
    shifts = torch.randint(-5, 5, (3,))
    for i in range(3):
        expected = torch.roll(x[i] + noise[i], int(shifts[i]), dims=0)
        assert torch.allclose(y[i], expected)
    with pytest.raises(ValueError, match="max_shift must be >= 0, got -1"):
        NoiseRoll(max_shift=-1)


def test_recipe_trains_on_real_clips(tmp_path, monkeypatch):
    data = shared_data("speech_commands")
    calls = []
    original = NoiseRoll.forward

    def counting(self, feats, lens=None):
        calls.append(tuple(feats.shape))
        return original(self, feats, lens)

    monkeypatch.setattr(NoiseRoll, "forward", counting)
    train = _load_train()
    result = train.run(
        [
            str(ROOT / "hparams" / "tome.yaml"),
            f"--data_folder={data}",
            f"--output_root={tmp_path}",
            "--depth=1",
            "--batch_size=8",
            "--r_sweep=[0, 8]",
            "--bench_repeats=1",
            "--debug",
        ]
    )
    run_dir = tmp_path / "tome" / "fold35" / "seed1234"
    assert Path(result["output_folder"]) == run_dir
    for name in ("train.csv", "save/label_encoder.txt", "r_sweep.md"):
        assert (run_dir / name).is_file(), name
    # AST's settings: 1 s -> T=128 (146 tokens), BCE with mixup 0.6.
    hparams = (run_dir / "hyperparams.yaml").read_text()
    for line in ("target_length: 128", "mixup_prob: 0.6", "multilabel: true"):
        assert line in hparams.lower()
    rows = result["rows"]
    assert [r["r"] for r in rows] == ["0", "8"]
    assert rows[0]["final_tokens"] == 146
    assert all(0.0 <= r["metric"] <= 1.0 for r in rows)
    # noise-and-roll ran on training batches only (--debug: 2 x 2 batches).
    assert calls == [(8, 128, 128)] * 4
