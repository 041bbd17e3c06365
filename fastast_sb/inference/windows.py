"""Windows over a long clip and the scores they give.

:func:`window_starts` places windows of the model's input length (frame
starts, the last one aligned to the clip's end; :func:`default_hop`, half a
window apart), :class:`TagResult` holds a clip's averaged
and per-window scores, :func:`top_k` ranks them and :func:`clip_logits`
turns averaged scores back into logits (SpeechBrain's ``out_prob``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

import torch


def window_starts(
    num_samples: int, window: int, hop: int, shift: int = 1
) -> List[int]:
    """Start samples of ``window``-long windows, ``hop`` apart, covering
    ``num_samples``; the last one is the latest start on the ``shift`` grid
    whose window fits (0 for a short clip).

    With ``shift`` the fbank frame shift (and ``hop`` a multiple of it)
    every start is a frame start, so the fbank of the whole clip cut into
    windows is the fbank of each window: the one placement of
    ``AudioTagger`` and of the model folder's ``EncoderClassifier`` path
    (:mod:`~fastast_sb.inference.windowed`), which counts in frames
    (``shift`` 1). The last window ends less than ``shift`` samples before
    the clip's end, samples no whole frame holds.

    Example
    -------
    >>> window_starts(100, 40, 20)
    [0, 20, 40, 60]
    >>> window_starts(90, 40, 20)
    [0, 20, 40, 50]
    >>> window_starts(95, 40, 20, shift=10)
    [0, 20, 40, 50]
    >>> window_starts(30, 40, 20)
    [0]
    """
    if window < 1 or hop < 1 or shift < 1:
        raise ValueError(
            f"window, hop and shift must be >= 1 sample, got {window}, {hop}"
            f" and {shift}"
        )
    if num_samples <= window:
        return [0]
    last = (num_samples - window) // shift * shift
    return [*range(0, last, hop), last]


def default_hop(target_length: int) -> int:
    """The default hop in frames: half a window of ``target_length``.

    Example
    -------
    >>> default_hop(128), default_hop(1)
    (64, 1)
    """
    return max(1, target_length // 2)


@dataclass
class TagResult:
    """Scores of one clip: ``scores`` [C] (class probabilities averaged
    over the ``windows`` windows, ``window_scores`` [W, C] those of each),
    ``labels`` (class names in output order), ``duration`` (seconds) and
    ``spans``: (start, end) of each window in seconds."""

    scores: torch.Tensor
    labels: List[str]
    windows: int
    duration: float
    window_scores: torch.Tensor = field(repr=False)
    spans: List[Tuple[float, float]] = field(default_factory=list)

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


def clip_logits(scores: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Logits whose sigmoid (``multilabel``) or softmax are ``scores``
    (softmax: the log-probabilities, SpeechBrain's ``out_prob``).

    Example
    -------
    >>> p = torch.tensor([0.2, 0.8])
    >>> torch.softmax(clip_logits(p, False), -1).tolist()
    [0.20000000298023224, 0.800000011920929]
    >>> torch.sigmoid(clip_logits(p, True)).tolist()
    [0.20000000298023224, 0.800000011920929]
    """
    tiny = torch.finfo(scores.dtype).tiny
    if multilabel:
        eps = torch.finfo(scores.dtype).eps
        return torch.logit(scores.clamp(tiny, 1 - eps))
    return scores.clamp_min(tiny).log()
