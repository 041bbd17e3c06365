"""Manifests, datasets and the shared steps of the recipes' data preparation.

A manifest is a CSV with ``ID``, ``duration``, ``wav`` and ``label``
(multi-label: ``;``-joined class names). Every item yields ``sig`` (16 kHz
mono) and ``targets`` (one-hot or multi-hot floats), so all recipes share one
Brain. A prepared folder holds ``{train,valid,test}.csv``, ``classes.txt``
(one name a line), ``prepare.json`` (what was done; clips per sample rate)
and, as in SpeechBrain recipes, ``save/label_encoder.txt``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import speechbrain as sb
import torch
from speechbrain.dataio.encoder import CategoricalEncoder

from fastast_sb.audio import load_audio

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
SPLITS = ("train", "valid", "test")
#: MiB of decoded clips a training run keeps in memory (``audio_cache_mb``
#: of hparams/base/training.yaml: the same default).
AUDIO_CACHE_MB = 2048.0


class DataError(ValueError):
    """A data folder or manifest that cannot be used, with the reason."""


def fetch(
    url: str,
    path: PathLike,
    where: str,
    extract_to: Optional[PathLike] = None,
) -> Path:
    """Download ``url`` to ``path``; with ``extract_to`` extract the zip or
    tar archive there, delete it and return ``extract_to``. A network error
    raises a :class:`DataError` naming the URL and ``where`` to put the data.

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
    if extract_to is None:
        return Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            zf.extractall(extract_to)
    else:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        with tarfile.open(path) as tf:
            tf.extractall(extract_to, **safe)  # unsafe members refused
    Path(path).unlink()
    return Path(extract_to)


