"""Precision as a user choice (issue 16.1) for ``AudioTagger`` and
``fastast-tag``: each format runs and agrees with fp32 on a tiny model;
``auto`` resolves to what the device computes natively and is the
default of ``fastast-tag``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from speechbrain.utils.fetching import FetchConfig

from fastast_sb.features import GlobalNorm, KaldiFbank
from fastast_sb.inference import AudioTagger, write_model_folder
from fastast_sb.inference.cli import main
from fastast_sb.models.ast import AST, ASTHead
from fastast_sb.precision import resolve_precision

#: Largest |score - fp32 score| allowed (probabilities in [0, 1]).
TOLERANCE = {"bf16": 0.05, "fp16": 0.01, "int8": 0.05}
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="fp16 needs a CUDA device"
)


#: GFLOPs per example of model_dir's AST (auto's choice depends on it).
MODEL_GFLOPS = AST(input_tdim=128, preset="tiny", depth=2).flops(0) / 1e9


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):  # a model of MODEL_GFLOPS
    torch.manual_seed(0)
    return write_model_folder(
        tmp_path_factory.mktemp("model"),
        AST(input_tdim=128, preset="tiny", depth=2),
        ASTHead(192, 6),
        ["a", "b", "c", "d", "e", "f"],
        KaldiFbank(target_length=128),
        GlobalNorm(-4.27, 4.57),
        multilabel=True,
    )


@pytest.fixture(scope="module")
def wav():
    return 0.2 * torch.randn(40000, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def reference(model_dir, wav):
    return AudioTagger.from_folder(model_dir, precision="fp32").tag_waveform(
        wav
    )


@pytest.mark.parametrize(
    "precision,device",
    [
        ("bf16", "cpu"),
        ("int8", "cpu"),
        pytest.param("fp16", "cuda", marks=needs_cuda),
        pytest.param("bf16", "cuda", marks=needs_cuda),
    ],
)
def test_each_format_agrees_with_fp32(
    model_dir, wav, reference, precision, device
):
    tagger = AudioTagger.from_folder(model_dir, device, precision=precision)
    assert tagger.inference_precision == precision
    result = tagger.tag_waveform(wav.to(device))
    assert result.scores.dtype == torch.float32
    diff = (result.window_scores - reference.window_scores).abs().max()
    assert 0 < diff < TOLERANCE[precision], diff  # computed, not fp32
    assert result.top(1)[0][0] == reference.top(1)[0][0]


def test_int8_quantizes_the_linear_layers_and_keeps_fp32(model_dir, wav):
    tagger = AudioTagger.from_folder(model_dir, precision="int8")

    def quantized(module):
        return [
            m for m in module.modules() if "quantized" in type(m).__module__
        ]

    assert quantized(tagger.mods.embedding_model)
    assert quantized(tagger.mods.classifier)
    assert tagger.set_precision("fp32") == "fp32"
    assert not quantized(tagger.mods.embedding_model)
    ref = AudioTagger.from_folder(model_dir, precision="fp32")
    torch.testing.assert_close(
        tagger.tag_waveform(wav).scores, ref.tag_waveform(wav).scores
    )


def test_auto_resolves_to_the_native_format(model_dir):
    tagger = AudioTagger.from_folder(model_dir, precision="auto")
    assert tagger.inference_precision == resolve_precision(
        "auto", "cpu", MODEL_GFLOPS
    )
    assert tagger.inference_precision in ("bf16", "fp32")


def test_folder_key_and_errors(model_dir):
    tagger = AudioTagger.from_hparams(
        source=str(model_dir),
        savedir=None,
        overrides={"inference_precision": "bf16"},
        fetch_config=FetchConfig(allow_network=False),
    )
    assert tagger.inference_precision == "bf16"
    default = AudioTagger.from_folder(model_dir).inference_precision
    assert default == resolve_precision("auto", "cpu", MODEL_GFLOPS)
    with pytest.raises(ValueError, match="'fp16' needs a CUDA device"):
        tagger.set_precision("fp16")
    with pytest.raises(ValueError, match="'fp64' is not one of auto"):
        tagger.set_precision("fp64")
    assert tagger.inference_precision == "bf16"  # unchanged by the errors


def test_cli_precision(model_dir, tmp_path, capsys):
    path = tmp_path / "a.wav"
    sf.write(str(path), 0.1 * np.random.randn(24000).astype("f4"), 16000)
    base = [str(path), "--model", str(model_dir), "--json"]
    assert main(base) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["precision"] == resolve_precision("auto", "cpu", MODEL_GFLOPS)
    for precision in ("fp32", "bf16", "int8"):
        assert main(base + ["--precision", precision]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["precision"] == precision
        assert report["files"][0]["windows"] == 2
    assert main(base + ["--precision", "fp16"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: invalid --precision: precision 'fp16' needs a CUDA device, "
        "got cpu; use bf16, int8 or fp32 on the CPU"
    )
    with pytest.raises(SystemExit):
        main(base + ["--precision", "fp64"])
    assert "invalid choice: 'fp64'" in capsys.readouterr().err
