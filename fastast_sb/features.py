"""AST front end: Kaldi fbank, global normalisation, SpecAugment, mixup.

Constants follow the AST recipes (Gong et al., "AST: Audio Spectrogram
Transformer", Interspeech 2021): 16 kHz mono audio minus its mean, 128-bin
Kaldi fbank (Hanning window, 10 ms shift) padded or cut at the end to
``target_length``, masks filled with 0 before the normalisation
``(x - mean) / (2 * std)``. SpecAugment: Park et al., Interspeech 2019;
mixup: Zhang et al., ICLR 2018.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torchaudio.compliance.kaldi as kaldi
from torch import nn

#: (mean, std) of AST-style fbank features per dataset.
NORM_STATS = {
    "audioset": (-4.2677393, 4.5689974),
    "esc50": (-6.6268077, 5.358466),
    "speechcommands": (-6.845978, 5.5654526),
}


def abs_lengths(
    lens: Optional[torch.Tensor], batch: int, max_len: int
) -> torch.Tensor:
    """Relative lengths in (0, 1] -> absolute sample counts (long).

    Example
    -------
    >>> abs_lengths(torch.tensor([1.0, 0.5]), 2, 10)
    tensor([10,  5])
    """
    if lens is None:
        return torch.full((batch,), max_len, dtype=torch.long)
    return torch.round(lens.detach().float().cpu() * max_len).long()


class KaldiFbank(nn.Module):
    """Batched, length-aware Kaldi fbank with AST's parameters: ``n_mels``
    bins every ``frame_shift`` ms, zero-padded or cut at the end to
    ``target_length`` frames (by default, to the longest example).

    Example
    -------
    >>> fb = KaldiFbank(target_length=100)
    >>> fb(torch.randn(2, 16000), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 100, 128])
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 128,
        target_length: Optional[int] = None,
        frame_shift: float = 10.0,
    ) -> None:
        super().__init__()
        if target_length is not None and target_length < 1:
            raise ValueError(f"target_length must be >= 1, got {target_length}")
        self.sample_rate = sample_rate
        self.n_mels = n_mels
        self.target_length = target_length
        self.frame_shift = frame_shift
        self.min_samples = int(sample_rate * 0.025)

    def single(self, wav: torch.Tensor) -> torch.Tensor:
        """fbank of one waveform [S] (mean removed) -> [frames, n_mels]."""
        if wav.numel() < self.min_samples:
            raise ValueError(
                f"audio has {wav.numel()} samples; at least {self.min_samples} "
                f"(one 25 ms frame at {self.sample_rate} Hz) are needed"
            )
        wav = (wav - wav.mean()).unsqueeze(0)
        return kaldi.fbank(
            wav,
            htk_compat=True,
            sample_frequency=self.sample_rate,
            use_energy=False,
            window_type="hanning",
            num_mel_bins=self.n_mels,
            dither=0.0,
            frame_shift=self.frame_shift,
        )

    def forward(
        self, wavs: torch.Tensor, lens: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """[B, S] (or [S]) waveforms -> [B, T, n_mels], ignoring samples
        past the relative lengths ``lens`` [B]."""
        wavs, feats = self.clips(wavs, lens)
        length = self.target_length or max(f.shape[0] for f in feats)
        if not feats:
            return wavs.float().new_zeros(0, length, self.n_mels)
        return torch.stack([self.fit(f, length) for f in feats])

    def clips(
        self, wavs: torch.Tensor, lens: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """[B, S] (or [S]) waveforms -> ([B, S] waveforms, each clip's own
        [frames, n_mels] features up to its relative length in ``lens``)."""
        if wavs.ndim == 1:
            wavs = wavs.unsqueeze(0)
        if wavs.ndim != 2:
            raise ValueError(
                f"{type(self).__name__} expects waveforms [B, S], got "
                f"{tuple(wavs.shape)}"
            )
        n = abs_lengths(lens, *wavs.shape)
        feats = [self.single(w[: int(k)]) for w, k in zip(wavs.float(), n)]
        return wavs, feats

    def fit(
        self, feats: torch.Tensor, length: Optional[int] = None
    ) -> torch.Tensor:
        """[frames, n_mels] -> [length, n_mels]: zero frames added or frames
        cut at the end (``length``: ``target_length``; None keeps all)."""
        length = length or self.target_length
        if length is None:
            return feats
        feats = feats[:length]
        return nn.functional.pad(feats, (0, 0, 0, length - feats.shape[0]))


class GlobalNorm(nn.Module):
    """AST's normalisation ``(x - mean) / (2 * std)`` with dataset
    statistics (see ``NORM_STATS``).

    Example
    -------
    >>> GlobalNorm(-6.0, 5.0)(torch.full((1, 2, 3), 4.0))[0, 0, 0].item()
    1.0
    """

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        if not std > 0:
            raise ValueError(f"std must be > 0, got {std}")
        self.mean = float(mean)
        self.std = float(std)

    def forward(
        self, x: torch.Tensor, lens: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Normalise [B, T, F] features (``lens`` unused)."""
        return (x - self.mean) / (2 * self.std)


def _band(
    batch: int, max_width: int, dim: int, generator: Optional[torch.Generator]
) -> torch.Tensor:
    """[B, dim] mask, True in one random band (< max_width) per example."""
    width = (torch.rand(batch, generator=generator) * max_width).long()
    width = torch.minimum(width, torch.tensor(dim))
    start = (torch.rand(batch, generator=generator) * (dim - width)).long()
    idx = torch.arange(dim)[None]
    return (idx >= start[:, None]) & (idx < (start + width)[:, None])


class SpecAugment(nn.Module):
    """One frequency and one time mask per example, filled with 0 (AST: on
    the raw fbank, in training only); ``freqm`` (bins) and ``timem``
    (frames) are the widest masks.

    Example
    -------
    >>> aug = SpecAugment(freqm=24, timem=96).train()
    >>> aug(torch.ones(2, 512, 128)).shape
    torch.Size([2, 512, 128])
    >>> bool((aug.eval()(torch.ones(1, 5, 4)) == 1).all())
    True
    """

    def __init__(self, freqm: int = 0, timem: int = 0) -> None:
        super().__init__()
        if freqm < 0 or timem < 0:
            raise ValueError(
                f"mask widths must be >= 0, got freqm={freqm}, timem={timem}"
            )
        self.freqm = freqm
        self.timem = timem

    def forward(
        self, x: torch.Tensor, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        """Mask [B, T, F] features when training; identity in eval mode."""
        if not self.training or (self.freqm == 0 and self.timem == 0):
            return x
        b, t, f = x.shape
        keep = torch.ones(b, t, f, dtype=torch.bool)
        if self.freqm > 0:
            keep &= ~_band(b, self.freqm, f, generator)[:, None, :]
        if self.timem > 0:
            keep &= ~_band(b, self.timem, t, generator)[:, :, None]
        return x * keep.to(x.device, x.dtype)


class Mixup(nn.Module):
    """AST-style waveform mixup within a batch: with probability ``prob``
    (0 disables) an example becomes ``lam * w1 + (1 - lam) * w2`` (mean
    removed) with a random partner, targets mixed the same way,
    ``lam ~ Beta(alpha, alpha)`` (AST: ``alpha`` = 10).

    Example
    -------
    >>> mix = Mixup(prob=1.0).train()
    >>> w, y, lens = mix(torch.randn(4, 100), torch.eye(4))
    >>> torch.allclose(y.sum(1), torch.ones(4))
    True
    """

    def __init__(self, prob: float = 0.0, alpha: float = 10.0) -> None:
        super().__init__()
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"mixup probability must be in [0, 1], got {prob}")
        if alpha <= 0:
            raise ValueError(f"mixup alpha must be > 0, got {alpha}")
        self.prob = prob
        self.alpha = alpha

    def forward(
        self,
        wavs: torch.Tensor,
        targets: torch.Tensor,
        lens: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Mix waveforms [B, S] and soft targets [B, C] (training only);
        a mixed example's length is the longer of the pair's."""
        if not self.training or self.prob == 0.0:
            return wavs, targets, lens
        b = wavs.shape[0]
        if targets.ndim != 2 or targets.shape[0] != b:
            raise ValueError(
                "mixup needs soft targets [B, C] matching the batch; got "
                f"{tuple(targets.shape)} for {b} waveforms"
            )
        partner = torch.randint(0, b, (b,))
        lam = torch.distributions.Beta(self.alpha, self.alpha).sample((b,))
        apply = torch.rand(b) < self.prob
        lam = torch.where(apply, lam, 1.0).to(wavs.device, wavs.dtype)
        mixed = lam[:, None] * wavs + (1 - lam[:, None]) * wavs[partner]
        mixed = mixed - mixed.mean(dim=1, keepdim=True)
        # Unmixed examples keep their waveform exactly.
        mixed = torch.where((~apply).to(wavs.device)[:, None], wavs, mixed)
        lam_t = lam.to(targets.dtype)[:, None]
        targets = lam_t * targets + (1 - lam_t) * targets[partner]
        if lens is not None:
            pair = torch.maximum(lens, lens[partner])
            lens = torch.where(apply.to(lens.device), pair, lens)
        return mixed, targets, lens


class TimeShift(nn.Module):
    """Random circular time shift of each training waveform.

    Each clip is rolled within its valid length (padding stays at the end)
    by up to ``max_shift`` seconds either way (0 disables). It acts before
    mixup, so a teacher with its own front end hears the same audio.
    Identity in eval mode.

    Example
    -------
    >>> shift = TimeShift(max_shift=1.0, sample_rate=4).train()
    >>> w = torch.arange(8.0)[None]
    >>> out = shift(w, torch.tensor([0.5]))
    >>> sorted(out[0, :4].tolist()), out[0, 4:].tolist()
    ([0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0])
    >>> torch.equal(shift.eval()(w), w)
    True
    """

    def __init__(self, max_shift: float = 0.0, sample_rate: int = 16000):
        super().__init__()
        if not max_shift >= 0:
            raise ValueError(f"max_shift must be >= 0 seconds, got {max_shift}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
        self.max_samples = int(round(max_shift * sample_rate))

    def forward(
        self, wavs: torch.Tensor, lens: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Shift [B, S] waveforms (relative lengths ``lens``) in training."""
        if not self.training or self.max_samples == 0:
            return wavs
        if wavs.ndim != 2:
            raise ValueError(
                f"TimeShift expects waveforms [B, S], got {tuple(wavs.shape)}"
            )
        b, s = wavs.shape
        valid = abs_lengths(lens, b, s)
        shift = torch.randint(-self.max_samples, self.max_samples + 1, (b,))
        pos = torch.arange(s)[None, :]  # [1, S]
        n = valid.clamp(min=1)[:, None]
        src = (pos - shift[:, None]) % n  # rolled index inside each clip
        src = torch.where(pos < valid[:, None], src, pos)
        return torch.gather(wavs, 1, src.to(wavs.device))
