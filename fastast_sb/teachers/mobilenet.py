"""EfficientAT MobileNetV3 audio tagger and its 32 kHz front end.

Our MobileNetV3-Large taggers of EfficientAT (MIT licence, (c) 2022 Florian
Schmid): their state dicts (e.g. ``mn04_as_mAP_432.pt``, width 0.4, AudioSet
mAP 0.432) load strictly. :class:`MobileNetFrontEnd` is EfficientAT's
evaluation preprocessing: 32 kHz, pre-emphasis, 1024-point STFT (800-sample
symmetric Hann window, hop 320), power, 128 Kaldi mel bands over 0-15 kHz,
``(log(x + 1e-5) + 4.5) / 5``.

References
----------
A. Howard et al., "Searching for MobileNetV3", ICCV 2019.

F. Schmid, K. Koutini, G. Widmer, "Efficient Large-Scale Audio Tagging via
Transformer-to-CNN Knowledge Distillation", ICASSP 2023.
"""

from __future__ import annotations

from typing import Mapping, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchaudio

from fastast_sb.audio import Resampler
from fastast_sb.checkpoint import strip_prefix
from fastast_sb.labels import AUDIOSET_NUM_CLASSES

__all__ = [
    "MOBILENET_SAMPLE_RATE",
    "InvertedResidual",
    "MobileNetFrontEnd",
    "MobileNetTeacher",
    "MobileNetV3",
    "SqueezeExcitation",
]

MOBILENET_SAMPLE_RATE = 32000

# MobileNetV3-Large at width 1.0, one row a block: (in, kernel, expanded,
# out, squeeze-excitation, hardswish, stride).
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


def _divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor``, losing less than 10 %."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv(
    c_in: int,
    c_out: int,
    kernel: int = 1,
    stride: int = 1,
    groups: int = 1,
    act: Optional[type] = nn.Hardswish,
) -> nn.Sequential:
    """Convolution (no bias, same padding), batch norm, activation or none."""
    conv = nn.Conv2d(  # odd kernels: kernel // 2 is the same padding
        c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False
    )
    norm = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.01)
    return nn.Sequential(conv, norm, *([] if act is None else [act()]))


class SqueezeExcitation(nn.Module):
    """Channel squeeze-excitation of ``[B, C, F, T]`` in EfficientAT's layout.

    Mean over (F, T), ReLU bottleneck, sigmoid gate per channel, in
    EfficientAT's ``conc_se_layers`` (one here) so that checkpoints load.

    Example
    -------
    >>> SqueezeExcitation(32, 8)(torch.randn(2, 32, 5, 7)).shape
    torch.Size([2, 32, 5, 7])
    """

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        fc1 = nn.Linear(channels, squeeze_channels)
        fc2 = nn.Linear(squeeze_channels, channels)
        layer = nn.ModuleDict(dict(fc1=fc1, fc2=fc2))
        self.conc_se_layers = nn.ModuleList([layer])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        se = self.conc_se_layers[0]
        scale = se.fc2(F.relu(se.fc1(x.mean(dim=(2, 3)))))  # [B, C]
        return x * torch.sigmoid(scale)[:, :, None, None]


