"""Teacher logits computed once per training clip and reused every epoch.

Without augmentation a clip's teacher output never changes, so
``teacher_cache: True`` makes :func:`fastast_sb.runner.fit_and_test` build a
:class:`TeacherLogitCache` over the training set (clean audio, evaluation
front end) that the Brain reads by example id instead of running the
teacher. Feature augmentation (SpecAugment) makes a feature-reading
teacher's cache inconsistent (with a warning); a waveform teacher (the
MobileNet) never sees it. Mixup is refused: cached logits cannot be mixed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Mapping, Sequence

import torch

from fastast_sb.checkpoint import PathLike, read_checkpoint

logger = logging.getLogger(__name__)


class TeacherLogitCache:
    """Teacher logits by example id.

    Arguments
    ---------
    logits : mapping
        Example id -> logits ``[C]``.
    source : str
        What the logits came from (the teacher checkpoint); a cache file
        from another source is not reused.

    Example
    -------
    >>> cache = TeacherLogitCache({"a": torch.tensor([1.0, 0.0]),
    ...                            "b": torch.tensor([0.0, 2.0])}, "t.ckpt")
    >>> cache(["b", "a"]).tolist()
    [[0.0, 2.0], [1.0, 0.0]]
    """

    def __init__(self, logits: Mapping[str, torch.Tensor], source: str) -> None:
        self.logits = dict(logits)
        self.source = str(source)

    def __call__(self, ids: Sequence[str], device: Any = "cpu") -> torch.Tensor:
        """Stacked logits ``[B, C]`` of ``ids``, on ``device``."""
        missing = [i for i in ids if i not in self.logits]
        if missing:
            raise KeyError(
                f"no cached teacher logits for {missing[:5]} "
                f"({len(missing)} ids): the cache covers the training set "
                "it was built on; delete it to rebuild"
            )
        return torch.stack([self.logits[i] for i in ids]).to(device)

    def save(self, path: PathLike) -> None:
        """Write the cache (atomically) to ``path``."""
        tmp = Path(path).with_suffix(".tmp")
        torch.save({"source": self.source, "logits": self.logits}, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: PathLike) -> TeacherLogitCache:
        """Read a cache written by :meth:`save`."""
        data = read_checkpoint(path, "teacher logit cache")
        return cls(data["logits"], data["source"])

    @classmethod
    def build(
        cls, brain: Any, dataset: Any, loader_opts: Dict[str, Any], source: str
    ) -> TeacherLogitCache:
        """Run ``brain.teacher`` once over ``dataset``, one clip at a time
        (no logit depends on batch padding), on its training input minus
        augmentation: the clean waveform, or ``compute_features`` ->
        ``mean_var_norm`` features."""
        import speechbrain as sb

        keep = ("num_workers", "pin_memory")
        kwargs = {k: v for k, v in loader_opts.items() if k in keep}
        loader = sb.dataio.dataloader.make_dataloader(
            dataset, batch_size=1, shuffle=False, **kwargs
        )
        logits: Dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for batch in loader:
                batch = batch.to(brain.device)
                wavs, lens = batch.sig
                feats = brain.modules.compute_features(wavs, lens)
                feats = brain.modules.mean_var_norm(feats, lens)
                out = brain.teacher(wavs, lens, feats).float().cpu()
                logits.update(zip(batch.id, out))
        logger.info("cached teacher logits for %d clips", len(logits))
        return cls(logits, source)


def check_augmentation(
    hparams: Mapping[str, Any], teacher_input: str = "feats"
) -> None:
    """Refuse mixup and warn about other augmentation with cached logits.

    SpecAugment and ``feature_augment`` change the features only, so the
    cached logits of a waveform teacher (``teacher_input="wavs"``) stay
    consistent; a ``time_shift`` changes the waveform: warned for all.

    Example
    -------
    >>> check_augmentation({"mixup_prob": 0.5})
    Traceback (most recent call last):
    ...
    ValueError: teacher_cache with mixup_prob=0.5: ...
    """
    mixup = float(hparams.get("mixup_prob") or 0.0)
    if mixup > 0:
        raise ValueError(
            f"teacher_cache with mixup_prob={mixup}: cached logits are those "
            "of single clean clips and cannot teach a mixed input; set "
            "--mixup_prob=0.0 or --teacher_cache=False (consistent teaching)"
        )
    augmented = []
    if teacher_input != "wavs":  # feature augmentation never reaches it
        augmented = [
            k for k in ("freqm", "timem") if int(hparams.get(k) or 0) > 0
        ]
        if hparams.get("feature_augment") is not None:
            augmented.append("feature_augment")
    if float(hparams.get("time_shift") or 0.0) > 0:  # changes the waveform
        augmented.append("time_shift")
    if augmented:
        logger.warning(
            "teacher_cache: the student is trained on augmented input "
            "(%s) but taught with logits of the clean clip; teaching is not "
            "consistent under augmentation (set them to 0/null, or "
            "--teacher_cache=False)",
            ", ".join(augmented),
        )