def make_label_encoder(
    classes: Iterable[str], save_path: Optional[PathLike] = None
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


def read_classes(path: PathLike) -> List[str]:
    """The non-empty lines of a file, stripped (one class name a line).

    Example
    -------
    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "c.txt")
    >>> _ = open(f, "w").write("a\\n\\nb\\n")
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


class WaveformCache:
    """Decoded, resampled clips kept in memory, up to ``max_mb`` MiB.

    Decoding (Ogg Vorbis, FLAC) and resampling cost a few milliseconds a
    clip, every epoch: on ESC-10 about a fifth of a small student's training
    step. The cache keeps each clip as :func:`load_audio` returned it (the
    same values, so results do not change) until the budget is spent; later
    clips are read from disk every time. ``max_mb=0`` turns it off. With
    ``num_workers > 0`` each worker fills its own copy (kept only with
    persistent workers).

    Example
    -------
    >>> import tempfile, os, numpy as np, soundfile as sf
    >>> f = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(f, np.zeros(16000, dtype="float32"), 16000)
    >>> cache = WaveformCache(max_mb=1)
    >>> cache.load(f, 16000).shape, cache.load(f, 16000).shape, cache.hits
    (torch.Size([16000]), torch.Size([16000]), 1)
    >>> WaveformCache(max_mb=0).load(f, 16000).shape  # off: read each time
    torch.Size([16000])
    """

    def __init__(self, max_mb: float = AUDIO_CACHE_MB) -> None:
        if max_mb < 0:
            raise ValueError(
                f"audio_cache_mb={max_mb}: expected a size in MiB >= 0 "
                "(0 turns the cache off)"
            )
        self.max_bytes = int(max_mb * 2**20)
        self.used = 0
        self.hits = 0
        self.clips: Dict[Tuple[str, int], torch.Tensor] = {}

    def load(
        self, path: PathLike, sample_rate: int, warn_rate: bool = True
    ) -> torch.Tensor:
        """:func:`load_audio` of ``path``, from memory when it was read
        before (a copy: callers may change it)."""
        key = (str(path), int(sample_rate))
        if key in self.clips:
            self.hits += 1
            return self.clips[key].clone()
        wav = load_audio(path, sample_rate, warn_rate)
        size = wav.numel() * wav.element_size()
        if self.used + size <= self.max_bytes:
            self.clips[key] = wav.clone()
            self.used += size
        return wav


def classification_dataset(
    manifest: PathLike,
    encoder: CategoricalEncoder,
    sample_rate: int = 16000,
    multilabel: bool = False,
    warn_rate: bool = True,
    cache: Optional[WaveformCache] = None,
) -> sb.dataio.dataset.DynamicItemDataset:
    """A dataset of ``id``, ``sig`` (mono, ``sample_rate``) and ``targets``
    from a CSV manifest (``warn_rate``: see :func:`load_audio`; ``cache``:
    a :class:`WaveformCache`, which several datasets may share)."""
    dataset = sb.dataio.dataset.DynamicItemDataset.from_csv(str(manifest))
    read = cache.load if cache is not None else load_audio

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav: str) -> torch.Tensor:
        return read(wav, sample_rate, warn_rate)

    @sb.utils.data_pipeline.takes("label")
    @sb.utils.data_pipeline.provides("targets")
    def label_pipeline(label: str) -> torch.Tensor:
        return targets_from_labels(label, encoder, multilabel)

    dataset.add_dynamic_item(audio_pipeline)
    dataset.add_dynamic_item(label_pipeline)
    dataset.set_output_keys(["id", "sig", "targets"])
    return dataset


def manifest_datasets(
    folder: PathLike,
    n_classes: int,
    sample_rate: int = 16000,
    multilabel: bool = False,
    audio_cache_mb: float = 0.0,
) -> dict:
    """The ``train``, ``valid``, ``test`` datasets and ``encoder`` of a
    prepared folder (class count checked against ``n_classes``; the main
    process writes ``save/label_encoder.txt``). Clips below ``sample_rate``
    are reported once, from ``prepare.json`` (:func:`warn_low_rates`). The
    splits share one :class:`WaveformCache` of ``audio_cache_mb`` MiB."""
    out = Path(folder)
    classes = read_classes(out / "classes.txt")
    if len(classes) != n_classes:
        raise DataError(
            f"the data has {len(classes)} classes but n_classes={n_classes}; "
            f"pass --n_classes={len(classes)}"
        )
    encoder_path = None
    if sb.utils.distributed.if_main_process():
        (out / "save").mkdir(parents=True, exist_ok=True)
        encoder_path = out / "save" / "label_encoder.txt"
        warn_low_rates(out, sample_rate)
    encoder = make_label_encoder(classes, encoder_path)
    cache = WaveformCache(audio_cache_mb) if audio_cache_mb else None
    sets: dict = {
        split: classification_dataset(
            out / f"{split}.csv", encoder, sample_rate, multilabel, False, cache
        )
        for split in SPLITS
    }
    sets["encoder"] = encoder
    return sets


def prepared_datasets(
    hparams: Mapping[str, Any], prepare: Callable[..., Any], **options: Any
) -> dict:
    """Run ``prepare`` once (main process) into the run's ``output_folder``
    with the run's ``data_folder``, ``bad_clips`` and ``options``; return
    :func:`manifest_datasets` of the result."""
    out = str(hparams["output_folder"])
    kwargs = dict(data_folder=hparams["data_folder"], save_folder=out)
    kwargs["bad_clips"] = hparams["bad_clips"]
    sb.utils.distributed.run_on_main(prepare, kwargs={**kwargs, **options})
    return manifest_datasets(
        out,
        hparams["n_classes"],
        hparams["sample_rate"],
        hparams["multilabel"],
        hparams.get("audio_cache_mb", AUDIO_CACHE_MB),
    )


def warn_low_rates(folder: PathLike, sample_rate: int) -> int:
    """Log once how many clips ``prepare.json`` of ``folder`` records below
    ``sample_rate`` (they are upsampled); return that count.

    Example
    -------
    >>> import tempfile
    >>> warn_low_rates(tempfile.mkdtemp(), 16000)  # no prepare.json
    0
    """
    path = Path(folder) / "prepare.json"
    done = json.loads(path.read_text()) if path.is_file() else {}
    rates = done.get("sample_rates", {}).items()
    low = [(rate, v) for rate, v in rates if int(rate) < sample_rate]
    if count := sum(v["clips"] for _, v in low):
        listed = ", ".join(f"{v['clips']} at {rate} Hz" for rate, v in low)
        first = low[0][1]["first"]
        logger.warning(
            "%d clips in %s are sampled below the model's %d Hz (%s) and "
            "upsampled, which adds no high frequencies; the first: %s",
            *(count, folder, sample_rate, listed, first),
        )
    return count


# ------------------------------------------------------------ preparation
def manifest_paths(save: PathLike) -> Dict[str, Path]:
    """The split manifests and ``classes`` file of a prepared folder.

    Example
    -------
    >>> sorted(manifest_paths("out"))
    ['classes', 'test', 'train', 'valid']
    """
    paths = {split: Path(save) / f"{split}.csv" for split in SPLITS}
    paths["classes"] = Path(save) / "classes.txt"
    return paths


def write_manifests(
    save: PathLike,
    splits: Mapping[str, Sequence[Mapping[str, object]]],
    fields: Sequence[str],
    classes: Sequence[str],
    info: Mapping[str, object],
) -> Dict[str, str]:
    """Write ``<split>.csv`` for each of ``splits``, ``classes.txt`` and
    ``info`` (what was done) as ``prepare.json``; return the paths (str) of
    the split manifests and ``classes``.

    Example
    -------
    >>> import tempfile
    >>> rows = [{"ID": "a", "duration": "1.0", "wav": "a.wav", "label": "x"}]
    >>> out = write_manifests(tempfile.mkdtemp(), dict.fromkeys(SPLITS, rows),
    ...                       list(rows[0]), ["x"], {"counts": [1]})
    >>> open(out["test"]).read().split()
    ['ID,duration,wav,label', 'a,1.0,a.wav,x']
    """
    Path(save).mkdir(parents=True, exist_ok=True)
    paths = manifest_paths(save)
    for split, rows in splits.items():
        with open(paths[split], "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(fields))
            writer.writeheader()
            writer.writerows(rows)
    paths["classes"].write_text("\n".join(classes) + "\n")
    (Path(save) / "prepare.json").write_text(json.dumps(info, indent=2))
    return {k: str(v) for k, v in paths.items()}


def previous_prepare(save: PathLike, options: Mapping) -> Optional[dict]:
    """``prepare.json`` of an earlier preparation with the same ``options``
    whose manifests all exist (delete it to prepare again), else None.

    Example
    -------
    >>> import tempfile
    >>> previous_prepare(tempfile.mkdtemp(), {}) is None
    True
    """
    info_path = Path(save) / "prepare.json"
    files = manifest_paths(save).values()
    if not info_path.is_file() or not all(p.is_file() for p in files):
        return None
    info = json.loads(info_path.read_text())
    return info if info.get("options") == options else None


def prepare_main(
    argv: Optional[Sequence[str]],
    doc: str,
    download: Callable[[str], object],
    prepare: Callable[[argparse.Namespace], Optional[str]],
    check: Optional[Callable[[argparse.Namespace], str]] = None,
    options: Optional[Mapping[str, Mapping]] = None,
    download_help: Optional[str] = None,
) -> int:
    """A prepare script's command line; returns the exit status.

    Flags: ``--data_folder``, ``--save_folder`` (required without ``check``),
    ``--download`` and ``options`` (flag -> ``add_argument`` keywords). It
    downloads if asked, runs ``prepare(args)`` (with a save folder) or
    ``check(args)`` and prints the result; a :class:`DataError` goes to
    stderr (status 1).

    Example
    -------
    >>> prepare_main(["--data_folder", "d"], "Prepare X.", print, print,
    ...              lambda args: f"{args.data_folder} is fine")
    d is fine
    0
    """
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--save_folder", required=check is None)
    parser.add_argument("--download", action="store_true", help=download_help)
    for flag, kwargs in (options or {}).items():
        parser.add_argument(flag, **kwargs)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        if args.download:
            download(args.data_folder)
        job = prepare if args.save_folder or check is None else check
        message = job(args)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if message:
        print(message)
    return 0
