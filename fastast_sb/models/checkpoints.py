"""Reading and writing AST checkpoint files and folders.

Reads torch and ``.safetensors`` files, Hugging Face folders (``config.json``
+ weights) and SpeechBrain checkpoint folders (lobe and head among
``*.ckpt``), in any layout of :mod:`fastast_sb.models.convert`, as AST
arguments and weights (:func:`read_pretrained`, built by
:func:`fastast_sb.models.ast.load_ast`); :func:`save_ast` writes our format.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

import torch
from torch import nn

from fastast_sb.checkpoint import read_checkpoint
from fastast_sb.models.convert import detect_format, few, infer_config, to_ours
from fastast_sb.models.layers import patch_grid
from fastast_sb.models.pos_embed import resample_pos_embed

logger = logging.getLogger(__name__)

StateDict = Dict[str, torch.Tensor]
Read = Tuple[Dict[str, Any], Dict[str, Any]]  # (flat state dict, metadata)

#: Marker stored in files written by :func:`save_ast`.
FORMAT_TAG = "fastast_sb"
#: File suffixes read with ``torch.load(weights_only=True)``.
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
_HEAD_KEYS = {"norm.weight", "norm.bias", "linear.weight", "linear.bias"}
_META = ("config", "head_config")
_GRID = {"input_fdim": 128, "fstride": 10, "tstride": 10, "patch_size": 16}


class Pretrained(NamedTuple):
    """What :func:`read_pretrained` found in a checkpoint."""

    fmt: str  #: "fastast_sb", "hf" or "original"
    config: Dict[str, Any]  #: AST keyword arguments
    state: StateDict  #: lobe weights, ``pos_embed`` fitted to ``config``
    head_config: Optional[Dict[str, Any]]  #: ASTHead arguments but width
    head_state: Optional[StateDict]  #: head weights (``norm.*``, ``linear.*``)


def _read_file(path: Path) -> Read:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            tags = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
        if tags.get("format") != FORMAT_TAG:
            return sd, {}
        return sd, {k: json.loads(tags.get(k, "null")) for k in _META}
    if suffix not in TORCH_SUFFIXES:
        raise ValueError(
            f"unsupported checkpoint file {path}: expected a suffix in "
            f"{TORCH_SUFFIXES + ('.safetensors',)}, or a folder"
        )
    obj = read_checkpoint(path, "AST checkpoint")
    if not isinstance(obj, dict):
        raise ValueError(
            f"{path} holds a {type(obj).__name__}, expected a state dict"
        )
    ours = obj.get("format") == FORMAT_TAG
    meta = {k: obj.get(k) for k in _META} if ours else {}
    wrappers = ("state_dict", "model")
    wrapped = (obj[w] for w in wrappers if isinstance(obj.get(w), dict))
    return next(wrapped, obj), meta


def _is_lobe(obj: Dict[str, Any]) -> bool:
    """An AST state dict in any layout (it has a positional embedding)."""
    try:
        detect_format(obj)
    except ValueError:
        return False
    return any(
        k.endswith("pos_embed") or "position_embeddings" in k for k in obj
    )


def _read_sb_folder(folder: Path) -> Read:
    """SpeechBrain checkpoint folder: the lobe (and head) among ``*.ckpt``."""
    lobes: Dict[str, Dict[str, Any]] = {}
    heads: Dict[str, Dict[str, Any]] = {}
    skipped: List[str] = []
    for file in sorted(folder.glob("*.ckpt")):
        try:
            obj = read_checkpoint(file)
        except ValueError as err:  # brain.ckpt, counters, pickled extras
            logger.debug("skipping %s: %s", file, err)
            skipped.append(file.name)
            continue
        if isinstance(obj, dict) and set(map(str, obj)) == _HEAD_KEYS:
            heads[file.name] = obj
        elif isinstance(obj, dict) and obj and _is_lobe(obj):
            lobes[file.name] = obj
    if len(lobes) != 1:
        unread = f" (unreadable: {', '.join(skipped)})" if skipped else ""
        raise ValueError(
            f"expected one AST state dict among the *.ckpt files of "
            f"{folder}, found {', '.join(lobes) or 'none'}{unread}"
        )
    if len(heads) > 1:
        raise ValueError(
            f"several classification heads in {folder}: {', '.join(heads)}"
        )
    sd = dict(*lobes.values())
    for head in heads.values():
        sd.update({f"head.{k}": v for k, v in head.items()})
    return sd, {}


def _read(path: Path) -> Read:
    if path.is_dir() and (path / "config.json").is_file():  # Hugging Face
        names = ("model.safetensors", "pytorch_model.bin")
        found = [path / n for n in names if (path / n).is_file()]
        if not found:
            raise ValueError(
                f"Hugging Face folder {path} has config.json but neither "
                "model.safetensors nor pytorch_model.bin"
            )
        sd, meta = _read_file(found[0])
        meta["hf_config"] = json.loads((path / "config.json").read_text())
        return sd, meta
    if path.is_dir():
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


def _stored_grid(pos: torch.Tensor, cfg: Mapping[str, Any]) -> Tuple[int, int]:
    """(f_dim, t_dim) of a checkpoint's positional embedding."""
    f_dim = patch_grid(cfg["input_fdim"], cfg["patch_size"], cfg["fstride"])
    patches = pos.shape[1] - 2
    if patches < 1 or patches % f_dim != 0:
        raise ValueError(
            f"pos_embed has {patches} patch rows, not a multiple of the "
            f"f_dim={f_dim} frequency rows implied by input_fdim="
            f"{cfg['input_fdim']}, patch_size={cfg['patch_size']}, "
            f"fstride={cfg['fstride']}; pass the checkpoint's input_fdim and "
            "fstride"
        )
    return f_dim, patches // f_dim


