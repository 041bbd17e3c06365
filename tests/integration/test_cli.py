"""``fastast-tag`` and ``python -m fastast_sb.inference`` on real clips.

Real audio comes from ``../shared/data`` (ESC-10: 5 s, 44.1 kHz Ogg Vorbis;
Speech Commands: 1 s, 16 kHz wav). The model is a random tiny folder whose
input (256 frames, 2.6 s) is shorter than an ESC-10 clip, so those clips
are tagged with sliding windows.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from speechbrain.utils.fetching import FetchConfig

from fastast_sb.inference import AudioTagger
from fastast_sb.inference.cli import main, manage_main
from fastast_sb.models.ast import AST, ASTHead
from fastast_sb.models.checkpoints import save_ast
from tests.conftest import ROOT, shared_data, tiny_model_folder

LABELS = ["dog", "rooster", "rain", "sea_waves", "crackling_fire"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_folder(
        tmp_path_factory.mktemp("model"),
        LABELS,
        tdim=256,
        r=8,
        norm=(-6.6268077, 5.358466),
    )


@pytest.fixture(scope="module")
def clips():
    esc = sorted((shared_data("esc10") / "audio").glob("*.ogg"))[:2]
    words = sorted((shared_data("speech_commands") / "yes").glob("*.wav"))
    return [*esc, words[0]]


def run_json(capsys, *argv):
    code = main([*map(str, argv), "--json"])
    out = capsys.readouterr()
    return code, json.loads(out.out), out.err


def test_real_clips_json(model_dir, clips, capsys):
    code, report, err = run_json(capsys, *clips, "--model", model_dir)
    assert code == 0, err
    assert report["failed"] == 0 and report["r"] == "8"
    assert report["total_time_s"] >= report["load_time_s"] > 0
    tagger = AudioTagger.from_hparams(
        source=str(model_dir),
        savedir=None,
        run_opts={"device": "cpu"},
        fetch_config=FetchConfig(allow_network=False),
    )
    for entry, clip in zip(report["files"], clips):
        assert entry["file"] == str(clip) and entry["time_s"] > 0
        expected = tagger.tag_file(clip)
        assert entry["windows"] == expected.windows
        assert entry["duration_s"] == pytest.approx(expected.duration, 1e-3)
        assert [t["label"] for t in entry["top"]] == [
            label for label, _ in expected.top(5)
        ]
        scores = [t["score"] for t in entry["top"]]
        assert scores == sorted(scores, reverse=True)
        assert sum(scores) == pytest.approx(1.0, abs=1e-4)  # softmax
    esc, word = report["files"][0], report["files"][-1]
    assert esc["duration_s"] == pytest.approx(5.0, abs=0.3)
    assert esc["windows"] == 3  # 5 s clip, 2.6 s windows, 1.3 s hop
    assert word["windows"] == 1


def test_table_output_and_options(model_dir, clips, capsys):
    code = main([str(clips[0]), "--model", str(model_dir), "--top", "2"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].startswith(f"{clips[0]}  (") and "3 windows" in out[0]
    assert out[1].lstrip().startswith("1. ") and out[2].lstrip()[:3] == "2. "
    assert out[-1].startswith("tagged 1 of 1 file(s) in ")
    code, report, _ = run_json(
        capsys, clips[0], "--model", model_dir, "--r", "flops:0.7", "--hop", "1"
    )
    assert code == 0 and report["r"] == "flops:0.7"
    assert report["files"][0]["windows"] == 4  # starts 0, 1, 2, 2.4 s
    code, report, _ = run_json(
        capsys,
        clips[-1],
        "--model",
        model_dir,
        "--r",
        "ramp:4:-1",
        "--top",
        "9",
    )
    assert report["r"] == "ramp:4:-1" and len(report["files"][0]["top"]) == 5


def test_bad_files_are_reported_and_the_rest_tagged(
    model_dir, tmp_path, capsys
):
    missing = tmp_path / "missing.wav"
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio")
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0, "float32"), 16000)
    silence = tmp_path / "silence.flac"
    sf.write(str(silence), np.zeros(16000, "float32"), 16000)
    t = np.arange(24000) / 8000
    stereo = tmp_path / "stereo8k.wav"
    tone = np.stack([np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 500 * t)])
    sf.write(str(stereo), 0.3 * tone.T.astype("float32"), 8000)
    files = [missing, junk, empty, silence, stereo]
    code, report, err = run_json(capsys, *files, "--model", model_dir)
    assert code == 1 and report["failed"] == 3
    by_file = {entry["file"]: entry for entry in report["files"]}
    assert "not found" in by_file[str(missing)]["error"]
    assert "cannot decode" in by_file[str(junk)]["error"]
    assert "empty" in by_file[str(empty)]["error"]
    for bad in (missing, junk, empty):
        assert "error: " in err and str(bad) in err
    assert by_file[str(silence)]["top"][0]["label"] in LABELS
    assert np.isfinite([t["score"] for t in by_file[str(silence)]["top"]]).all()
    # 8 kHz stereo: resampled to 16 kHz and averaged to mono, 3 s long.
    assert by_file[str(stereo)]["duration_s"] == pytest.approx(3.0)
    assert by_file[str(stereo)]["windows"] == 2


def test_missing_model_folder(tmp_path, capsys):
    wav = tmp_path / "a.wav"
    sf.write(str(wav), np.zeros(1600, "float32"), 16000)
    code = main([str(wav), "--model", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert code == 1 and "has no hyperparams.yaml" in err
    with pytest.raises(SystemExit):  # argparse: --model is required
        main([str(wav)])
    capsys.readouterr()


def test_invalid_options_are_clear(model_dir, tmp_path, capsys):
    wav = tmp_path / "a.wav"
    sf.write(str(wav), np.zeros(1600, "float32"), 16000)
    base = [str(wav), "--model", str(model_dir)]
    assert main([*base, "--hop", "0", "--top", "0"]) == 1
    err = capsys.readouterr().err
    assert "--top must be > 0, got 0" in err and "--hop must be > 0" in err
    assert main([*base, "--r", "many"]) == 1
    assert (
        "invalid --r: merge schedule 'many' is not" in capsys.readouterr().err
    )


def test_module_entry_point_import_and_tag(tmp_path, clips):
    """``python -m fastast_sb.inference``: import a checkpoint, then tag."""
    torch.manual_seed(2)
    ckpt = tmp_path / "ast.pt"
    save_ast(ckpt, AST(input_tdim=128, preset="tiny", depth=1), ASTHead(192, 2))
    labels = tmp_path / "labels.txt"
    labels.write_text("yes\nno\n")
    out = tmp_path / "model"
    code = manage_main(
        ["import", str(ckpt), str(out), "--labels", str(labels)]
        + ["--norm", "speechcommands", "--r", "4"]
    )
    assert code == 0 and (out / "hyperparams.yaml").is_file()
    assert "tome_r: 4\n" in (out / "hyperparams.yaml").read_text()
    assert manage_main(["export", str(tmp_path), str(tmp_path / "x")]) == 1
    proc = subprocess.run(
        [sys.executable, "-m", "fastast_sb.inference", "tag", str(clips[-1])]
        + ["--model", str(out), "--json", "--top", "1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["files"][0]["top"][0]["label"] in ("yes", "no")
    assert report["multilabel"] is True  # imports default to sigmoid scores
