"""``FrozenTeacher``: a teacher network, frozen, eval-locked, without grad.

Consistent teaching (CMKD, FastAST) runs the teacher on the student's batch:
:class:`~fastast_sb.brain.FastASTBrain` calls ``teacher(wavs, lens, feats)``,
the wrapper ``model(x, lens)`` on the augmented batch's AST-normalised
features ``[B, T, F]`` (``input="feats"``) or mixed waveform ``[B, S]``
(``input="wavs"``: a network with its own front end hears mixup, not
SpecAugment). A :class:`~fastast_sb.teachers.class_map.ClassMap` can map the
logits to the task's classes. Keep the wrapper out of the Brain's
``modules``, which SpeechBrain trains. Checkpoints are state-dict files (of a
SpeechBrain run: ``<module>.ckpt`` in ``save/CKPT+...``).

References
----------
Y. Gong, S. Khurana, A. Rouditchenko, J. Glass, "CMKD: CNN/Transformer-Based
Cross-Model Knowledge Distillation for Audio Classification", arXiv:2203.06760,
2022.

S. R. Behera et al., "FastAST: Accelerating Audio Spectrogram Transformer
via Token Merging and Cross-Model Knowledge Distillation", 2024.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import torch
from torch import nn

from fastast_sb.checkpoint import read_state_dict, strip_prefix
from fastast_sb.labels import AUDIOSET_NUM_CLASSES, PathLike, labels_beside
from fastast_sb.teachers.class_map import (
    ClassMap,
    ClassMapSpec,
    build_class_map,
)
from fastast_sb.teachers.effnet import EfficientNetTeacher
from fastast_sb.teachers.mobilenet import MobileNetTeacher
from fastast_sb.teachers.passt import PaSST

logger = logging.getLogger(__name__)

__all__ = ["INPUTS", "FrozenTeacher"]

#: Input conventions a teacher can have.
INPUTS = ("feats", "wavs")

ClassMaps = Optional[Mapping[str, PathLike]]


def _declared(model: nn.Module) -> Optional[int]:
    """``model.num_classes`` (or ``model.model.num_classes``), if an int."""
    for obj in (model, getattr(model, "model", None)):
        count = getattr(obj, "num_classes", None)
        if isinstance(count, int) and not isinstance(count, bool):
            return count
    return None


def _load(
    checkpoint: PathLike,
    name: str,
    build: Callable[[Dict[str, torch.Tensor]], nn.Module],
) -> nn.Module:
    """``build(state)`` of the checkpoint, its errors naming the file."""
    state = read_state_dict(checkpoint, "teacher checkpoint")
    try:
        model = build(state)
    except (RuntimeError, ValueError) as err:
        raise ValueError(
            f"teacher checkpoint {checkpoint} does not fit {name}: {err}"
        ) from err
    logger.info("Loaded %s teacher from %s", name, checkpoint)
    return model


class FrozenTeacher(nn.Module):
    """A teacher network, frozen and eval-locked, with its input convention.

    Arguments
    ---------
    model : nn.Module
        The network, called as ``model(x, lens) -> logits [B, C]``.
    input : str
        ``"feats"`` or ``"wavs"``, see the module docstring.
    n_classes : int, optional
        Classes of the task (default: the class map's, else the network's
        ``num_classes``).
    class_map : ClassMap, optional
        Maps the network's logits to the task's classes.
    checkpoint : str, optional
        A state dict of ``model`` to load strictly (a ``module.`` / ``net.``
        prefix is stripped).

    Raises
    ------
    ValueError
        When the class counts of network, class map and ``n_classes``
        disagree (checked at the first forward if the network declares none).

    Example
    -------
    >>> net = PaSST(input_tdim=128, preset="mini", depth=1, num_classes=4)
    >>> teacher = FrozenTeacher(net, input="feats", n_classes=4)
    >>> teacher.train().training  # eval-locked
    False
    >>> logits = teacher(torch.randn(2, 16000), None, torch.randn(2, 128, 128))
    >>> logits.shape, logits.requires_grad
    (torch.Size([2, 4]), False)
    """

    def __init__(
        self,
        model: nn.Module,
        input: str = "feats",
        n_classes: Optional[int] = None,
        class_map: Optional[ClassMap] = None,
        checkpoint: Optional[PathLike] = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"model must be an nn.Module, got {type(model).__name__}"
            )
        if input not in INPUTS:
            raise ValueError(f"input must be one of {INPUTS}, got {input!r}")
        if class_map is not None and not isinstance(class_map, ClassMap):
            raise TypeError(
                "class_map must be a ClassMap (see build_class_map), got "
                f"{type(class_map).__name__}"
            )
        if n_classes is not None and n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        if checkpoint is not None:

            def fill(state: Dict[str, torch.Tensor]) -> nn.Module:
                own = model.state_dict()
                state = strip_prefix(state, ("module.", "net."), own)
                model.load_state_dict(state, strict=True)
                return model

            _load(checkpoint, type(model).__name__, fill)
        self.model = model
        self.class_map = class_map
        self.input = input
        if class_map is not None:
            mapped = len(class_map.target_labels)
            if n_classes is not None and n_classes != mapped:
                raise ValueError(
                    f"the class map gives {mapped} classes, the task has "
                    f"n_classes={n_classes}"
                )
            n_classes = mapped
        self.model_classes = _declared(model)
        self.n_classes = self.model_classes if n_classes is None else n_classes
        if self.model_classes is not None:
            self._check_count(self.model_classes)
        for param in self.parameters():
            param.requires_grad_(False)
        super().train(False)

    def _check_count(self, count: int) -> None:
        """Raise unless ``count`` network logits fit the map / n_classes."""
        name = type(self.model).__name__
        if self.class_map is not None:
            expected = self.class_map.num_source_classes
            if count != expected:
                raise ValueError(
                    f"teacher {name} emits {count} classes, the class map "
                    f"expects {expected} source classes"
                )
        elif self.n_classes is not None and count != self.n_classes:
            raise ValueError(
                f"teacher {name} emits {count} classes, the task has "
                f"n_classes={self.n_classes}: give a class_map that maps the "
                "teacher's classes to the task's"
            )

    def train(self, mode: bool = True) -> FrozenTeacher:
        """Stay in evaluation mode whatever ``mode`` is (eval-locked)."""
        return super().train(False)

    def extra_repr(self) -> str:
        """Input convention and class count."""
        return f"input={self.input!r}, n_classes={self.n_classes}"

    @torch.no_grad()
    def forward(
        self,
        wavs: Optional[torch.Tensor],
        lens: Optional[torch.Tensor] = None,
        feats: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Logits ``[B, n_classes]`` (no grad) of the augmented batch: the
        waveforms ``wavs [B, S]`` or the features ``feats [B, T, F]`` (as
        ``input`` says) and the relative lengths ``lens [B]``."""
        x = feats if self.input == "feats" else wavs
        if x is None:
            raise ValueError(
                f"this teacher reads {self.input!r}, but {self.input}=None "
                "was given"
            )
        logits = self.model(x, lens)
        if self.model_classes is None:  # undeclared: check the first output
            if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
                got = getattr(logits, "shape", type(logits).__name__)
                raise ValueError(
                    f"teacher {type(self.model).__name__} must return logits "
                    f"[B, C], got {got}"
                )
            self._check_count(logits.shape[1])
            self.model_classes = logits.shape[1]
        if self.class_map is not None:
            logits = self.class_map(logits)
        return logits

    @classmethod
    def _build(
        cls,
        net: Any,
        input: str,
        checkpoint: Optional[PathLike],
        task: Tuple[Any, ...],
        net_args: Dict[str, Any],
    ) -> FrozenTeacher:
        """The factories' one path: network (``net.from_state_dict`` of the
        checkpoint, else random; both get ``net_args``), class map, wrapper;
        ``task`` is ``(n_classes, class_map, labels_csv, aggregation,
        class_maps)``."""
        n_classes, class_map, labels_csv, aggregation, class_maps = task
        model, outputs = None, net_args.get("num_classes")
        if checkpoint is not None:
            model = _load(
                checkpoint,
                net.__name__,
                lambda state: net.from_state_dict(state, **net_args),
            )
            outputs = model.num_classes
        labels = labels_beside(checkpoint, labels_csv)
        cmap = build_class_map(
            class_map, labels, outputs, aggregation, class_maps
        )
        if model is None:
            logger.warning("%s teacher has random weights", net.__name__)
            if outputs is None:
                outputs = cmap.num_source_classes if cmap else n_classes
            if outputs is None:
                raise ValueError(
                    "give n_classes, a class_map or a checkpoint: the "
                    f"{net.__name__} teacher's output size is unknown"
                )
            model = net(**{**net_args, "num_classes": outputs})
        return cls(model, input, n_classes, cmap)

    @classmethod
    def mobilenet(
        cls,
        checkpoint: Optional[PathLike] = None,
        sample_rate: int = 16000,
        n_classes: Optional[int] = None,
        class_map: ClassMapSpec = None,
        labels_csv: Optional[PathLike] = None,
        width_mult: float = 0.4,
        aggregation: str = "logsumexp",
        class_maps: ClassMaps = None,
    ) -> FrozenTeacher:
        """EfficientAT MobileNetV3 on the mixed waveform (``input="wavs"``).

        Arguments
        ---------
        checkpoint : str, optional
            EfficientAT (e.g. ``mn04_as_mAP_432.pt``) or our state dict;
            ``None``: random weights, 527 AudioSet outputs.
        sample_rate, width_mult
            Of :class:`~fastast_sb.teachers.mobilenet.MobileNetTeacher`.
        n_classes : int, optional
            Classes of the task.
        class_map, class_maps, aggregation
            See :func:`~fastast_sb.teachers.class_map.build_class_map`.
        labels_csv : str, optional
            AudioSet ``class_labels_indices.csv`` for a map naming classes
            (by default the file of that name beside ``checkpoint``).

        Example
        -------
        >>> t = FrozenTeacher.mobilenet(
        ...     width_mult=0.1, class_map={"x": [0, 1], "y": [2]})
        >>> t(torch.randn(2, 16000)).shape
        torch.Size([2, 2])
        """
        net = dict(sample_rate=sample_rate, width_mult=width_mult)
        if checkpoint is None:  # an AudioSet tagger
            net["num_classes"] = AUDIOSET_NUM_CLASSES
        task = (n_classes, class_map, labels_csv, aggregation, class_maps)
        return cls._build(MobileNetTeacher, "wavs", checkpoint, task, net)

    @classmethod
    def effnet(
        cls,
        checkpoint: Optional[PathLike] = None,
        n_classes: Optional[int] = None,
        class_map: ClassMapSpec = None,
        labels_csv: Optional[PathLike] = None,
        model_name: str = "efficientnet-b2",
        num_heads: int = 4,
        renormalize: bool = False,
        aggregation: str = "logsumexp",
        class_maps: ClassMaps = None,
    ) -> FrozenTeacher:
        """EfficientNet + attention pooling (PSLA / CMKD) on AST features.

        Arguments as for :meth:`mobilenet`, with
        :class:`~fastast_sb.teachers.effnet.EfficientNetTeacher`'s
        ``model_name``, ``num_heads`` and ``renormalize``; the class count
        is read from the checkpoint (random weights: the class map's
        source count, else ``n_classes``).

        Example
        -------
        >>> t = FrozenTeacher.effnet(n_classes=3, model_name="efficientnet-b0")
        >>> t(None, None, torch.randn(1, 64, 128)).shape
        torch.Size([1, 3])
        """
        task = (n_classes, class_map, labels_csv, aggregation, class_maps)
        net = dict(
            model_name=model_name, num_heads=num_heads, renormalize=renormalize
        )
        return cls._build(EfficientNetTeacher, "feats", checkpoint, task, net)

    @classmethod
    def passt(
        cls,
        checkpoint: Optional[PathLike] = None,
        n_classes: Optional[int] = None,
        class_map: ClassMapSpec = None,
        labels_csv: Optional[PathLike] = None,
        aggregation: str = "logsumexp",
        class_maps: ClassMaps = None,
        **kwargs: Any,
    ) -> FrozenTeacher:
        """PaSST on our 16 kHz AST features (not its own 32 kHz front end).

        Arguments as for :meth:`mobilenet`; ``kwargs`` are
        :class:`~fastast_sb.teachers.passt.PaSST` arguments (``input_tdim``,
        ``preset``, ``num_heads``, ...); a checkpoint gives the architecture
        (:meth:`~fastast_sb.teachers.passt.PaSST.from_state_dict`).

        Example
        -------
        >>> t = FrozenTeacher.passt(
        ...     n_classes=3, input_tdim=128, preset="mini", depth=1)
        >>> t(None, None, torch.randn(1, 128, 128)).shape
        torch.Size([1, 3])
        """
        task = (n_classes, class_map, labels_csv, aggregation, class_maps)
        return cls._build(PaSST, "feats", checkpoint, task, kwargs)
