"""Checkpoint conversion: Hugging Face / original AST -> our AST lobe.

Our layout is AST's own (timm) parameter names at top level
(``cls_token``, ``dist_token``, ``pos_embed``, ``patch_embed.proj``,
``blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``,
``norm``) plus the classification head under ``head.norm`` and
``head.linear`` (:class:`fastast_sb.models.ast.ASTHead`).

Three sources are read:

- the original AST code's checkpoints (``module.v.*``, ``module.mlp_head.0``
  (LayerNorm) and ``module.mlp_head.1`` (Linear)); timm's unused
  ``v.head`` / ``v.head_dist`` classifiers are dropped;
- Hugging Face ``transformers`` checkpoints in both generations of names:
  the files on disk (``encoder.layer.{i}.attention.attention.query`` ...,
  also what ``save_pretrained`` writes in transformers 5) and the
  in-memory ``state_dict()`` of transformers 5 (``layers.{i}.attention.
  q_proj`` ...). HF keeps q, k and v apart; our ``qkv`` is their
  concatenation. HF's LayerNorm epsilon comes from ``config.json``;
- our own files written by :func:`save_ast`, and SpeechBrain checkpoint
  folders holding the lobe (and optionally the head) as ``*.ckpt``.

Files are read with ``torch.load(weights_only=True)`` (or safetensors):
a file that needs arbitrary unpickling is refused and its code never runs.

References: Y. Gong, Y.-A. Chung, J. Glass, "AST: Audio Spectrogram
Transformer", Interspeech 2021; T. Wolf et al., "Transformers:
State-of-the-Art Natural Language Processing", EMNLP 2020 (system demos).
"""

from __future__ import annotations

import json
import logging
import pickle
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch

from fastast_sb.models.ast import AST, ASTHead
from fastast_sb.models.layers import patch_grid
from fastast_sb.models.pos_embed import resample_pos_embed

logger = logging.getLogger(__name__)

__all__ = [
    "ast_config",
    "convert_hf_state_dict",
    "convert_original_state_dict",
    "detect_format",
    "load_ast",
    "resample_pos_embed",
    "save_ast",
    "to_ours",
]

StateDict = Dict[str, torch.Tensor]
PathLike = Union[str, Path]

#: Marker stored in files written by :func:`save_ast`.
FORMAT_TAG = "fastast_sb"
#: File suffixes read with ``torch.load(weights_only=True)``.
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
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


# ----------------------------------------------------------------- key maps
def _few(keys: List[str], n: int = 5) -> str:
    """Up to ``n`` keys for an error message."""
    shown = ", ".join(repr(k) for k in keys[:n])
    more = f" (and {len(keys) - n} more)" if len(keys) > n else ""
    return shown + more


def _strip_module(sd: Mapping[str, Any]) -> StateDict:
    """Drop a DataParallel ``module.`` prefix and check values are tensors."""
    out: StateDict = {}
    for key, value in sd.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"checkpoint entry {key!r} is a {type(value).__name__}, "
                "expected a tensor"
            )
        out[key[7:] if key.startswith("module.") else key] = value
    return out


def _check_ours(sd: Mapping[str, torch.Tensor], source: str) -> None:
    bad = [k for k in sd if not _OUR_KEY.match(k)]
    if bad:
        raise ValueError(
            f"{source} state dict has keys that are not AST parameters: "
            f"{_few(bad)}"
        )


