"""Long audio (issues 14.4, 14.8): block reading with bounded memory,
whole-clip ``classify_file``, folders, per-window timelines and plots.

The model is a random tiny folder whose input is 1.3 s (128 frames), so
every clip here is tagged with several windows.
"""

from __future__ import annotations

import csv
import json
import logging
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import torch
from speechbrain.inference.classifiers import EncoderClassifier
from speechbrain.utils.fetching import FetchConfig

from fastast_sb.audio import load_audio
from fastast_sb.inference import AudioTagger, window_starts
from fastast_sb.inference.cli import main
from tests.conftest import tiny_model_folder

LABELS = ["speech", "music", "dog", "rain", "siren"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_folder(tmp_path_factory.mktemp("model"), LABELS, r=4)


@pytest.fixture(scope="module")
def tagger(model_dir):
    return AudioTagger.from_folder(model_dir, precision="fp32")


def _noise(path, seconds, rate, channels=1, seed=0):
    """Noise with a slowly changing level, so windows score differently."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    level = 0.05 + 0.2 * (1 + np.sin(np.arange(n) / rate))[:, None]
    data = (level * rng.standard_normal((n, channels))).astype("float32")
    subtype = "PCM_16" if str(path).endswith(".flac") else "FLOAT"
    sf.write(str(path), data, rate, subtype=subtype)
    return path


class ReadSpy:
    """Counts the frames each ``SoundFile.read`` returns; whole-file
    ``sf.read`` counted separately."""

    def __init__(self, monkeypatch):
        self.frames, self.whole = [], 0
        real = sf.SoundFile.read

        def read(f, *args, **kwargs):
            data = real(f, *args, **kwargs)
            self.frames.append(len(data))
            return data

        real_whole = sf.read

        def whole(*args, **kwargs):
            self.whole += 1
            return real_whole(*args, **kwargs)

        monkeypatch.setattr(sf.SoundFile, "read", read)
        monkeypatch.setattr(sf, "read", whole)


def test_long_file_is_read_in_bounded_blocks(tagger, tmp_path, monkeypatch):
    path = _noise(tmp_path / "long.wav", 60.0, 16000)
    frames = sf.info(str(path)).frames
    spy = ReadSpy(monkeypatch)
    tracemalloc.start()
    result = tagger.tag_file(path)
    _, peak_blocks = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    window = tagger.window_samples
    assert spy.whole == 0 and len(spy.frames) == result.windows
    assert max(spy.frames) == window  # same rate: exactly one window
    assert sum(spy.frames) == result.windows * window
    assert max(spy.frames) * 40 < frames  # the file is 46 windows long
    tracemalloc.start()
    wav = load_audio(path)  # the whole-file read, for comparison
    _, peak_whole = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert spy.whole == 1
    assert peak_blocks * 10 < peak_whole, (peak_blocks, peak_whole)
    # Same windows, same scores as the whole waveform.
    expected = tagger.tag_waveform(wav)
    assert result.windows == expected.windows > 80
    torch.testing.assert_close(
        result.window_scores, expected.window_scores, rtol=0, atol=1e-6
    )
    torch.testing.assert_close(
        result.scores, expected.scores, rtol=0, atol=1e-6
    )
    assert result.duration == pytest.approx(60.0)
    # Frame starts (160 samples), half a window (64 frames) apart; the last
    # window ends at the clip's last whole frame (< 10 ms before its end).
    starts = window_starts(wav.numel(), window, 64 * 160, shift=160)
    assert starts[-1] == (wav.numel() - window) // 160 * 160
    assert result.spans[1] == (0.64, (64 * 160 + window) / 16000)
    assert result.spans[-1][1] == (starts[-1] + window) / 16000
    assert 60.0 - 0.01 < result.spans[-1][1] <= 60.0


def test_44k_stereo_blocks_equal_the_whole_file(tagger, tmp_path, monkeypatch):
    path = _noise(tmp_path / "stereo.wav", 9.3, 44100, channels=2)
    spy = ReadSpy(monkeypatch)
    result = tagger.tag_file(path, hop=0.7)
    assert spy.whole == 0
    # One window of 44.1 kHz input (20720 * 44100 / 16000) and a margin.
    assert max(spy.frames) < 1.05 * tagger.window_samples * 44100 / 16000
    expected = tagger.tag_waveform(load_audio(path), hop=0.7)
    assert result.windows == expected.windows == 13
    torch.testing.assert_close(
        result.window_scores, expected.window_scores, rtol=0, atol=1e-5
    )


def test_classify_file_covers_the_whole_clip(model_dir, tagger, tmp_path):
    path = _noise(tmp_path / "ten.wav", 10.0, 16000)
    out, score, index, label = tagger.classify_file(path)
    result = tagger.tag_file(path)
    assert result.windows == 15
    torch.testing.assert_close(
        torch.softmax(out[0], -1), result.scores, rtol=0, atol=1e-6
    )
    best = int(result.scores.argmax())
    assert int(index[0]) == best and label == [LABELS[best]]
    assert score[0] == out[0, best]
    first = tagger.scores_batch(load_audio(path)[: tagger.window_samples])
    assert (first[0] - result.scores).abs().max() > 1e-3


def test_encoder_classifier_covers_a_long_clip(model_dir, tmp_path, caplog):
    """No cut (and no warning): the windows of AudioTagger.classify_file
    (folders written before windows: test_folder_windows.py)."""
    clf = EncoderClassifier.from_hparams(
        source=str(model_dir),
        savedir=None,
        overrides={"inference_precision": "fp32"},
        fetch_config=FetchConfig(allow_network=False),
    )
    path = str(_noise(tmp_path / "a.wav", 10.0, 16000))
    with caplog.at_level(logging.WARNING):
        out = clf.classify_file(path)[0]
    assert not [r for r in caplog.records if "cut" in r.getMessage()]
    tagger = AudioTagger.from_folder(model_dir, precision="fp32")
    expected = tagger.classify_file(path)[0]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-4)


def test_folders_are_searched_recursively(model_dir, tmp_path, capsys):
    root = tmp_path / "clips"
    (root / "b" / "deep").mkdir(parents=True)
    names = ["a.wav", "b/deep/c.flac", "b/x.wav"]
    for i, name in enumerate(names):
        _noise(root / name, 2.0, 16000, seed=i)
    (root / "b" / "notes.txt").write_text("not audio")
    code = main([str(root), "--model", str(model_dir), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["failed"] == 0
    assert [e["file"] for e in report["files"]] == [
        str(root / name) for name in sorted(names)
    ]
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--model", str(model_dir)]) == 1
    assert "no audio files in folder" in capsys.readouterr().err


def test_timeline_csv_json_and_plot(model_dir, tagger, tmp_path, capsys):
    path = _noise(tmp_path / "clip.wav", 5.0, 16000)
    base = [str(path), "--model", str(model_dir), "--top", "2"]
    code = main(
        base + ["--timeline", str(tmp_path / "t.csv")]
        + ["--plot", str(tmp_path / "t.png")]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    expected = tagger.tag_file(path)
    with open(tmp_path / "t.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == expected.windows == 7
    assert list(rows[0]) == [
        "file", "window", "start_s", "end_s",
        "label_1", "score_1", "label_2", "score_2",
    ]  # fmt: skip
    for row, (start, end), scores in zip(
        rows, expected.spans, expected.window_scores
    ):
        assert float(row["start_s"]) == pytest.approx(start, abs=1e-4)
        assert float(row["end_s"]) == pytest.approx(end, abs=1e-4)
        assert row["label_1"] == LABELS[int(scores.argmax())]
    assert 5.0 - 0.01 < float(rows[-1]["end_s"]) <= 5.0  # the last frame
    png = (tmp_path / "t.png").read_bytes()
    assert png[:4] == b"\x89PNG" and len(png) > 2000
    assert main(base + ["--timeline", str(tmp_path / "t.json")]) == 0
    windows = json.loads((tmp_path / "t.json").read_text())
    assert [w["top"][0]["label"] for w in windows] == [
        r["label_1"] for r in rows
    ]
    assert windows[3]["start_s"] == float(rows[3]["start_s"])
    capsys.readouterr()


def test_timeline_and_plot_mistakes(model_dir, tmp_path, capsys):
    a = _noise(tmp_path / "a.wav", 1.0, 16000)
    b = _noise(tmp_path / "b.wav", 1.0, 16000)
    model = ["--model", str(model_dir)]
    assert main([str(a), *model, "--timeline", str(tmp_path / "t.txt")]) == 1
    assert "must end in .csv or .json" in capsys.readouterr().err
    assert (
        main([str(a), str(b), *model, "--plot", str(tmp_path / "p.png")]) == 1
    )
    assert "pass a folder" in capsys.readouterr().err
    assert main([str(a), str(b), *model, "--plot", str(tmp_path / "p")]) == 0
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        "a.png",
        "b.png",
    ]
