"""Accuracy or mAP of a trained model for each merge schedule.

FastAST's Table 1 columns: the same weights with merging at inference only,
and (a second checkpoint) a model trained with merging. A checkpoint is a
model folder (:mod:`fastast_sb.inference.folder`) or a recipe run folder
(exported to a temporary model folder first); features go through the
model's own front end. The evaluation set is a recipe manifest (CSV with
``ID``, ``duration``, ``wav``, ``label``).

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
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from fastast_sb.audio import load_audio
from fastast_sb.dataio import targets_from_labels
from fastast_sb.metrics import accuracy, tagging_metrics
from fastast_sb.timing import autocast_for

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]


@dataclass
class EvalSet:
    """A manifest's features [M, T, F] (CPU) and targets [M, C], once."""

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
    """An :class:`~fastast_sb.inference.tagger.AudioTagger` on ``device``
    from a model folder or a recipe run folder (exported first).

    Example
    -------
    >>> import tempfile
    >>> load_classifier(tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: ... is neither a model folder ...
    """
    from fastast_sb.inference.export import export_run
    from fastast_sb.inference.tagger import AudioTagger

    path = Path(path)
    if is_run_folder(path):
        with tempfile.TemporaryDirectory() as tmp:
            folder = export_run(path, Path(tmp) / "model")
            return AudioTagger.from_folder(folder, device)
    if (path / "hyperparams.yaml").is_file() and (
        path / "embedding_model.ckpt"
    ).is_file():
        return AudioTagger.from_folder(path, device)
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
    """Features and targets of every clip of a manifest (``wav`` and
    ``label`` columns, ``;``-joined labels for multi-label data), with the
    front end, label encoder and ``multilabel`` of ``tagger``.

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
    encoder, mods = tagger.hparams.label_encoder, tagger.mods
    feats: List[torch.Tensor] = []
    targets: List[torch.Tensor] = []
    with torch.no_grad():
        for row in rows:
            wav = load_audio(row["wav"], tagger.sample_rate)[None]  # [1, S]
            fbank = mods.mean_var_norm(mods.compute_features(wav))
            feats.append(fbank[0].cpu())  # [T, F]
            targets.append(
                targets_from_labels(row["label"], encoder, tagger.multilabel)
            )
    logger.info("%d clips from %s", len(rows), manifest)
    return EvalSet(torch.stack(feats), torch.stack(targets))


def evaluate(
    tagger,
    data: EvalSet,
    r: Any,
    batch_size: int = 8,
    dtype: Optional[torch.dtype] = None,
) -> Tuple[str, float]:
    """``("acc", value)`` (single-label) or ``("mAP", value)`` at ``r``,
    ``batch_size`` clips per forward pass, autocast to ``dtype``.

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
    with torch.inference_mode(), autocast_for(device, dtype):
        for start in range(0, data.feats.shape[0], batch_size):
            x = data.feats[start : start + batch_size].to(device)
            logits.append(head(model(x, r=r)).squeeze(1).float().cpu())
    scores = torch.cat(logits)
    if tagger.multilabel:
        return "mAP", tagging_metrics(scores, data.targets)["mAP"]
    return "acc", accuracy(scores, data.targets)


def add_metrics(
    rows: List[Dict[str, Any]],
    specs: Sequence[Any],
    tagger: Any,
    manifest: PathLike,
    train_inf: Optional[Any] = None,
    batch_size: int = 16,
    dtype: Optional[torch.dtype] = None,
) -> str:
    """Write ``metric_inf`` (``tagger``, merging at inference only) and
    ``metric_train_inf`` (``train_inf``, trained with merging) on
    ``manifest`` at each of ``specs`` into rows; returns the metric name.

    Example
    -------
    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "m.csv")
    >>> _ = open(f, "w").write("ID,duration,wav,label\\n")
    >>> add_metrics([{}], [0], None, f)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: manifest ... has no rows...
    """
    taggers = {"metric_inf": tagger}
    if train_inf is not None:
        a, b = tagger.mods.embedding_model, train_inf.mods.embedding_model
        keys = ("input_tdim", "embed_dim", "depth", "num_heads", "num_tokens")
        diff = [
            f"{k} ({getattr(b, k)} vs {getattr(a, k)})"
            for k in keys
            if getattr(a, k) != getattr(b, k)
        ]
        if diff:
            raise ValueError(
                "the Train+Inf model (--train-inf-checkpoint) differs from "
                f"the Inf model (--checkpoint) in {', '.join(diff)}; "
                "expected the same architecture"
            )
        taggers["metric_train_inf"] = train_inf
    data = load_eval_set(tagger, manifest)
    names = {}
    for key, clf in taggers.items():
        for spec, row in zip(specs, rows):
            names[key], row[key] = evaluate(clf, data, spec, batch_size, dtype)
    return names["metric_inf"]
