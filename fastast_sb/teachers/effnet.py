"""EfficientNet-B2 with multi-head attention pooling (PSLA / CMKD teacher).

An EfficientNet trunk over a one-channel log-mel spectrogram, a mean over
frequency, then attention pooling over time: each head pools class outputs
``W_c x`` with weights ``sigmoid(W_a x)`` normalised over time; the heads
are summed with learned softmax weights. The outputs stay logits (PSLA
applies a sigmoid), as :func:`fastast_sb.distill.cmkd_loss` expects.

Input is AST-normalised features ``(fbank - mean) / (2 * std)``; for weights
trained the PSLA way, ``renormalize=True`` gives ``(fbank - mean) / std``.

References
----------
Y. Gong, Y.-A. Chung, J. Glass, "PSLA: Improving Audio Tagging with
Pretraining, Sampling, Labeling, and Aggregation", IEEE/ACM TASLP, 2021.

Y. Gong, S. Khurana, A. Rouditchenko, J. Glass, "CMKD: CNN/Transformer-Based
Cross-Model Knowledge Distillation for Audio Classification", arXiv:2203.06760,
2022.

M. Tan, Q. Le, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks", ICML 2019.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
import torch.nn as nn
from efficientnet_pytorch import EfficientNet

from fastast_sb.checkpoint import strip_prefix
from fastast_sb.features import NORM_STATS

__all__ = [
    "AST_AUDIOSET_MEAN",
    "AST_AUDIOSET_STD",
    "PSLA_AUDIOSET_MEAN",
    "PSLA_AUDIOSET_STD",
    "AttentionPooling",
    "EfficientNetTeacher",
]

AST_AUDIOSET_MEAN, AST_AUDIOSET_STD = NORM_STATS["audioset"]
PSLA_AUDIOSET_MEAN = -4.6476
PSLA_AUDIOSET_STD = 4.5699


class AttentionPooling(nn.Module):
    """Multi-head attention pooling over time that outputs logits.

    Arguments
    ---------
    in_channels, num_classes, num_heads : int
        Input channels, output logits and attention heads.

    Example
    -------
    >>> pool = AttentionPooling(16, 5, num_heads=2)
    >>> pool(torch.randn(3, 16, 7)).shape  # [B, C_in, T] -> [B, classes]
    torch.Size([3, 5])
    """

    def __init__(
        self, in_channels: int, num_classes: int, num_heads: int = 4
    ) -> None:
        super().__init__()
        if num_heads < 1:
            raise ValueError(f"num_heads must be >= 1, got {num_heads}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_heads = num_heads
        self.num_classes = num_classes
        # All heads in one 1x1 convolution each: [H * classes] channels.
        self.attention = nn.Conv1d(in_channels, num_heads * num_classes, 1)
        self.classes = nn.Conv1d(in_channels, num_heads * num_classes, 1)
        self.head_weight = nn.Parameter(torch.zeros(num_heads))

    def forward(
        self, x: torch.Tensor, mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Pool ``x [B, C_in, T]`` into logits ``[B, num_classes]``; frames
        where the boolean ``mask [B, T]`` is False get no attention."""
        batch, _, time = x.shape
        shape = (batch, self.num_heads, self.num_classes, time)
        att = torch.sigmoid(self.attention(x)).view(shape)  # [B, H, K, T]
        att = att.clamp(min=1e-7)  # PSLA's floor before normalisation
        if mask is not None:
            att = att * mask[:, None, None, :].to(att.dtype)
        att = att / att.sum(dim=-1, keepdim=True)
        cla = self.classes(x).view(shape)  # [B, H, K, T]
        heads = (att * cla).sum(dim=-1)  # [B, H, K]
        weights = torch.softmax(self.head_weight, dim=0)  # [H]
        return torch.einsum("bhk,h->bk", heads, weights)


