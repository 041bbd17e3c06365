"""Number formats a model runs in: fp32, bf16, fp16, int8, or ``auto``.

``auto`` picks the fastest format the device computes natively: bf16 where
the CPU has AVX512-BF16 or AMX, or the GPU has bf16 units; fp32 otherwise. It
never picks a format the device only emulates, and never int8 (int8 changes
the weights, so it is always the user's explicit choice).

:func:`prepare_model` makes the model a format needs: the same module for
the autocast formats, a copy with int8 linear layers for int8 (see its
docstring for the path chosen and the measurements behind it).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import warnings
from typing import ContextManager, Optional, Union

import torch
from torch import nn

#: Accepted names, ``auto`` first.
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

Device = Union[str, torch.device]


def _device(device: Device) -> torch.device:
    return torch.device(device) if isinstance(device, str) else device


def native_bf16(device: Device) -> bool:
    """Whether ``device`` multiplies bf16 in hardware (not emulated).

    Example
    -------
    >>> isinstance(native_bf16("cpu"), bool)
    True
    """
    device = _device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(
            including_emulation=False
        )
    if device.type == "cpu":
        return bool(
            torch.cpu._is_avx512_bf16_supported()
            or torch.cpu._is_amx_tile_supported()
        )
    return False


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a clear error.

    Example
    -------
    >>> check_precision("bf16")
    'bf16'
    >>> check_precision("fp64")
    Traceback (most recent call last):
    ...
    ValueError: precision 'fp64' is not one of auto, fp32, bf16, fp16, int8
    """
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision {precision!r} is not one of {', '.join(PRECISIONS)}"
        )
    return precision


#: On the CPU ``auto`` keeps fp32 for a model below this many GFLOPs per
#: example: measured here (AMX bf16), the 6-block, 192-wide ESC-10 student
#: (1.7 GFLOPs) ran one clip at half its fp32 speed under bf16 autocast
#: (the casts and weight re-layouts of its small matrices dominate), while
#: models from 4.9 GFLOPs (6 tiny blocks on 602 tokens) up ran 1.3-2.4x
#: faster.
AUTO_BF16_MIN_GFLOPS = 3.0


def resolve_precision(
    precision: str, device: Device, gflops: Optional[float] = None
) -> str:
    """The concrete format for ``precision`` on ``device``.

    ``auto`` becomes bf16 or fp32 (see :func:`native_bf16`), and fp32 on
    the CPU for a model of fewer than :data:`AUTO_BF16_MIN_GFLOPS` GFLOPs
    per example (``gflops``; None: the device decides alone); fp16 needs a
    GPU and int8 a CPU (dynamic int8 quantization of the linear layers).

    Example
    -------
    >>> resolve_precision("fp32", "cpu")
    'fp32'
    >>> resolve_precision("auto", "cpu") in ("bf16", "fp32")
    True
    >>> resolve_precision("auto", "cpu", gflops=0.5)
    'fp32'
    """
    device = _device(device)
    check_precision(precision)
    if precision == "auto":
        small = gflops is not None and gflops < AUTO_BF16_MIN_GFLOPS
        if small and device.type == "cpu":
            return "fp32"
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            f"precision 'fp16' needs a CUDA device, got {device}; "
            "use bf16, int8 or fp32 on the CPU"
        )
    if precision == "int8" and device.type != "cpu":
        raise ValueError(
            f"precision 'int8' runs on the CPU only, got {device}; "
            "use bf16 or fp16 on a GPU"
        )
    return precision


def autocast(device: Device, precision: str) -> ContextManager:
    """Autocast for a concrete ``precision`` (a no-op for fp32 and int8).

    Example
    -------
    >>> with autocast("cpu", "bf16"):
    ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
    torch.bfloat16
    """
    dtype: Optional[torch.dtype] = DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(_device(device).type, dtype=dtype)


