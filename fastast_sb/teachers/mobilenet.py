"""EfficientAT MobileNetV3 audio tagger, usable as a frozen AudioSet teacher.

A re-implementation of the MobileNetV3-Large audio taggers released with
EfficientAT (MIT licence, (c) 2022 Florian Schmid), written so that their
state dicts (e.g. ``mn04_as_mAP_432.pt``, width 0.4, AudioSet mAP 0.432) load
with ``strict=True``:

* ``features.0``: 3x3 stride-2 convolution, batch norm, hardswish;
* ``features.1`` - ``features.15``: the 15 inverted-residual blocks of
  MobileNetV3-Large (expand 1x1, depthwise kxk, optional channel
  squeeze-excitation, project 1x1; ReLU in the first six blocks, hardswish
  after), channels scaled by the width multiplier and rounded to multiples
  of 8;
* ``features.16``: 1x1 convolution to ``6 x`` the last block width,
  batch norm, hardswish;
* ``classifier``: global average pooling, flatten, linear, hardswish,
  dropout, linear -> 527 AudioSet logits.

The front end (:class:`MobileNetFrontEnd`) reproduces EfficientAT's
evaluation preprocessing: 32 kHz audio, pre-emphasis, a 1024-point STFT with
an 800-sample symmetric Hann window and a 320-sample hop, power spectrum, 128
Kaldi-style mel bands from 0 to 15 kHz, ``log(x + 1e-5)`` and
``(x + 4.5) / 5``.

References
----------
A. Howard et al., "Searching for MobileNetV3", ICCV 2019.

F. Schmid, K. Koutini, G. Widmer, "Efficient Large-Scale Audio Tagging via
Transformer-to-CNN Knowledge Distillation", ICASSP 2023.
"""

import csv
import logging
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchaudio

logger = logging.getLogger(__name__)

__all__ = [
    "AUDIOSET_NUM_CLASSES",
    "MOBILENET_SAMPLE_RATE",
    "ConvNormAct",
    "InvertedResidual",
    "MobileNetFrontEnd",
    "MobileNetTeacher",
    "MobileNetV3",
    "SqueezeExcitation",
    "make_divisible",
    "read_audioset_labels",
    "top_labels",
]

AUDIOSET_NUM_CLASSES = 527
MOBILENET_SAMPLE_RATE = 32000

