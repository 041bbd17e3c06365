"""State-dict key maps: Hugging Face / original AST -> our AST lobe.

Pure functions on flat state dicts (key maps, layout detection, implied
architecture); :mod:`fastast_sb.models.checkpoints` does the files. Our names
are timm's (``pos_embed``, ``blocks.{i}.attn.qkv``, ...) plus ``head.norm`` /
``head.linear``. Sources: the original AST (``module.v.*``,
``module.mlp_head.{0,1}``) and both generations of Hugging Face names
(``encoder.layer.{i}.attention.attention.query`` on disk,
``layers.{i}.attention.q_proj`` in transformers 5).

References: Y. Gong, Y.-A. Chung, J. Glass, "AST: Audio Spectrogram
Transformer", Interspeech 2021; T. Wolf et al., "Transformers:
State-of-the-Art Natural Language Processing", EMNLP 2020 (system demos).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from fastast_sb.checkpoint import strip_prefix
from fastast_sb.models.pos_embed import resample_pos_embed

logger = logging.getLogger(__name__)

__all__ = [
    "convert_hf_state_dict",
    "convert_original_state_dict",
    "detect_format",
    "infer_config",
    "resample_pos_embed",
    "to_ours",
]

StateDict = Dict[str, torch.Tensor]

#: Every parameter name of our AST lobe plus head (``head.*``).
_OUR_KEY = re.compile(
    r"^(cls_token|dist_token|pos_embed|patch_embed\.proj\.(weight|bias)"
    r"|norm\.(weight|bias)|head\.(norm|linear)\.(weight|bias)"
    r"|blocks\.\d+\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)"
    r"\.(weight|bias))$"
)
_HF_PREFIX = "audio_spectrogram_transformer."
_HF_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.distillation_token": "dist_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
    "classifier.layernorm.weight": "head.norm.weight",
    "classifier.layernorm.bias": "head.norm.bias",
    "classifier.dense.weight": "head.linear.weight",
    "classifier.dense.bias": "head.linear.bias",
}
_HF_LAYER = re.compile(
    r"^(?:encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)$"
)
#: HF module inside a layer -> ours (both generations of names).
_HF_BLOCK = {
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "attention.output.dense": "attn.proj",
    "attention.o_proj": "attn.proj",
    "intermediate.dense": "mlp.fc1",
    "mlp.fc1": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "mlp.fc2": "mlp.fc2",
}
_HF_QKV = {
    "attention.attention.query": 0,
    "attention.attention.key": 1,
    "attention.attention.value": 2,
    "attention.q_proj": 0,
    "attention.k_proj": 1,
    "attention.v_proj": 2,
}
_ORIGINAL = {
    "v.": "",
    "mlp_head.0.": "head.norm.",
    "mlp_head.1.": "head.linear.",
}


def few(keys: List[str], n: int = 5) -> str:
    """Up to ``n`` keys for an error message.

    Example
    -------
    >>> few(["a", "b", "c"], n=2)
    "'a', 'b' (and 1 more)"
    """
    more = f" (and {len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(repr(k) for k in keys[:n]) + more


def _tensors(sd: Mapping[str, Any]) -> StateDict:
    """Drop a DataParallel ``module.`` prefix; check values are tensors."""
    for key, value in sd.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"checkpoint entry {key!r} is a {type(value).__name__}, "
                "expected a tensor"
            )
    return strip_prefix(sd)


def detect_format(sd: Mapping[str, Any]) -> str:
    """Which layout a flat state dict uses: "hf", "original" or "fastast_sb".

    Example
    -------
    >>> detect_format({"module.v.cls_token": torch.zeros(1)})
    'original'
    >>> detect_format({"layers.0.mlp.fc1.weight": torch.zeros(1)})
    'hf'
    >>> detect_format({"pos_embed": torch.zeros(1)})
    'fastast_sb'
    """
    keys = list(strip_prefix(sd))
    if any(k.startswith(("v.", "mlp_head.")) for k in keys):
        return "original"
    hf = (_HF_PREFIX, "embeddings.", "encoder.layer.", "layers.", "classifier.")
    if any(k.startswith(hf) for k in keys):
        return "hf"
    unknown = [k for k in keys if not _OUR_KEY.match(k)]
    if keys and not unknown:
        return "fastast_sb"
    raise ValueError(
        "unknown checkpoint layout: expected original AST (module.v.*), "
        "Hugging Face (audio_spectrogram_transformer.*) or fastast_sb keys "
        f"(cls_token, blocks.{{i}}.attn.qkv.weight, ...); unexpected keys: "
        f"{few(unknown) or 'none (empty state dict)'}"
    )


def convert_original_state_dict(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Original AST checkpoint (``module.v.*``, ``module.mlp_head.*``) -> ours.

    ``v.head*`` and ``v.head_dist*`` (timm's classifiers) are dropped.

    Example
    -------
    >>> sd = {"module.v.cls_token": torch.zeros(1, 1, 4),
    ...       "module.v.head.weight": torch.zeros(3, 4),
    ...       "module.mlp_head.1.bias": torch.zeros(3)}
    >>> sorted(convert_original_state_dict(sd))
    ['cls_token', 'head.linear.bias']
    """
    out: StateDict = {}
    unexpected: List[str] = []
    for key, value in _tensors(sd).items():
        if key.startswith(("v.head.", "v.head_dist.")):
            continue
        old = next((p for p in _ORIGINAL if key.startswith(p)), None)
        new = None if old is None else _ORIGINAL[old] + key[len(old) :]
        if new is None or not _OUR_KEY.match(new):
            unexpected.append(key)
        else:
            out[new] = value
    if unexpected:
        raise ValueError(
            "original AST checkpoint has unexpected keys (expected module.v.* "
            f"and module.mlp_head.{{0,1}}.*): {few(unexpected)}"
        )
    return out


