"""Accuracy or mAP of a trained model for each merge schedule.

The columns of FastAST's Table 1: the same trained weights evaluated with
token merging at inference only, for every r of the sweep, and (from a
second checkpoint) a model trained with merging. A checkpoint is a model
folder (:mod:`fastast_sb.inference.folder`) or a recipe run folder, which
is exported to a temporary model folder first; either way the features go
through the model's own ``compute_features`` and ``mean_var_norm`` (one
frontend for training and inference). The evaluation set is a recipe
manifest (CSV with ``ID``, ``duration``, ``wav``, ``label``).

Reference: S. R. Behera et al., "FastAST: Accelerating Audio Spectrogram
Transformer via Token Merging and Cross-Model Knowledge Distillation",
Interspeech 2024.
"""

from __future__ import annotations

import csv
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple, Union

import torch

from fastast_sb.audio import load_audio
from fastast_sb.dataio import targets_from_labels
from fastast_sb.metrics import accuracy, tagging_metrics
from fastast_sb.tome.schedule import RSpec

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]


@dataclass
class EvalSet:
    """Normalised features and targets of a manifest, computed once.

    Attributes
    ----------
    feats : torch.Tensor
        [M, T, F] model input (on the CPU).
    targets : torch.Tensor
        [M, C] one-hot or multi-hot targets.
    """

    feats: torch.Tensor
    targets: torch.Tensor


def is_run_folder(path: PathLike) -> bool:
    """A recipe run folder (``hyperparams.yaml`` and ``save/``).

    Example
    -------
    >>> import tempfile
    >>> is_run_folder(tempfile.mkdtemp())
    False
    """
    path = Path(path)
    return (path / "hyperparams.yaml").is_file() and (path / "save").is_dir()


def load_classifier(path: PathLike, device: str = "cpu"):
    """An :class:`~fastast_sb.inference.tagger.AudioTagger` from a folder.

    Arguments
    ---------
    path : str or Path
        A model folder, or a recipe run folder (exported first).
    device : str
        Where the modules live.

    Returns
    -------
    AudioTagger
        With ``mods.embedding_model`` (the AST) and ``mods.classifier``.

    Example
    -------
    >>> import tempfile
    >>> load_classifier(tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: ... is neither a model folder ...
    """
    from speechbrain.utils.fetching import FetchConfig

    from fastast_sb.inference.export import export_run
    from fastast_sb.inference.tagger import AudioTagger

    path = Path(path)

    def load(folder: Path) -> AudioTagger:
        return AudioTagger.from_hparams(
            source=str(folder),
            savedir=None,
            run_opts={"device": device},
            fetch_config=FetchConfig(allow_network=False),
        )

    if is_run_folder(path):
        with tempfile.TemporaryDirectory() as tmp:
            folder = export_run(path, Path(tmp) / "model")
            return load(folder)
    if (path / "hyperparams.yaml").is_file() and (
        path / "embedding_model.ckpt"
    ).is_file():
        return load(path)
    raise FileNotFoundError(
        f"{path} is neither a model folder (hyperparams.yaml + "
        "embedding_model.ckpt) nor a recipe run folder (hyperparams.yaml + "
        "save/)"
    )


def default_manifest(path: PathLike) -> Optional[Path]:
    """A run folder's ``test.csv``, if any.

    Example
    -------
    >>> import tempfile
    >>> default_manifest(tempfile.mkdtemp()) is None
    True
    """
    candidate = Path(path) / "test.csv"
    return candidate if candidate.is_file() else None


def load_eval_set(tagger, manifest: PathLike) -> EvalSet:
    """Features and targets of every clip of a manifest.

    Arguments
    ---------
    tagger : AudioTagger
        Provides the frontend, the label encoder and ``multilabel``.
    manifest : str or Path
        CSV with ``wav`` and ``label`` columns (``;``-joined labels for
        multi-label data).

    Returns
    -------
    EvalSet

    Example
    -------
    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "m.csv")
    >>> _ = open(f, "w").write("ID,duration,wav,label\\n")
    >>> load_eval_set(None, f)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: manifest ... has no rows...
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest {manifest} not found")
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"manifest {manifest} has no rows; expected clips")
    missing = {"wav", "label"} - set(rows[0])
    if missing:
        raise ValueError(
            f"manifest {manifest} lacks columns {sorted(missing)}; expected "
            "ID, duration, wav, label"
        )
    encoder = tagger.hparams.label_encoder
    frontend = tagger.mods.compute_features
    norm = tagger.mods.mean_var_norm
    feats: List[torch.Tensor] = []
    targets: List[torch.Tensor] = []
    with torch.no_grad():
        for row in rows:
            wav = load_audio(row["wav"], tagger.sample_rate)[None]  # [1, S]
            feats.append(norm(frontend(wav))[0].cpu())  # [T, F]
            targets.append(
                targets_from_labels(row["label"], encoder, tagger.multilabel)
            )
    logger.info("%d clips from %s", len(rows), manifest)
    return EvalSet(torch.stack(feats), torch.stack(targets))


def evaluate(
    tagger,
    data: EvalSet,
    r: RSpec,
    batch_size: int = 8,
    dtype: Optional[torch.dtype] = None,
) -> Tuple[str, float]:
    """Accuracy (single-label) or mAP (multi-label) at merge schedule r.

    Arguments
    ---------
    tagger : AudioTagger
        The model.
    data : EvalSet
        From :func:`load_eval_set`.
    r : schedule
        Merge schedule (inference-only merging).
    batch_size : int
        Clips per forward pass.
    dtype : torch.dtype, optional
        Autocast dtype.

    Returns
    -------
    (str, float)
        ``("acc", value)`` or ``("mAP", value)``.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> from fastast_sb.models.ast import AST, ASTHead
    >>> mods = SimpleNamespace(embedding_model=AST(128, preset="tiny", depth=1),
    ...                        classifier=ASTHead(192, 2))
    >>> tagger = SimpleNamespace(mods=mods, multilabel=False)
    >>> data = EvalSet(torch.randn(3, 128, 128), torch.eye(2)[[0, 1, 1]])
    >>> name, value = evaluate(tagger, data, r=8)
    >>> name, 0.0 <= value <= 1.0
    ('acc', True)
    """
    model = tagger.mods.embedding_model.eval()
    head = tagger.mods.classifier.eval()
    device = next(model.parameters()).device
    logits: List[torch.Tensor] = []
    with (
        torch.inference_mode(),
        torch.autocast(device.type, dtype=dtype, enabled=dtype is not None),
    ):
        for start in range(0, data.feats.shape[0], batch_size):
            x = data.feats[start : start + batch_size].to(device)
            logits.append(head(model(x, r=r)).squeeze(1).float().cpu())
    scores = torch.cat(logits)
    if tagger.multilabel:
        return "mAP", tagging_metrics(scores, data.targets)["mAP"]
    return "acc", accuracy(scores, data.targets)