# MobileNetV3-Large at width 1.0: (in, kernel, expanded, out, SE, hardswish,
# stride) for each inverted-residual block.
_LARGE_BLOCKS: Tuple[Tuple[int, int, int, int, bool, bool, int], ...] = (
    (16, 3, 16, 16, False, False, 1),
    (16, 3, 64, 24, False, False, 2),
    (24, 3, 72, 24, False, False, 1),
    (24, 5, 72, 40, True, False, 2),
    (40, 5, 120, 40, True, False, 1),
    (40, 5, 120, 40, True, False, 1),
    (40, 3, 240, 80, False, True, 2),
    (80, 3, 200, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1),
    (80, 3, 480, 112, True, True, 1),
    (112, 3, 672, 112, True, True, 1),
    (112, 5, 672, 160, True, True, 2),
    (160, 5, 960, 160, True, True, 1),
    (160, 5, 960, 160, True, True, 1),
)
_LARGE_HEAD = 1280


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, losing < 10 %.

    Arguments
    ---------
    value : float
        Unrounded channel count.
    divisor : int
        The result is a multiple of it (at least ``divisor``).

    Returns
    -------
    int
        The rounded channel count.

    Example
    -------
    >>> make_divisible(64 * 0.4), make_divisible(24 * 0.4)
    (24, 16)
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def read_audioset_labels(path: Union[str, Path]) -> List[str]:
    """Read AudioSet's ``class_labels_indices.csv`` into display names.

    Arguments
    ---------
    path : str or Path
        CSV file with the columns ``index,mid,display_name``.

    Returns
    -------
    list of str
        Display names ordered by ``index``.

    Raises
    ------
    ValueError
        When the columns are missing or the indices are not ``0 .. N-1``.

    Example
    -------
    >>> import tempfile, os
    >>> text = 'index,mid,display_name\\n0,/m/09x0r,"Speech"\\n'
    >>> text += '1,/m/04rlf,"Music"\\n'
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     csv_path = os.path.join(tmp, "labels.csv")
    ...     with open(csv_path, "w") as f:
    ...         _ = f.write(text)
    ...     read_audioset_labels(csv_path)
    ['Speech', 'Music']
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or ())
        if not {"index", "display_name"} <= columns:
            raise ValueError(
                f"{path} has columns {sorted(columns)}, expected at least "
                "'index' and 'display_name'"
            )
        rows = [(int(row["index"]), row["display_name"]) for row in reader]
    rows.sort()
    indices = [index for index, _ in rows]
    if indices != list(range(len(rows))):
        raise ValueError(
            f"{path} has indices {indices[:5]}..., expected 0 .. "
            f"{len(rows) - 1} without gaps"
        )
    return [name for _, name in rows]


class ConvNormAct(nn.Sequential):
    """Convolution (no bias), batch norm and an optional activation.

    Children ``0`` (conv), ``1`` (norm) and ``2`` (activation) give the
    checkpoint names ``<prefix>.0.weight`` and ``<prefix>.1.*``.

    Arguments
    ---------
    in_channels : int
        Input channels.
    out_channels : int
        Output channels.
    kernel_size : int
        Square kernel size; padding keeps the size at stride 1.
    stride : int
        Convolution stride.
    groups : int
        Convolution groups (``in_channels`` for a depthwise convolution).
    activation : type of nn.Module, optional
        Activation class, or ``None`` for none.

    Example
    -------
    >>> layer = ConvNormAct(1, 8, kernel_size=3, stride=2)
    >>> layer(torch.randn(2, 1, 16, 20)).shape
    torch.Size([2, 8, 8, 10])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        activation: Optional[type] = nn.Hardswish,
    ) -> None:
        layers: List[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=(kernel_size - 1) // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels, eps=1e-3, momentum=0.01),
        ]
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)