def detect_format(sd: Mapping[str, Any]) -> str:
    """Which layout a flat state dict uses: "hf", "original" or "fastast_sb".

    Arguments
    ---------
    sd : mapping
        Parameter names to tensors (a ``module.`` prefix is ignored).

    Returns
    -------
    str
        The layout name.

    Example
    -------
    >>> detect_format({"module.v.cls_token": torch.zeros(1)})
    'original'
    >>> detect_format({"layers.0.mlp.fc1.weight": torch.zeros(1)})
    'hf'
    >>> detect_format({"pos_embed": torch.zeros(1)})
    'fastast_sb'
    """
    keys = [k[7:] if k.startswith("module.") else k for k in sd]
    if any(k.startswith(("v.", "mlp_head.")) for k in keys):
        return "original"
    hf_starts = (_HF_PREFIX, "embeddings.", "encoder.layer.", "layers.")
    if any(
        k.startswith(hf_starts) or k.startswith("classifier.") for k in keys
    ):
        return "hf"
    if keys and all(_OUR_KEY.match(k) for k in keys):
        return "fastast_sb"
    unknown = [k for k in keys if not _OUR_KEY.match(k)]
    raise ValueError(
        "unknown checkpoint layout: expected original AST (module.v.*), "
        "Hugging Face (audio_spectrogram_transformer.*) or fastast_sb keys "
        f"(cls_token, blocks.{{i}}.attn.qkv.weight, ...); unexpected keys: "
        f"{_few(unknown) or 'none (empty state dict)'}"
    )


