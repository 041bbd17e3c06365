"""Package a finished recipe run as a model folder.

A run folder (``<output_root>/<variant>/fold<k>/seed<s>/``) holds the
composed ``hyperparams.yaml``, ``save/label_encoder.txt`` (older runs:
``label_encoder.txt``) and checkpoints under ``save/CKPT+*/``. The run's
YAML is read as text (nothing in it is built: no seeding, no teacher, no
logger); the front end, normalisation, AST and head are rebuilt from their
own arguments in it and given the checkpoint the recipe's test used.

    python -m fastast_sb.inference export RUN_DIR OUT_DIR [--r 8]
"""

from __future__ import annotations

import importlib
import io
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import ruamel.yaml
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.checkpoints import Checkpointer

from fastast_sb.averaging import AVERAGED
from fastast_sb.checkpoint import read_state_dict
from fastast_sb.features import GlobalNorm, KaldiFbank
from fastast_sb.inference.folder import HPARAMS_FILE, write_model_folder
from fastast_sb.models.ast import AST, ASTHead

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

#: Run-YAML key -> the class its ``!new:`` tag must name.
_OBJECTS = {
    "compute_features": KaldiFbank,
    "mean_var_norm": GlobalNorm,
    "embedding_model": AST,
    "classifier": ASTHead,
}


def _tag_of(cls: type) -> str:
    return f"!new:{cls.__module__}.{cls.__qualname__}"


def _names(tag: Optional[str], cls: type) -> bool:
    """Whether a ``!new:`` tag names ``cls`` (via any fastast_sb module)."""
    module, _, name = (tag or "").removeprefix("!new:").rpartition(".")
    if not module.startswith("fastast_sb."):
        return False
    try:
        return getattr(importlib.import_module(module), name, None) is cls
    except ImportError:
        return False


def _read_run_yaml(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: expected a recipe run folder holding the "
            "composed hyperparams.yaml (e.g. results/ESC50/tome/fold5/"
            "seed1234)"
        )
    with open(path, encoding="utf-8") as f:
        return ruamel.yaml.YAML(typ="rt").load(f)


def _object_args(doc: Any, key: str, path: Path) -> Dict[str, Any]:
    """Constructor arguments of ``doc[key]``, checked against its class."""
    if key not in doc:
        raise ValueError(f"{path} has no {key!r}; is this a recipe run?")
    node, cls = doc[key], _OBJECTS[key]
    tag = getattr(getattr(node, "tag", None), "value", None)
    if not _names(tag, cls):
        raise ValueError(
            f"{path}: {key} is {tag or type(node).__name__}, expected "
            f"{_tag_of(cls)} (only AST runs export to a model folder)"
        )
    # Re-read the resolved arguments (no !ref left) as plain values;
    # HyperPyYAML turns tags such as !tuple into Python objects.
    plain = ruamel.yaml.comments.CommentedMap(node.items())
    text = io.StringIO()
    ruamel.yaml.YAML(typ="rt").dump(plain, text)
    return dict(load_hyperpyyaml(text.getvalue()) or {})


def _classes(run_dir: Path) -> List[str]:
    path = run_dir / "save" / "label_encoder.txt"
    if not path.is_file() and (run_dir / "label_encoder.txt").is_file():
        path = run_dir / "label_encoder.txt"  # runs before save/ held it
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the run's label encoder (written by the "
            "recipe's data preparation) is needed for the class names"
        )
    encoder = CategoricalEncoder()
    encoder.load(str(path))
    n = len(encoder)
    if sorted(encoder.ind2lab) != list(range(n)):
        raise ValueError(
            f"{path} has indices {sorted(encoder.ind2lab)[:5]}...; expected "
            f"0..{n - 1}"
        )
    return [encoder.ind2lab[i] for i in range(n)]


def find_checkpoint(run_dir: PathLike, which: str = "last") -> Path:
    """The ``CKPT+...`` (or ``averaged``) folder of a recipe run.

    ``which``: ``"last"`` (highest epoch), ``"best"`` (validation accuracy),
    ``"average"`` (``save/averaged``) or a checkpoint folder.

    Example
    -------
    >>> import tempfile
    >>> find_checkpoint(tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: no checkpoints in .../save: ...
    """
    save = Path(run_dir) / "save"
    if which not in ("last", "best"):
        folder = save / AVERAGED if which == "average" else Path(which)
        if (folder / "embedding_model.ckpt").is_file():
            return folder
        if which == "average":
            raise FileNotFoundError(
                f"no averaged weights in {folder}: the run averages its last "
                "epochs (test_checkpoint: average) once training has ended; "
                "finish it, or pass checkpoint='last'"
            )
        raise FileNotFoundError(
            f"checkpoint {folder} has no embedding_model.ckpt; expected "
            "'last', 'best', 'average' or a save/CKPT+* folder"
        )
    if not save.is_dir() or not any(save.glob("CKPT+*")):
        raise FileNotFoundError(
            f"no checkpoints in {save}: train the run first (or pass a "
            "checkpoint folder)"
        )
    key = "epoch" if which == "last" else "acc"
    ckpt = Checkpointer(str(save)).find_checkpoint(max_key=key)
    if ckpt is None:
        raise FileNotFoundError(
            f"no end-of-epoch checkpoint with {key!r} in {save}"
        )
    return Path(ckpt.path)


def _load_state(module: torch.nn.Module, path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} not found")
    module.load_state_dict(read_state_dict(path), strict=True)


def export_run(
    run_dir: PathLike,
    out_dir: PathLike,
    checkpoint: Optional[str] = None,
    r: Any = None,
) -> Path:
    """Write a recipe run's model as a self-contained model folder.

    Arguments
    ---------
    run_dir, out_dir : str or Path
        Recipe run folder (holding ``hyperparams.yaml``); model folder to
        write (returned).
    checkpoint : str, optional
        As for :func:`find_checkpoint`; by default the one the recipe
        tested (its ``test_checkpoint``).
    r : optional
        Merge schedule stored as the default (the run's ``tome_r`` if None).

    Example
    -------
    >>> import tempfile
    >>> export_run(tempfile.mkdtemp(), "unused")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: .../hyperparams.yaml not found: ...
    """
    run_dir = Path(run_dir)
    path = run_dir / HPARAMS_FILE
    doc = _read_run_yaml(path)
    features, norm, model, head = (
        cls(**_object_args(doc, key, path)) for key, cls in _OBJECTS.items()
    )
    if checkpoint is None:
        checkpoint = str(doc.get("test_checkpoint", "last"))
    ckpt = find_checkpoint(run_dir, checkpoint)
    _load_state(model, ckpt / "embedding_model.ckpt")
    _load_state(head, ckpt / "classifier.ckpt")
    if r is not None:
        model.r = r
    logger.info("exporting %s (checkpoint %s)", run_dir, ckpt.name)
    return write_model_folder(
        out_dir,
        model.eval(),
        head.eval(),
        _classes(run_dir),
        features,
        norm,
        multilabel=bool(doc.get("multilabel", False)),
        description=f"exported from run {run_dir.resolve()} ({ckpt.name})",
    )
