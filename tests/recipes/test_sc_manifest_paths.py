"""Speech Commands manifests name every clip by an absolute path, so a run
folder's test.csv works from any directory (the cut silence clips were
written relative to the training's working directory)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from tests.conftest import ROOT, shared_data

sys.path.insert(0, str(ROOT / "recipes" / "SpeechCommands"))

import prepare_speech_commands as prep  # noqa: E402


def test_silence_clips_have_absolute_paths_from_a_relative_save_folder(
    tmp_path, monkeypatch
):
    data = shared_data("speech_commands")
    monkeypatch.chdir(tmp_path)
    paths = prep.prepare_speech_commands(str(data), "run/save", 12)
    with open(paths["test"], newline="") as f:
        rows = list(csv.DictReader(f))
    silence = [r for r in rows if r["label"] == "_silence_"]
    assert silence, "the 12-class test split has silence clips"
    for row in rows:
        wav = Path(row["wav"])
        assert wav.is_absolute(), row["wav"]
        assert wav.is_file(), row["wav"]
    monkeypatch.chdir(ROOT)  # elsewhere: the manifest still points at files
    assert all(Path(r["wav"]).is_file() for r in silence)
