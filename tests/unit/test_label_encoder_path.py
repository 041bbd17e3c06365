"""The label encoder is kept where SpeechBrain recipes keep it:
``<output_folder>/save/label_encoder.txt`` (issue 15.1)."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from fastast_sb.dataio import (
    make_label_encoder,
    manifest_datasets,
    write_manifests,
)


def test_label_encoder_is_kept_under_save(tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(8000), 16000)
    row = {"ID": "a", "duration": "0.5", "wav": str(wav), "label": "dog"}
    out = tmp_path / "run"
    splits = dict.fromkeys(("train", "valid", "test"), [row])
    write_manifests(out, splits, list(row), ["dog"], {})
    sets = manifest_datasets(out, 1, 16000)
    saved = out / "save" / "label_encoder.txt"
    assert saved.is_file()
    assert not (out / "label_encoder.txt").exists()
    encoder = make_label_encoder([])
    encoder.load(str(saved))
    assert encoder.lab2ind == sets["encoder"].lab2ind == {"dog": 0}