def _quantize_dynamic(model: nn.Module) -> nn.Module:
    """torch's dynamic int8 quantization of every ``nn.Linear`` (a copy)."""
    quantization = torch.ao.quantization
    with warnings.catch_warnings():
        # Deprecated in favour of torchao, whose eager int8 is no faster
        # here (see prepare_model); the kernels are fbgemm/oneDNN's.
        warnings.simplefilter("ignore", DeprecationWarning)
        return quantization.quantize_dynamic(
            model, {nn.Linear}, dtype=torch.qint8, inplace=False
        )


def _quantize_torchao(model: nn.Module) -> nn.Module:
    """torchao's int8 dynamic-activation, int8-weight linear layers."""
    from torchao.quantization import (
        Int8DynamicActivationInt8WeightConfig,
        quantize_,
    )

    model = copy.deepcopy(model)
    quantize_(model, Int8DynamicActivationInt8WeightConfig())
    return model


def prepare_model(model: nn.Module, precision: str) -> nn.Module:
    """The model to run in the concrete ``precision`` (see
    :func:`resolve_precision`): ``model`` itself for fp32, bf16 and fp16
    (run it under :func:`autocast`), for int8 a copy whose linear layers
    (the encoder's: qkv, proj, fc1, fc2, and any head passed in) compute
    in int8 with dynamic per-token activation scales; ``model`` is left
    untouched.

    The int8 path was chosen by measurement: ``scripts/int8_paths.py``,
    AST encoder at T=512, batch 4, one thread, Intel Xeon with AMX-bf16 /
    AMX-int8 (2 cores shared with other jobs), torch 2.11, torchao 0.18,
    onnxruntime 1.32; speed-up over torch fp32 in one round-robin run and
    max |output - fp32| / max |fp32 output|:

    ===========================================  ==========  ============
    path                                         base        tiny 6-block
    ===========================================  ==========  ============
    torch bf16 autocast                          2.42x 7e-3  1.13x 8e-3
    torch.ao ``quantize_dynamic`` int8 (chosen)  1.65x 5e-2  1.25x 5e-2
    torchao ``Int8DynamicActivationInt8Weight``  1.21x 4e-2  0.54x 3e-2
    ONNX Runtime fp32                            0.80x 1e-6  0.93x 8e-7
    ONNX Runtime ``quantize_dynamic`` QInt8      1.89x 5e-2  1.33x 3e-2
    ===========================================  ==========  ============

    ("tiny 6-block": 192 wide, 16x16 patches, 258 tokens.) In PyTorch,
    ``quantize_dynamic`` is faster eager than torchao (whose int8 gains
    need ``torch.compile``: 31 s of compilation) and needs no extra
    package; it is deprecated, so where a torch release drops it torchao
    is used if installed. For the ONNX export ONNX Runtime's quantization
    is the faster int8
    (:func:`~fastast_sb.inference.onnx_export.quantize_onnx`). On this CPU
    bf16 beats every int8 path on base: int8 is for CPUs without bf16
    units, or for smaller weights.

    Example
    -------
    >>> net = nn.Sequential(nn.Linear(8, 8))
    >>> prepare_model(net, "bf16") is net
    True
    >>> q = prepare_model(net, "int8")
    >>> type(q[0].weight) is nn.Parameter, type(net[0].weight)
    (False, <class 'torch.nn.parameter.Parameter'>)
    >>> bool((q(torch.ones(1, 8)) - net(torch.ones(1, 8))).abs().max() < 0.1)
    True
    """
    check_precision(precision)
    if precision == "auto":
        raise ValueError(
            "prepare_model needs a concrete precision; resolve 'auto' with "
            "resolve_precision(precision, device) first"
        )
    if precision != "int8":
        return model
    if hasattr(torch.ao.quantization, "quantize_dynamic"):
        return _quantize_dynamic(model)
    if importlib.util.find_spec("torchao") is not None:
        return _quantize_torchao(model)
    raise ImportError(
        "int8 needs torch.ao.quantization.quantize_dynamic (not in torch "
        f"{torch.__version__}) or torchao (pip install torchao)"
    )