def read_pretrained(
    path: Union[str, Path], input_tdim: Optional[int] = None, **overrides: Any
) -> Pretrained:
    """Read any supported checkpoint as AST arguments and our weights.

    The layout is detected from the keys, the architecture from the tensors
    and the stored config (ours, HF ``config.json``), else heads = width //
    64, eps 1e-6, strides 10 and the frame count from the positional
    embedding (a multiple of 16 if any, as AST's 128, 512 and 1024), which
    is resampled to ``input_tdim`` by the AST rule.

    Arguments
    ---------
    path : str or Path
        A ``.pt/.pth/.bin/.ckpt`` or ``.safetensors`` file, a Hugging Face
        folder or a SpeechBrain checkpoint folder.
    input_tdim : int, optional
        Frames per input of the new model; the checkpoint's by default.
    **overrides
        Further :class:`~fastast_sb.models.ast.AST` arguments.

    Example
    -------
    >>> import tempfile, os
    >>> from fastast_sb.models.ast import AST
    >>> path = os.path.join(tempfile.mkdtemp(), "m.pt")
    >>> save_ast(path, AST(input_tdim=128, preset="tiny", depth=1))
    >>> ckpt = read_pretrained(path, input_tdim=256)
    >>> ckpt.config["input_tdim"], tuple(ckpt.state["pos_embed"].shape)
    (256, (1, 302, 192))
    """
    raw, meta = _read(Path(path))
    sd, fmt = to_ours(raw)
    if meta.get("config") is not None:
        cfg = {**_GRID, **meta["config"]}
    else:
        hf_config = meta.get("hf_config") if fmt == "hf" else None
        cfg = {**_GRID, **infer_config(sd, fmt, hf_config, overrides)}
    if "pos_embed" not in sd:
        raise ValueError(f"{fmt} checkpoint {path} lacks 'pos_embed'")
    old_grid = _stored_grid(sd["pos_embed"], cfg)
    if "input_tdim" not in cfg:
        low = (old_grid[1] - 1) * cfg["tstride"] + cfg["patch_size"]
        frames = range(low, low + cfg["tstride"])
        cfg["input_tdim"] = next((t for t in frames if t % 16 == 0), low)
    stored_tdim = cfg["input_tdim"]
    cfg.update(overrides)
    if input_tdim is not None:
        cfg["input_tdim"] = input_tdim
    p = cfg["patch_size"]
    new_grid = (
        patch_grid(cfg["input_fdim"], p, cfg["fstride"]),
        patch_grid(cfg["input_tdim"], p, cfg["tstride"]),
    )
    body = {k: v for k, v in sd.items() if not k.startswith("head.")}
    if old_grid != new_grid:
        logger.info(
            "resampling pos_embed from grid %s (%d frames) to %s (%d frames)",
            old_grid,
            stored_tdim,
            new_grid,
            cfg["input_tdim"],
        )
        body["pos_embed"] = resample_pos_embed(
            sd["pos_embed"], old_grid, new_grid
        )
    head_sd = {k[5:]: v for k, v in sd.items() if k.startswith("head.")}
    if not head_sd:
        return Pretrained(fmt, cfg, body, None, None)
    if "linear.weight" not in head_sd:
        raise ValueError(
            f"head of {path} lacks head.linear.weight; has "
            f"{few(sorted(head_sd))}"
        )
    head_cfg = dict(meta.get("head_config") or {})
    head_cfg.setdefault("n_classes", int(head_sd["linear.weight"].shape[0]))
    return Pretrained(fmt, cfg, body, head_cfg, head_sd)


