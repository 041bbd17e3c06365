"""``AudioTagger``: scores, top-k labels and sliding windows for a model folder.

:class:`AudioTagger` is SpeechBrain's ``EncoderClassifier`` with three
differences:

- ``encode_batch`` passes the relative lengths to ``compute_features``, as
  the recipes do (``EncoderClassifier`` lets the padding of a padded batch
  enter the fbank and the waveform mean);
- scores are probabilities: sigmoid for multi-label models, softmax for
  single-label ones (the model folder's ``multilabel`` key);
- :meth:`AudioTagger.tag_waveform` / :meth:`AudioTagger.tag_file` cover a
  long clip with windows of the model's input length (half a window apart
  by default, the last one aligned to the end) and average their scores.

References: Y. Gong et al., "AST: Audio Spectrogram Transformer",
Interspeech 2021; S. R. Behera et al., "FastAST", 2024.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

import torch
from speechbrain.inference.classifiers import EncoderClassifier
from speechbrain.utils.fetching import FetchConfig

from fastast_sb.audio import check_waveform, load_audio

#: Kaldi's default analysis window (ms).
FRAME_LENGTH_MS = 25.0


def window_starts(num_samples: int, window: int, hop: int) -> List[int]:
    """Start samples of ``window``-long windows, ``hop`` apart, covering
    ``num_samples``; the last one ends at the clip's end (0 for a short clip).

    Example
    -------
    >>> window_starts(100, 40, 20)
    [0, 20, 40, 60]
    >>> window_starts(90, 40, 20)
    [0, 20, 40, 50]
    >>> window_starts(30, 40, 20)
    [0]
    """
    if window < 1 or hop < 1:
        raise ValueError(
            f"window and hop must be >= 1 sample, got {window} and {hop}"
        )
    if num_samples <= window:
        return [0]
    return [*range(0, num_samples - window, hop), num_samples - window]


@dataclass
class TagResult:
    """Scores of one clip: ``scores`` [C] (class probabilities averaged
    over the ``windows`` windows, ``window_scores`` [W, C] those of each),
    ``labels`` (class names in output order), ``duration`` (seconds)."""

    scores: torch.Tensor
    labels: List[str]
    windows: int
    duration: float
    window_scores: torch.Tensor = field(repr=False)

    def top(self, k: int = 5) -> List[Tuple[str, float]]:
        """The ``k`` best (label, score) pairs, best first.

        Example
        -------
        >>> r = TagResult(torch.tensor([0.1, 0.7, 0.2]), ["a", "b", "c"], 1,
        ...               1.0, torch.zeros(1, 3))
        >>> [(label, round(s, 2)) for label, s in r.top(2)]
        [('b', 0.7), ('c', 0.2)]
        """
        return top_k(self.scores, self.labels, k)


def top_k(
    scores: torch.Tensor, labels: List[str], k: int = 5
) -> List[Tuple[str, float]]:
    """The ``k`` highest [C] ``scores`` as (label, score), best first.

    Example
    -------
    >>> top_k(torch.tensor([0.25, 0.75]), ["x", "y"], 5)
    [('y', 0.75), ('x', 0.25)]
    """
    if k < 1:
        raise ValueError(f"top-k needs k >= 1, got {k}")
    if scores.ndim != 1 or scores.numel() != len(labels):
        raise ValueError(
            f"scores of shape {tuple(scores.shape)} for {len(labels)} labels;"
            " expected [C] with one score per label"
        )
    values, index = torch.topk(scores, min(k, scores.numel()))
    return [(labels[int(i)], float(v)) for v, i in zip(values, index)]


class AudioTagger(EncoderClassifier):
    """Tag audio with a model folder (:meth:`from_folder` or ``from_hparams``).

    Example
    -------
    >>> import tempfile
    >>> from fastast_sb.features import GlobalNorm, KaldiFbank
    >>> from fastast_sb.inference.folder import write_model_folder
    >>> from fastast_sb.models.ast import AST, ASTHead
    >>> tmp = tempfile.TemporaryDirectory()
    >>> _ = write_model_folder(
    ...     tmp.name, AST(input_tdim=128, preset="tiny", depth=1),
    ...     ASTHead(192, 3), ["dog", "cat", "bird"],
    ...     KaldiFbank(target_length=128), GlobalNorm(-4.27, 4.57),
    ...     multilabel=True)
    >>> tagger = AudioTagger.from_folder(tmp.name)
    >>> result = tagger.tag_waveform(0.1 * torch.randn(40000))
    >>> result.windows, len(result.top(2))
    (3, 2)
    >>> tmp.cleanup()
    """

    HPARAMS_NEEDED = ["label_encoder", "multilabel"]

    @classmethod
    def from_folder(
        cls, folder: Union[str, Path], device: str = "cpu"
    ) -> AudioTagger:
        """Load a model folder on ``device``, with the network disabled."""
        folder = Path(folder)
        if not (folder / "hyperparams.yaml").is_file():
            raise FileNotFoundError(
                f"model folder {folder} has no hyperparams.yaml; expected a "
                "folder written by 'python -m fastast_sb.inference export' "
                "or 'import'"
            )
        return cls.from_hparams(
            source=str(folder.resolve()),
            savedir=None,
            run_opts={"device": device},
            fetch_config=FetchConfig(allow_network=False),
        )

    @property
    def labels(self) -> List[str]:
        """Class names in output order."""
        enc = self.hparams.label_encoder
        return [enc.ind2lab[i] for i in range(len(enc))]

    @property
    def multilabel(self) -> bool:
        """Sigmoid (independent classes) or softmax scores."""
        return bool(self.hparams.multilabel)

    @property
    def sample_rate(self) -> int:
        """The rate audio is resampled to."""
        return int(self.mods.compute_features.sample_rate)

    @property
    def r(self) -> Any:
        """The merge schedule (settable: ``tagger.r = 8``)."""
        return self.mods.embedding_model.r

    @r.setter
    def r(self, value: Any) -> None:
        self.mods.embedding_model.r = value

    @property
    def window_samples(self) -> Optional[int]:
        """Samples giving exactly ``target_length`` frames (None: no limit)."""
        fbank = self.mods.compute_features
        if fbank.target_length is None:
            return None
        shift = int(round(fbank.sample_rate * fbank.frame_shift / 1000))
        length = int(round(fbank.sample_rate * FRAME_LENGTH_MS / 1000))
        return (fbank.target_length - 1) * shift + length

    def load_audio(
        self, path: Union[str, Path], savedir: Optional[str] = None
    ) -> torch.Tensor:
        """A local file as a [S] mono waveform at the model's rate
        (:func:`fastast_sb.audio.load_audio`; ``savedir`` is ignored)."""
        return load_audio(path, self.sample_rate).to(self.device)

    def encode_batch(
        self,
        wavs: torch.Tensor,
        wav_lens: Optional[torch.Tensor] = None,
        normalize: bool = False,
    ) -> torch.Tensor:
        """[B, S] (or [S]) waveforms -> [B, 1, D] pooled embeddings, padding
        past the relative lengths ``wav_lens`` [B] ignored (no ``normalize``:
        model folders have no embedding normaliser)."""
        if normalize:
            raise ValueError(
                "normalize=True needs a mean_var_norm_emb; FastAST model "
                "folders define none"
            )
        if wavs.ndim == 1:
            wavs = wavs.unsqueeze(0)
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0])
        wavs, wav_lens = wavs.to(self.device).float(), wav_lens.to(self.device)
        with torch.no_grad():
            feats = self.mods.compute_features(wavs, wav_lens)
            feats = self.mods.mean_var_norm(feats, wav_lens)
            return self.mods.embedding_model(feats, wav_lens)

    def scores_batch(
        self, wavs: torch.Tensor, wav_lens: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """[B, S] waveforms (one model input at most) -> [B, C] sigmoid
        (multi-label) or softmax scores."""
        emb = self.encode_batch(wavs, wav_lens)
        with torch.no_grad():
            logits = self.mods.classifier(emb).squeeze(1)
        if self.multilabel:
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=-1)

    def tag_batch(
        self,
        wavs: torch.Tensor,
        wav_lens: Optional[torch.Tensor] = None,
        top: int = 5,
    ) -> List[List[Tuple[str, float]]]:
        """The ``top`` best (label, score) pairs of each clip of a batch."""
        scores = self.scores_batch(wavs, wav_lens).cpu()
        return [top_k(row, self.labels, top) for row in scores]

    def tag_waveform(
        self,
        wav: torch.Tensor,
        hop: Optional[float] = None,
        batch_size: int = 8,
    ) -> TagResult:
        """Score one [S] mono waveform at the model's rate, of any length,
        with windows ``hop`` seconds apart (half a window by default),
        ``batch_size`` windows per forward pass."""
        if wav.ndim != 1:
            raise ValueError(
                f"expected one mono waveform [S], got shape {tuple(wav.shape)}"
            )
        check_waveform(wav, "waveform")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        window = self.window_samples or wav.numel()
        hop_samples = (
            window // 2 if hop is None else int(hop * self.sample_rate)
        )
        if hop_samples < 1:
            raise ValueError(f"hop must be > 0 s, got {hop}")
        starts = window_starts(wav.numel(), window, hop_samples)
        chunks = [wav[s : s + window] for s in starts]
        window_scores = torch.cat(  # [W, C]
            [
                self.scores_batch(torch.stack(chunks[i : i + batch_size]))
                for i in range(0, len(chunks), batch_size)
            ]
        ).cpu()
        duration = wav.numel() / self.sample_rate
        mean = window_scores.mean(dim=0)
        return TagResult(
            mean, self.labels, len(starts), duration, window_scores
        )

    def tag_file(
        self,
        path: Union[str, Path],
        hop: Optional[float] = None,
        batch_size: int = 8,
    ) -> TagResult:
        """Read a file (any rate, any channels) and tag it with windows;
        ``FileNotFoundError`` or :class:`~fastast_sb.audio.AudioError`."""
        return self.tag_waveform(self.load_audio(path), hop, batch_size)
