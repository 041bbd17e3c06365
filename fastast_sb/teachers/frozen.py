"""``FrozenTeacher``: any teacher network, frozen, eval-locked, no grad.

Consistent teaching (CMKD, FastAST) runs the teacher on exactly the batch the
student sees in training. :class:`FrozenTeacher` wraps a teacher network with
its input convention and is called by
:class:`~fastast_sb.brain.FastASTBrain` as ``teacher(wavs, lens, feats)``:

* ``input="feats"``: the network gets the AST-normalised features of the
  augmented batch ``[B, T, F]`` (after mixup and SpecAugment), e.g.
  :class:`~fastast_sb.teachers.effnet.EfficientNetTeacher` or
  :class:`~fastast_sb.teachers.passt.PaSST`;
* ``input="wavs"``: the network gets the mixed waveform ``[B, S]`` and runs
  its own front end, e.g.
  :class:`~fastast_sb.teachers.mobilenet.MobileNetTeacher`; it sees mixup
  but not SpecAugment, which masks features.

The network is called as ``model(x, lens)`` and must return logits
``[B, C]``. An optional :class:`~fastast_sb.teachers.class_map.ClassMap`
maps those (e.g. 527 AudioSet) logits to the task's classes.

The wrapper freezes every parameter, stays in evaluation mode whatever
``train()`` is asked (SpeechBrain would otherwise switch dropout and batch
norm to training) and runs under ``torch.no_grad()``. Keep it out of the
Brain's ``modules``: SpeechBrain trains and optimises those.

Checkpoints are plain state dicts of the wrapped network, read with
``torch.load(..., weights_only=True)``; a ``net.`` or ``module.`` prefix
shared by all keys (training wrappers) is stripped. For a network trained by
a SpeechBrain recipe, give the module's file inside the checkpoint folder
(``save/CKPT+.../<module>.ckpt``, a plain state dict): folders themselves are
not read yet.

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
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from fastast_sb.teachers.class_map import ESC10_CLASS_MAP, ClassMap
from fastast_sb.teachers.effnet import EfficientNetTeacher
from fastast_sb.teachers.mobilenet import MobileNetTeacher
from fastast_sb.teachers.passt import PaSST

logger = logging.getLogger(__name__)

__all__ = [
    "INPUTS",
    "NAMED_CLASS_MAPS",
    "FrozenTeacher",
    "build_class_map",
    "declared_num_classes",
    "labels_beside",
    "load_state_dict",
]

#: Input conventions a teacher can have.
INPUTS = ("feats", "wavs")

#: Class maps that can be named in a config (target -> AudioSet names).
NAMED_CLASS_MAPS: Dict[str, Mapping[str, Sequence[str]]] = {
    "esc10": ESC10_CLASS_MAP,
}

#: File looked for beside a checkpoint when a class map names classes.
AUDIOSET_LABELS_FILE = "class_labels_indices.csv"

ClassMapSpec = Union[
    None, str, ClassMap, Mapping[str, Sequence[Union[str, int]]]
]
PathLike = Union[str, Path]


def load_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """Read a state dict file with ``torch.load(..., weights_only=True)``.

    A ``{"state_dict": ...}`` wrapper is unwrapped.

    Arguments
    ---------
    path : str or Path
        A file holding a state dict.

    Returns
    -------
    dict of str to torch.Tensor
        The state dict, on the CPU.

    Example
    -------
    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     ckpt = os.path.join(tmp, "w.pt")
    ...     torch.save(nn.Linear(2, 3).state_dict(), ckpt)
    ...     sorted(load_state_dict(ckpt))
    ['bias', 'weight']
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(
            f"teacher checkpoint {path} is a folder; give the state-dict file "
            "of the teacher network (in a SpeechBrain checkpoint folder, the "
            "module's '<name>.ckpt' file)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"teacher checkpoint {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and isinstance(
        state.get("state_dict"), Mapping
    ):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ValueError(
            f"teacher checkpoint {path} does not hold a state dict (a "
            f"mapping of names to tensors), got {type(state).__name__}"
        )
    return dict(state)


def _strip_wrapper_prefix(
    state: Dict[str, torch.Tensor], model: nn.Module
) -> Dict[str, torch.Tensor]:
    """Strip a ``module.`` / ``net.`` prefix all keys share (not the model)."""
    model_keys = list(model.state_dict())
    for prefix in ("module.", "net."):
        if (
            state
            and all(k.startswith(prefix) for k in state)
            and not any(k.startswith(prefix) for k in model_keys)
        ):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def declared_num_classes(model: nn.Module) -> Optional[int]:
    """The class count a network declares, if it does.

    Reads ``model.num_classes``, else ``model.model.num_classes`` (wrappers
    such as :class:`~fastast_sb.teachers.mobilenet.MobileNetTeacher`).

    Arguments
    ---------
    model : nn.Module
        A teacher network.

    Returns
    -------
    int or None
        The declared number of output logits, or ``None``.

    Example
    -------
    >>> declared_num_classes(MobileNetTeacher(width_mult=0.1))
    527
    >>> declared_num_classes(nn.Linear(2, 3)) is None
    True
    """
    for obj in (model, getattr(model, "model", None)):
        count = getattr(obj, "num_classes", None)
        if isinstance(count, int) and not isinstance(count, bool):
            return count
    return None


def build_class_map(
    spec: ClassMapSpec,
    labels_csv: Optional[PathLike] = None,
    num_source_classes: Optional[int] = None,
    aggregation: str = "logsumexp",
) -> Optional[ClassMap]:
    """Turn a class-map specification into a :class:`ClassMap`.

    Arguments
    ---------
    spec : None, str, ClassMap or mapping
        ``None`` (no map), a name in :data:`NAMED_CLASS_MAPS` (``"esc10"``),
        a ready :class:`ClassMap`, or a mapping target -> source classes
        (AudioSet display names or indices).
    labels_csv : str or Path, optional
        AudioSet ``class_labels_indices.csv``; needed when the map names
        source classes.
    num_source_classes : int, optional
        Number of teacher logits (by default the number of labels, or 527).
    aggregation : str
        ``"logsumexp"`` or ``"max"``.

    Returns
    -------
    ClassMap or None
        The class map.

    Example
    -------
    >>> build_class_map({"a": [0, 2], "b": [1]}, num_source_classes=3)(
    ...     torch.tensor([[0.0, 1.0, 0.0]]))
    tensor([[0.6931, 1.0000]])
    """
    if spec is None or isinstance(spec, ClassMap):
        return spec
    if isinstance(spec, str):
        if spec not in NAMED_CLASS_MAPS:
            raise ValueError(
                f"unknown class map {spec!r}; expected one of "
                f"{sorted(NAMED_CLASS_MAPS)}, a ClassMap or a mapping"
            )
        spec = NAMED_CLASS_MAPS[spec]
    if not isinstance(spec, Mapping):
        raise TypeError(
            "class_map must be None, a name, a ClassMap or a mapping, got "
            f"{type(spec).__name__}"
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
    if labels_csv is not None:
        cmap = ClassMap.from_csv(spec, labels_csv, aggregation=aggregation)
        if num_source_classes is not None and (
            cmap.num_source_classes != num_source_classes
        ):
            raise ValueError(
                f"{labels_csv} lists {cmap.num_source_classes} classes, the "
                f"teacher emits {num_source_classes}"
            )
        return cmap
    return ClassMap(
        spec, num_source_classes=num_source_classes, aggregation=aggregation
    )


def labels_beside(
    checkpoint: Optional[PathLike], labels_csv: Optional[PathLike]
) -> Optional[PathLike]:
    """``labels_csv``, or the AudioSet label file beside the checkpoint.

    Example
    -------
    >>> labels_beside(None, "labels.csv"), labels_beside(None, None)
    ('labels.csv', None)
    """
    if labels_csv is not None or checkpoint is None:
        return labels_csv
    candidate = Path(checkpoint).with_name(AUDIOSET_LABELS_FILE)
    return candidate if candidate.is_file() else None


class FrozenTeacher(nn.Module):
    """A teacher network, frozen and eval-locked, with its input convention.

    Arguments
    ---------
    model : nn.Module
        The network, called as ``model(x, lens) -> logits [B, C]``.
    input : str
        ``"feats"``: ``x`` is the AST-normalised features ``[B, T, F]`` of
        the augmented batch; ``"wavs"``: ``x`` is the mixed waveform
        ``[B, S]`` (the network has its own front end).
    n_classes : int, optional
        Classes of the task; the (mapped) teacher output must have as many.
        By default that of the class map, else the one the network declares
        (``num_classes``), else whatever it emits.
    class_map : ClassMap, optional
        Maps the network's logits to the task's classes.
    checkpoint : str, optional
        A state dict of ``model`` to load (strictly) before freezing.

    Raises
    ------
    ValueError
        On an unknown ``input``, or when the class counts of the network,
        the class map and ``n_classes`` disagree (checked here when the
        network declares ``num_classes``, and at every forward).

    Example
    -------
    >>> net = PaSST(input_tdim=128, preset="mini", depth=1, num_classes=4)
    >>> teacher = FrozenTeacher(net, input="feats", n_classes=4)
    >>> teacher.train().training  # eval-locked
    False
    >>> wavs, lens = torch.randn(2, 16000), torch.ones(2)
    >>> logits = teacher(wavs, lens, torch.randn(2, 128, 128))
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
            state = _strip_wrapper_prefix(load_state_dict(checkpoint), model)
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as err:
                raise ValueError(
                    f"teacher checkpoint {checkpoint} does not fit "
                    f"{type(model).__name__}: {err}"
                ) from err
            logger.info(
                "Loaded %s teacher from %s", type(model).__name__, checkpoint
            )
        self.model = model
        self.class_map = class_map
        self.input = input
        self.model_classes = declared_num_classes(model)
        if class_map is not None:
            mapped = len(class_map.target_labels)
            if n_classes is not None and n_classes != mapped:
                raise ValueError(
                    f"the class map gives {mapped} classes, the task has "
                    f"n_classes={n_classes}"
                )
            n_classes = mapped
        elif n_classes is None:
            n_classes = self.model_classes
        self.n_classes = n_classes
        if self.model_classes is not None:
            self._check_output(self.model_classes)
        for param in self.parameters():
            param.requires_grad_(False)
        super().train(False)

    def _check_output(self, count: int) -> None:
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
        """Stay in evaluation mode whatever ``mode`` is (eval-locked).

        Arguments
        ---------
        mode : bool
            Ignored.

        Returns
        -------
        FrozenTeacher
            ``self``, in evaluation mode.
        """
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
        """Teacher logits for the augmented batch (no grad).

        Arguments
        ---------
        wavs : torch.Tensor, optional
            Mixed waveforms ``[B, S]`` (used when ``input="wavs"``).
        lens : torch.Tensor, optional
            Relative lengths ``[B]``, passed to the network.
        feats : torch.Tensor, optional
            AST-normalised features ``[B, T, F]`` of the augmented batch
            (used when ``input="feats"``).

        Returns
        -------
        torch.Tensor
            Logits ``[B, n_classes]``, not requiring grad.
        """
        x = feats if self.input == "feats" else wavs
        if x is None:
            raise ValueError(
                f"this teacher reads {self.input!r}, but {self.input}=None "
                "was given"
            )
        logits = self.model(x, lens)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            got = (
                f"shape {tuple(logits.shape)}"
                if isinstance(logits, torch.Tensor)
                else type(logits).__name__
            )
            raise ValueError(
                f"teacher {type(self.model).__name__} must return logits "
                f"[B, C], got {got}"
            )
        self._check_output(logits.shape[1])
        if self.class_map is not None:
            logits = self.class_map(logits)
        return logits

    # ------------------------------------------------------------- factories
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
    ) -> FrozenTeacher:
        """EfficientAT MobileNetV3 on the mixed waveform (own 32 kHz front end).

        Arguments
        ---------
        checkpoint : str, optional
            EfficientAT state dict (e.g. ``mn04_as_mAP_432.pt``); ``None``
            builds random weights (tests, smoke runs).
        sample_rate : int
            Rate of the recipe's waveforms (resampled to 32 kHz inside).
        n_classes : int, optional
            Classes of the task (checked against the class map).
        class_map : None, str, ClassMap or mapping
            See :func:`build_class_map`; ``"esc10"`` maps AudioSet to ESC-10.
        labels_csv : str, optional
            AudioSet ``class_labels_indices.csv`` for a map that names
            classes; by default the file of that name beside ``checkpoint``.
        width_mult : float
            Width of the network (0.4 for ``mn04_as``).
        aggregation : str
            ``"logsumexp"`` or ``"max"`` (class map).

        Returns
        -------
        FrozenTeacher
            The frozen teacher, ``input="wavs"``.

        Example
        -------
        >>> t = FrozenTeacher.mobilenet(
        ...     width_mult=0.1, class_map={"x": [0, 1], "y": [2]})
        >>> t(torch.randn(2, 16000)).shape
        torch.Size([2, 2])
        """
        if checkpoint is None:
            logger.warning("MobileNetV3 teacher has random weights")
            model = MobileNetTeacher(sample_rate, width_mult=width_mult)
        else:
            model = MobileNetTeacher.from_checkpoint(
                checkpoint, sample_rate=sample_rate, width_mult=width_mult
            )
        cmap = build_class_map(
            class_map,
            labels_beside(checkpoint, labels_csv),
            declared_num_classes(model),
            aggregation,
        )
        return cls(model, "wavs", n_classes, cmap)

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
    ) -> FrozenTeacher:
        """EfficientNet + attention pooling (PSLA / CMKD) on AST features.

        The number of network outputs is read from the checkpoint
        (``pooling.classes.bias``); with random weights it is the class
        map's source count, else ``n_classes``.

        Arguments
        ---------
        checkpoint : str, optional
            State dict of
            :class:`~fastast_sb.teachers.effnet.EfficientNetTeacher`;
            ``None`` builds random weights (tests, smoke runs).
        n_classes, class_map, labels_csv, aggregation
            As for :meth:`mobilenet`.
        model_name : str
            ``efficientnet_pytorch`` model name.
        num_heads : int
            Attention-pooling heads.
        renormalize : bool
            Convert AST-normalised input to PSLA's normalisation.

        Returns
        -------
        FrozenTeacher
            The frozen teacher, ``input="feats"``.

        Example
        -------
        >>> t = FrozenTeacher.effnet(n_classes=3, model_name="efficientnet-b0")
        >>> t(None, None, torch.randn(1, 64, 128)).shape
        torch.Size([1, 3])
        """
        state = None
        source: Optional[int] = None  # network outputs, when known
        if checkpoint is not None:
            state = load_state_dict(checkpoint)
            bias = state.get("pooling.classes.bias")
            if bias is None:
                raise ValueError(
                    f"{checkpoint} is not an EfficientNetTeacher state dict "
                    "(no 'pooling.classes.bias' key)"
                )
            source = bias.numel() // num_heads
        cmap = build_class_map(
            class_map,
            labels_beside(checkpoint, labels_csv),
            source,
            aggregation,
        )
        if source is None:
            logger.warning("EfficientNet teacher has random weights")
            source = cmap.num_source_classes if cmap else n_classes
            if source is None:
                raise ValueError(
                    "give n_classes, a class_map or a checkpoint: the "
                    "EfficientNet teacher's output size is unknown"
                )
        model = EfficientNetTeacher(source, model_name, num_heads, renormalize)
        if state is not None:
            model.load_state_dict(
                _strip_wrapper_prefix(state, model), strict=True
            )
            logger.info("Loaded EfficientNet teacher from %s", checkpoint)
        return cls(model, "feats", n_classes, cmap)

    @classmethod
    def passt(
        cls,
        checkpoint: Optional[PathLike] = None,
        n_classes: Optional[int] = None,
        class_map: ClassMapSpec = None,
        labels_csv: Optional[PathLike] = None,
        aggregation: str = "logsumexp",
        **kwargs: Any,
    ) -> FrozenTeacher:
        """PaSST on our 16 kHz AST features (not its own 32 kHz front end).

        Arguments
        ---------
        checkpoint : str, optional
            Our or PaSST's state dict; the architecture is read from it
            (:meth:`~fastast_sb.teachers.passt.PaSST.from_state_dict`).
            ``None`` builds random weights (tests, smoke runs).
        n_classes, class_map, labels_csv, aggregation
            As for :meth:`mobilenet`.
        **kwargs
            :class:`~fastast_sb.teachers.passt.PaSST` arguments (e.g.
            ``input_tdim``, ``preset``, ``num_heads``); with random weights,
            ``num_classes`` defaults to the class map's source count, else
            ``n_classes``.

        Returns
        -------
        FrozenTeacher
            The frozen teacher, ``input="feats"``.

        Example
        -------
        >>> t = FrozenTeacher.passt(
        ...     n_classes=3, input_tdim=128, preset="mini", depth=1)
        >>> t(None, None, torch.randn(1, 128, 128)).shape
        torch.Size([1, 3])
        """
        if checkpoint is not None:
            model = PaSST.from_state_dict(load_state_dict(checkpoint), **kwargs)
            source: Optional[int] = model.num_classes
        else:
            source = kwargs.get("num_classes")
        cmap = build_class_map(
            class_map,
            labels_beside(checkpoint, labels_csv),
            source,
            aggregation,
        )
        if checkpoint is None:
            logger.warning("PaSST teacher has random weights")
            if "num_classes" not in kwargs:
                num_classes = cmap.num_source_classes if cmap else n_classes
                if num_classes is not None:
                    kwargs["num_classes"] = num_classes
            model = PaSST(**kwargs)
        return cls(model, "feats", n_classes, cmap)
