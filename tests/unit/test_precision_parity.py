"""scripts/precision_parity.py: agreement with fp32 and accuracy per format,
and the bar of issue 16 (>= 99 % top-1 agreement, <= 0.5 points lost)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf
import torch

from fastast_sb.benchmark import parity
from fastast_sb.benchmark.accuracy import EvalSet
from fastast_sb.features import GlobalNorm, KaldiFbank
from fastast_sb.inference.folder import write_model_folder
from fastast_sb.models.ast import AST, ASTHead
from tests.conftest import ROOT, load_recipe_module

script = load_recipe_module(
    "precision_parity", ROOT / "scripts" / "precision_parity.py"
)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def model_and_manifest(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parity")
    torch.manual_seed(0)
    classes = ["dog", "rain"]
    write_model_folder(
        tmp / "model",
        AST(input_tdim=128, preset="tiny", depth=2),
        ASTHead(192, len(classes)),
        classes,
        KaldiFbank(target_length=128),
        GlobalNorm(-6.6, 5.4),
    )
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        wav = tmp / f"clip{i}.wav"
        sf.write(wav, 0.1 * rng.standard_normal(16000), 16000)
        rows.append(
            {"ID": i, "duration": 1.0, "wav": wav, "label": classes[i % 2]}
        )
    manifest = tmp / "test.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return tmp / "model", manifest


def test_script_prints_every_format_and_schedule(model_and_manifest, capsys):
    folder, manifest = model_and_manifest
    argv = [str(folder), "--data", str(manifest), "--r", "0", "8"]
    code = script.main(argv)
    out = capsys.readouterr().out
    assert code in (0, 1)
    assert "6 clips" in out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[:2] for line in table[1:]] == [
        ["| fp32", "0"],
        ["| fp32", "8"],
        ["| bf16", "0"],
        ["| bf16", "8"],
        ["| int8", "0"],
        ["| int8", "8"],
    ]
    assert table[1].endswith("| +0.00 | 100.00 | yes |")


def test_a_format_that_changes_answers_is_flagged(monkeypatch):
    torch.manual_seed(0)
    model, head = AST(128, preset="tiny", depth=1), ASTHead(192, 3)
    data = EvalSet(torch.randn(6, 128, 128), torch.eye(3)[[0, 1, 2] * 2])
    real = parity.prepare_model

    class Negated(torch.nn.Module):  # flips every decision
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, r=None):
            return -self.inner(x, r=r)

    def broken(m, fmt):
        return real(m, fmt) if fmt != "int8" else Negated(m)

    monkeypatch.setattr(parity, "prepare_model", broken)
    rows = parity.format_parity(model, head, data, ["fp32", "int8"])
    assert rows[0]["safe"] and rows[0]["agreement"] == 1.0
    assert rows[1]["agreement"] < 0.99 and not rows[1]["safe"]


def test_missing_manifest_is_one_line(model_and_manifest, capsys):
    folder, _ = model_and_manifest
    assert script.main([str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--data" in err and "\n" not in err


def test_formats_must_start_with_fp32():
    with pytest.raises(ValueError, match="start with fp32"):
        parity.format_parity(None, None, None, ["int8"])
