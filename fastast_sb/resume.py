"""May a run folder be resumed with these settings?

A run's settings (:func:`fastast_sb.config.run_settings`: what changes the
training) are kept with its checkpoints as ``save/fingerprint.json``. A
rerun into the same folder must have the same ones, or say that it
continues with changed ones. This is checked before anything is written:
a start refused for its settings leaves the folder as it was.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from fastast_sb.config import changed_settings, fingerprint
from fastast_sb.dataio import DataError

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

#: In the save folder: the settings its checkpoints were trained with.
FINGERPRINT_FILE = "fingerprint.json"


class RunError(DataError):
    """A run that cannot start as asked (its settings or its output
    folder), with the reason and the fix; one line on the command line."""


def check_resume(
    save_folder: PathLike,
    settings: Dict[str, str],
    continue_changed: bool = False,
) -> List[str]:
    """The keys of ``settings`` (:func:`~fastast_sb.config.run_settings`)
    that differ from those the checkpoints in ``save_folder`` were trained
    with; [] where there are no checkpoints. Any difference is a
    :class:`RunError` naming the keys and both ways on, unless
    ``continue_changed``.

    The fingerprint covers what changes the training: model, optimisation
    (``grad_accumulation_factor`` too), data selection, seed, test
    checkpoint and averaging, ``--debug``. Not where files live
    (data and output folders), how the run executes (device, precision,
    workers, DDP backend) or the test sweep (``r_sweep``, benchmark sizes):
    :data:`fastast_sb.config.NOT_TRAINED`.

    Example
    -------
    >>> import tempfile
    >>> check_resume(tempfile.mkdtemp(), {"lr": "0.0001"})  # no checkpoint
    []
    """
    save = Path(save_folder)
    path = save / FINGERPRINT_FILE
    if not any(save.glob("CKPT+*")):
        return []
    if not path.is_file():
        logger.warning(
            "%s holds checkpoints but no %s (made before runs were "
            "fingerprinted): resumed without checking its settings",
            save,
            FINGERPRINT_FILE,
        )
        return []
    record = json.loads(path.read_text(encoding="utf-8"))["settings"]
    stored = {k: json.dumps(v, sort_keys=True) for k, v in record.items()}
    changed = changed_settings(stored, settings)
    if not changed:
        return []
    what = ", ".join(
        _change(k, stored.get(k), settings.get(k)) for k in changed
    )
    if not continue_changed:
        raise RunError(
            f"the checkpoints in {save} were trained with other settings "
            f"({what}): start a new run in another output folder "
            "(--output_folder=PATH), or continue this one with the changed "
            "settings (--continue_changed=True)"
        )
    logger.warning("continuing %s with changed settings: %s", save, what)
    return changed


def _change(key: str, old: Optional[str], new: Optional[str]) -> str:
    if old is None or new is None:
        return f"{key} ({'added' if old is None else 'removed'})"
    if len(old) + len(new) > 40:
        return key
    return f"{key}: {old} -> {new}"


def check_checkpoint_fits(checkpointer: Any, changed: Sequence[str]) -> None:
    """Load the latest checkpoint into the (changed) model now, so that a
    checkpoint that does not fit stops the run before anything is written
    (a :class:`RunError`).

    Example
    -------
    >>> import tempfile, torch
    >>> from speechbrain.utils.checkpoints import Checkpointer
    >>> d = tempfile.mkdtemp()
    >>> _ = Checkpointer(d, {"net": torch.nn.Linear(2, 2)}).save_checkpoint()
    >>> same = Checkpointer(d, {"net": torch.nn.Linear(2, 2)})
    >>> check_checkpoint_fits(same, [])
    >>> check_checkpoint_fits(
    ...     Checkpointer(d, {"net": torch.nn.Linear(3, 2)}), ["depth"]
    ... )  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fastast_sb.resume.RunError: the checkpoint in ... does not fit the \
changed settings (depth): Error(s) in loading state_dict for Linear: ...
    """
    try:
        checkpointer.recover_if_possible()
    except (KeyError, RuntimeError, ValueError) as err:
        reason = " ".join(str(err).split())[:200]
        raise RunError(
            f"the checkpoint in {checkpointer.checkpoints_dir} does not fit "
            f"the changed settings ({', '.join(changed)}): {reason}"
        ) from None


def write_fingerprint(save_folder: PathLike, settings: Dict[str, str]) -> Path:
    """Write ``fingerprint.json`` (the settings and their SHA-256) into
    ``save_folder`` at once (a complete file or the previous one).

    Example
    -------
    >>> import tempfile
    >>> path = write_fingerprint(tempfile.mkdtemp(), {"lr": "0.0001"})
    >>> json.loads(path.read_text())["settings"]
    {'lr': 0.0001}
    """
    path = Path(save_folder) / FINGERPRINT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    values = {key: json.loads(text) for key, text in settings.items()}
    record = {"sha256": fingerprint(settings), "settings": values}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True), "utf-8")
    os.replace(tmp, path)
    return path


def unknown_setting(err: KeyError, where: str) -> Optional[RunError]:
    """hyperpyyaml's ``Override 'x' not found in: [...]`` as one line
    naming ``--x`` and close matches; None for any other ``KeyError``.

    Example
    -------
    >>> unknown_setting(KeyError("Override 'lrr' not found in: ['lr']"), "a")
    RunError('--lrr is not a setting of a; did you mean lr?')
    """
    found = re.match(
        r"Override '([^']+)' not found in: \[(.*)\]", str(err.args[0])
    )
    if not found:
        return None
    close = difflib.get_close_matches(
        found[1], re.findall(r"'([^']+)'", found[2]), n=3
    )
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return RunError(f"--{found[1]} is not a setting of {where}{hint}")


def drop_stateless_recoverables(checkpointer: Any) -> List[str]:
    """Remove the modules without parameters or buffers (a class map, an
    identity head) from ``checkpointer``'s recoverables, so SpeechBrain does
    not log "Saving an empty state_dict" for them at every save; their
    names, in order. Nothing of theirs is lost: they have no state.

    Example
    -------
    >>> from speechbrain.utils.checkpoints import Checkpointer
    >>> import tempfile, torch
    >>> tmp = tempfile.TemporaryDirectory()
    >>> ckpt = Checkpointer(tmp.name, recoverables={
    ...     "model": torch.nn.Linear(1, 1), "classifier": torch.nn.Identity()})
    >>> drop_stateless_recoverables(ckpt), list(ckpt.recoverables)
    (['classifier'], ['model'])
    >>> tmp.cleanup()
    """
    dropped = [
        name
        for name, obj in checkpointer.recoverables.items()
        if isinstance(obj, torch.nn.Module) and not obj.state_dict()
    ]
    for name in dropped:
        del checkpointer.recoverables[name]
    return dropped
