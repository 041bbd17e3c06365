"""SpeechBrain datasets for audio classification and tagging manifests.

A manifest is a CSV with ``ID``, ``duration``, ``wav`` and ``label``
(multi-label: class names joined by ``;``). Every item yields ``sig`` (the
16 kHz mono waveform) and ``targets`` (a one-hot or multi-hot float vector),
so single- and multi-label recipes share one Brain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Optional, Union

import speechbrain as sb
import torch
from speechbrain.dataio.encoder import CategoricalEncoder

from fastast_sb.audio import load_audio

SPLITS = ("train", "valid", "test")


class DataError(ValueError):
    """A data folder or manifest that cannot be used, with the reason."""


def fetch(url: str, path: Union[str, Path], where: str) -> Path:
    """Download ``url`` to ``path`` (an explicit prepare step only).

    Offline (or on any network error) this raises a :class:`DataError` that
    names the URL and, with ``where``, how to put the data in place by hand.

    Example
    -------
    >>> fetch("file:///no/such/x.zip", "/tmp/x.zip", "put it in /data")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fastast_sb.dataio.DataError: could not download file:///no/such/x.zip ...
    """
    import urllib.request

    try:
        urllib.request.urlretrieve(url, path)
    except OSError as err:
        raise DataError(
            f"could not download {url} ({err}). Offline? Download it "
            f"elsewhere and {where}."
        ) from err
    return Path(path)


def make_label_encoder(
    classes: Iterable[str], save_path: Optional[Union[str, Path]] = None
) -> CategoricalEncoder:
    """A label encoder with ``classes`` in the given order (saved if asked).

    Example
    -------
    >>> enc = make_label_encoder(["dog", "rooster"])
    >>> enc.encode_label("rooster"), len(enc)
    (1, 2)
    """
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(list(classes))
    if save_path is not None:
        encoder.save(str(save_path))
    return encoder


def read_classes(path: Union[str, Path]) -> List[str]:
    """One class name per line.

    Example
    -------
    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "c.txt")
    >>> _ = open(f, "w").write("a\\nb\\n")
    >>> read_classes(f)
    ['a', 'b']
    """
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def targets_from_labels(
    labels: str, encoder: CategoricalEncoder, multilabel: bool = False
) -> torch.Tensor:
    """One-hot (or multi-hot for ``;``-joined labels) float vector [C].

    Example
    -------
    >>> enc = make_label_encoder(["a", "b", "c"])
    >>> targets_from_labels("a;c", enc, multilabel=True)
    tensor([1., 0., 1.])
    """
    names = labels.split(";") if multilabel else [labels]
    out = torch.zeros(len(encoder))
    for name in names:
        if name not in encoder.lab2ind:
            raise ValueError(
                f"unknown class {name!r}; the model's classes are "
                f"{list(encoder.lab2ind)[:10]}..."
            )
        out[encoder.lab2ind[name]] = 1.0
    return out


def classification_dataset(
    manifest: Union[str, Path],
    encoder: CategoricalEncoder,
    sample_rate: int = 16000,
    multilabel: bool = False,
) -> sb.dataio.dataset.DynamicItemDataset:
    """A dataset of ``sig`` and ``targets`` items from a CSV manifest.

    Arguments
    ---------
    manifest : str or Path
        CSV with ID, duration, wav, label.
    encoder : CategoricalEncoder
        Class names -> indices.
    sample_rate : int
        Audio is resampled to this rate (mono).
    multilabel : bool
        ``label`` holds ``;``-joined class names.

    Returns
    -------
    DynamicItemDataset
    """
    dataset = sb.dataio.dataset.DynamicItemDataset.from_csv(str(manifest))

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav: str) -> torch.Tensor:
        return load_audio(wav, sample_rate)

    @sb.utils.data_pipeline.takes("label")
    @sb.utils.data_pipeline.provides("targets")
    def label_pipeline(label: str) -> torch.Tensor:
        return targets_from_labels(label, encoder, multilabel)

    dataset.add_dynamic_item(audio_pipeline)
    dataset.add_dynamic_item(label_pipeline)
    dataset.set_output_keys(["id", "sig", "targets"])
    return dataset


def manifest_datasets(
    folder: Union[str, Path],
    n_classes: int,
    sample_rate: int = 16000,
    multilabel: bool = False,
) -> dict:
    """Datasets of a prepared run folder (``classes.txt``, split CSVs).

    Checks the class count against the model's, writes the label encoder
    (``label_encoder.txt``, main process only) and builds one dataset per
    split.

    Arguments
    ---------
    folder : str or Path
        Where a recipe's prepare step wrote ``classes.txt`` and
        ``train.csv`` / ``valid.csv`` / ``test.csv``.
    n_classes : int
        Classes of the model's head.
    sample_rate : int
        Audio rate after resampling.
    multilabel : bool
        Labels are ``;``-joined class names.

    Returns
    -------
    dict
        ``train``, ``valid``, ``test`` datasets and the ``encoder``.
    """
    out = Path(folder)
    classes = read_classes(out / "classes.txt")
    if len(classes) != n_classes:
        raise DataError(
            f"the data has {len(classes)} classes but n_classes={n_classes}; "
            f"pass --n_classes={len(classes)}"
        )
    main = sb.utils.distributed.if_main_process()
    encoder = make_label_encoder(
        classes, out / "label_encoder.txt" if main else None
    )
    sets: dict = {
        split: classification_dataset(
            out / f"{split}.csv", encoder, sample_rate, multilabel
        )
        for split in SPLITS
    }
    sets["encoder"] = encoder
    return sets