class _ChannelExcitation(nn.Module):
    """Channel squeeze-excitation: mean over (F, T), MLP, sigmoid gate."""

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, squeeze_channels)
        self.fc2 = nn.Linear(squeeze_channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gate ``x [B, C, F, T]`` channel-wise."""
        scale = x.mean(dim=(2, 3))  # [B, C]
        scale = torch.sigmoid(self.fc2(F.relu(self.fc1(scale))))
        return x * scale[:, :, None, None]


class SqueezeExcitation(nn.Module):
    """Channel-wise squeeze-and-excitation in EfficientAT's layout.

    EfficientAT can run several squeeze-excitation layers concurrently (over
    channels, frequency or time) and keeps them in ``conc_se_layers``; its
    AudioSet models use one channel-wise layer (ReLU bottleneck, sigmoid
    gate). The list name is kept so checkpoints load unchanged.

    Arguments
    ---------
    channels : int
        Channels of the gated feature map.
    squeeze_channels : int
        Bottleneck width.

    Example
    -------
    >>> se = SqueezeExcitation(32, 8)
    >>> se(torch.randn(2, 32, 5, 7)).shape
    torch.Size([2, 32, 5, 7])
    """

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.conc_se_layers = nn.ModuleList(
            [_ChannelExcitation(channels, squeeze_channels)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gate ``x [B, C, F, T]``; same shape out."""
        return self.conc_se_layers[0](x)


class InvertedResidual(nn.Module):
    """MobileNetV3 inverted-residual block (``block`` holds the layers).

    Arguments
    ---------
    in_channels : int
        Input channels.
    kernel_size : int
        Depthwise kernel size.
    expanded_channels : int
        Channels after the 1x1 expansion (no expansion layer when equal to
        ``in_channels``).
    out_channels : int
        Output channels after the 1x1 projection.
    use_se : bool
        Add channel squeeze-excitation after the depthwise convolution.
    use_hardswish : bool
        Hardswish activations instead of ReLU.
    stride : int
        Depthwise stride, 1 or 2; the residual is added at stride 1 when
        ``in_channels == out_channels``.
    se_ratio : int
        Squeeze-excitation bottleneck = ``expanded_channels / se_ratio``
        rounded to a multiple of 8.

    Example
    -------
    >>> block = InvertedResidual(16, 5, 48, 16, True, True, 1)
    >>> block(torch.randn(1, 16, 8, 8)).shape
    torch.Size([1, 16, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        kernel_size: int,
        expanded_channels: int,
        out_channels: int,
        use_se: bool,
        use_hardswish: bool,
        stride: int,
        se_ratio: int = 4,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        activation = nn.Hardswish if use_hardswish else nn.ReLU
        layers: List[nn.Module] = []
        if expanded_channels != in_channels:
            layers.append(
                ConvNormAct(
                    in_channels, expanded_channels, activation=activation
                )
            )
        layers.append(
            ConvNormAct(
                expanded_channels,
                expanded_channels,
                kernel_size,
                stride=stride,
                groups=expanded_channels,
                activation=activation,
            )
        )
        if use_se:
            squeeze = make_divisible(expanded_channels // se_ratio)
            layers.append(SqueezeExcitation(expanded_channels, squeeze))
        layers.append(
            ConvNormAct(expanded_channels, out_channels, activation=None)
        )
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``x [B, C_in, F, T]`` to ``[B, C_out, F', T']``."""
        out = self.block(x)
        if self.use_residual:
            out = out + x
        return out


class MobileNetV3(nn.Module):
    """MobileNetV3-Large audio tagger with EfficientAT's MLP head.

    Arguments
    ---------
    width_mult : float
        Channel width multiplier (0.4 for ``mn04``).
    num_classes : int
        Output logits.
    dropout : float
        Dropout before the last linear layer (training only).
    se_ratio : int
        Squeeze-excitation reduction ratio.

    Example
    -------
    >>> model = MobileNetV3(width_mult=0.1, num_classes=5).eval()
    >>> model(torch.randn(2, 64, 128)).shape  # [B, T, F] -> [B, C]
    torch.Size([2, 5])
    """

    def __init__(
        self,
        width_mult: float = 0.4,
        num_classes: int = AUDIOSET_NUM_CLASSES,
        dropout: float = 0.2,
        se_ratio: int = 4,
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")

        def scale(channels: int) -> int:
            return make_divisible(channels * width_mult)

        layers: List[nn.Module] = [
            ConvNormAct(1, scale(_LARGE_BLOCKS[0][0]), 3, stride=2)
        ]
        for cin, kernel, exp, cout, use_se, use_hs, stride in _LARGE_BLOCKS:
            layers.append(
                InvertedResidual(
                    scale(cin),
                    kernel,
                    scale(exp),
                    scale(cout),
                    use_se,
                    use_hs,
                    stride,
                    se_ratio=se_ratio,
                )
            )
        last_in = scale(_LARGE_BLOCKS[-1][3])
        last_out = 6 * last_in
        layers.append(ConvNormAct(last_in, last_out))
        self.features = nn.Sequential(*layers)
        hidden = scale(_LARGE_HEAD)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(start_dim=1),
            nn.Linear(last_out, hidden),
            nn.Hardswish(),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),
        )
        self.num_classes = num_classes

    def forward(
        self, feats: torch.Tensor, lens: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Tag normalised log-mel features.

        Arguments
        ---------
        feats : torch.Tensor
            ``[B, T, F]`` features from :class:`MobileNetFrontEnd`.
        lens : torch.Tensor, optional
            Relative lengths ``[B]``; accepted for interface compatibility,
            unused (the model pools over the whole clip, as trained).

        Returns
        -------
        torch.Tensor
            Logits ``[B, num_classes]``.
        """
        if feats.dim() != 3:
            raise ValueError(
                f"feats must be [B, T, F], got shape {tuple(feats.shape)}"
            )
        x = feats.transpose(1, 2).unsqueeze(1)  # [B, 1, F, T]
        return self.classifier(self.features(x))


class MobileNetFrontEnd(nn.Module):
    """EfficientAT's log-mel front end (evaluation mode, no augmentation).

    Arguments
    ---------
    sample_rate : int
        Expected input rate in Hz.
    n_fft : int
        FFT size.
    win_length : int
        Symmetric (``periodic=False``) Hann window length.
    hop_length : int
        Frame shift in samples.
    n_mels : int
        Number of Kaldi-style (triangular on the mel scale) bands.
    f_min : float
        Lowest band edge in Hz.
    f_max : float
        Highest band edge in Hz.
    preemphasis : float
        Pre-emphasis coefficient: ``y[n] = x[n + 1] - c * x[n]``.
    log_offset : float
        Added before the logarithm.
    norm_offset : float
        Added after the logarithm.
    norm_scale : float
        Divides the result.

    Example
    -------
    >>> frontend = MobileNetFrontEnd()
    >>> frontend(torch.randn(2, 32000)).shape  # 1 s -> 100 frames
    torch.Size([2, 100, 128])
    """

    def __init__(
        self,
        sample_rate: int = MOBILENET_SAMPLE_RATE,
        n_fft: int = 1024,
        win_length: int = 800,
        hop_length: int = 320,
        n_mels: int = 128,
        f_min: float = 0.0,
        f_max: float = 15000.0,
        preemphasis: float = 0.97,
        log_offset: float = 1e-5,
        norm_offset: float = 4.5,
        norm_scale: float = 5.0,
    ) -> None:
        super().__init__()
        if win_length > n_fft:
            raise ValueError(
                f"win_length {win_length} must not exceed n_fft {n_fft}"
            )
        if not 0.0 <= f_min < f_max <= sample_rate / 2:
            raise ValueError(
                f"need 0 <= f_min < f_max <= {sample_rate / 2} Hz, got "
                f"f_min={f_min}, f_max={f_max}"
            )
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.log_offset = log_offset
        self.norm_offset = norm_offset
        self.norm_scale = norm_scale
        self.register_buffer(
            "window",
            torch.hann_window(win_length, periodic=False),
            persistent=False,
        )
        self.register_buffer(
            "preemphasis_kernel",
            torch.tensor([[[-preemphasis, 1.0]]]),
            persistent=False,
        )
        # Kaldi mel banks cover n_fft // 2 bins; the Nyquist bin gets 0.
        banks, _ = torchaudio.compliance.kaldi.get_mel_banks(
            n_mels, n_fft, float(sample_rate), f_min, f_max, 100.0, -500.0, 1.0
        )
        banks = F.pad(banks, (0, 1))  # [n_mels, n_fft // 2 + 1]
        self.register_buffer("mel_banks", banks.float(), persistent=False)

    def forward(
        self, wavs: torch.Tensor, lens: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Compute features.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms ``[B, S]`` at ``sample_rate``.
        lens : torch.Tensor, optional
            Relative lengths ``[B]``; unused.

        Returns
        -------
        torch.Tensor
            Normalised log-mel features ``[B, T, n_mels]`` with
            ``T = (S - 1) // hop_length + 1``.
        """
        if wavs.dim() != 2:
            raise ValueError(
                f"wavs must be [B, S], got shape {tuple(wavs.shape)}"
            )
        x = F.conv1d(wavs.float().unsqueeze(1), self.preemphasis_kernel)
        spec = torch.stft(
            x.squeeze(1),
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=True,
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # [B, n_fft/2+1, T]
        mel = torch.matmul(self.mel_banks, power)  # [B, n_mels, T]
        mel = torch.log(mel + self.log_offset)
        mel = (mel + self.norm_offset) / self.norm_scale
        return mel.transpose(1, 2)  # [B, T, n_mels]


class MobileNetTeacher(nn.Module):
    """Waveform-to-logits EfficientAT MobileNetV3 (front end + network).

    Arguments
    ---------
    sample_rate : int
        Rate of the waveforms given to :meth:`forward`; other rates than
        32 kHz are resampled with ``torchaudio.functional.resample``.
    width_mult : float
        Width multiplier of the network (0.4 for ``mn04_as``).
    num_classes : int
        Output logits.

    Example
    -------
    >>> teacher = MobileNetTeacher(sample_rate=16000, width_mult=0.1).eval()
    >>> teacher(torch.randn(2, 16000)).shape
    torch.Size([2, 527])
    """

    def __init__(
        self,
        sample_rate: int = MOBILENET_SAMPLE_RATE,
        width_mult: float = 0.4,
        num_classes: int = AUDIOSET_NUM_CLASSES,
    ) -> None:
        super().__init__()
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
        self.sample_rate = sample_rate
        self.frontend = MobileNetFrontEnd()
        self.model = MobileNetV3(width_mult=width_mult, num_classes=num_classes)

    @classmethod
    def from_checkpoint(
        cls,
        path: Union[str, Path],
        sample_rate: int = MOBILENET_SAMPLE_RATE,
        width_mult: float = 0.4,
        num_classes: Optional[int] = None,
    ) -> "MobileNetTeacher":
        """Build the teacher and load an EfficientAT state dict strictly.

        With ``num_classes`` different from the checkpoint's, the last layer
        (``classifier.5``) is re-initialised for the new classes and every
        other weight is loaded strictly (fine-tuning to a new label set).

        Arguments
        ---------
        path : str or Path
            EfficientAT MobileNetV3 state dict (e.g. ``mn04_as_mAP_432.pt``).
        sample_rate : int
            Rate of the waveforms the teacher will be given.
        width_mult : float
            Width multiplier the checkpoint was trained with.
        num_classes : int, optional
            Output classes (default: the checkpoint's).

        Returns
        -------
        MobileNetTeacher
            The loaded teacher, in eval mode.

        Example
        -------
        >>> import tempfile, os
        >>> saved = MobileNetTeacher(width_mult=0.1)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     ckpt = os.path.join(tmp, "mn01.pt")
        ...     torch.save(saved.model.state_dict(), ckpt)
        ...     teacher = MobileNetTeacher.from_checkpoint(ckpt, width_mult=0.1)
        >>> teacher.training
        False
        """
        state = torch.load(path, map_location="cpu", weights_only=True)
        for prefix in ("module.", "model."):  # DDP / our recipe's wrapper
            if isinstance(state, dict) and all(
                k.startswith(prefix) for k in state
            ):
                state = {k[len(prefix) :]: v for k, v in state.items()}
        if not isinstance(state, dict) or "classifier.5.bias" not in state:
            raise ValueError(
                f"{path} is not an EfficientAT MobileNetV3 state dict with an "
                "MLP head (no 'classifier.5.bias' key)"
            )
        stored = state["classifier.5.bias"].shape[0]
        num_classes = stored if num_classes is None else num_classes
        teacher = cls(
            sample_rate=sample_rate,
            width_mult=width_mult,
            num_classes=num_classes,
        )
        if num_classes != stored:
            head = teacher.model.state_dict()
            state = {
                k: head[k] if k.startswith("classifier.5.") else v
                for k, v in state.items()
            }
        teacher.model.load_state_dict(state, strict=True)
        logger.info(
            "Loaded MobileNetV3 (width %s, %d classes) from %s",
            width_mult,
            num_classes,
            path,
        )
        return teacher.eval()

    def forward(
        self, wavs: torch.Tensor, lens: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Tag waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms ``[B, S]`` at ``sample_rate`` Hz.
        lens : torch.Tensor, optional
            Relative lengths ``[B]``; unused (the network was trained on
            whole, zero-padded clips).

        Returns
        -------
        torch.Tensor
            Logits ``[B, num_classes]`` (apply a sigmoid for probabilities).
        """
        if wavs.dim() != 2:
            raise ValueError(
                f"wavs must be [B, S], got shape {tuple(wavs.shape)}"
            )
        if self.sample_rate != self.frontend.sample_rate:
            wavs = torchaudio.functional.resample(
                wavs, self.sample_rate, self.frontend.sample_rate
            )
        feats = self.frontend(wavs)  # [B, T, F]
        return self.model(feats, lens)


def top_labels(
    logits: torch.Tensor, labels: Sequence[str], k: int = 5
) -> List[List[Tuple[str, float]]]:
    """Return the ``k`` most probable labels (sigmoid) of each example.

    Arguments
    ---------
    logits : torch.Tensor
        Multi-label logits ``[B, C]``.
    labels : sequence of str
        ``C`` class names.
    k : int
        Labels per example.

    Returns
    -------
    list of list of (str, float)
        For each example, ``(name, probability)`` pairs, most probable first.

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
