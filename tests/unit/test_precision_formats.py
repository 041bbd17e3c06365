"""Number formats (issue 16): each runs and agrees with fp32, ``auto``
never picks a format the device emulates, int8 through prepare_model, and
the benchmark times formats side by side."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from fastast_sb import precision
from fastast_sb.benchmark.cli import run
from fastast_sb.models.ast import AST, ASTHead
from fastast_sb.precision import (
    autocast,
    prepare_model,
    resolve_precision,
)

TINY = ["--preset", "tiny", "--depth", "2", "--tdim", "128", "--batch", "2"]
TINY += ["--repeats", "1", "--warmup", "0"]


def tiny_model() -> AST:
    torch.manual_seed(0)
    return AST(input_tdim=128, preset="tiny", depth=2).eval()


def logits(model, head, x, fmt, r=0):
    with torch.inference_mode(), autocast("cpu", fmt):
        return head(model(x, r=r)).squeeze(1).float()


def embed(model, x, fmt):
    with torch.inference_mode(), autocast("cpu", fmt):
        return model(x).squeeze(1).float()  # [B, D]


@pytest.mark.parametrize("fmt,rtol", [("bf16", 0.02), ("int8", 0.1)])
def test_each_format_agrees_with_fp32(fmt, rtol):
    model = tiny_model()
    x = torch.randn(4, 128, 128, generator=torch.Generator().manual_seed(1))
    ref = embed(model, x, "fp32")
    got = embed(prepare_model(model, fmt), x, fmt)
    err = (got - ref).abs().max() / ref.abs().max()
    assert 0 < err < rtol, err  # 0: the format did not change anything
    cosine = nn.functional.cosine_similarity(got, ref)
    assert cosine.min() > 0.99, cosine


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("fmt", ["bf16", "fp16"])
def test_gpu_formats_agree_with_fp32(fmt):
    model = tiny_model().cuda()
    x = torch.randn(4, 128, 128, device="cuda")
    with torch.inference_mode():
        ref = model(x).squeeze(1).float()
        with autocast("cuda", fmt):
            got = model(x).squeeze(1).float()
    assert (got - ref).abs().max() / ref.abs().max() < 0.02


@pytest.mark.parametrize("fmt", ["bf16", "int8"])
def test_each_format_runs_with_merging(fmt):
    model, head = tiny_model(), ASTHead(192, 3).eval()
    x = torch.randn(2, 128, 128)
    out = logits(prepare_model(model, fmt), head, x, fmt, r="flops:0.5")
    assert out.shape == (2, 3) and torch.isfinite(out).all()


def test_int8_quantizes_a_copy_of_every_linear_layer():
    model = tiny_model()
    q = prepare_model(model, "int8")
    assert q is not model
    linears = [n for n, m in model.named_modules() if type(m) is nn.Linear]
    assert linears and all(
        type(q.get_submodule(n)) is not nn.Linear for n in linears
    )
    assert all(type(m) is not nn.Linear for m in q.modules())
    # the original keeps its float layers
    assert all(type(model.get_submodule(n)) is nn.Linear for n in linears)


def test_prepare_model_wants_a_concrete_format():
    net = nn.Linear(2, 2)
    assert prepare_model(net, "fp32") is net
    with pytest.raises(ValueError, match="resolve 'auto'"):
        prepare_model(net, "auto")
    with pytest.raises(ValueError, match="not one of"):
        prepare_model(net, "int4")


def test_int8_without_any_quantization_path_says_what_to_install(
    monkeypatch,
):
    monkeypatch.delattr(torch.ao.quantization, "quantize_dynamic")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "torchao" else real(name, *a),
    )
    with pytest.raises(ImportError, match="pip install torchao"):
        prepare_model(nn.Linear(2, 2), "int8")


# --------------------------------------------- auto never emulates
@pytest.mark.parametrize("avx512_bf16,amx", [(False, False), (True, False)])
def test_auto_on_cpu_follows_the_bf16_units(monkeypatch, avx512_bf16, amx):
    cpu = torch.cpu
    monkeypatch.setattr(cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(cpu, "_is_amx_tile_supported", lambda: amx)
    expected = "bf16" if avx512_bf16 or amx else "fp32"
    assert resolve_precision("auto", "cpu") == expected


def test_auto_on_cpu_with_amx_only_is_bf16(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"


@pytest.mark.parametrize("native", [False, True])
def test_auto_on_cuda_never_counts_emulated_bf16(monkeypatch, native):
    asked = []

    def is_bf16_supported(including_emulation=True):
        asked.append(including_emulation)
        return native or including_emulation  # emulation is always there

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert resolve_precision("auto", "cuda") == ("bf16" if native else "fp32")
    assert asked == [False]


def test_auto_never_picks_int8_or_fp16(monkeypatch):
    for flag in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, flag, lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert resolve_precision("auto", "cpu") == "fp32"


def test_formats_the_device_cannot_run_are_refused():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="CPU only"):
        resolve_precision("int8", "cuda")


# ----------------------------------------------- benchmark formats
def test_benchmark_times_formats_side_by_side():
    res = run(TINY + ["--r", "0", "8", "--precision", "int8", "bf16"])
    assert [(row["precision"], row["r"]) for row in res.rows] == [
        ("fp32", "0"),
        ("fp32", "8"),
        ("int8", "0"),
        ("int8", "8"),
        ("bf16", "0"),
        ("bf16", "8"),
    ]
    assert res.rows[0]["speedup"] == 1.0
    assert all(row["speedup"] > 0 for row in res.rows)
    assert [row["flop_ratio"] for row in res.rows[2:4]] == [
        row["flop_ratio"] for row in res.rows[:2]
    ]
    assert "| precision | r |" in res.markdown
    assert res.meta["dtype"] == "fp32, int8, bf16"


def test_benchmark_latency_column():
    res = run(TINY + ["--r", "0", "--latency"])
    assert res.rows[0]["latency_ms"] > 0
    assert "latency (ms, batch 1)" in res.markdown
    assert "1.28 s of audio" in res.markdown


@pytest.mark.parametrize(
    "args,message",
    [
        (["--precision", "fp64"], "invalid choice"),
        (["--precision", "fp16"], "needs a CUDA device"),
        (["--precision", "bf16", "--dtype", "bf16"], "give one of them"),
        (["--precision", "int8", "--mode", "train"], "for inference"),
        (["--latency", "--mode", "train"], "--latency times inference"),
    ],
)
def test_benchmark_precision_errors_are_clear(args, message, capsys):
    with pytest.raises(SystemExit) as err:
        run(TINY + args)
    assert err.value.code == 2
    assert message in capsys.readouterr().err
