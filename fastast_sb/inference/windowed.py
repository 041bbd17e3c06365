"""The model folder's modules: SpeechBrain's own classes cover a long clip.

SpeechBrain's ``EncoderClassifier.classify_batch`` / ``classify_file`` run
``compute_features(wavs)`` (no lengths) -> ``mean_var_norm(feats,
wav_lens)`` -> ``embedding_model(feats, wav_lens)`` -> ``classifier(emb)``.
With these four modules (what :func:`~fastast_sb.inference.folder.
write_model_folder` writes) that chain scores a clip of any length with the
windows of :class:`~fastast_sb.inference.tagger.AudioTagger`
(:func:`~fastast_sb.inference.windows.window_starts`, half a window apart,
the last one aligned to the clip's end) and gives its clip scores:

- :class:`ClipFbank`: the Kaldi fbank of each whole row, never cut (at
  least ``target_length`` frames), as :class:`ClipFeatures`, which also
  carry the padded length the relative lengths ``wav_lens`` refer to;
- :class:`ClipNorm`: ``GlobalNorm`` of them;
- :class:`WindowedAST`: an ``AST`` that cuts each clip's own frames (the
  padding of a padded batch never enters) into windows on frame starts (so
  each window's features are those of its own waveform), encodes them
  ``window_batch`` at a time in ``precision`` and returns [B, W, D]
  per-window embeddings, the rows past a clip's W_i windows zero ([B, 1,
  D] when every clip fits one window, as an ``AST`` gives); this is what
  ``encode_batch`` returns;
- :class:`WindowedHead`: an ``ASTHead`` that averages each clip's window
  probabilities (softmax; sigmoid for ``multilabel``) and returns their
  :func:`~fastast_sb.inference.windows.clip_logits` [B, 1, C]; a clip of
  one window gets the head's logits unchanged (as before windows).

On tensors ``ClipNorm``, ``WindowedAST`` and ``WindowedHead`` are the
``GlobalNorm``, ``AST`` and ``ASTHead`` they subclass (same state dicts:
weight files load unchanged). ``precision``
(:data:`~fastast_sb.precision.PRECISIONS`; None: :data:`DEFAULT_PRECISION`,
``AudioTagger``'s) is the model folder's ``inference_precision``: bf16 and
fp16 autocast the encoder, int8 quantizes a copy of it on the first call
(after the Pretrainer has filled the weights); the fbank and the head
compute in fp32.

Reference: M. Ravanelli et al., "SpeechBrain: A General-Purpose Speech
Toolkit", 2021.
"""

from __future__ import annotations

from typing import Any, List, NamedTuple, Optional

import torch
from torch import Tensor

from fastast_sb.features import GlobalNorm, KaldiFbank, abs_lengths
from fastast_sb.inference.folder import ModelFbank
from fastast_sb.inference.windows import clip_logits, default_hop, window_starts
from fastast_sb.models.ast import AST, ASTHead
from fastast_sb.precision import (
    autocast,
    check_precision,
    prepare_model,
    resolve_precision,
)

#: Number format when the folder names none (``AudioTagger``'s default).
DEFAULT_PRECISION = "auto"


