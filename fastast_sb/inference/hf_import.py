"""Turn a published AST checkpoint into a model folder (then run it with ToMe).

Sources (read by :func:`fastast_sb.models.ast.load_ast`):

- a Hugging Face folder written by ``save_pretrained`` (``config.json`` +
  weights), e.g. ``MIT/ast-finetuned-audioset-10-10-0.4593``: class names
  from ``config.json``'s ``id2label``, the normalisation from
  ``preprocessor_config.json`` if saved;
- an original AST checkpoint (``audioset_10_10_0.4593.pth``, ...): pass
  ``labels`` (AudioSet's ``class_labels_indices.csv`` or one name a line).

Normalisation otherwise defaults to AudioSet's (that of every published AST
feature extractor); pass ``norm`` for others.

    python -m fastast_sb.inference import SRC OUT_DIR [--labels FILE]
        [--norm audioset|esc50|speechcommands] [--target-length 1024] [--r 8]

Reference: Y. Gong, Y.-A. Chung, J. Glass, "AST: Audio Spectrogram
Transformer", Interspeech 2021.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple, Union

from fastast_sb.features import NORM_STATS, GlobalNorm, KaldiFbank
from fastast_sb.inference.folder import write_model_folder
from fastast_sb.labels import read_labels
from fastast_sb.models.ast import load_ast

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
Norm = Union[str, Tuple[float, float], None]


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _resolve_norm(norm: Norm, source: Path) -> Tuple[float, float]:
    if isinstance(norm, str):
        if norm not in NORM_STATS:
            raise ValueError(
                f"unknown normalisation {norm!r}; expected one of "
                f"{sorted(NORM_STATS)} or a (mean, std) pair"
            )
        return NORM_STATS[norm]
    if norm is not None:
        mean, std = norm
        return float(mean), float(std)
    cfg = _read_json(source / "preprocessor_config.json")  # {} for a file
    if "mean" in cfg and "std" in cfg:
        return float(cfg["mean"]), float(cfg["std"])
    logger.info(
        "no normalisation given for %s: using AudioSet's (mean %s, std %s), "
        "as every published AST feature extractor does",
        source,
        *NORM_STATS["audioset"],
    )
    return NORM_STATS["audioset"]


def import_ast(
    source: PathLike,
    out_dir: PathLike,
    labels: Union[PathLike, Sequence[str], None] = None,
    norm: Norm = None,
    target_length: Optional[int] = None,
    r: Any = 0,
    multilabel: bool = True,
    sample_rate: int = 16000,
) -> Path:
    """Import a Hugging Face or original AST checkpoint as a model folder.

    Arguments
    ---------
    source, out_dir : str or Path
        HF folder (``config.json`` + weights) or original ``.pth`` file;
        the model folder to write (returned).
    labels : path or sequence of str, optional
        Class names (a :func:`~fastast_sb.labels.read_labels` file or a
        list); by default an HF ``config.json``'s ``id2label``, else
        ``class_<i>``.
    norm : str or (mean, std), optional
        A :data:`~fastast_sb.features.NORM_STATS` name or statistics; by
        default the HF ``preprocessor_config.json``'s, else AudioSet's.
    target_length, r, multilabel, sample_rate
        Frames per input (the positional embedding is resampled; the
        checkpoint's by default), default merge schedule (0: plain AST),
        sigmoid scores (AST trains every dataset with BCE) or softmax, and
        the front end's audio rate.

    Example
    -------
    >>> import tempfile, os
    >>> from fastast_sb.models.ast import AST, ASTHead
    >>> from fastast_sb.models.checkpoints import save_ast
    >>> tmp = tempfile.TemporaryDirectory()
    >>> ckpt = os.path.join(tmp.name, "ast.pt")
    >>> save_ast(ckpt, AST(input_tdim=128, preset="tiny", depth=1),
    ...          ASTHead(192, 2))
    >>> out = import_ast(ckpt, os.path.join(tmp.name, "model"),
    ...                  labels=["yes", "no"], norm="speechcommands")
    >>> (out / "hyperparams.yaml").is_file()
    True
    >>> tmp.cleanup()
    """
    source = Path(source)
    model, head = load_ast(source, input_tdim=target_length, r=r)
    if head is None:
        raise ValueError(
            f"{source} holds no classification head (an ASTModel without "
            "classifier?); a model folder needs one: import an "
            "ASTForAudioClassification checkpoint"
        )
    n_classes = int(head.linear.out_features)
    id2label = _read_json(source / "config.json").get("id2label") or {}
    if isinstance(labels, (str, Path)):
        names = read_labels(labels)
    elif labels is not None:
        names = [str(name) for name in labels]
    elif len(id2label) == n_classes:
        names = [id2label[str(i)] for i in range(n_classes)]
    else:
        logger.warning(
            "%s has no class names: using class_0..class_%d (pass labels=...)",
            source,
            n_classes - 1,
        )
        names = [f"class_{i}" for i in range(n_classes)]
    dims = {"n_mels": model.input_fdim, "target_length": model.input_tdim}
    return write_model_folder(
        out_dir,
        model.eval(),
        head.eval(),
        names,
        KaldiFbank(sample_rate=sample_rate, **dims),
        GlobalNorm(*_resolve_norm(norm, source)),
        multilabel=multilabel,
        description=f"imported from {source.resolve()}",
    )
