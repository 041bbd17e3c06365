"""Audio below the model's sample rate is upsampled with a warning naming
both rates: once per rate pair for files read one by one, once per dataset
in training (issue 14.6)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fastast_sb import audio
from fastast_sb.audio import load_audio
from fastast_sb.dataio import manifest_datasets
from tests.conftest import ROOT, load_recipe_module

esc = load_recipe_module("esc50_prepare", ROOT / "recipes/ESC50/prepare.py")


@pytest.fixture(autouse=True)
def _fresh_process(monkeypatch):
    """As in a new process: no rate pair warned about yet."""
    monkeypatch.setattr(audio, "_WARNED_RATES", set(), raising=False)


def _clip(path: Path, rate: int) -> Path:
    t = np.arange(rate // 2) / rate
    sf.write(path, 0.1 * np.sin(2 * np.pi * 440 * t), rate)
    return path


def _warnings(caplog) -> list:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_one_file_below_the_rate_is_named_with_both_rates(tmp_path, caplog):
    clip = _clip(tmp_path / "rain.wav", 8000)
    with caplog.at_level(logging.WARNING):
        load_audio(clip, 16000)
    (msg,) = _warnings(caplog)
    assert str(clip) in msg and "8000 Hz" in msg and "16000 Hz" in msg


def test_warned_once_per_rate_pair(tmp_path, caplog):
    clips = [_clip(tmp_path / f"{k}.wav", 8000) for k in range(3)]
    with caplog.at_level(logging.WARNING):
        for clip in clips * 2:
            load_audio(clip, 16000)
        load_audio(_clip(tmp_path / "b.wav", 11025), 16000)
        load_audio(_clip(tmp_path / "c.wav", 44100), 16000)  # downsampled
    msgs = _warnings(caplog)
    assert len(msgs) == 2
    assert str(clips[0]) in msgs[0] and "11025 Hz" in msgs[1]


def _esc50(root: Path, rates) -> Path:
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    with open(root / "meta" / "esc50.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "fold", "target", "category"])
        for k, rate in enumerate(rates):
            name = f"{k % 2 + 1}-{k}-A-0.wav"
            _clip(root / "audio" / name, rate)
            writer.writerow([name, k % 2 + 1, 0, "dog"])
    return root


def test_a_dataset_warns_once_however_often_it_is_read(tmp_path, caplog):
    data = _esc50(tmp_path / "esc", [8000, 16000, 8000, 16000, 8000])
    out = tmp_path / "run"
    esc.prepare_esc50(str(data), str(out), test_fold=2)
    with caplog.at_level(logging.WARNING):
        sets = manifest_datasets(out, 1, 16000)
        for _epoch in range(2):
            for split in ("train", "valid", "test"):
                for item in sets[split]:
                    assert item["sig"].numel() == 8000
    (msg,) = _warnings(caplog)
    assert msg.startswith(f"3 clips in {out} are sampled below")
    assert "16000 Hz" in msg and "3 at 8000 Hz" in msg
    assert str(data / "audio" / "1-0-A-0.wav") in msg