class InvertedResidual(nn.Module):
    """MobileNetV3 block: expand 1x1, depthwise kxk, [SE], project 1x1.

    Arguments
    ---------
    in_channels, kernel_size, expanded_channels, out_channels : int
        Block shape (no expansion layer when ``expanded == in``).
    use_se, use_hardswish : bool
        Squeeze-excitation after the depthwise conv; hardswish, not ReLU.
    stride : int
        1 or 2 (a residual at stride 1 when ``in == out``); the squeeze
        width is ``expanded_channels / 4``, rounded to 8.

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
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        act = nn.Hardswish if use_hardswish else nn.ReLU
        exp = expanded_channels
        layers = []
        if exp != in_channels:
            layers.append(_conv(in_channels, exp, act=act))
        layers.append(_conv(exp, exp, kernel_size, stride, exp, act))
        if use_se:
            layers.append(SqueezeExcitation(exp, _divisible(exp // 4)))
        layers.append(_conv(exp, out_channels, act=None))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)  # [B, C_out, F', T']
        return out + x if self.use_residual else out


class MobileNetV3(nn.Module):
    """MobileNetV3-Large tagger with EfficientAT's MLP head.

    Arguments
    ---------
    width_mult : float
        Channel width multiplier (0.4 for ``mn04``).
    num_classes : int
        Output logits.
    dropout : float
        Dropout before the last layer.

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
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")

        def scale(channels: int) -> int:
            return _divisible(channels * width_mult)

        layers = [_conv(1, scale(_LARGE_BLOCKS[0][0]), 3, stride=2)]
        for cin, kernel, exp, cout, *flags in _LARGE_BLOCKS:
            shape = (scale(cin), kernel, scale(exp), scale(cout))
            layers.append(InvertedResidual(*shape, *flags))
        last_in = scale(_LARGE_BLOCKS[-1][3])
        layers.append(_conv(last_in, 6 * last_in))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(start_dim=1),
            nn.Linear(6 * last_in, scale(_LARGE_HEAD)),
            nn.Hardswish(),
            nn.Dropout(p=dropout),
            nn.Linear(scale(_LARGE_HEAD), num_classes),
        )
        self.num_classes = num_classes
        # channels-last convolutions: 1.6x faster in bf16 on CPU (one thread,
        # batch 8, 5 s), 1.15x in fp32; load_state_dict keeps the layout.
        self.to(memory_format=torch.channels_last)

    def forward(
        self, feats: torch.Tensor, lens: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Logits ``[B, C]`` of :class:`MobileNetFrontEnd` features
        ``[B, T, F]`` (``lens`` unused: clips are pooled whole, as trained)."""
        if feats.dim() != 3:
            raise ValueError(
                f"feats must be [B, T, F], got shape {tuple(feats.shape)}"
            )
        x = feats.transpose(1, 2).unsqueeze(1)  # [B, 1, F, T]
        x = x.contiguous(memory_format=torch.channels_last)
        return self.classifier(self.features(x))


class MobileNetFrontEnd(nn.Module):
    """EfficientAT's log-mel front end (evaluation, no augmentation) with the
    settings of the module docstring, for 32 kHz input. It computes in
    float32 whatever the autocast context: in bf16 the pre-emphasis (a
    difference of near-equal samples) and the mel projection moved the
    features of real clips by up to 1.5 on a range of -1.4 to 2.4.

    Example
    -------
    >>> MobileNetFrontEnd()(torch.randn(2, 32000)).shape  # 1 s: 100 frames
    torch.Size([2, 100, 128])
    """

    def __init__(self) -> None:
        super().__init__()
        self.sample_rate = MOBILENET_SAMPLE_RATE
        window = torch.hann_window(800, periodic=False)
        self.register_buffer("window", window, persistent=False)
        # 128 Kaldi mel banks over 0-15 kHz skip the Nyquist bin: it gets 0.
        banks, _ = torchaudio.compliance.kaldi.get_mel_banks(
            128, 1024, float(self.sample_rate), 0.0, 15000.0, 100.0, -500.0, 1.0
        )
        banks = F.pad(banks, (0, 1)).float()  # [n_mels, n_fft // 2 + 1]
        self.register_buffer("mel_banks", banks, persistent=False)

    def forward(
        self, wavs: torch.Tensor, lens: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Features ``[B, (S - 1) // 320 + 1, 128]`` of ``wavs [B, S]``."""
        if wavs.dim() != 2:
            raise ValueError(
                f"wavs must be [B, S], got shape {tuple(wavs.shape)}"
            )
        with torch.autocast(device_type=wavs.device.type, enabled=False):
            x = self.preemphasis(wavs.float())
            spec = torch.stft(  # n_fft 1024, hop 320, window 800, center
                x, 1024, 320, 800, self.window, return_complex=True
            )
            power = spec.real.square() + spec.imag.square()  # [B, 513, T]
            mel = torch.log(self.mel_banks @ power + 1e-5)  # [B, n_mels, T]
            return ((mel + 4.5) / 5.0).transpose(1, 2)  # [B, T, n_mels]

    @staticmethod
    def preemphasis(wavs: torch.Tensor) -> torch.Tensor:
        """``y[n] = x[n + 1] - 0.97 x[n]`` of ``wavs [B, S]`` -> ``[B, S-1]``
        (EfficientAT's ``conv1d`` kernel ``[-0.97, 1]``, 12x faster on CPU).

        Example
        -------
        >>> MobileNetFrontEnd.preemphasis(torch.tensor([[1.0, 2.0, 2.0]]))
        tensor([[1.0300, 0.0600]])
        """
        return wavs[:, 1:] - 0.97 * wavs[:, :-1]


class MobileNetTeacher(nn.Module):
    """Waveform-to-logits MobileNetV3: own front end, then the network.

    Arguments
    ---------
    sample_rate : int
        Rate of the input waveforms (resampled to 32 kHz inside).
    width_mult : float
        Network width (0.4 for ``mn04_as``).
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
        self.resampler = Resampler(sample_rate, self.frontend.sample_rate)
        self.model = MobileNetV3(width_mult=width_mult, num_classes=num_classes)
        self.num_classes = num_classes

    @classmethod
    def from_state_dict(
        cls,
        state: Mapping[str, torch.Tensor],
        sample_rate: int = MOBILENET_SAMPLE_RATE,
        width_mult: float = 0.4,
        num_classes: Optional[int] = None,
    ) -> MobileNetTeacher:
        """Build the teacher of an EfficientAT (or our) state dict, in eval.

        With ``num_classes`` other than the state's, the last layer
        (``classifier.5``) is new and the rest loads strictly (fine-tuning
        to a new label set). A ``module.`` / ``model.`` prefix is stripped.

        Example
        -------
        >>> saved = MobileNetTeacher(width_mult=0.1)
        >>> teacher = MobileNetTeacher.from_state_dict(
        ...     saved.state_dict(), width_mult=0.1, num_classes=3)
        >>> teacher.num_classes, teacher.training
        (3, False)
        """
        state = strip_prefix(state, ("module.", "model."))
        if "classifier.5.bias" not in state:
            raise ValueError(
                "not an EfficientAT MobileNetV3 state dict with an MLP head "
                "(no 'classifier.5.bias' key)"
            )
        stored = state["classifier.5.bias"].shape[0]
        num_classes = stored if num_classes is None else num_classes
        teacher = cls(sample_rate, width_mult, num_classes)
        if num_classes != stored:  # a new last layer
            head = teacher.model.classifier[5].state_dict()
            state.update({f"classifier.5.{k}": v for k, v in head.items()})
        teacher.model.load_state_dict(state, strict=True)
        return teacher.eval()

    def forward(
        self, wavs: torch.Tensor, lens: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Logits ``[B, num_classes]`` of ``wavs [B, S]`` at ``sample_rate``
        (``lens`` unused: the network was trained on whole, padded clips)."""
        return self.model(self.features(wavs), lens)

    def features(self, wavs: torch.Tensor) -> torch.Tensor:
        """Float32 front-end features ``[B, T, 128]`` of ``wavs [B, S]`` at
        ``sample_rate`` (resampled to 32 kHz; float32 under autocast)."""
        if wavs.dim() != 2:
            raise ValueError(
                f"wavs must be [B, S], got shape {tuple(wavs.shape)}"
            )
        return self.frontend(self.resampler(wavs))
