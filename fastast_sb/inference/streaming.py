"""Audio for tagging: files found in folders, long files read span by span.

:class:`AudioReader` gives the samples ``[start, stop)`` of a file as they
would be after :func:`fastast_sb.audio.load_audio` (mono, resampled to the
model's rate) while reading only that span from disk, plus a margin for
the resampling filter: memory stays bounded by the window, whatever the
file's length. :func:`find_audio` expands folders (recursively) into the
audio files they hold.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, List, Union

import numpy as np
import soundfile as sf
import torch

from fastast_sb.audio import (
    AudioError,
    check_waveform,
    resample,
    to_mono,
    warn_low_rate,
)

PathLike = Union[str, Path]

#: File name endings taken from folders (what libsndfile decodes).
AUDIO_SUFFIXES = frozenset(
    {f".{name.lower()}" for name in sf.available_formats()}
    | {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"}
)

#: torchaudio's default sinc filter width (zero crossings per side).
_LOWPASS_WIDTH = 6


def find_audio(paths: Iterable[PathLike]) -> List[Path]:
    """Files as given; each folder replaced by the audio files under it
    (any depth, sorted). A folder holding none is a ``FileNotFoundError``.

    Example
    -------
    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "sub"))
    >>> for name in ("b.wav", "sub/a.flac", "notes.txt"):
    ...     open(os.path.join(root, name), "w").close()
    >>> [p.name for p in find_audio([root, "x.ogg"])]
    ['b.wav', 'a.flac', 'x.ogg']
    """
    found: List[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            found.append(path)
            continue
        files = sorted(
            p
            for p in path.rglob("*")
            if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
        )
        if not files:
            raise FileNotFoundError(
                f"no audio files in folder {path} (looked for "
                f"{', '.join(sorted(AUDIO_SUFFIXES)[:6])}, ...)"
            )
        found.extend(files)
    return found


class AudioReader:
    """One audio file as a [S] mono waveform at ``sample_rate``, read span
    by span (use as a context manager; the file stays open inside it).

    ``FileNotFoundError`` for a missing file, :class:`AudioError` for one
    that cannot be decoded, is empty or holds NaN/Inf in a span read; a
    file rate below ``sample_rate`` is logged (:func:`warn_low_rate`).

    Example
    -------
    >>> import os, tempfile
    >>> f = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(f, np.zeros((8000, 2), dtype="float32"), 8000)
    >>> with AudioReader(f, 16000) as audio:
    ...     audio.num_samples, audio.read(100, 400).shape
    (16000, torch.Size([300]))
    """

    def __init__(self, path: PathLike, sample_rate: int) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"audio file not found: {self.path}")
        try:
            self.file = sf.SoundFile(str(self.path))
        except (sf.LibsndfileError, RuntimeError, TypeError) as err:
            raise AudioError(
                f"{self.path}: cannot decode audio ({err}); expected a file "
                "soundfile can read (wav, flac, ogg, ...)"
            ) from err
        self.sample_rate = int(sample_rate)
        self.file_rate = int(self.file.samplerate)
        self.frames = int(self.file.frames)
        if self.frames <= 0:
            self.close()
            raise AudioError(f"{self.path}: audio is empty (0 samples)")
        warn_low_rate(str(self.path), self.file_rate, self.sample_rate)
        g = math.gcd(self.file_rate, self.sample_rate)
        self._up, self._down = self.sample_rate // g, self.file_rate // g
        #: Samples at ``sample_rate`` (as ``torchaudio`` resampling gives).
        self.num_samples = math.ceil(self.frames * self._up / self._down)
        width = math.ceil(
            _LOWPASS_WIDTH * self._down / (0.99 * min(self._up, self._down))
        )
        # Input samples either side of a span that the filter reads,
        # rounded to whole resampling periods (so output phases align).
        self._margin = (math.ceil(width / self._down) + 2) * self._down

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self.file.close()

    def _frames(self, start: int, stop: int) -> torch.Tensor:
        """File frames ``[start, stop)`` as a [S] mono float32 tensor."""
        self.file.seek(start)
        data = self.file.read(stop - start, dtype="float32", always_2d=True)
        return to_mono(torch.from_numpy(np.ascontiguousarray(data)))

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Samples ``[start, stop)`` at ``sample_rate`` (cut at the end)."""
        stop = min(stop, self.num_samples)
        if not 0 <= start < stop:
            raise ValueError(
                f"span [{start}, {stop}) is outside the {self.num_samples} "
                f"samples of {self.path}"
            )
        if self._up == self._down:
            wav = self._frames(start, stop)
        else:
            period = start // self._up  # whole resampling periods
            lo = max(0, period * self._down - self._margin)
            hi = min(
                self.frames,
                math.ceil(stop * self._down / self._up) + self._margin,
            )
            out = resample(
                self._frames(lo, hi), self.file_rate, self.sample_rate
            )
            offset = lo // self._down * self._up  # output index of lo
            wav = out[start - offset : stop - offset]
        return check_waveform(wav, str(self.path))