def load_checked(
    module: nn.Module, sd: Mapping[str, torch.Tensor], what: str
) -> nn.Module:
    """Load ``sd`` strictly into ``module`` (returned); errors name missing,
    unexpected and mis-shaped parameters.

    Example
    -------
    >>> load_checked(nn.Linear(2, 1), {"weight": torch.ones(1, 3)}, "toy")
    Traceback (most recent call last):
    ...
    ValueError: toy checkpoint does not fit the model: missing 'bias'; ...
    """
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise ValueError(
            f"{what} checkpoint does not fit the model: missing "
            f"{few(missing) or 'none'}; unexpected "
            f"{few(unexpected) or 'none'}"
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
    module.load_state_dict(sd, strict=True)
    return module


def ast_config(model: nn.Module) -> Dict[str, Any]:
    """AST keyword arguments (dropouts excluded) that rebuild ``model``.

    Example
    -------
    >>> from fastast_sb.models.ast import AST
    >>> ast_config(AST(input_tdim=128, preset="tiny", depth=1))["num_heads"]
    3
    """
    proj = model.patch_embed.proj
    blocks = list(model.blocks)
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
        "qkv_bias": not blocks or blocks[0].attn.qkv.bias is not None,
        "norm_eps": float(model.norm.eps),
        "r": str(model.r),  # the schedule's text form
        "prop_attn": model.prop_attn,
    }


def save_ast(
    path: Union[str, Path],
    ast: nn.Module,
    head: Optional[nn.Module] = None,
    config: Optional[Mapping[str, Any]] = None,
) -> None:
    """Write an AST (and its head) in our format, read by ``load_ast``.

    ``.safetensors`` keeps the configs as JSON metadata, other paths get
    ``torch.save({"format", "state_dict", "config", "head_config"})``; the
    head goes under ``head.*``, ``config`` defaults to :func:`ast_config`'s.

    Example
    -------
    >>> import tempfile, os
    >>> from fastast_sb.models.ast import AST, load_ast
    >>> path = os.path.join(tempfile.mkdtemp(), "m.safetensors")
    >>> ast = AST(input_tdim=128, preset="tiny", depth=1, r="ramp:4:-1")
    >>> save_ast(path, ast)
    >>> model, head = load_ast(path)
    >>> str(model.r), head is None
    ('ramp:4:-1', True)
    """
    modules = {"": ast, "head.": head} if head is not None else {"": ast}
    sd = {
        prefix + k: v.detach().cpu().contiguous()
        for prefix, module in modules.items()
        for k, v in module.state_dict().items()
    }
    info: Dict[str, Any] = {"head_config": None}
    info["config"] = ast_config(ast) if config is None else dict(config)
    if head is not None:
        n_classes, eps = int(head.linear.out_features), float(head.norm.eps)
        info["head_config"] = {"n_classes": n_classes, "norm_eps": eps}
    if Path(path).suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        meta = {k: json.dumps(v) for k, v in info.items()}
        save_file(sd, str(path), metadata={"format": FORMAT_TAG, **meta})
    else:
        torch.save({"format": FORMAT_TAG, "state_dict": sd, **info}, path)