def convert_original_state_dict(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Original AST checkpoint (``module.v.*``, ``module.mlp_head.*``) -> ours.

    Arguments
    ---------
    sd : mapping
        State dict saved by the AST code (with or without ``module.``).

    Returns
    -------
    dict
        Our state dict; ``v.head*`` and ``v.head_dist*`` are dropped.

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
    for key, value in _strip_module(sd).items():
        if key.startswith(("v.head.", "v.head_dist.")):
            continue
        if key.startswith("v."):
            new = key[2:]
        elif key.startswith("mlp_head.0."):
            new = "head.norm." + key[len("mlp_head.0.") :]
        elif key.startswith("mlp_head.1."):
            new = "head.linear." + key[len("mlp_head.1.") :]
        else:
            unexpected.append(key)
            continue
        if not _OUR_KEY.match(new):
            unexpected.append(key)
            continue
        out[new] = value
    if unexpected:
        raise ValueError(
            "original AST checkpoint has unexpected keys (expected module.v.* "
            f"and module.mlp_head.{{0,1}}.*): {_few(unexpected)}"
        )
    return out


def convert_hf_state_dict(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Hugging Face ``ASTForAudioClassification`` / ``ASTModel`` -> ours.

    Accepts the on-disk names (``encoder.layer.{i}.attention.attention.
    query``, ``intermediate.dense``, ...) and the transformers-5 in-memory
    names (``layers.{i}.attention.q_proj``, ``mlp.fc1``, ...), with or
    without the ``audio_spectrogram_transformer.`` prefix.

    Arguments
    ---------
    sd : mapping
        HF state dict.

    Returns
    -------
    dict
        Our state dict (``qkv`` = cat(q, k, v) along the output dim).

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
    for key, value in _strip_module(sd).items():
        name = key[len(_HF_PREFIX) :] if key.startswith(_HF_PREFIX) else key
        if name in _HF_TOP:
            out[_HF_TOP[name]] = value
            continue
        match = _HF_LAYER.match(name)
        if match is None:
            unexpected.append(key)
            continue
        idx, module, kind = int(match[1]), match[2], match[3]
        if module in _HF_BLOCK:
            out[f"blocks.{idx}.{_HF_BLOCK[module]}.{kind}"] = value
        elif module in _HF_QKV:
            qkv.setdefault((idx, kind), {})[_HF_QKV[module]] = value
        else:
            unexpected.append(key)
    if unexpected:
        raise ValueError(
            f"Hugging Face AST checkpoint has unexpected keys: "
            f"{_few(unexpected)}"
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
    """Convert any supported layout to ours.

    Arguments
    ---------
    sd : mapping
        Flat state dict.

    Returns
    -------
    state_dict, format
        Our state dict and the detected layout name.

    Example
    -------
    >>> to_ours({"module.v.norm.bias": torch.zeros(2)})[0].keys()
    dict_keys(['norm.bias'])
    """
    fmt = detect_format(sd)
    if fmt == "original":
        return convert_original_state_dict(sd), fmt
    if fmt == "hf":
        return convert_hf_state_dict(sd), fmt
    ours = _strip_module(sd)
    _check_ours(ours, "fastast_sb")
    return ours, fmt


# ------------------------------------------------------------------ reading
def _torch_load(path: Path) -> Any:
    """``torch.load`` that refuses pickled objects (their code never runs)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        if found or "unsupported global" in str(err).lower():
            what = f" ({found[1]})" if found else ""
            raise ValueError(
                f"{path} contains pickled Python objects{what} beyond "
                "tensors and plain containers; it is refused (read with "
                "torch.load(weights_only=True)). Re-save only its state_dict."
            ) from err
        raise ValueError(
            f"cannot read {path} as a torch file: it is not a torch "
            "checkpoint, or holds data torch.load(weights_only=True) refuses"
        ) from err
    except Exception as err:  # corrupt or non-torch file
        raise ValueError(
            f"cannot read {path} as a torch file ({type(err).__name__}: {err})"
        ) from err


def _read_file(path: Path) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Read one weights file -> (flat state dict, metadata)."""
    suffix = path.suffix.lower()
    meta: Dict[str, Any] = {}
    if suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            stored = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
        if stored.get("format") == FORMAT_TAG:
            meta["config"] = json.loads(stored.get("config", "null"))
            meta["head_config"] = json.loads(stored.get("head_config", "null"))
        return sd, meta
    if suffix not in TORCH_SUFFIXES:
        raise ValueError(
            f"unsupported checkpoint file {path}: expected a suffix in "
            f"{TORCH_SUFFIXES + ('.safetensors',)}, or a folder"
        )
    obj = _torch_load(path)
    if not isinstance(obj, dict):
        raise ValueError(
            f"{path} holds a {type(obj).__name__}, expected a state dict"
        )
    if obj.get("format") == FORMAT_TAG:
        meta["config"] = obj.get("config")
        meta["head_config"] = obj.get("head_config")
    for wrapper in ("state_dict", "model"):
        if isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    return obj, meta


def _read_hf_folder(folder: Path) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            sd, meta = _read_file(folder / name)
            break
    else:
        raise ValueError(
            f"Hugging Face folder {folder} has config.json but neither "
            "model.safetensors nor pytorch_model.bin"
        )
    meta["hf_config"] = json.loads((folder / "config.json").read_text())
    return sd, meta


def _is_head(keys: List[str]) -> bool:
    wanted = {"norm.weight", "norm.bias", "linear.weight", "linear.bias"}
    return set(keys) == wanted


def _read_sb_folder(folder: Path) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """SpeechBrain checkpoint folder: the lobe (and head) among ``*.ckpt``."""
    bodies: List[Tuple[Path, Dict[str, Any]]] = []
    heads: List[Tuple[Path, Dict[str, Any]]] = []
    skipped: List[str] = []
    for file in sorted(folder.glob("*.ckpt")):
        try:
            obj = _torch_load(file)
        except ValueError as err:  # brain.ckpt, counters, pickled extras
            logger.debug("skipping %s: %s", file, err)
            skipped.append(file.name)
            continue
        if not isinstance(obj, dict) or not obj:
            continue
        keys = [str(k) for k in obj]
        if _is_head(keys):
            heads.append((file, obj))
            continue
        try:
            detect_format(obj)
        except ValueError:
            continue
        if any(
            k.endswith("pos_embed") or "position_embeddings" in k for k in keys
        ):
            bodies.append((file, obj))
    if len(bodies) != 1:
        found = ", ".join(p.name for p, _ in bodies) or "none"
        unread = f" (unreadable: {', '.join(skipped)})" if skipped else ""
        raise ValueError(
            f"expected one AST state dict among the *.ckpt files of "
            f"{folder}, found {found}{unread}"
        )
    if len(heads) > 1:
        raise ValueError(
            f"several classification heads in {folder}: "
            f"{', '.join(p.name for p, _ in heads)}"
        )
    sd = dict(bodies[0][1])
    if heads:
        sd.update({f"head.{k}": v for k, v in heads[0][1].items()})
    return sd, {}


def _read(path: Path) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    if path.is_dir():
        if (path / "config.json").is_file():
            return _read_hf_folder(path)
        if any(path.glob("*.ckpt")):
            return _read_sb_folder(path)
        raise ValueError(
            f"{path} is a folder with neither config.json (Hugging Face) "
            "nor *.ckpt files (SpeechBrain checkpoint)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    sd, meta = _read_file(path)
    sibling = path.parent / "config.json"
    if "config" not in meta and sibling.is_file():
        try:
            meta["hf_config"] = json.loads(sibling.read_text())
        except json.JSONDecodeError:
            logger.warning("ignoring unreadable %s", sibling)
    return sd, meta


# --------------------------------------------------------------- inference
def _infer_tdim(t_dim: int, patch: int, tstride: int) -> int:
    """A frame count giving ``t_dim`` patches: a multiple of 16 if any.

    AST's lengths (128, 512, 1024) are the multiples of 16 among the
    ``tstride`` frame counts that give the same grid.
    """
    low = (t_dim - 1) * tstride + patch
    for frames in range(low, low + tstride):
        if frames % 16 == 0:
            return frames
    return low


def _infer_config(
    sd: StateDict,
    fmt: str,
    hf_config: Optional[Dict[str, Any]],
    overrides: Mapping[str, Any],
) -> Dict[str, Any]:
    """Constructor arguments of the AST stored in a foreign checkpoint."""
    for key in ("cls_token", "pos_embed", "patch_embed.proj.weight"):
        if key not in sd:
            raise ValueError(f"{fmt} checkpoint lacks {key!r}")
    embed_dim = int(sd["cls_token"].shape[-1])
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
        "embed_dim": embed_dim,
        "depth": depth,
        "patch_size": int(proj.shape[2]),
        "qkv_bias": depth == 0 or "blocks.0.attn.qkv.bias" in sd,
        "norm_eps": 1e-6,
        "input_fdim": 128,
        "fstride": 10,
        "tstride": 10,
    }
    if "blocks.0.mlp.fc1.weight" in sd:
        cfg["mlp_ratio"] = sd["blocks.0.mlp.fc1.weight"].shape[0] / embed_dim
    heads = None
    if hf_config is not None:
        act = hf_config.get("hidden_act", "gelu")
        if act != "gelu":
            raise ValueError(
                f"config.json has hidden_act={act!r}; this AST uses 'gelu'"
            )
        names = {
            "layer_norm_eps": "norm_eps",
            "num_mel_bins": "input_fdim",
            "frequency_stride": "fstride",
            "time_stride": "tstride",
            "max_length": "input_tdim",
        }
        for hf_name, ours in names.items():
            if hf_name in hf_config:
                cfg[ours] = hf_config[hf_name]
        heads = hf_config.get("num_attention_heads")
    else:
        if fmt == "hf":
            logger.warning(
                "Hugging Face weights without config.json: assuming "
                "LayerNorm eps 1e-6 (HF's default is 1e-12); pass norm_eps"
            )
        # Grid assumptions a bare checkpoint cannot tell: caller's values.
        for key in ("input_fdim", "fstride", "tstride"):
            if key in overrides:
                cfg[key] = overrides[key]
    if heads is None:
        if "num_heads" not in overrides and "preset" not in overrides:
            if embed_dim % 64 != 0:
                raise ValueError(
                    f"cannot infer num_heads for width {embed_dim} (not a "
                    "multiple of 64); pass num_heads"
                )
        heads = embed_dim // 64 or 1
    cfg["num_heads"] = int(heads)
    return cfg


def _stored_grid(
    pos_embed: torch.Tensor, cfg: Mapping[str, Any]
) -> Tuple[int, int]:
    """(f_dim, t_dim) of a checkpoint's positional embedding."""
    f_dim = patch_grid(cfg["input_fdim"], cfg["patch_size"], cfg["fstride"])
    patches = pos_embed.shape[1] - 2
    if patches < 1 or patches % f_dim != 0:
        raise ValueError(
            f"pos_embed has {patches} patch rows, not a multiple of the "
            f"f_dim={f_dim} frequency rows implied by input_fdim="
            f"{cfg['input_fdim']}, patch_size={cfg['patch_size']}, "
            f"fstride={cfg['fstride']}; pass the checkpoint's input_fdim and "
            "fstride"
        )
    return f_dim, patches // f_dim


def _check_shapes(
    sd: Mapping[str, torch.Tensor], module: torch.nn.Module, what: str
) -> None:
    """Clear errors for missing, unexpected and mis-shaped parameters."""
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise ValueError(
            f"{what} checkpoint does not fit the model: missing "
            f"{_few(missing) or 'none'}; unexpected "
            f"{_few(unexpected) or 'none'}"
        )
    wrong = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if sd[k].shape != v.shape
    ]
    if wrong:
        more = f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""
        raise ValueError(
            f"{what} checkpoint shapes do not match the model: "
            f"{'; '.join(wrong[:3])}{more}"
        )


# -------------------------------------------------------------- public API
def load_ast(
    path: PathLike, input_tdim: Optional[int] = None, **overrides: Any
) -> Tuple[AST, Optional[ASTHead]]:
    """Build an AST (and its head) from any supported checkpoint.

    The layout is detected from the keys. Width, depth, patch size, MLP
    ratio and qkv bias come from the tensors; heads, LayerNorm epsilon,
    strides and frame count from the stored config (our files, HF
    ``config.json``), else heads = width // 64, eps 1e-6, strides 10 and the
    frame count from the positional embedding. The positional embedding is
    resampled to ``input_tdim`` by the AST rule; weights load strictly.

    Arguments
    ---------
    path : str or Path
        A ``.pt/.pth/.bin/.ckpt`` or ``.safetensors`` file, a Hugging Face
        folder (``config.json`` + weights) or a SpeechBrain checkpoint
        folder (``*.ckpt``).
    input_tdim : int, optional
        Frames per input of the new model; the checkpoint's by default.
    **overrides
        Further :class:`AST` arguments (e.g. ``r``, ``num_heads``).

    Returns
    -------
    model : AST
        The lobe (in training mode, like any new module).
    head : ASTHead or None
        The classification head when the checkpoint holds one.

    Example
    -------
    >>> import tempfile, os
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "m.pt")
    >>> save_ast(path, AST(input_tdim=128, preset="tiny", depth=1),
    ...          ASTHead(192, 5))
    >>> model, head = load_ast(path, input_tdim=256)
    >>> model.num_tokens, head.linear.out_features
    (302, 5)
    >>> tmp.cleanup()
    """
    path = Path(path)
    raw, meta = _read(path)
    sd, fmt = to_ours(raw)
    stored = meta.get("config")
    if stored is not None:
        cfg = dict(stored)
    else:
        hf_config = meta.get("hf_config") if fmt == "hf" else None
        cfg = _infer_config(sd, fmt, hf_config, overrides)
    cfg.setdefault("input_fdim", 128)
    cfg.setdefault("fstride", 10)
    cfg.setdefault("tstride", 10)
    cfg.setdefault("patch_size", 16)
    if "pos_embed" not in sd:
        raise ValueError(f"{fmt} checkpoint {path} lacks 'pos_embed'")
    old_grid = _stored_grid(sd["pos_embed"], cfg)
    if "input_tdim" not in cfg:
        cfg["input_tdim"] = _infer_tdim(
            old_grid[1], cfg["patch_size"], cfg["tstride"]
        )
    stored_tdim = cfg["input_tdim"]
    cfg.update(overrides)
    if input_tdim is not None:
        cfg["input_tdim"] = input_tdim
    model = AST(**cfg)

    body = {k: v for k, v in sd.items() if not k.startswith("head.")}
    pos = body["pos_embed"]
    if old_grid != model.grid:
        logger.info(
            "resampling pos_embed from grid %s (%d frames) to %s (%d frames)",
            old_grid,
            stored_tdim,
            model.grid,
            model.input_tdim,
        )
        body["pos_embed"] = resample_pos_embed(pos, old_grid, model.grid)
    _check_shapes(body, model, f"{fmt} AST")
    model.load_state_dict(body, strict=True)

    head_sd = {k[5:]: v for k, v in sd.items() if k.startswith("head.")}
    head = None
    if head_sd:
        if "linear.weight" not in head_sd:
            raise ValueError(
                f"head of {path} lacks head.linear.weight; has "
                f"{_few(sorted(head_sd))}"
            )
        head_cfg = dict(meta.get("head_config") or {})
        head_cfg.setdefault("n_classes", int(head_sd["linear.weight"].shape[0]))
        head_cfg.setdefault("norm_eps", model.norm.eps)
        head = ASTHead(model.embed_dim, **head_cfg)
        _check_shapes(head_sd, head, f"{fmt} head")
        head.load_state_dict(head_sd, strict=True)
    return model, head


def ast_config(model: AST) -> Dict[str, Any]:
    """Constructor arguments that rebuild ``model``'s architecture.

    Arguments
    ---------
    model : AST
        The lobe.

    Returns
    -------
    dict
        Keyword arguments for :class:`AST` (dropouts excluded).

    Example
    -------
    >>> ast_config(AST(input_tdim=128, preset="tiny", depth=1))["num_heads"]
    3
    """
    proj = model.patch_embed.proj
    qkv_bias = True
    if len(model.blocks) > 0:
        qkv_bias = model.blocks[0].attn.qkv.bias is not None
    r = model.r
    if isinstance(r, tuple):  # the same ramp as a JSON-safe dict
        r = {"r": r[0], "inflect": r[1]}
    return {
        "input_tdim": model.input_tdim,
        "input_fdim": model.input_fdim,
        "fstride": int(proj.stride[0]),
        "tstride": int(proj.stride[1]),
        "patch_size": int(proj.kernel_size[0]),
        "embed_dim": model.embed_dim,
        "depth": model.depth,
        "num_heads": model.num_heads,
        "mlp_ratio": float(model.mlp_ratio),
        "qkv_bias": qkv_bias,
        "norm_eps": float(model.norm.eps),
        "r": r,
        "prop_attn": model.prop_attn,
    }


def save_ast(
    path: PathLike,
    ast: AST,
    head: Optional[ASTHead] = None,
    config: Optional[Mapping[str, Any]] = None,
) -> None:
    """Write our format, which :func:`load_ast` reads back.

    A ``.safetensors`` path stores the configs as JSON metadata; any other
    path gets ``torch.save({"format", "state_dict", "config",
    "head_config"})``.

    Arguments
    ---------
    path : str or Path
        Output file.
    ast : AST
        The lobe.
    head : ASTHead, optional
        Its classification head (stored under ``head.*``).
    config : mapping, optional
        :class:`AST` keyword arguments; :func:`ast_config` by default.

    Example
    -------
    >>> import tempfile, os
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "m.safetensors")
    >>> save_ast(path, AST(input_tdim=128, preset="tiny", depth=1, r=(4, -1)))
    >>> model, head = load_ast(path)
    >>> model.r, head is None
    ({'r': 4, 'inflect': -1}, True)
    >>> tmp.cleanup()
    """
    cfg = ast_config(ast) if config is None else dict(config)
    sd = {k: v.detach().cpu().contiguous() for k, v in ast.state_dict().items()}
    head_cfg = None
    if head is not None:
        for k, v in head.state_dict().items():
            sd[f"head.{k}"] = v.detach().cpu().contiguous()
        head_cfg = {
            "n_classes": int(head.linear.out_features),
            "norm_eps": float(head.norm.eps),
        }
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        meta = {
            "format": FORMAT_TAG,
            "config": json.dumps(cfg),
            "head_config": json.dumps(head_cfg),
        }
        save_file(sd, str(path), metadata=meta)
        return
    torch.save(
        {
            "format": FORMAT_TAG,
            "state_dict": sd,
            "config": cfg,
            "head_config": head_cfg,
        },
        path,
    )
