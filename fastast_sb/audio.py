"""Audio loading for every recipe: any soundfile format, 16 kHz mono.

A missing or undecodable file, empty audio, NaN/Inf samples or a clip
shorter than one 25 ms filterbank frame get an error naming the file and
what was expected. Channels are averaged to mono and other sample rates
resampled (``torchaudio.functional.resample``). Upsampling adds no high
frequencies, so a file below the model's rate is logged as a warning once per
(file rate, model rate) pair and process, naming the first such file (a
prepared dataset reports its low-rate clips once instead, see
:func:`fastast_sb.dataio.manifest_datasets`). :func:`inspect_clip` finds the
clips that would fail training without decoding integer-sample files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Set, Tuple, Union

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio
import torchaudio.functional as AF
from torch import nn

logger = logging.getLogger(__name__)

#: The shortest usable clip: one 25 ms analysis frame of the filterbank.
MIN_SECONDS = 0.025
#: Sample encodings that can store NaN/Inf, read by :func:`inspect_clip`;
#: integer and compressed files are not decoded there (:func:`load_audio`
#: still refuses NaN/Inf in any file).
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
#: (file rate, model rate) pairs already warned about in this process.
_WARNED_RATES: Set[Tuple[int, int]] = set()


class AudioError(ValueError):
    """An audio file that cannot be used, with the reason."""


def to_mono(wav: torch.Tensor) -> torch.Tensor:
    """[S] or [S, C] (soundfile layout) -> [S] by averaging channels.

    Example
    -------
    >>> to_mono(torch.tensor([[1.0, 3.0], [2.0, 4.0]]))
    tensor([2., 3.])
    """
    return wav.mean(dim=1) if wav.ndim == 2 else wav


def resample(wav: torch.Tensor, orig_sr: int, target_sr: int) -> torch.Tensor:
    """Resample [..., S] from ``orig_sr`` to ``target_sr`` (no-op if equal).

    Example
    -------
    >>> resample(torch.zeros(8000), 8000, 16000).shape
    torch.Size([16000])
    """
    if orig_sr == target_sr:
        return wav
    return AF.resample(wav, orig_sr, target_sr)


class Resampler(nn.Module):
    """``torchaudio``'s windowed-sinc resampling of batches ``[..., S]``,
    always in float32 (also under autocast), as one matrix product.

    Same kernel, padding and output length as
    :func:`torchaudio.functional.resample`; its one-channel ``conv1d`` is
    slow on CPU (25 ms for 8 x 5 s from 16 to 32 kHz on one thread), a
    strided view of the padded waveform times the kernel is not.

    Example
    -------
    >>> wav = torch.randn(2, 16000)
    >>> out = Resampler(16000, 32000)(wav)
    >>> out.shape
    torch.Size([2, 32000])
    >>> torch.allclose(out, AF.resample(wav, 16000, 32000), atol=1e-5)
    True
    """

    def __init__(self, orig_sr: int, target_sr: int) -> None:
        super().__init__()
        if orig_sr <= 0 or target_sr <= 0:
            raise ValueError(
                f"sample rates must be > 0, got {orig_sr} and {target_sr}"
            )
        reference = torchaudio.transforms.Resample(orig_sr, target_sr)
        self.orig = orig_sr // reference.gcd
        self.new = target_sr // reference.gcd
        kernel = getattr(reference, "kernel", torch.ones(1, 1, 1))
        self.width = getattr(reference, "width", 0)
        # [new, 1, K] -> [K, new]: output phase p of each input step
        self.register_buffer("kernel", kernel[:, 0].T.float(), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav [..., S]`` at ``orig_sr`` -> float32 ``[..., S']`` at
        ``target_sr``, ``S' = ceil(S * target_sr / orig_sr)``."""
        if self.orig == self.new:
            return wav.float()
        shape = wav.shape
        with torch.autocast(device_type=wav.device.type, enabled=False):
            flat = wav.float().reshape(-1, shape[-1])
            padded = F.pad(flat, (self.width, self.width + self.orig))
            frames = padded.unfold(-1, self.kernel.shape[0], self.orig)
            out = (frames @ self.kernel).flatten(1)  # [N, steps * new]
        length = -(-self.new * shape[-1] // self.orig)  # ceil
        return out[:, :length].reshape(*shape[:-1], -1)


def check_waveform(wav: torch.Tensor, name: str = "audio") -> torch.Tensor:
    """Reject empty or non-finite audio with a clear error.

    Example
    -------
    >>> check_waveform(  # doctest: +ELLIPSIS
    ...     torch.tensor([float("nan")]), "x.wav")
    Traceback (most recent call last):
    ...
    fastast_sb.audio.AudioError: x.wav: 1 of 1 samples are NaN/Inf; ...
    """
    if wav.numel() == 0:
        raise AudioError(f"{name}: audio is empty (0 samples)")
    if bad := int((~torch.isfinite(wav)).sum()):
        raise AudioError(
            f"{name}: {bad} of {wav.numel()} samples are NaN/Inf; "
            "expected finite audio"
        )
    return wav


def audio_duration(path: Union[str, Path]) -> float:
    """Seconds of audio in a file, from its header (:class:`AudioError`
    with the decoder's reason if it cannot be opened or has no samples).

    Example
    -------
    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(f, np.zeros(8000, dtype="float32"), 16000)
    >>> audio_duration(f)
    0.5
    """
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as err:
        raise AudioError(str(err)) from err
    if info.frames == 0:
        raise AudioError("no samples")
    return info.frames / info.samplerate


@dataclass(frozen=True)
class ClipInfo:
    """What :func:`inspect_clip` learns about a clip: its length, rate and
    why it cannot be trained on (``problem``; None when it can)."""

    seconds: float
    sample_rate: int
    problem: Optional[str] = None


def inspect_clip(path: Union[str, Path]) -> ClipInfo:
    """Length, rate and problem of a clip, the file opened once: shorter
    than :data:`MIN_SECONDS`, or NaN/Inf samples (only float files, see
    :data:`FLOAT_SUBTYPES`, are read for those). :class:`AudioError` with
    the decoder's reason if it cannot be opened or has no samples.

    Example
    -------
    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(f, np.full(160, np.nan), 16000, subtype="FLOAT")
    >>> info = inspect_clip(f)
    >>> info.seconds, info.problem
    (0.01, '160 of 160 samples are NaN/Inf')
    """
    try:
        with sf.SoundFile(str(path)) as f:
            frames, rate, subtype = f.frames, f.samplerate, f.subtype
            if frames == 0:
                raise AudioError("no samples")
            bad = 0
            if subtype in FLOAT_SUBTYPES:
                for block in f.blocks(65536, dtype="float32", always_2d=True):
                    bad += int(np.count_nonzero(~np.isfinite(block)))
            total = frames * f.channels
    except (RuntimeError, sf.LibsndfileError) as err:
        raise AudioError(str(err)) from err
    seconds = frames / rate
    problem = None
    if bad:
        problem = f"{bad} of {total} samples are NaN/Inf"
    elif seconds < MIN_SECONDS:
        problem = f"{seconds * 1000:.1f} ms, shorter than one 25 ms frame"
    return ClipInfo(seconds, rate, problem)


def warn_low_rate(name: str, file_rate: int, sample_rate: int) -> bool:
    """Log that ``name`` at ``file_rate`` is upsampled to ``sample_rate``,
    once per rate pair in this process; True if it logged.

    Example
    -------
    >>> warn_low_rate("x.wav", 16000, 16000)  # not below: nothing to say
    False
    """
    pair = (int(file_rate), int(sample_rate))
    if pair[0] >= pair[1] or pair in _WARNED_RATES:
        return False
    _WARNED_RATES.add(pair)
    logger.warning(
        "%s is sampled at %d Hz, below the model's %d Hz: it is upsampled, "
        "which adds no high frequencies and may mislead the model (other "
        "%d Hz files are not reported)",
        name,
        *pair,
        pair[0],
    )
    return True


def load_audio(
    path: Union[str, Path], sample_rate: int = 16000, warn_rate: bool = True
) -> torch.Tensor:
    """Read any file soundfile reads (wav, flac, ogg, ...) as a [S] mono
    float32 waveform in [-1, 1], resampled to ``sample_rate`` (a lower file
    rate logged by :func:`warn_low_rate` if ``warn_rate``).

    Example
    -------
    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(f, np.zeros((8000, 2), dtype="float32"), 8000)
    >>> load_audio(f).shape
    torch.Size([16000])
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(
            f"{path}: cannot decode audio ({err}); expected a file soundfile "
            "can read (wav, flac, ogg, ...)"
        ) from err
    wav = to_mono(torch.from_numpy(np.ascontiguousarray(data)))
    check_waveform(wav, str(path))
    if warn_rate:
        warn_low_rate(str(path), int(sr), sample_rate)
    wav = resample(wav, int(sr), sample_rate)
    if wav.numel() < (need := int(MIN_SECONDS * sample_rate)):
        raise AudioError(
            f"{path}: {1000 * len(data) / sr:.1f} ms of audio, shorter than "
            f"one 25 ms frame ({wav.numel()} of {need} samples at "
            f"{sample_rate} Hz); expected at least {MIN_SECONDS} s"
        )
    return wav
