"""``AudioTagger``: scores, top-k labels and sliding windows for a model folder.

:class:`AudioTagger` is SpeechBrain's ``EncoderClassifier`` with these
differences:

- ``encode_batch`` passes the relative lengths to ``compute_features``, as
  the recipes do (``EncoderClassifier`` lets the padding of a padded batch
  enter the fbank and the waveform mean);
- scores are probabilities: sigmoid for multi-label models, softmax for
  single-label ones (the model folder's ``multilabel`` key);
- :meth:`AudioTagger.tag_waveform` / :meth:`AudioTagger.tag_file` cover a
  long clip with windows of the model's input length (on frame starts,
  half a window apart by default, the last one aligned to the end:
  :func:`~fastast_sb.inference.windows.window_starts`) and average their
  scores, as ``classify_batch`` does (and, on a model folder,
  SpeechBrain's own ``EncoderClassifier``: :mod:`~fastast_sb.inference.
  windowed`);
  ``tag_file`` reads a file window by window
  (:class:`~fastast_sb.inference.streaming.AudioReader`), so memory stays
  bounded by the window whatever the file's length, and ``classify_file``
  covers the whole clip the same way (never only its first window);
- it computes in a chosen number format (:meth:`AudioTagger.set_precision`,
  the ``precision`` of :meth:`AudioTagger.from_folder`, or the model
  folder's ``inference_precision`` key; else :attr:`DEFAULT_PRECISION`,
  ``auto``, as ``EncoderClassifier`` on a model folder; fp32 outputs equal
  the ONNX export's; see :mod:`fastast_sb.precision`).

References: Y. Gong et al., "AST: Audio Spectrogram Transformer",
Interspeech 2021; S. R. Behera et al., "FastAST", 2024.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple, Union

import torch
from speechbrain.inference.classifiers import EncoderClassifier
from speechbrain.utils.fetching import FetchConfig

from fastast_sb.audio import check_waveform, load_audio
from fastast_sb.inference.loading import load_strict
from fastast_sb.inference.streaming import AudioReader
from fastast_sb.inference.windowed import (
    DEFAULT_PRECISION,
    ClipFbank,
    WindowedAST,
)
from fastast_sb.inference.windows import (
    TagResult,
    clip_logits,
    default_hop,
    top_k,
    window_starts,
)
from fastast_sb.models.ast import AST
from fastast_sb.precision import (
    autocast,
    check_precision,
    prepare_model,
    resolve_precision,
)

#: Kaldi's default analysis window (ms).
FRAME_LENGTH_MS = 25.0

__all__ = ["AudioTagger", "TagResult", "clip_logits", "top_k", "window_starts"]


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
    >>> tagger = AudioTagger.from_folder(tmp.name, precision="fp32")
    >>> result = tagger.tag_waveform(0.1 * torch.randn(40000))
    >>> result.windows, len(result.top(2)), tagger.inference_precision
    (3, 2, 'fp32')
    >>> tmp.cleanup()
    """

    HPARAMS_NEEDED = ["label_encoder", "multilabel"]
    #: Number format when neither the caller nor the folder names one.
    DEFAULT_PRECISION = DEFAULT_PRECISION

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._check_weights()
        # Whole clips through the windowed modules; mods.compute_features
        # stays one model input's fbank, as direct callers expect.
        self._clip_fbank: Optional[ClipFbank] = None
        if isinstance(self.mods.compute_features, ClipFbank):
            self._clip_fbank = self.mods.compute_features
            self.mods.compute_features = self._clip_fbank.window_fbank()
        if isinstance(self.mods.embedding_model, WindowedAST):
            self.mods.embedding_model.precision = "fp32"  # set_precision's
        self._float_mods = {
            name: self.mods[name] for name in ("embedding_model", "classifier")
        }
        #: The concrete number format computed in (``set_precision``).
        self.inference_precision = "fp32"
        chosen = getattr(self.hparams, "inference_precision", None)
        self.set_precision(chosen or self.DEFAULT_PRECISION)

    def _check_weights(self) -> None:
        """Folders written before strict loading: re-read their weights
        strictly (a mismatch is a ``ValueError`` naming the file)."""
        pretrainer = getattr(self.hparams, "pretrainer", None)
        for name in ("embedding_model", "classifier"):
            if pretrainer is None or name in pretrainer.custom_hooks:
                continue
            if name in pretrainer.paths:
                load_strict(self.mods[name], pretrainer.paths[name])

    def set_precision(self, precision: str) -> str:
        """Compute in ``precision`` (:data:`~fastast_sb.precision.PRECISIONS`;
        ``auto``: bf16 where the device computes it natively, else fp32, and
        fp32 on the CPU for a model too small for bf16 to pay);
        returns the concrete format. int8 quantizes copies of the linear
        layers (CPU only); the float weights are kept for other formats."""
        model = self._float_mods["embedding_model"]
        gflops = model.flops() / 1e9 if isinstance(model, AST) else None
        concrete = resolve_precision(
            check_precision(precision), self.device, gflops
        )
        r = self.r
        for name, module in self._float_mods.items():
            self.mods[name] = prepare_model(module, concrete).eval()
        self.r = r
        self.inference_precision = concrete
        return concrete

    @classmethod
    def from_folder(
        cls,
        folder: Union[str, Path],
        device: str = "cpu",
        precision: Optional[str] = None,
    ) -> AudioTagger:
        """Load a model folder on ``device``, with the network disabled, in
        ``precision`` (None: the folder's ``inference_precision``, else
        :attr:`DEFAULT_PRECISION`)."""
        folder = Path(folder)
        if not (folder / "hyperparams.yaml").is_file():
            raise FileNotFoundError(
                f"model folder {folder} has no hyperparams.yaml; expected a "
                "folder written by 'python -m fastast_sb.inference export' "
                "or 'import'"
            )
        tagger = cls.from_hparams(
            source=str(folder.resolve()),
            savedir=None,
            run_opts={"device": device},
            fetch_config=FetchConfig(allow_network=False),
        )
        if precision is not None:
            tagger.set_precision(precision)
        return tagger

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
        """[B, S] (or [S]) waveforms -> [B, W, D] float32 pooled embeddings
        of each clip's W_i windows (zero rows past them; W = 1 where each
        clip fits the model input; folders written before windows: the
        first window), computed in :attr:`inference_precision`, padding
        past the relative lengths ``wav_lens`` [B] ignored (no
        ``normalize``: model folders have no embedding normaliser)."""
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
        fbank = self._clip_fbank
        if fbank is None:  # a folder written before windows
            fbank = self.mods.compute_features
        with torch.no_grad(), self._autocast():
            feats = fbank(wavs, wav_lens)
            feats = self.mods.mean_var_norm(feats, wav_lens)
            return self.mods.embedding_model(feats, wav_lens).float()

    def _autocast(self) -> Any:
        return autocast(self.device, self.inference_precision)

    def _logits(
        self, wavs: torch.Tensor, wav_lens: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """[B, C] float logits, computed in :attr:`inference_precision`."""
        emb = self.encode_batch(wavs, wav_lens)
        with torch.no_grad(), self._autocast():
            return self.mods.classifier(emb).squeeze(1).float()

    def classify_batch(
        self, wavs: torch.Tensor, wav_lens: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, List[str]]:
        """SpeechBrain's ``classify_batch`` (logits, best logit, index,
        label) in :attr:`inference_precision`; a clip longer than the model
        input gets the logits of its windows' averaged scores (as
        :meth:`tag_waveform`; folders written before windows cut it)."""
        logits = self._logits(wavs, wav_lens)
        score, index = torch.max(logits, dim=-1)
        labels = self.hparams.label_encoder.decode_torch(index)
        return logits, score, index, labels

    def scores_batch(
        self, wavs: torch.Tensor, wav_lens: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """[B, S] waveforms -> [B, C] sigmoid (multi-label) or softmax
        scores (a long clip: its windows' average)."""
        logits = self._logits(wavs, wav_lens)
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

    def _windows(
        self,
        num_samples: int,
        read: Callable[[int, int], torch.Tensor],
        hop: Optional[float],
        batch_size: int,
    ) -> TagResult:
        """Score ``num_samples`` samples, ``read(start, stop)`` giving each
        window, ``batch_size`` windows at a time (the rest is never held)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        fbank = self.mods.compute_features
        shift = int(round(fbank.sample_rate * fbank.frame_shift / 1000))
        window = self.window_samples or num_samples
        if hop is None:  # frames: the EncoderClassifier path's windows
            frames = default_hop(fbank.target_length or 1)
        else:
            frames = int(round(hop * self.sample_rate / shift))
        if frames < 1:
            raise ValueError(
                f"hop must be > 0 s (at least one {shift / self.sample_rate}"
                f" s frame), got {hop}"
            )
        starts = window_starts(num_samples, window, frames * shift, shift)
        scores = []
        for i in range(0, len(starts), batch_size):
            chunks = [read(s, s + window) for s in starts[i : i + batch_size]]
            scores.append(self.scores_batch(torch.stack(chunks)).cpu())
        window_scores = torch.cat(scores)  # [W, C]
        rate = self.sample_rate
        spans = [
            (s / rate, min(s + window, num_samples) / rate) for s in starts
        ]
        return TagResult(
            window_scores.mean(dim=0),
            self.labels,
            len(starts),
            num_samples / rate,
            window_scores,
            spans,
        )

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
        return self._windows(
            wav.numel(), lambda a, b: wav[a:b], hop, batch_size
        )

    def tag_file(
        self,
        path: Union[str, Path],
        hop: Optional[float] = None,
        batch_size: int = 8,
    ) -> TagResult:
        """Tag a file (any rate, any channels) as :meth:`tag_waveform` does
        its waveform, reading only ``batch_size`` windows at a time;
        ``FileNotFoundError`` or :class:`~fastast_sb.audio.AudioError`."""
        with AudioReader(path, self.sample_rate) as audio:
            return self._windows(audio.num_samples, audio.read, hop, batch_size)

    def classify_file(
        self,
        path: Union[str, Path],
        hop: Optional[float] = None,
        batch_size: int = 8,
        **kwargs: Any,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, List[str]]:
        """SpeechBrain's ``classify_file`` over the whole clip: the windows
        of :meth:`tag_file`; ``out_prob`` [1, C] holds logits whose sigmoid
        or softmax are the clip's scores (:func:`clip_logits`)."""
        result = self.tag_file(path, hop, batch_size)
        out_prob = clip_logits(result.scores, self.multilabel).unsqueeze(0)
        score, index = torch.max(out_prob, dim=-1)
        labels = self.hparams.label_encoder.decode_torch(index)
        return out_prob, score, index, labels
