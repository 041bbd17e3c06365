"""Feature-level augmentations applied after normalisation (training only).

:class:`NoiseRoll` is the "noise" augmentation of AST's Speech Commands
recipe (Gong et al., "AST: Audio Spectrogram Transformer", Interspeech
2021), implemented from its description: uniform noise of random strength
added to the normalised fbank, then a random circular roll along time.
:class:`~fastast_sb.brain.FastASTBrain` runs it (a recipe's
``feature_augment``) after ``mean_var_norm`` on training batches, so a
teacher sees the same augmented features as the student.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class NoiseRoll(nn.Module):
    """Add ``U(0, 1) * a / divisor`` noise, then roll along time.

    Per example (as AST's data loader), ``a ~ U(0, 1)`` and a shift from
    ``[-max_shift, max_shift)`` frames.

    Arguments
    ---------
    noise_divisor : float
        AST: 10 (noise of at most 0.1 normalised units).
    max_shift : int
        Largest time shift in frames (AST: 10); 0 disables rolling.

    Example
    -------
    >>> aug = NoiseRoll(max_shift=0)
    >>> x = torch.zeros(2, 128, 128)
    >>> y = aug(x)
    >>> bool((y >= 0).all() and (y < 0.1).all())
    True
    >>> torch.equal(aug.eval()(x), x)
    True
    """

    def __init__(self, noise_divisor: float = 10.0, max_shift: int = 10):
        super().__init__()
        if not noise_divisor > 0:
            raise ValueError(f"noise_divisor must be > 0, got {noise_divisor}")
        if max_shift < 0:
            raise ValueError(f"max_shift must be >= 0, got {max_shift}")
        self.noise_divisor = float(noise_divisor)
        self.max_shift = int(max_shift)

    def forward(
        self, feats: torch.Tensor, lens: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Augment [B, T, F] normalised features in training mode (identity
        in eval); ``lens`` is unused (AST rolls the padded input too)."""
        if not self.training:
            return feats
        if feats.ndim != 3:
            raise ValueError(
                f"NoiseRoll expects features [B, T, F], got "
                f"{tuple(feats.shape)}"
            )
        b, t, _ = feats.shape
        strength = torch.rand(b, 1, 1, device=feats.device, dtype=feats.dtype)
        out = feats + torch.rand_like(feats) * strength / self.noise_divisor
        if self.max_shift == 0:
            return out
        shifts = torch.randint(-self.max_shift, self.max_shift, (b,))
        idx = torch.arange(t)[None, :] - shifts[:, None]  # [B, T]
        idx = (idx % t).to(feats.device)
        return torch.gather(out, 1, idx[:, :, None].expand_as(out))
