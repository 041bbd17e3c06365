"""Which int8 path for CPU inference: measured, not assumed.

Times the AST encoder ([B, T, F] features in, pooled embedding out) in one
run, round-robin (:func:`fastast_sb.timing.interleaved_times`, median of
per-round ratios to torch fp32), for each candidate:

- ``torch fp32`` and ``torch bf16`` (autocast), the references;
- ``torch.ao int8``: ``torch.ao.quantization.quantize_dynamic`` on the
  encoder's linear layers (deprecated API, still shipped with torch);
- ``torchao int8``: torchao's ``Int8DynamicActivationInt8WeightConfig``,
  eager (torchao is not a project dependency: skipped when absent);
- ``ORT fp32`` / ``ORT int8``: the encoder exported to ONNX, then ONNX
  Runtime's ``quantize_dynamic`` (QInt8 weights), run with as many
  intra-op threads as torch uses.

Also prints each candidate's max |output - fp32| (relative to the output's
max). Not part of the test suite: base at T=512, batch 4 takes minutes.

Usage::

    OMP_NUM_THREADS=1 python scripts/int8_paths.py --preset base --tdim 512 \\
        --batch 4
    OMP_NUM_THREADS=1 python scripts/int8_paths.py --preset tiny --depth 6 \\
        --stride 16 --tdim 512 --batch 4
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Dict

import torch

from fastast_sb.models.ast import AST
from fastast_sb.precision import prepare_model
from fastast_sb.timing import (
    forward_step,
    interleaved_times,
    paired_speedups,
    random_features,
)


def _torchao(model: AST) -> AST:
    from torchao.quantization import (
        Int8DynamicActivationInt8WeightConfig,
        quantize_,
    )

    model = copy.deepcopy(model)
    quantize_(model.blocks, Int8DynamicActivationInt8WeightConfig())
    return model


def _ort(model: AST, feats: torch.Tensor, folder: Path, int8: bool):
    """An ONNX Runtime session of ``model`` (int8: dynamic quantization)."""
    import onnxruntime as ort

    path = folder / "encoder.onnx"
    if not path.exists():
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (feats,), str(path), opset_version=18, verbose=False
            )
    if int8:
        from fastast_sb.inference.onnx_export import quantize_onnx

        path = quantize_onnx(path, folder / "encoder.int8.onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(
        str(path), opts, providers=["CPUExecutionProvider"]
    )
    name = sess.get_inputs()[0].name
    x = feats.numpy()
    return lambda: torch.from_numpy(sess.run(None, {name: x})[0])


def _eager(model: AST, feats: torch.Tensor, dtype=None) -> Callable:
    """Inference mode, autocast to ``dtype`` (None: fp32)."""
    return forward_step(lambda: model(feats).float(), feats.device, dtype)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="base")
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--stride", type=int, default=10, help="f and t stride")
    p.add_argument("--tdim", type=int, default=512)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.manual_seed(0)
    model = AST(
        args.tdim,
        preset=args.preset,
        depth=args.depth,
        fstride=args.stride,
        tstride=args.stride,
    ).eval()
    feats = random_features(model, args.batch)
    steps: Dict[str, Callable] = {
        "torch fp32": _eager(model, feats),
        "torch bf16": _eager(model, feats, torch.bfloat16),
        "torch.ao int8": _eager(prepare_model(model, "int8"), feats),
    }
    if importlib.util.find_spec("torchao") is not None:
        steps["torchao int8"] = _eager(_torchao(model), feats)
    with tempfile.TemporaryDirectory() as tmp:
        if importlib.util.find_spec("onnxruntime") is not None:
            start = time.perf_counter()
            steps["ORT fp32"] = _ort(model, feats, Path(tmp), False)
            steps["ORT int8"] = _ort(model, feats, Path(tmp), True)
            took = time.perf_counter() - start
            print(f"ONNX export + quantization: {took:.0f} s")
        ref = steps["torch fp32"]()
        scale = float(ref.abs().max())
        errs = {
            k: float((f() - ref).abs().max()) / scale for k, f in steps.items()
        }
        times = interleaved_times(
            list(steps.values()), torch.device("cpu"), 1, args.repeats
        )
    speed = paired_speedups(times)
    print(
        f"AST {model.embed_dim}-wide, {model.depth} blocks, T={args.tdim} "
        f"({model.num_tokens} tokens), batch {args.batch}, "
        f"{torch.get_num_threads()} thread(s), {args.repeats} rounds"
    )
    print("| path | samples/s | speed-up vs torch fp32 | max rel. error |")
    print("|---|---|---|---|")
    for (name, t), s in zip(zip(steps, times), speed):
        sps = args.batch / sorted(t)[len(t) // 2]
        print(f"| {name} | {sps:.2f} | {s:.2f}x | {errs[name]:.1e} |")


if __name__ == "__main__":
    main()
