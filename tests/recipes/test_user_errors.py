"""A user's mistake on a recipe's command line: one line, exit code 1."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def run_recipe(*args: str, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, str(ROOT / "recipes/ESC50/train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "flag, expected",
    [
        ("--no_such_key=3", "--no_such_key is not a setting of tome.yaml"),
        ("--tome_rr=3", "did you mean tome_r?"),
    ],
)
def test_unknown_setting_is_one_line(tmp_path, flag, expected):
    done = run_recipe(
        str(ROOT / "hparams/tome.yaml"),
        f"--data_folder={tmp_path / 'missing'}",
        f"--output_root={tmp_path / 'out'}",
        flag,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and expected in errors[0], done.stderr
    assert not (tmp_path / "out").exists()  # nothing written
