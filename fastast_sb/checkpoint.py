"""The one safe way to read a torch checkpoint file.

Every load site reads through :func:`read_checkpoint`:
``torch.load(weights_only=True)`` on the CPU, so pickled Python objects are
refused and never run. Errors name the file and what it holds; they never
suggest turning ``weights_only`` off.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Union

import torch

PathLike = Union[str, Path]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: the user's to fix (recipes
    print it as one line)."""


class MissingCheckpoint(CheckpointError, FileNotFoundError):
    """A checkpoint path that does not exist."""


_CONVERT_HINT = (
    "if you trust the file, re-save only its tensors in your own Python: "
    "torch.save(obj['state_dict'], 'weights.pt')"
)


def read_checkpoint(path: PathLike, what: str = "checkpoint") -> Any:
    """Tensors in plain containers (dicts, lists, numbers, strings) read
    from ``path`` with ``weights_only=True`` on the CPU; errors call the file
    ``what`` ("teacher checkpoint", ...).

    Example
    -------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     f = os.path.join(tmp, "w.pt")
    ...     torch.save({"w": torch.ones(2)}, f)
    ...     read_checkpoint(f)["w"].tolist()
    [1.0, 1.0]
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{what} {path} is a folder; expected a file")
    if not path.is_file():
        raise MissingCheckpoint(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        named = f" ({found[1]})" if found else ""
        if found or "unsupported global" in str(err).lower():
            raise CheckpointError(
                f"{what} {path} holds pickled Python objects{named}, which "
                f"fastast_sb never executes; {_CONVERT_HINT}"
            ) from None
        raise CheckpointError(
            f"cannot read {what} {path}: not a torch file of tensors "
            "(unknown format or pickled code)"
        ) from None
    except Exception as err:  # corrupt, truncated or not a torch file
        raise CheckpointError(
            f"cannot read {what} {path} as a torch file "
            f"({type(err).__name__}: {err})"
        ) from None


def read_state_dict(
    path: PathLike, what: str = "checkpoint"
) -> Dict[str, torch.Tensor]:
    """Read a state dict file (a ``state_dict`` or ``model`` key unwrapped).

    Example
    -------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     f = os.path.join(tmp, "w.pt")
    ...     torch.save({"state_dict": torch.nn.Linear(2, 3).state_dict()}, f)
    ...     sorted(read_state_dict(f))
    ['bias', 'weight']
    """
    state = read_checkpoint(path, what)
    if isinstance(state, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(state.get(wrapper), Mapping):
                state = state[wrapper]
                break
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise CheckpointError(
            f"{what} {path} does not hold a state dict (a mapping of names "
            f"to tensors); it holds a {type(state).__name__}"
        )
    return {str(k): v for k, v in state.items()}


def strip_prefix(
    state: Mapping[str, Any],
    prefixes: Sequence[str] = ("module.",),
    keep: Optional[Iterable[str]] = None,
) -> Dict[str, Any]:
    """Remove each wrapper prefix (``module.`` from DataParallel, ``net.``,
    ...) that every key of ``state`` shares, in the given order, unless the
    target model's keys ``keep`` carry it themselves.

    Example
    -------
    >>> strip_prefix({"module.a": 1, "module.b": 2})
    {'a': 1, 'b': 2}
    >>> strip_prefix({"net.a": 1}, ("module.", "net."), keep=["net.a"])
    {'net.a': 1}
    """
    out = dict(state)
    kept = list(keep or [])
    for prefix in prefixes:
        if (
            out
            and all(k.startswith(prefix) for k in out)
            and not any(k.startswith(prefix) for k in kept)
        ):
            out = {k[len(prefix) :]: v for k, v in out.items()}
    return out


__all__ = [
    "CheckpointError",
    "MissingCheckpoint",
    "read_checkpoint",
    "read_state_dict",
    "strip_prefix",
]