class EfficientNetTeacher(nn.Module):
    """EfficientNet + attention pooling over AST-normalised features.

    The trunk is ``EfficientNet.from_name`` (random weights, nothing
    downloaded); it divides time and frequency by 32.

    Arguments
    ---------
    num_classes, num_heads : int
        Output logits and attention-pooling heads.
    model_name : str
        ``efficientnet_pytorch`` model name.
    renormalize : bool
        Map input from ``(x - input_mean) / (2 * input_std)`` to PSLA's
        ``(x - PSLA_AUDIOSET_MEAN) / PSLA_AUDIOSET_STD``.
    input_mean, input_std : float
        The AST normalisation of the input.

    Example
    -------
    >>> teacher = EfficientNetTeacher(10, model_name="efficientnet-b0")
    >>> teacher.eval()(torch.randn(1, 64, 128)).shape  # [B, T, F] -> [B, C]
    torch.Size([1, 10])
    """

    def __init__(
        self,
        num_classes: int = 527,
        model_name: str = "efficientnet-b2",
        num_heads: int = 4,
        renormalize: bool = False,
        input_mean: float = AST_AUDIOSET_MEAN,
        input_std: float = AST_AUDIOSET_STD,
    ) -> None:
        super().__init__()
        if input_std <= 0:
            raise ValueError(f"input_std must be > 0, got {input_std}")
        self.trunk = EfficientNet.from_name(model_name, in_channels=1)
        # Only ``extract_features`` is used: drop the unused ImageNet
        # classifier so that every parameter receives a gradient (DDP).
        self.trunk._fc = nn.Identity()
        channels = self.trunk._conv_head.out_channels
        self.pooling = AttentionPooling(channels, num_classes, num_heads)
        self.renormalize = renormalize
        # x_psla = x_ast * scale + shift, with fbank = x_ast * 2 s_in + m_in.
        self.scale = 2.0 * input_std / PSLA_AUDIOSET_STD
        self.shift = (input_mean - PSLA_AUDIOSET_MEAN) / PSLA_AUDIOSET_STD
        self.num_classes = num_classes

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, torch.Tensor], **kwargs: Any
    ) -> EfficientNetTeacher:
        """Build the teacher of a state dict (class count read from it), in
        eval mode; ``kwargs`` are constructor arguments.

        Example
        -------
        >>> saved = EfficientNetTeacher(3, model_name="efficientnet-b0")
        >>> EfficientNetTeacher.from_state_dict(
        ...     saved.state_dict(), model_name="efficientnet-b0").num_classes
        3
        """
        state = strip_prefix(state, ("module.", "net."))
        bias = state.get("pooling.classes.bias")
        if bias is None:
            raise ValueError(
                "not an EfficientNetTeacher state dict (no "
                "'pooling.classes.bias' key)"
            )
        heads = kwargs.get("num_heads", 4)
        model = cls(**{"num_classes": bias.numel() // heads, **kwargs})
        model.load_state_dict(state, strict=True)
        return model.eval()

    def normalize(self, feats: torch.Tensor) -> torch.Tensor:
        """``feats [B, T, F]``, in PSLA's convention if ``renormalize``.

        Example
        -------
        >>> t = EfficientNetTeacher(2, "efficientnet-b0", renormalize=True)
        >>> fbank = torch.tensor([[[PSLA_AUDIOSET_MEAN]]])
        >>> ast = (fbank - AST_AUDIOSET_MEAN) / (2 * AST_AUDIOSET_STD)
        >>> t.normalize(ast).abs().item() < 1e-6
        True
        """
        if not self.renormalize:
            return feats
        return feats * self.scale + self.shift

    def forward(
        self, feats: torch.Tensor, lens: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Logits ``[B, num_classes]`` of AST features ``[B, T, F]``; pooled
        frames past the relative lengths ``lens [B]`` get no attention."""
        if feats.dim() != 3:
            raise ValueError(
                f"feats must be [B, T, F], got shape {tuple(feats.shape)}"
            )
        x = self.normalize(feats).transpose(1, 2).unsqueeze(1)  # [B, 1, F, T]
        x = self.trunk.extract_features(x)  # [B, C, F / 32, T / 32]
        x = x.mean(dim=2)  # [B, C, T']
        mask = None
        if lens is not None:
            frames = x.shape[-1]
            valid = torch.ceil(lens.to(x.device).float() * frames).clamp(1)
            mask = torch.arange(frames, device=x.device) < valid[:, None]
        return self.pooling(x, mask)
