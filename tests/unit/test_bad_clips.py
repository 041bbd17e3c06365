"""Bad clips (NaN samples, shorter than one 25 ms frame) are found by the
data preparation, refused or skipped as ``bad_clips`` says (issue 14.3),
and a short clip read for training names its file."""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fastast_sb.audio import AudioError, load_audio
from fastast_sb.dataio import DataError, prepared_datasets
from tests.conftest import ROOT, load_recipe_module

SR = 16000
esc = load_recipe_module("esc50_prepare", ROOT / "recipes/ESC50/prepare.py")
sc = load_recipe_module(
    "sc_prepare", ROOT / "recipes/SpeechCommands/prepare_speech_commands.py"
)
audioset = load_recipe_module(
    "as_prepare", ROOT / "recipes/AudioSet/prepare_audioset.py"
)


def _tone(seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return 0.1 * np.sin(2 * np.pi * 440 * t)


def _write_bad(folder: Path, nan_name: str, short_name: str) -> None:
    """A float wav full of NaN and a 10 ms clip."""
    nan = np.full(SR // 2, np.nan)
    sf.write(folder / nan_name, nan, SR, subtype="FLOAT")
    sf.write(folder / short_name, _tone(0.010), SR)


def _esc50(root: Path, n: int = 6) -> Path:
    """ESC-50 layout: n clips of 'dog' over folds 1-3, two of them bad."""
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rows = []
    for k in range(n):
        name = f"{k % 3 + 1}-{k}-A-0.wav"
        rows.append([name, k % 3 + 1, 0, "dog"])
        sf.write(root / "audio" / name, _tone(), SR)
    _write_bad(root / "audio", rows[0][0], rows[1][0])
    with open(root / "meta" / "esc50.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "fold", "target", "category"])
        writer.writerows(rows)
    return root


def test_refusal_is_one_line_naming_the_bad_clips(tmp_path):
    data = _esc50(tmp_path / "esc")
    with pytest.raises(DataError) as err:
        esc.prepare_esc50(str(data), str(tmp_path / "out"), test_fold=3)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("2 of 6 clips")
    assert f"{data / 'audio' / '1-0-A-0.wav'} (" in msg
    assert "NaN/Inf" in msg
    assert f"{data / 'audio' / '2-1-A-0.wav'} (10.0 ms" in msg
    assert "--bad_clips=skip" in msg
    assert not (tmp_path / "out" / "train.csv").exists()


def test_skip_leaves_them_out_with_a_count(tmp_path, caplog):
    data = _esc50(tmp_path / "esc")
    with caplog.at_level(logging.WARNING):
        paths = esc.prepare_esc50(
            str(data), str(tmp_path / "out"), test_fold=3, bad_clips="skip"
        )
    ids = set()
    for split in ("train", "valid", "test"):
        with open(paths[split], newline="") as f:
            ids |= {r["ID"] for r in csv.DictReader(f)}
    assert ids == {"3-2-A-0", "1-3-A-0", "2-4-A-0", "3-5-A-0"}
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.msg]
    assert len(skipped) == 1 and "2 of 6 clips" in skipped[0]
    info = json.loads((tmp_path / "out" / "prepare.json").read_text())
    assert len(info["skipped"]) == 2


def test_unknown_choice_is_refused(tmp_path):
    data = _esc50(tmp_path / "esc")
    with pytest.raises(DataError, match="bad_clips='drop'; expected refuse"):
        esc.prepare_esc50(str(data), str(tmp_path / "o"), 3, bad_clips="drop")


def test_prepare_command_line_takes_the_option(tmp_path, capsys):
    data = _esc50(tmp_path / "esc")
    assert esc.main(["--data_folder", str(data)]) == 1
    assert "--bad_clips=skip" in capsys.readouterr().err
    argv = ["--data_folder", str(data), "--bad_clips", "skip"]
    assert esc.main(argv) == 0
    assert "4 clips OK" in capsys.readouterr().out


def _speech_commands(root: Path) -> Path:
    for word in ("yes", "no"):
        (root / word).mkdir(parents=True)
        for k in range(4):
            sf.write(root / word / f"s{k}_nohash_0.wav", _tone(), SR)
    (root / "validation_list.txt").write_text("yes/s0_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("no/s0_nohash_0.wav\n")
    _write_bad(root / "yes", "s1_nohash_0.wav", "s2_nohash_0.wav")
    return root


def test_speech_commands_refuses_and_skips(tmp_path):
    data = _speech_commands(tmp_path / "sc")
    with pytest.raises(DataError, match=r"^2 of 8 clips .*yes/s1_nohash_0"):
        sc.prepare_speech_commands(str(data), str(tmp_path / "a"))
    paths = sc.prepare_speech_commands(
        str(data), str(tmp_path / "b"), bad_clips="skip"
    )
    train = Path(paths["train"]).read_text()
    assert "yes/s1_nohash_0" not in train and "yes/s3_nohash_0" in train
    # The option is part of what a rerun compares.
    info = json.loads((tmp_path / "b" / "prepare.json").read_text())
    assert info["options"]["bad_clips"] == "skip"


def _audioset(root: Path) -> Path:
    (root / "audio").mkdir(parents=True)
    (root / "class_labels_indices.csv").write_text(
        'index,mid,display_name\n0,/m/a,"A"\n'
    )
    for name, ids in (("balanced_train", "t0 t1 t2"), ("eval", "e0 e1")):
        lines = [f'{i}, 0.0, 10.0, "/m/a"' for i in ids.split()]
        (root / f"{name}_segments.csv").write_text(
            "# YTID, start_seconds, end_seconds, positive_labels\n"
            + "\n".join(lines)
            + "\n"
        )
        for i in ids.split():
            sf.write(root / "audio" / f"{i}.wav", _tone(), SR)
    _write_bad(root / "audio", "t1.wav", "e1.wav")
    return root


def test_audioset_refuses_and_skips(tmp_path):
    data = _audioset(tmp_path / "as")
    with pytest.raises(DataError, match=r"^1 of 3 clips of .*t1\.wav"):
        audioset.prepare_audioset(str(data), str(tmp_path / "a"))
    out = audioset.prepare_audioset(
        str(data), str(tmp_path / "b"), bad_clips="skip"
    )
    assert out["counts"]["train"]["used"] == 2
    assert out["counts"]["eval"]["used"] == 1


def test_training_passes_the_option_from_hparams(tmp_path):
    data = _esc50(tmp_path / "esc")
    hparams = {
        "data_folder": str(data),
        "output_folder": str(tmp_path / "run"),
        "n_classes": 1,
        "sample_rate": SR,
        "multilabel": False,
        "bad_clips": "skip",
    }
    sets = prepared_datasets(hparams, esc.prepare_esc50, test_fold=3)
    assert len(sets["train"]) == 2
    with pytest.raises(DataError, match="would stop training"):
        hparams["bad_clips"] = "refuse"
        prepared_datasets(hparams, esc.prepare_esc50, test_fold=3)


@pytest.mark.parametrize("recipe", ["ESC50", "SpeechCommands", "AudioSet"])
def test_every_dataset_yaml_documents_the_default(recipe):
    text = (ROOT / "recipes" / recipe / "dataset.yaml").read_text()
    assert re.search(r"^# .*refuse.*\n.*skip.*\nbad_clips: refuse$", text, re.M)


def test_a_short_clip_read_for_training_names_its_file(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, 0.1 * np.ones(80), 8000)  # 10 ms at 8 kHz
    with pytest.raises(AudioError, match=r"short\.wav: 10\.0 ms .*25 ms"):
        load_audio(path, SR)
    sf.write(path, _tone(0.030), SR)  # one frame and a bit: fine
    assert load_audio(path, SR).numel() == 480
