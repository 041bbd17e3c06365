"""The README's "## Inference" commands and Python block work as written.

Both blocks are read from README.md, so an edit that breaks one fails
here. The commands run in order in one temporary folder (the user's
working directory) that holds what they name, and nothing is rewritten in
them except, and only these: ``python`` is this interpreter;
``fastast-tag`` is the console script beside it (or, where it is not
installed, ``python -m fastast_sb.inference tag``, the same entry point).
The run folder the export reads is made there by the ESC-50 recipe with its
default ``output_root``, on the synthetic demo set (5 classes, 2 s clips),
tiny and quick (2 blocks, 2 epochs); variant, fold and seed are read from
the README's run folder path. Each ``.wav`` file the commands or the Python
block name is written as noise (the Python block's ``long_*`` file 20 s,
others 2 s); a folder the tagger is given gets two clips of 3 s and 1.5 s.
The Python block runs there, with the network refused.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import soundfile

from fastast_sb.inference.cli import manage_parser, tag_parser
from tests.conftest import ROOT
from tests.unit.test_readme import README, fenced_block

HEADING = "## Inference"
RUN_DIR = re.compile(r"results/ESC50/(\w+)/fold(\d+)/seed(\d+)")
RATE = 16000
TIMEOUT = 120  # seconds; each command takes a few
PNG = b"\x89PNG"


def commands() -> List[str]:
    """Command lines of the bash block, continuations joined, comments
    dropped."""
    text = README.read_text(encoding="utf-8")
    joined = re.sub(r"\\\n\s*", " ", fenced_block(text, HEADING, "bash"))
    lines = [line.split(" #")[0].strip() for line in joined.splitlines()]
    return [c for c in lines if c and not c.startswith("#")]


def python_block() -> str:
    return fenced_block(README.read_text(encoding="utf-8"), HEADING, "python")


def as_argv(command: str) -> List[str]:
    """The command for this interpreter (see the module docstring)."""
    argv = shlex.split(command)
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    assert argv[0] == "fastast-tag", command
    script = Path(sys.executable).parent / "fastast-tag"
    if script.is_file():
        return [str(script), *argv[1:]]
    return [sys.executable, "-m", "fastast_sb.inference", "tag", *argv[1:]]


def call(argv: List[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )


def write_noise(path: Path, seconds: float, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    wav = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * RATE))
    soundfile.write(path, wav, RATE)


def make_run(cwd: Path, run_dir: str) -> Path:
    """``run_dir`` (``results/ESC50/<variant>/fold<k>/seed<s>``), written
    by the ESC-50 recipe run in ``cwd`` with its default output root."""
    sys.path.insert(0, str(ROOT / "recipes" / "ESC50"))
    from demo_data import make_demo_esc50

    data = make_demo_esc50(str(cwd / "demo_data"), clips_per_class_per_fold=2)
    variant, fold, seed = RUN_DIR.fullmatch(run_dir.rstrip("/")).groups()
    argv = [
        sys.executable,
        str(ROOT / "recipes" / "ESC50" / "train.py"),
        str(ROOT / "hparams" / f"{variant}.yaml"),
        f"--data_folder={data}",
        f"--fold={fold}",
        f"--seed={seed}",
        "--n_classes=5",
        "--target_length=128",
        "--depth=2",
        "--number_of_epochs=2",
        "--batch_size=8",
        "--r_sweep=[0]",
        "--bench_repeats=1",
    ]
    proc = call(argv, cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = cwd / run_dir
    assert (folder / "hyperparams.yaml").is_file(), sorted(cwd.rglob("*"))
    return folder


def tag_inputs(cwd: Path, files: List[str]) -> None:
    """A 2 s clip for each ``.wav`` named, two clips in each folder."""
    for i, name in enumerate(files):
        if name.endswith(".wav"):
            write_noise(cwd / name, 2.0, seed=i)
        else:
            write_noise(cwd / name / "a.wav", 3.0, seed=10 + i)
            write_noise(cwd / name / "b.wav", 1.5, seed=20 + i)


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> Dict[str, object]:
    """Every bash command run in order in one folder: (argv, parsed
    arguments, process) by kind (export, tag, tag_folder, onnx)."""
    cwd = tmp_path_factory.mktemp("user")
    done: Dict[str, object] = {"cwd": cwd}
    for command in commands():
        argv = as_argv(command)
        if shlex.split(command)[0] == "fastast-tag":
            args = tag_parser().parse_args(shlex.split(command)[1:])
            tag_inputs(cwd, args.files)
            kind = "tag" if "tag" not in done else "tag_folder"
        else:
            assert argv[1:3] == ["-m", "fastast_sb.inference"], command
            args = manage_parser().parse_args(argv[3:])
            kind = args.command
            if kind == "export":
                make_run(cwd, args.run_dir)
        assert kind not in done, f"two {kind} commands: {command}"
        done[kind] = (argv, args, call(argv, cwd))
    assert {"export", "tag", "tag_folder", "onnx"} <= set(done), done.keys()
    return done


def _ok(ran, kind: str):
    argv, args, proc = ran[kind]
    assert proc.returncode == 0, f"{argv}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return args, proc


def test_export_writes_a_model_folder(ran):
    args, proc = _ok(ran, "export")
    folder = ran["cwd"] / args.out_dir
    assert sorted(p.name for p in folder.iterdir()) == [
        "classifier.ckpt",
        "embedding_model.ckpt",
        "hyperparams.yaml",
        "label_encoder.ckpt",
    ]
    assert f"wrote model folder {args.out_dir}" in proc.stdout


def test_tag_one_file(ran):
    args, proc = _ok(ran, "tag")
    assert len(args.files) == 1 and args.files[0] in proc.stdout
    ranked = re.findall(r"^\s+\d+\. (\S+)\s+([\d.]+)$", proc.stdout, re.M)
    assert len(ranked) == args.top, proc.stdout
    assert "tagged 1 of 1 file(s)" in proc.stdout, proc.stdout


def test_tag_folder_timeline_and_plots(ran):
    args, proc = _ok(ran, "tag_folder")
    cwd = ran["cwd"]
    clips = sorted((cwd / args.files[0]).rglob("*.wav"))
    assert len(clips) == 2 and "tagged 2 of 2 file(s)" in proc.stdout
    rows = (cwd / args.timeline).read_text().strip().splitlines()
    assert rows[0].startswith("file,window,start_s,end_s,label_1,score_1")
    windows = [int(n) for n in re.findall(r"(\d+) windows?,", proc.stdout)]
    assert len(rows) - 1 == sum(windows) > len(clips), rows
    assert {row.split(",")[0] for row in rows[1:]} == {
        os.path.join(args.files[0].rstrip("/"), c.name) for c in clips
    }
    for clip in clips:
        png = cwd / args.plot / f"{clip.stem}.png"
        assert png.read_bytes().startswith(PNG), png


def test_onnx_int8(ran):
    onnx = pytest.importorskip("onnx")
    args, proc = _ok(ran, "onnx")
    assert args.precision == "int8"
    path = ran["cwd"] / args.out
    assert f"wrote {args.out}" in proc.stdout, proc.stdout
    kinds = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert kinds & {"DynamicQuantizeLinear", "MatMulInteger"}, kinds


def test_python_block(ran, monkeypatch, capsys):
    _ok(ran, "export")
    code = python_block()
    cwd = ran["cwd"]
    for i, name in enumerate(re.findall(r"\"([^\"]+\.wav)\"", code)):
        if not (cwd / name).exists():
            seconds = 20.0 if Path(name).name.startswith("long") else 2.0
            write_noise(cwd / name, seconds, seed=30 + i)

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.chdir(cwd)
    scope = {"__name__": "readme"}
    exec(compile(code, str(README), "exec"), scope)
    out = capsys.readouterr().out.strip().splitlines()
    labels = scope["tagger"].labels
    assert len(labels) == 5 and scope["label"][0] in labels
    result = scope["result"]
    assert result.duration == pytest.approx(20.0)
    assert result.windows > 20  # 1.3 s windows, 0.65 s apart
    assert out[-1].startswith(f"{result.windows} [("), out
