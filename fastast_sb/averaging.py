"""Weight averaging over the last epochs of a run (AST's ``wa``).

:class:`EpochAverager` keeps a copy of the trained modules for each epoch of
the window ``(limit - n, limit]`` and averages them after training. Each
copy is written *before* the epoch's checkpoint, named by the epoch only, so
a run killed between the two rewrites the same file on resume: resumed and
uninterrupted runs average the same tensors. The average goes to
``<save>/averaged/<module>.ckpt``, which the test and ``python -m
fastast_sb.inference export`` load for ``test_checkpoint: average``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Union

import torch

from fastast_sb.checkpoint import read_checkpoint

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
StateDict = Dict[str, torch.Tensor]
AVERAGED = "averaged"


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper.

    Example
    -------
    >>> lin = torch.nn.Linear(1, 1)
    >>> unwrap(torch.nn.DataParallel(lin)) is lin
    True
    """
    wrappers = (
        torch.nn.parallel.DistributedDataParallel,
        torch.nn.DataParallel,
    )
    return module.module if isinstance(module, wrappers) else module


def average_state_dicts(
    states: Sequence[Mapping[str, torch.Tensor]],
) -> StateDict:
    """Element-wise mean (in float64, cast back) of state dicts with the same
    keys and shapes; integer buffers (counters) come from the last state.

    Example
    -------
    >>> a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    >>> b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(4)}
    >>> out = average_state_dicts([a, b])
    >>> out["w"].tolist(), out["n"].item()
    ([2.0, 4.0], 4)
    """
    if not states:
        raise ValueError("average_state_dicts needs at least one state dict")
    keys = list(states[-1])
    for i, state in enumerate(states):
        if list(state) != keys:
            raise ValueError(
                f"state dict {i} has keys {sorted(set(state) ^ set(keys))} "
                "that the others do not: cannot average different models"
            )
    out: StateDict = {}
    for key in keys:
        last = states[-1][key]
        if not torch.is_floating_point(last):
            out[key] = last.clone()
            continue
        total = torch.zeros_like(last, dtype=torch.float64)
        for state in states:
            if state[key].shape != last.shape:
                raise ValueError(
                    f"{key}: shape {tuple(state[key].shape)} differs from "
                    f"{tuple(last.shape)}: cannot average different models"
                )
            total += state[key].to(torch.float64)
        out[key] = (total / len(states)).to(last.dtype)
    return out


class EpochAverager:
    """Copies of the modules over the last ``n`` epochs, and their average.

    Arguments
    ---------
    folder : path
        Where the per-epoch copies go.
    last_n : int
        How many final epochs to average (``average_epochs``).
    limit : int
        The run's number of epochs.

    Example
    -------
    >>> import tempfile
    >>> avg = EpochAverager(tempfile.mkdtemp(), last_n=2, limit=3)
    >>> lin = torch.nn.ModuleDict({"lin": torch.nn.Linear(1, 1, bias=False)})
    >>> for epoch, w in enumerate([1.0, 2.0, 4.0], start=1):
    ...     _ = lin.lin.weight.data.fill_(w)
    ...     kept = avg.save(lin, epoch)
    >>> avg.epochs()
    [2, 3]
    >>> avg.average()["lin"]["weight"].item()
    3.0
    """

    def __init__(self, folder: PathLike, last_n: int, limit: int) -> None:
        if int(last_n) < 1:
            raise ValueError(
                f"average_epochs={last_n}: expected a number of final "
                "epochs >= 1"
            )
        self.folder = Path(folder)
        self.last_n = int(last_n)
        self.limit = int(limit)

    @property
    def first(self) -> int:
        """First epoch of the averaging window."""
        return max(1, self.limit - self.last_n + 1)

    def _path(self, epoch: int) -> Path:
        return self.folder / f"epoch_{epoch:04d}.pt"

    def save(self, modules: torch.nn.ModuleDict, epoch: int) -> bool:
        """Keep a copy of ``modules`` if ``epoch`` is in the window."""
        if not self.first <= int(epoch) <= self.limit:
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {}  # unwrapped: no "module." prefix from a DDP wrapper
        for name, module in modules.items():
            weights = unwrap(module).state_dict()
            if weights:
                state[name] = {k: v.detach().cpu() for k, v in weights.items()}
        tmp = self._path(epoch).with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self._path(epoch))  # never a half-written copy
        return True

    def epochs(self) -> List[int]:
        """Epochs of the window whose copies exist."""
        window = range(self.first, self.limit + 1)
        return [e for e in window if self._path(e).is_file()]

    def average(self) -> Dict[str, StateDict]:
        """Per-module average over the window's copies."""
        epochs = self.epochs()
        if not epochs:
            raise FileNotFoundError(
                f"no per-epoch copies for epochs {self.first}-{self.limit} in "
                f"{self.folder}: train the run to its end before averaging"
            )
        states = [read_checkpoint(self._path(e), "epoch copy") for e in epochs]
        logger.info("averaging the weights of epochs %s", epochs)
        return {
            name: average_state_dicts([s[name] for s in states])
            for name in states[-1]
        }


def save_average(
    average: Mapping[str, StateDict], save_folder: PathLike
) -> Path:
    """Write ``<save_folder>/averaged/<module>.ckpt``; return the folder."""
    folder = Path(save_folder) / AVERAGED
    folder.mkdir(parents=True, exist_ok=True)
    for name, state in average.items():
        torch.save(state, folder / f"{name}.ckpt")
    return folder
