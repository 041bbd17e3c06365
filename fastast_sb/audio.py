"""Audio loading for every recipe: any soundfile format, 16 kHz mono.

A missing or undecodable file, empty audio or NaN/Inf samples get an error
naming the file and what was expected. Channels are averaged to mono and
other sample rates resampled (``torchaudio.functional.resample``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Union

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

logger = logging.getLogger(__name__)


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


def load_audio(
    path: Union[str, Path], sample_rate: int = 16000
) -> torch.Tensor:
    """Read any file soundfile reads (wav, flac, ogg, ...) as a [S] mono
    float32 waveform in [-1, 1], resampled to ``sample_rate``.

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
    return resample(wav, int(sr), sample_rate)
