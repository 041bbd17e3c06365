"""Strict loading of a model folder: the Pretrainer hooks its YAML names.

SpeechBrain's default transfer hook loads a state dict with
``strict=False`` and logs a warning per missing or unexpected key, so a
wrong weights file leaves random weights behind a wall of warnings.
:func:`load_strict` instead fills every tensor or raises ``ValueError``
naming the file and the first keys; :func:`load_labels` checks the class
count of the label file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence, Union

import torch
from speechbrain.dataio.encoder import CategoricalEncoder

from fastast_sb.checkpoint import read_state_dict

PathLike = Union[str, Path]


def _first(keys: Sequence[str], n: int = 3) -> str:
    more = ", ..." if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def weight_mismatch(
    own: Dict[str, torch.Tensor], state: Dict[str, torch.Tensor]
) -> str:
    """What keeps ``state`` from filling a module whose state dict is
    ``own`` (missing, unexpected and reshaped keys); empty if nothing.

    Example
    -------
    >>> own = {"a": torch.zeros(2), "b": torch.zeros(3)}
    >>> weight_mismatch(own, {"a": torch.zeros(2), "b": torch.zeros(3)})
    ''
    >>> weight_mismatch(own, {"a": torch.zeros(4), "c": torch.zeros(1)})
    '1 missing (b); 1 unexpected (c); 1 of another shape (a: [4] for [2])'
    """
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [
        f"{k}: {list(state[k].shape)} for {list(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    parts = [
        f"{len(keys)} {what} ({_first(keys)})"
        for keys, what in (
            (missing, "missing"),
            (unexpected, "unexpected"),
            (shaped, "of another shape"),
        )
        if keys
    ]
    return "; ".join(parts)


def load_strict(module: torch.nn.Module, path: PathLike) -> None:
    """Pretrainer hook: fill every tensor of ``module`` from the state dict
    file ``path``, or raise ``ValueError`` naming the file and first keys.

    Example
    -------
    >>> import os, tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> f = os.path.join(tmp, "classifier.ckpt")
    >>> torch.save({"weight": torch.zeros(3, 2)}, f)
    >>> load_strict(torch.nn.Linear(2, 3), f)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: .../classifier.ckpt does not match the model: 1 missing ...
    """
    state = read_state_dict(path, "weights file")
    problem = weight_mismatch(module.state_dict(), state)
    if problem:
        raise ValueError(
            f"{path} does not match the model: {problem}; expected the "
            "weights written with this hyperparams.yaml"
        )
    module.load_state_dict(state, strict=True)


def load_labels(
    encoder: CategoricalEncoder, path: PathLike, n_classes: int
) -> None:
    """Pretrainer hook: read a label file, which must name ``n_classes``
    classes (``ValueError`` naming the file otherwise).

    Example
    -------
    >>> import os, tempfile
    >>> f = os.path.join(tempfile.mkdtemp(), "label_encoder.ckpt")
    >>> from fastast_sb.dataio import make_label_encoder
    >>> _ = make_label_encoder(["dog", "cat"], f)
    >>> load_labels(CategoricalEncoder(), f, 3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: .../label_encoder.ckpt names 2 classes; the model has 3 ...
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"label file {path} does not exist")
    encoder.load(str(path))
    if len(encoder) != n_classes:
        raise ValueError(
            f"{path} names {len(encoder)} classes; the model has "
            f"{n_classes} outputs (n_classes)"
        )
