"""Exporting an AST with token merging (fixed r and input length).

ONNX through both ``torch.onnx.export`` paths (the default dynamo exporter
and the TorchScript one, ``dynamo=False``), ``torch.export.export`` and
``torch.jit.trace``. Every exported graph is run on a second input, so the
matching is computed in the graph rather than frozen from the example.
"""

from __future__ import annotations

import importlib.util
from typing import List

import pytest
import torch

from fastast_sb.models import ast as ast_module
from fastast_sb.models.ast import AST

SPECS = [8, "flops:0.5"]
ATOL = 1e-4

needs_ort = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None,
    reason="onnxruntime is not installed (pip install onnxruntime)",
)
needs_onnxscript = pytest.mark.skipif(
    importlib.util.find_spec("onnxscript") is None,
    reason="the dynamo ONNX exporter needs onnxscript (pip install onnxscript)",
)


def build(spec) -> AST:
    torch.manual_seed(0)
    return AST(input_tdim=128, preset="tiny", depth=3, r=spec).eval()


def inputs():
    g = torch.Generator().manual_seed(1)
    example = torch.randn(2, 128, 128, generator=g)
    other = torch.randn(2, 128, 128, generator=g)
    other[0, 70:] = 0.0  # padding merges differently from the example
    return example, other


@pytest.fixture
def tracing_calls(monkeypatch) -> List[bool]:
    """Record what ``_is_tracing`` answers while the input check runs."""
    calls: List[bool] = []
    real = ast_module._is_tracing

    def spy() -> bool:
        value = real()
        calls.append(value)
        return value

    monkeypatch.setattr(ast_module, "_is_tracing", spy)
    return calls


def check_schedule_really_merges(model: AST) -> None:
    assert model.schedule()[0] > 0
    assert model.forward_tokens(inputs()[0]).counts[-1] < model.num_tokens


def run_onnx(path, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    return torch.from_numpy(out)


def test_finite_check_runs_in_eager_mode(tracing_calls):
    model = build(8)
    bad = torch.randn(1, 128, 128)
    bad[0, 3, 4] = float("nan")
    with pytest.raises(ValueError, match="1 NaN/Inf"):
        model(bad)
    assert tracing_calls == [False]


@needs_ort
@needs_onnxscript
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("spec", SPECS)
def test_onnx_default_dynamo_exporter(spec, tmp_path, tracing_calls):
    model = build(spec)
    check_schedule_really_merges(model)
    tracing_calls.clear()
    example, other = inputs()
    path = tmp_path / "ast.onnx"
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(path), opset_version=18)
        assert tracing_calls and all(tracing_calls)
        expected = [model(example), model(other)]
    for x, ref in zip((example, other), expected):
        torch.testing.assert_close(run_onnx(path, x), ref, rtol=0, atol=ATOL)


@needs_ort
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:Constant folding:UserWarning")
@pytest.mark.parametrize("spec", SPECS)
def test_onnx_torchscript_exporter(spec, tmp_path, tracing_calls):
    model = build(spec)
    tracing_calls.clear()
    example, other = inputs()
    path = tmp_path / "ast.onnx"
    with torch.no_grad():
        torch.onnx.export(
            model, (example,), str(path), opset_version=17, dynamo=False
        )
        assert tracing_calls and all(tracing_calls)
        expected = [model(example), model(other)]
    for x, ref in zip((example, other), expected):
        torch.testing.assert_close(run_onnx(path, x), ref, rtol=0, atol=ATOL)


@pytest.mark.parametrize("spec", SPECS)
def test_torch_export(spec, tracing_calls):
    model = build(spec)
    tracing_calls.clear()
    example, other = inputs()
    program = torch.export.export(model, (example,))
    assert tracing_calls and all(tracing_calls)
    exported = program.module()
    with torch.no_grad():
        for x in (example, other):
            torch.testing.assert_close(exported(x), model(x), rtol=0, atol=ATOL)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("spec", SPECS)
def test_jit_trace(spec, tracing_calls):
    model = build(spec)
    tracing_calls.clear()
    example, other = inputs()
    with torch.no_grad():
        traced = torch.jit.trace(model, (example,), check_trace=False)
        assert tracing_calls and all(tracing_calls)
        for x in (example, other):
            torch.testing.assert_close(traced(x), model(x), rtol=0, atol=ATOL)
