"""Map AudioSet logits onto another label set (zero-shot teaching).

Each target class lists the AudioSet classes it covers; its logit is their
``"logsumexp"`` (default: a smooth maximum that also credits related classes
firing together, e.g. "Dog", "Bark" and "Bow-wow") or ``"max"``. Recipes keep
maps as data, e.g. ``recipes/ESC50/esc10_class_map.yaml`` (0.975 zero-shot
accuracy on ESC-10 with ``mn04_as``; 0.972 with max).

References
----------
J. F. Gemmeke et al., "Audio Set: An ontology and human-labeled dataset for
audio events", ICASSP 2017.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn
import yaml

from fastast_sb.labels import (
    AUDIOSET_LABELS_FILE,
    AUDIOSET_NUM_CLASSES,
    PathLike,
    read_labels,
)

__all__ = ["AGGREGATIONS", "ClassMap", "build_class_map", "read_class_map"]

AGGREGATIONS = ("logsumexp", "max")

Sources = Sequence[Union[str, int]]
ClassMapSpec = Union[None, str, Path, "ClassMap", Mapping[str, Sources]]


def _index(
    source: Union[str, int], target: str, names: Dict[str, int], n: int
) -> int:
    """The index of a source class given by name or index."""
    if isinstance(source, str):
        if source not in names:
            hint = "" if names else " (no source_labels given)"
            raise ValueError(
                f"unknown AudioSet class {source!r} for target {target!r}{hint}"
            )
        return names[source]
    if not 0 <= int(source) < n:
        raise ValueError(
            f"source index {source} for target {target!r} is outside [0, {n})"
        )
    return int(source)


class ClassMap(nn.Module):
    """Aggregate source (AudioSet) logits into target-class logits.

    Arguments
    ---------
    mapping : mapping of str to sequence of (str or int)
        For each target class, in output order, its source classes: display
        names (looked up in ``source_labels``) or indices.
    source_labels : sequence of str, optional
        Index-ordered source names (:func:`~fastast_sb.labels.read_labels`);
        needed when ``mapping`` uses names.
    num_source_classes : int, optional
        Source logits; by default ``len(source_labels)``, else 527.
    aggregation : str
        ``"logsumexp"`` or ``"max"``.

    Example
    -------
    >>> names = ["Speech", "Dog", "Bark", "Music"]
    >>> cmap = ClassMap({"dog": ["Dog", "Bark"], "talk": [0]}, names)
    >>> cmap.target_labels
    ['dog', 'talk']
    >>> cmap(torch.tensor([[1.0, 0.0, 0.0, 5.0]]))  # dog = log(e^0 + e^0)
    tensor([[0.6931, 1.0000]])
    """

    def __init__(
        self,
        mapping: Mapping[str, Sources],
        source_labels: Optional[Sequence[str]] = None,
        num_source_classes: Optional[int] = None,
        aggregation: str = "logsumexp",
    ) -> None:
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(
                f"aggregation must be one of {AGGREGATIONS}, got "
                f"{aggregation!r}"
            )
        if not mapping:
            raise ValueError("mapping is empty, expected >= 1 target class")
        given = None if source_labels is None else len(source_labels)
        if num_source_classes is None:
            num_source_classes = (
                AUDIOSET_NUM_CLASSES if given is None else given
            )
        if given is not None and given != num_source_classes:
            raise ValueError(
                f"{given} source labels given, expected "
                f"num_source_classes={num_source_classes}"
            )
        names = {name: i for i, name in enumerate(source_labels or ())}
        groups = []
        for target, sources in mapping.items():
            if isinstance(sources, (str, int)):
                raise ValueError(
                    f"target {target!r} maps to {sources!r}; expected a list "
                    "of source names or indices"
                )
            if len(sources) == 0:
                raise ValueError(f"target {target!r} has no source classes")
            groups.append(
                [_index(s, target, names, num_source_classes) for s in sources]
            )
        sizes = torch.tensor([len(g) for g in groups])  # [K]
        width = int(sizes.max())
        index = torch.tensor([g + [0] * (width - len(g)) for g in groups])
        valid = torch.arange(width) < sizes[:, None]
        self.register_buffer("index", index, persistent=False)  # [K, M]
        self.register_buffer("valid", valid, persistent=False)  # [K, M]
        self.target_labels = list(mapping)
        self.aggregation = aggregation
        self.num_source_classes = num_source_classes

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """Aggregate ``[B, num_source_classes]`` into ``[B, K]`` logits."""
        if logits.dim() != 2 or logits.shape[1] != self.num_source_classes:
            raise ValueError(
                f"logits of shape {tuple(logits.shape)} do not fit the class "
                f"map; expected [B, {self.num_source_classes}]"
            )
        gathered = logits[:, self.index]  # [B, K, M]
        gathered = gathered.masked_fill(~self.valid, float("-inf"))
        if self.aggregation == "max":
            return gathered.amax(dim=-1)
        return torch.logsumexp(gathered, dim=-1)


def read_class_map(
    spec: PathLike, class_maps: Optional[Mapping[str, PathLike]] = None
) -> Dict[str, List[Union[str, int]]]:
    """Read a class map from a YAML/JSON file, or the file a name stands for.

    ``spec`` is a name in ``class_maps`` (e.g. a recipe's ``{"esc10": ...}``)
    or a file of ``target: [sources]`` lines.

    Example
    -------
    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "map.yaml")
    >>> _ = open(f, "w").write('dog: [Dog, "Bark"]\\nrest: [0]\\n')
    >>> read_class_map("dogs", {"dogs": f})
    {'dog': ['Dog', 'Bark'], 'rest': [0]}
    """
    class_maps = class_maps or {}
    path = Path(class_maps.get(str(spec), spec))
    if str(spec) in class_maps and not path.is_file():
        raise FileNotFoundError(
            f"class map {str(spec)!r} is {path}, which does not exist "
            "(a relative path starts at the working directory)"
        )
    if not path.is_file():
        raise ValueError(
            f"unknown class map {str(spec)!r}; expected one of "
            f"{sorted(class_maps)}, a YAML/JSON file, a ClassMap or a mapping"
        )
    with path.open(encoding="utf-8") as f:
        mapping = yaml.safe_load(f)
    if not isinstance(mapping, dict):
        raise ValueError(
            f"class map file {path} holds a {type(mapping).__name__}; "
            "expected target classes mapped to lists of source classes"
        )
    return mapping


def build_class_map(
    spec: ClassMapSpec,
    labels_csv: Optional[PathLike] = None,
    num_source_classes: Optional[int] = None,
    aggregation: str = "logsumexp",
    class_maps: Optional[Mapping[str, PathLike]] = None,
) -> Optional[ClassMap]:
    """Turn a class-map specification into a :class:`ClassMap`.

    Arguments
    ---------
    spec : None, str, Path, ClassMap or mapping
        ``None`` (no map), a :class:`ClassMap`, a mapping target -> source
        classes (AudioSet display names or indices), or a file / name for
        :func:`read_class_map`.
    labels_csv : str or Path, optional
        AudioSet ``class_labels_indices.csv``; needed for source names.
    num_source_classes, aggregation
        As for :class:`ClassMap`: teacher logits, ``"logsumexp"`` / ``"max"``.
    class_maps : mapping of str to path, optional
        Named class-map files.

    Example
    -------
    >>> build_class_map({"a": [0, 2], "b": [1]}, num_source_classes=3)(
    ...     torch.tensor([[0.0, 1.0, 0.0]]))
    tensor([[0.6931, 1.0000]])
    """
    if spec is None or isinstance(spec, ClassMap):
        return spec
    if isinstance(spec, (str, Path)):
        spec = read_class_map(spec, class_maps)
    if not isinstance(spec, Mapping):
        raise TypeError(
            "class_map must be None, a name, a file, a ClassMap or a "
            f"mapping, got {type(spec).__name__}"
        )
    names = any(
        isinstance(source, str)
        for sources in spec.values()
        if not isinstance(sources, str)
        for source in sources
    )
    if names and labels_csv is None:
        raise ValueError(
            "the class map names AudioSet classes: give labels_csv (AudioSet "
            f"'{AUDIOSET_LABELS_FILE}')"
        )
    if labels_csv is None:
        return ClassMap(spec, None, num_source_classes, aggregation)
    labels = read_labels(labels_csv)
    if num_source_classes is not None and len(labels) != num_source_classes:
        raise ValueError(
            f"{labels_csv} lists {len(labels)} classes, the teacher emits "
            f"{num_source_classes}"
        )
    return ClassMap(spec, labels, aggregation=aggregation)