def convert_hf_state_dict(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Hugging Face ``ASTForAudioClassification`` / ``ASTModel`` -> ours.

    Both generations of names, with or without the
    ``audio_spectrogram_transformer.`` prefix; ``qkv`` = cat(q, k, v) along
    the output dim.

    Example
    -------
    >>> sd = {f"layers.0.attention.{n}_proj.weight": torch.full((2, 2), i)
    ...       for i, n in enumerate("qkv")}
    >>> convert_hf_state_dict(sd)["blocks.0.attn.qkv.weight"][:, 0].tolist()
    [0, 0, 1, 1, 2, 2]
    """
    out: StateDict = {}
    qkv: Dict[Tuple[int, str], Dict[int, torch.Tensor]] = {}
    unexpected: List[str] = []
    for key, value in _tensors(sd).items():
        name = key.removeprefix(_HF_PREFIX)
        match = _HF_LAYER.match(name)
        idx, module, kind = (
            (int(match[1]), match[2], match[3]) if match else (0, "", "")
        )
        if name in _HF_TOP:
            out[_HF_TOP[name]] = value
        elif module in _HF_BLOCK:
            out[f"blocks.{idx}.{_HF_BLOCK[module]}.{kind}"] = value
        elif module in _HF_QKV:
            qkv.setdefault((idx, kind), {})[_HF_QKV[module]] = value
        else:
            unexpected.append(key)
    if unexpected:
        raise ValueError(
            f"Hugging Face AST checkpoint has unexpected keys: "
            f"{few(unexpected)}"
        )
    for (idx, kind), parts in sorted(qkv.items()):
        if len(parts) != 3:
            missing = [n for i, n in enumerate("qkv") if i not in parts]
            raise ValueError(
                f"Hugging Face layer {idx} lacks the {kind} of "
                f"{'/'.join(missing)}; q, k and v are all needed for qkv"
            )
        out[f"blocks.{idx}.attn.qkv.{kind}"] = torch.cat(
            [parts[0], parts[1], parts[2]], dim=0
        )
    return out


def to_ours(sd: Mapping[str, Any]) -> Tuple[StateDict, str]:
    """Convert any supported layout to ours; also return the layout name.

    Example
    -------
    >>> to_ours({"module.v.norm.bias": torch.zeros(2)})[0].keys()
    dict_keys(['norm.bias'])
    """
    fmt = detect_format(sd)
    maps = {
        "original": convert_original_state_dict,
        "hf": convert_hf_state_dict,
    }
    return maps.get(fmt, _tensors)(sd), fmt


_HF_NAMES = {
    "layer_norm_eps": "norm_eps",
    "num_mel_bins": "input_fdim",
    "frequency_stride": "fstride",
    "time_stride": "tstride",
    "max_length": "input_tdim",
}


def infer_config(
    sd: StateDict,
    fmt: str,
    hf_config: Optional[Dict[str, Any]],
    overrides: Mapping[str, Any],
) -> Dict[str, Any]:
    """AST arguments read off a foreign state dict (converted to ours).

    Width, depth, patch size, MLP ratio and qkv bias come from the tensors;
    heads, eps and the grid from HF's ``config.json`` if given, else heads
    = width // 64, eps 1e-6 and the grid keys of ``overrides``.

    Example
    -------
    >>> sd = {"cls_token": torch.zeros(1, 1, 128), "pos_embed": torch.zeros(1),
    ...       "patch_embed.proj.weight": torch.zeros(128, 1, 16, 16)}
    >>> infer_config(sd, "original", None, {})["num_heads"]
    2
    """
    for key in ("cls_token", "pos_embed", "patch_embed.proj.weight"):
        if key not in sd:
            raise ValueError(f"{fmt} checkpoint lacks {key!r}")
    width = int(sd["cls_token"].shape[-1])
    proj = sd["patch_embed.proj.weight"]
    if proj.ndim != 4 or proj.shape[1] != 1 or proj.shape[2] != proj.shape[3]:
        raise ValueError(
            "patch_embed.proj.weight has shape "
            f"{tuple(proj.shape)}; expected [D, 1, p, p] (one input channel, "
            "square patches): this is not an AST checkpoint"
        )
    blocks = {int(k.split(".")[1]) for k in sd if k.startswith("blocks.")}
    depth = max(blocks) + 1 if blocks else 0
    cfg: Dict[str, Any] = {
        "embed_dim": width,
        "depth": depth,
        "patch_size": int(proj.shape[2]),
        "qkv_bias": depth == 0 or "blocks.0.attn.qkv.bias" in sd,
        "norm_eps": 1e-6,
    }
    if "blocks.0.mlp.fc1.weight" in sd:
        cfg["mlp_ratio"] = sd["blocks.0.mlp.fc1.weight"].shape[0] / width
    if hf_config is not None:
        act = hf_config.get("hidden_act", "gelu")
        if act != "gelu":
            raise ValueError(
                f"config.json has hidden_act={act!r}; this AST uses 'gelu'"
            )
        cfg.update(
            {v: hf_config[k] for k, v in _HF_NAMES.items() if k in hf_config}
        )
        heads = hf_config.get("num_attention_heads")
    else:
        if fmt == "hf":
            logger.warning(
                "Hugging Face weights without config.json: assuming "
                "LayerNorm eps 1e-6 (HF's default is 1e-12); pass norm_eps"
            )
        # Grid assumptions a bare checkpoint cannot tell: caller's values.
        grid = ("input_fdim", "fstride", "tstride")
        cfg.update({k: overrides[k] for k in grid if k in overrides})
        heads = None
    if heads is None:
        given = "num_heads" in overrides or "preset" in overrides
        if width % 64 != 0 and not given:
            raise ValueError(
                f"cannot infer num_heads for width {width} (not a "
                "multiple of 64); pass num_heads"
            )
        heads = width // 64 or 1
    cfg["num_heads"] = int(heads)
    return cfg