class ClipFeatures(NamedTuple):
    """Features of whole clips: ``feats`` [B, T, F] (T >= the model input),
    ``num_samples`` (the padded waveform length ``wav_lens`` refer to),
    ``shift`` / ``min_samples`` (frame shift and length in samples) and
    ``pad`` (the value of a frame past a clip's end: 0, then normalised)."""

    feats: Tensor
    num_samples: int
    shift: int
    min_samples: int
    pad: float = 0.0

    def frames(self, lens: Optional[Tensor]) -> List[int]:
        """Whole frames of each clip (relative lengths ``lens`` [B]).

        Example
        -------
        >>> x = ClipFeatures(torch.zeros(2, 9, 1), 1600, 160, 400)
        >>> x.frames(torch.tensor([1.0, 0.5]))
        [8, 3]
        """
        n = abs_lengths(lens, self.feats.shape[0], self.num_samples)
        if len(n) and int(n.min()) < self.min_samples:
            raise ValueError(
                f"a clip has {int(n.min())} samples; at least "
                f"{self.min_samples} (one frame) are needed"
            )
        return [1 + (int(k) - self.min_samples) // self.shift for k in n]


class ClipFbank(KaldiFbank):
    """``KaldiFbank`` of whole clips: rows (up to ``lens``) are never cut,
    only padded to at least ``target_length`` frames (the model input).

    Example
    -------
    >>> x = ClipFbank(target_length=100)(torch.randn(2, 40000))
    >>> tuple(x.feats.shape), x.num_samples, x.shift
    ((2, 248, 128), 40000, 160)
    """

    def forward(  # type: ignore[override]
        self, wavs: Tensor, lens: Optional[Tensor] = None
    ) -> ClipFeatures:
        """[B, S] (or [S]) waveforms -> :class:`ClipFeatures`."""
        wavs, feats = self.clips(wavs, lens)
        length = max([f.shape[0] for f in feats] + [self.target_length or 1])
        shift = int(round(self.sample_rate * self.frame_shift / 1000))
        return ClipFeatures(
            torch.stack([self.fit(f, length) for f in feats]),
            wavs.shape[1],
            shift,
            self.min_samples,
        )

    def window_fbank(self) -> ModelFbank:
        """The fbank of one model input (cut at ``target_length``)."""
        return ModelFbank(
            self.sample_rate, self.n_mels, self.target_length, self.frame_shift
        )


class ClipNorm(GlobalNorm):
    """``GlobalNorm`` that also normalises :class:`ClipFeatures`.

    Example
    -------
    >>> x = ClipFeatures(torch.full((1, 2, 3), 4.0), 560, 160, 400)
    >>> y = ClipNorm(-6.0, 5.0)(x)
    >>> y.feats[0, 0, 0].item(), y.pad
    (1.0, 0.6)
    """

    def forward(self, x: Any, lens: Optional[Tensor] = None) -> Any:
        """Normalise [B, T, F] features or :class:`ClipFeatures`."""
        if isinstance(x, ClipFeatures):
            pad = (x.pad - self.mean) / (2 * self.std)
            return x._replace(feats=super().forward(x.feats), pad=pad)
        return super().forward(x, lens)


class WindowedAST(AST):
    """An ``AST`` that encodes :class:`ClipFeatures` window by window.

    Arguments
    ---------
    *args, **kwargs
        Those of ``AST``.
    precision : str, optional
        Number format of the windows' encoder (None: ``DEFAULT_PRECISION``).
    window_batch : int
        Windows per encoder pass.
    hop : int, optional
        Frames between window starts (None: half a window).

    Example
    -------
    >>> m = WindowedAST(input_tdim=100, preset="tiny", depth=1,
    ...                 precision="fp32").eval()
    >>> x = ClipNorm(-4.27, 4.57)(ClipFbank(target_length=100)(
    ...     torch.randn(2, 40000)))
    >>> m(x, torch.tensor([1.0, 0.3])).shape  # 4 and 1 windows
    torch.Size([2, 4, 192])
    >>> m(torch.randn(2, 100, 128)).shape  # a tensor: the plain AST
    torch.Size([2, 1, 192])
    """

    def __init__(
        self,
        *args: Any,
        precision: Optional[str] = None,
        window_batch: int = 8,
        hop: Optional[int] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if precision is not None:
            check_precision(precision)
        if window_batch < 1 or (hop is not None and hop < 1):
            raise ValueError(
                f"window_batch and hop must be >= 1, got {window_batch} "
                f"and {hop}"
            )
        self.precision = precision
        self.window_batch = window_batch
        self.hop = hop
        self.__dict__["_int8"] = None  # a quantized copy, not a submodule

    def forward(  # type: ignore[override]
        self, x: Any, lens: Optional[Tensor] = None, r: Any = None
    ) -> Tensor:
        """[B, T, F] features -> [B, 1, D] (``AST``); :class:`ClipFeatures`
        -> [B, W, D] float32 window embeddings (zero past each clip's)."""
        if not isinstance(x, ClipFeatures):
            return super().forward(x, lens, r)
        windows, owner = self._windows(x, lens)
        r = self.r if r is None else r
        device = x.feats.device
        concrete = resolve_precision(
            self.precision or DEFAULT_PRECISION, device, self.flops(r) / 1e9
        )
        model = self._quantized() if concrete == "int8" else self
        parts, size = [], self.window_batch
        with autocast(device, concrete):
            for i in range(0, len(windows), size):  # [<=size, T, F] each
                chunk = torch.stack(windows[i : i + size])
                parts.append(AST.forward(model, chunk, r=r).float())
        emb = torch.cat(parts)  # [N, 1, D]
        counts = torch.bincount(torch.tensor(owner), minlength=len(x.feats))
        out = emb.new_zeros(len(x.feats), int(counts.max()), emb.shape[-1])
        slot = 0
        for i, count in enumerate(counts.tolist()):
            out[i, :count] = emb[slot : slot + count, 0]
            slot += count
        return out

    def _windows(self, x: ClipFeatures, lens: Optional[Tensor]):
        """The [T, F] windows of every clip, in order, and their clips."""
        size = self.input_tdim
        hop = self.hop or default_hop(size)
        windows: List[Tensor] = []
        owner: List[int] = []
        for i, count in enumerate(x.frames(lens)):
            row = x.feats[i, :count]  # [frames, F]
            if count < size:
                fill = row.new_full((size - count, row.shape[1]), x.pad)
                row = torch.cat([row, fill])
            for start in window_starts(count, size, hop):
                windows.append(row[start : start + size])
                owner.append(i)
        return windows, owner

    def _quantized(self) -> AST:
        """The int8 copy, made on first use (the weights are loaded)."""
        if self._int8 is None:
            self.__dict__["_int8"] = prepare_model(self, "int8").eval()
        return self._int8


class WindowedHead(ASTHead):
    """An ``ASTHead`` that averages the windows of each clip.

    Example
    -------
    >>> head = WindowedHead(4, 3, multilabel=False).eval()
    >>> emb = torch.randn(2, 3, 4)
    >>> emb[1, 1:] = 0  # clip 1 has one window
    >>> out = head(emb)
    >>> probs = torch.softmax(ASTHead.forward(head, emb[0]), -1).mean(0)
    >>> bool(torch.allclose(out[0, 0].softmax(-1), probs))
    True
    >>> bool(torch.allclose(out[1, 0], ASTHead.forward(head, emb[1, 0])))
    True
    """

    def __init__(self, *args: Any, multilabel: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.multilabel = bool(multilabel)

    def forward(self, x: Tensor) -> Tensor:
        """[B, W, D] window embeddings (zero rows: no window) -> [B, 1, C]
        clip logits; [B, 1, D] (or any other shape) -> the head's logits."""
        if x.ndim != 3 or x.shape[1] == 1:
            return super().forward(x)
        valid = x.ne(0).any(-1)  # [B, W]
        logits = super().forward(x).float()  # [B, W, C]
        if self.multilabel:
            probs = torch.sigmoid(logits)
        else:
            probs = torch.softmax(logits, dim=-1)
        counts = valid.sum(1).tolist()  # each clip's windows come first
        out = [
            logits[i, 0]
            if n == 1
            else clip_logits(probs[i, :n].mean(0), self.multilabel)
            for i, n in enumerate(counts)
        ]
        return torch.stack(out).unsqueeze(1)  # [B, 1, C]
