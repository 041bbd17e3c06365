"""Number formats a model runs in: fp32, bf16, fp16, int8, or ``auto``.

``auto`` picks the fastest format the device computes natively: bf16 where
the CPU has AVX512-BF16 or AMX, or the GPU has bf16 units; fp32 otherwise. It
never picks a format the device only emulates, and never int8 (int8 changes
the weights, so it is always the user's explicit choice).
"""

from __future__ import annotations

import contextlib
from typing import ContextManager, Optional, Union

import torch

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


def resolve_precision(precision: str, device: Device) -> str:
    """The concrete format for ``precision`` on ``device``.

    ``auto`` becomes bf16 or fp32 (see :func:`native_bf16`); fp16 needs a
    GPU and int8 a CPU (dynamic int8 quantization of the linear layers).

    Example
    -------
    >>> resolve_precision("fp32", "cpu")
    'fp32'
    >>> resolve_precision("auto", "cpu") in ("bf16", "fp32")
    True
    """
    device = _device(device)
    check_precision(precision)
    if precision == "auto":
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
