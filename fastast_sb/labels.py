"""Class names: AudioSet's ``class_labels_indices.csv`` or one name a line.

Reference: J. F. Gemmeke et al., "Audio Set: An ontology and human-labeled
dataset for audio events", ICASSP 2017.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch

PathLike = Union[str, Path]

__all__ = [
    "AUDIOSET_LABELS_FILE",
    "AUDIOSET_NUM_CLASSES",
    "labels_beside",
    "read_labels",
    "top_labels",
]

AUDIOSET_NUM_CLASSES = 527
#: AudioSet's label file (columns ``index,mid,display_name``).
AUDIOSET_LABELS_FILE = "class_labels_indices.csv"


def read_labels(path: PathLike) -> List[str]:
    """Class names from a label CSV or a file of one name a line.

    A CSV whose header names a ``display_name`` column gives that column,
    ordered by its ``index`` column when there is one (which must then hold
    ``0 .. N-1`` without gaps); any other file gives its non-empty lines.

    Example
    -------
    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "labels.csv")
    >>> _ = open(f, "w").write(
    ...     'index,mid,display_name\\n1,/m/b,"Dog, bark"\\n0,/m/a,Speech\\n')
    >>> read_labels(f)
    ['Speech', 'Dog, bark']
    >>> _ = open(f, "w").write("Speech\\n\\nMusic\\n")
    >>> read_labels(f)
    ['Speech', 'Music']
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} not found")
    with path.open(newline="", encoding="utf-8") as f:
        if "display_name" not in f.readline():
            f.seek(0)
            return [line.strip() for line in f if line.strip()]
        f.seek(0)
        reader = csv.DictReader(f)
        if "index" not in (reader.fieldnames or ()):
            return [row["display_name"] for row in reader]
        rows = sorted((int(r["index"]), r["display_name"]) for r in reader)
    indices = [index for index, _ in rows]
    if indices != list(range(len(rows))):
        raise ValueError(
            f"{path} has indices {indices[:5]}..., expected 0 .. "
            f"{len(rows) - 1} without gaps"
        )
    return [name for _, name in rows]


def labels_beside(
    checkpoint: Optional[PathLike], labels_csv: Optional[PathLike]
) -> Optional[PathLike]:
    """``labels_csv``, else the AudioSet label file beside ``checkpoint``.

    Example
    -------
    >>> labels_beside(None, "labels.csv"), labels_beside(None, None)
    ('labels.csv', None)
    """
    if labels_csv is not None or checkpoint is None:
        return labels_csv
    candidate = Path(checkpoint).with_name(AUDIOSET_LABELS_FILE)
    return candidate if candidate.is_file() else None


def top_labels(
    logits: torch.Tensor, labels: Sequence[str], k: int = 5
) -> List[List[Tuple[str, float]]]:
    """The ``k`` most probable (sigmoid) labels of each row of ``[B, C]``.

    Example
    -------
    >>> top_labels(torch.tensor([[0.0, 3.0, -1.0]]), ["a", "b", "c"], k=2)
    [[('b', 0.9526), ('a', 0.5)]]
    """
    if logits.dim() != 2 or logits.shape[1] != len(labels):
        raise ValueError(
            f"logits of shape {tuple(logits.shape)} do not fit "
            f"{len(labels)} labels; expected [B, {len(labels)}]"
        )
    probs, indices = torch.sigmoid(logits.float()).topk(min(k, len(labels)))
    return [
        [(labels[i], round(p, 4)) for p, i in zip(row_p, row_i)]
        for row_p, row_i in zip(probs.tolist(), indices.tolist())
    ]
