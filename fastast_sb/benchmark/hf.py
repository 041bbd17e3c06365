"""The reference for ``--compare-hf``: transformers' AST at the same size.

Builds ``ASTForAudioClassification`` with random weights from an
``ASTConfig`` matching one of our :class:`~fastast_sb.models.ast.AST`
models (width, depth, heads, MLP ratio, strides, patch, input length,
LayerNorm eps), with the SDPA attention path, so both models do the same
arithmetic on the same features and their throughput ratio measures the
implementations alone. transformers is a test extra, imported only here.

Reference: Y. Gong, Y.-A. Chung, J. Glass, "AST: Audio Spectrogram
Transformer", Interspeech 2021 (the architecture both implement).
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from fastast_sb.benchmark.timing import Step, autocast_for
from fastast_sb.models.ast import AST


def _transformers() -> Any:
    try:
        return importlib.import_module("transformers")
    except ImportError as err:
        raise ImportError(
            "--compare-hf needs the transformers package, which is not "
            "installed; install it with `pip install transformers` (or the "
            "test extra: `pip install -e .[test]`)"
        ) from err


def hf_config_kwargs(model: AST, num_labels: int = 527) -> Dict[str, Any]:
    """``ASTConfig`` arguments describing the same network as ``model``.

    Arguments
    ---------
    model : AST
        Our encoder; its size, strides, input length and eps are copied.
    num_labels : int
        Classifier outputs.

    Returns
    -------
    dict
        Keyword arguments of ``transformers.ASTConfig``.

    Example
    -------
    >>> kw = hf_config_kwargs(AST(input_tdim=128, preset="tiny", depth=1))
    >>> kw["hidden_size"], kw["num_hidden_layers"], kw["max_length"]
    (192, 1, 128)
    """
    proj = model.patch_embed.proj
    return {
        "hidden_size": model.embed_dim,
        "num_hidden_layers": model.depth,
        "num_attention_heads": model.num_heads,
        "intermediate_size": int(model.embed_dim * model.mlp_ratio),
        "max_length": model.input_tdim,
        "num_mel_bins": model.input_fdim,
        "frequency_stride": proj.stride[0],
        "time_stride": proj.stride[1],
        "patch_size": proj.kernel_size[0],
        "layer_norm_eps": model.norm.eps,
        "qkv_bias": model.blocks[0].attn.qkv.bias is not None,
        "num_labels": num_labels,
    }


def hf_reference(
    model: AST,
    num_labels: int = 527,
    attn_implementation: str = "sdpa",
) -> nn.Module:
    """A random ``ASTForAudioClassification`` of the same size as ``model``.

    Arguments
    ---------
    model : AST
        Our encoder (see :func:`hf_config_kwargs`).
    num_labels : int
        Classifier outputs.
    attn_implementation : str
        transformers' attention path ("sdpa" or "eager").

    Returns
    -------
    nn.Module
        The HF model in eval mode, on ``model``'s device.

    Example
    -------
    >>> m = AST(input_tdim=128, preset="tiny", depth=1)
    >>> hf_reference(m, 3).config.hidden_size  # doctest: +SKIP
    192

    (Skipped: importing transformers takes seconds; the unit tests run it.)
    """
    transformers = _transformers()
    config = transformers.ASTConfig(
        **hf_config_kwargs(model, num_labels),
        attn_implementation=attn_implementation,
    )
    device = next(model.parameters()).device
    return transformers.ASTForAudioClassification(config).to(device).eval()


def hf_inference_step(
    hf_model: nn.Module,
    feats: torch.Tensor,
    dtype: Optional[torch.dtype] = None,
) -> Step:
    """One forward pass of the HF model (no grad), logits included.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> fake = lambda input_values: SimpleNamespace(logits=input_values[:, 0])
    >>> hf_inference_step(fake, torch.ones(2, 5, 3))().shape
    torch.Size([2, 3])
    """
    device = feats.device

    def run() -> torch.Tensor:
        with torch.inference_mode(), autocast_for(device, dtype):
            return hf_model(input_values=feats).logits

    return run


def hf_train_step(
    hf_model: nn.Module,
    feats: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    dtype: Optional[torch.dtype] = None,
) -> Step:
    """One HF training step, as :func:`~fastast_sb.benchmark.timing.train_step`.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> lin = nn.Linear(3, 2)
    >>> fake = lambda input_values: SimpleNamespace(logits=lin(input_values))
    >>> opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    >>> hf_train_step(fake, torch.ones(2, 3), torch.tensor([0, 1]), opt)().ndim
    0
    """
    device = feats.device

    def run() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast_for(device, dtype):
            logits = hf_model(input_values=feats).logits  # [B, C]
        loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return run
