"""The ``--compare-hf`` reference: transformers' AST at the same size.

A random ``ASTForAudioClassification`` whose ``ASTConfig`` matches one of
our :class:`~fastast_sb.models.ast.AST` models, with SDPA attention: both
do the same arithmetic on the same features, so their throughput ratio
measures the implementations. transformers (a test extra) is imported here.

Reference: Y. Gong, Y.-A. Chung, J. Glass, "AST: Audio Spectrogram
Transformer", Interspeech 2021.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, Optional

import torch
from torch import nn

from fastast_sb.models.ast import AST
from fastast_sb.timing import Step, forward_step, optimizer_step


def hf_config_kwargs(model: AST, num_labels: int = 527) -> Dict[str, Any]:
    """``ASTConfig`` arguments describing the same network as ``model``.

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
    model: AST, num_labels: int = 527, attn_implementation: str = "sdpa"
) -> nn.Module:
    """A random ``ASTForAudioClassification`` of the same size as ``model``
    in eval mode on its device, with transformers' ``attn_implementation``
    ("sdpa" or "eager").

    Example
    -------
    >>> m = AST(input_tdim=128, preset="tiny", depth=1)
    >>> hf_reference(m, 3).config.hidden_size  # doctest: +SKIP
    192

    (Skipped: importing transformers takes seconds; the unit tests run it.)
    """
    try:
        transformers = importlib.import_module("transformers")
    except ImportError as err:
        raise ImportError(
            "--compare-hf needs the transformers package, which is not "
            "installed; install it with `pip install transformers` (or the "
            "test extra: `pip install -e .[test]`)"
        ) from err
    config = transformers.ASTConfig(
        **hf_config_kwargs(model, num_labels),
        attn_implementation=attn_implementation,
    )
    device = next(model.parameters()).device
    return transformers.ASTForAudioClassification(config).to(device).eval()


def hf_step(
    model: AST,
    feats: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    dtype: Optional[torch.dtype] = None,
    num_labels: int = 527,
) -> Step:
    """The HF reference's forward pass, or with ``labels`` its Adam step,
    as :func:`~fastast_sb.timing.schedule_steps` makes them.

    Example
    -------
    >>> m = AST(input_tdim=128, preset="tiny", depth=1)
    >>> hf_step(m, torch.randn(1, 128, 128), num_labels=3)().shape
    ... # doctest: +SKIP
    torch.Size([1, 3])
    """
    hf_model = hf_reference(model, num_labels)

    def logits() -> torch.Tensor:
        return hf_model(input_values=feats).logits  # [B, C]

    if labels is None:
        return forward_step(logits, feats.device, dtype)
    hf_model.train()
    opt = torch.optim.Adam(hf_model.parameters())
    return optimizer_step(logits, labels, opt, dtype)
