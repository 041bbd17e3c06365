"""Prepare Speech Commands v0.02 for the FastAST recipe.

Reads the v0.02 layout (``<word>/<speaker>_nohash_<n>.wav``,
``validation_list.txt``, ``testing_list.txt``, ``_background_noise_/``; only
read) and writes manifests of the official split (the two lists, everything
else trains) and ``classes.txt`` into ``save_folder``. Two label sets:

* 35 classes (AST): the 35 words; no ``_background_noise_`` class.
* 12 classes: ``yes no up down left right on off stop go``, ``_unknown_``
  (the other 25 words) and ``_silence_``. As in the TensorFlow reference
  setup, each split gets ``unknown_percentage`` % (of its core-word clip
  count) ``_unknown_`` clips drawn (seeded) from its other-word clips, and
  ``silence_percentage`` % ``_silence_`` clips: 1-second segments cut at
  seeded offsets from ``_background_noise_/*.wav`` into
  ``<save_folder>/silence/`` from the first 80 % (train), next 10 % (valid)
  or last 10 % (test) of each noise file.

Clips with NaN/Inf samples or shorter than 25 ms are refused, or left out
with ``bad_clips="skip"`` (``--bad_clips=skip``; see :mod:`fastast_sb.clips`).

P. Warden, "Speech Commands: A Dataset for Limited-Vocabulary Speech
Recognition", arXiv:1804.03209, 2018. Y. Gong et al., "AST: Audio
Spectrogram Transformer", Interspeech 2021 (35-class protocol).

Usage (explicit download for users who are online; tests never download)::

    python recipes/SpeechCommands/prepare_speech_commands.py --download \\
        --data_folder data/speech_commands_v0.02
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import soundfile as sf

from fastast_sb.clips import BAD_CLIPS, ClipSurvey, rate_summary, screen_clips
from fastast_sb.dataio import (
    SPLITS,
    DataError,
    fetch,
    manifest_paths,
    prepare_main,
    previous_prepare,
    read_classes,
    write_manifests,
)

logger = logging.getLogger(__name__)

SC_URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"

#: The 35 words of v0.02, in the (alphabetical) order of the class indices.
WORDS_35 = (
    "backward bed bird cat dog down eight five follow forward four go happy "
    "house learn left marvin nine no off on one right seven sheila six stop "
    "three tree two up visual wow yes zero"
).split()
#: The ten command words of the 12-class task.
CORE_WORDS = "yes no up down left right on off stop go".split()
UNKNOWN = "_unknown_"
SILENCE = "_silence_"
BACKGROUND = "_background_noise_"
#: Where each split cuts its silence from, as fractions of a noise file.
SILENCE_REGIONS = {"train": (0.0, 0.8), "valid": (0.8, 0.9), "test": (0.9, 1.0)}

MANIFEST_FIELDS = ["ID", "duration", "wav", "label", "word"]


def class_list(n_classes: int) -> List[str]:
    """The label set: 35 words, or 10 words + unknown + silence.

    Example
    -------
    >>> class_list(12)[-3:]
    ['go', '_unknown_', '_silence_']
    >>> len(class_list(35))
    35
    """
    if n_classes == 35:
        return list(WORDS_35)
    if n_classes == 12:
        return CORE_WORDS + [UNKNOWN, SILENCE]
    raise DataError(
        f"n_classes={n_classes}; Speech Commands v0.02 has 35 (all words) "
        "or 12 (10 words + _unknown_ + _silence_)"
    )


def scan(data_folder: Path) -> Dict[str, List[str]]:
    """``train``, ``valid`` and ``test`` lists of ``word/file.wav`` (paths
    relative to ``data_folder``), checked against the split lists."""
    lists = {
        "valid": data_folder / "validation_list.txt",
        "test": data_folder / "testing_list.txt",
    }
    folders = []
    if data_folder.is_dir():
        folders = sorted(
            p.name
            for p in data_folder.iterdir()
            if p.is_dir() and p.name != BACKGROUND
        )
    if not folders or not all(p.is_file() for p in lists.values()):
        raise DataError(
            f"Speech Commands v0.02 not found at {data_folder}: expected "
            f"<word>/*.wav folders, validation_list.txt and testing_list.txt. "
            f"Download and extract {SC_URL} there, or run: python "
            "recipes/SpeechCommands/prepare_speech_commands.py --download "
            f"--data_folder {data_folder}"
        )
    unknown = [name for name in folders if name not in WORDS_35]
    if unknown:
        raise DataError(
            f"{data_folder} has folders {unknown} that are not Speech "
            f"Commands v0.02 words (expected a subset of {WORDS_35})"
        )
    clips = sorted(
        f"{word}/{p.name}"
        for word in folders
        for p in (data_folder / word).glob("*.wav")
    )
    present = set(clips)
    split_of: Dict[str, str] = {}
    problems = []
    for split, path in lists.items():
        for rel in read_classes(path):
            if rel not in present:
                problems.append(f"{path.name} lists {rel}, which is missing")
            elif rel in split_of:
                problems.append(f"{rel} is in both validation and test lists")
            split_of[rel] = split
    if problems:
        raise DataError(
            f"{len(problems)} problems with the split lists of "
            f"{data_folder}:\n  " + "\n  ".join(problems[:20])
        )
    out: Dict[str, List[str]] = {split: [] for split in SPLITS}
    for rel in clips:
        out[split_of.get(rel, "train")].append(rel)
    return out


def check_audio(
    data_folder: Path, rels: Sequence[str], bad_clips: str = "refuse"
) -> ClipSurvey:
    """Duration and rate of every usable clip; all unreadable files in one
    error, bad clips as ``bad_clips`` says."""
    clips = {rel: data_folder / rel for rel in rels}
    return screen_clips(clips, f"in {data_folder}", bad_clips, most=50)


def _word(rel: str) -> str:
    return rel.split("/")[0]


def _row(key: str, seconds: float, wav: Path, label: str, word: str) -> Dict:
    fields = (key, f"{seconds:.3f}", str(wav), label, word)
    return dict(zip(MANIFEST_FIELDS, fields))


def _count(n_known: int, percentage: Optional[float]) -> Optional[int]:
    if percentage is None:
        return None
    if percentage < 0:
        raise ValueError(f"percentages must be >= 0, got {percentage}")
    return int(round(n_known * percentage / 100.0))


def cut_silence(
    data_folder: Path,
    out_folder: Path,
    split: str,
    count: int,
    rng: random.Random,
    seconds: float = 1.0,
) -> List[Dict]:
    """Write ``count`` noise segments of ``split``'s region; their manifest
    rows (labelled ``_silence_``)."""
    if count == 0:
        return []
    lo, hi = SILENCE_REGIONS[split]
    sources: List[Tuple[Path, int, int, int]] = []
    for path in sorted((data_folder / BACKGROUND).glob("*.wav")):
        info = sf.info(str(path))
        n = int(round(seconds * info.samplerate))
        start, stop = int(lo * info.frames), int(hi * info.frames)
        if stop - start >= n:
            sources.append((path, start, stop - n, n))
    if not sources:
        raise DataError(
            f"cannot cut {count} {split} silence clips of {seconds} s: no "
            f"file in {data_folder / BACKGROUND} has {seconds} s in its "
            f"{split} region ({lo:.0%}-{hi:.0%} of the file)"
        )
    out_folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(count):
        path, first, last, n = sources[k % len(sources)]
        offset = rng.randint(first, last)
        audio, sr = sf.read(
            str(path), start=offset, stop=offset + n, dtype="float32"
        )
        target = out_folder / f"{split}_{k:05d}.wav"
        sf.write(str(target), audio, sr, subtype="FLOAT")
        source = f"{BACKGROUND}/{path.name}@{offset}"
        rows.append(
            _row(f"{SILENCE}/{target.stem}", n / sr, target, SILENCE, source)
        )
    return rows


def prepare_speech_commands(
    data_folder: str,
    save_folder: str,
    n_classes: int = 35,
    unknown_percentage: Optional[float] = 10.0,
    silence_percentage: float = 10.0,
    seed: int = 0,
    bad_clips: str = "refuse",
) -> Dict[str, str]:
    """Write the manifests and ``classes.txt``; return their paths.

    ``data_folder`` (the v0.02 root) is only read; manifests (and 12-class
    silence clips) go to ``save_folder``. ``n_classes``: 35 or 12, with
    ``unknown_percentage`` (``None``: every other-word clip) and
    ``silence_percentage`` drawn with ``seed`` (see the module docstring);
    ``bad_clips``: refuse or skip clips with NaN/Inf samples or under 25 ms.

    Example
    -------
    >>> import tempfile
    >>> prepare_speech_commands(  # doctest: +IGNORE_EXCEPTION_DETAIL
    ...     tempfile.mkdtemp(), tempfile.mkdtemp())
    Traceback (most recent call last):
    DataError: Speech Commands v0.02 not found at ...
    """
    classes = class_list(n_classes)
    data = Path(data_folder).expanduser().resolve()
    save = Path(save_folder).expanduser().resolve()  # absolute clip paths
    options = dict(
        data_folder=str(data),
        n_classes=n_classes,
        unknown_percentage=unknown_percentage,
        silence_percentage=silence_percentage,
        seed=seed,
        bad_clips=bad_clips,
    )
    if previous_prepare(save, options) is not None:
        logger.info("Speech Commands manifests up to date in %s", save)
        return {k: str(v) for k, v in manifest_paths(save).items()}
    rels = scan(data)
    survey = check_audio(data, [r for s in SPLITS for r in rels[s]], bad_clips)
    durations = survey.seconds
    rng = random.Random(seed)
    splits, counts = {}, {}
    for split in SPLITS:
        rels[split] = [r for r in rels[split] if r in durations]
        known = [r for r in rels[split] if _word(r) in CORE_WORDS]
        other = [r for r in rels[split] if _word(r) not in CORE_WORDS]
        labelled = [(r, _word(r)) for r in rels[split]]
        if n_classes == 12:
            n_unknown = _count(len(known), unknown_percentage)
            if n_unknown is not None and n_unknown < len(other):
                other = sorted(rng.sample(other, n_unknown))
            labelled = [(r, _word(r)) for r in known]
            labelled += [(r, UNKNOWN) for r in other]
        rows = [
            _row(r[: -len(".wav")], durations[r], data / r, label, _word(r))
            for r, label in labelled
        ]
        if n_classes == 12:
            n_silence = _count(len(known), silence_percentage)
            rows += cut_silence(data, save / "silence", split, n_silence, rng)
        if not rows:
            raise DataError(f"the {split} split of {data} has no clips")
        splits[split] = rows
        counts[split] = per_class = dict.fromkeys(classes, 0)
        per_class.update(Counter(row["label"] for row in rows))
        empty = [c for c, n in per_class.items() if n == 0]
        if empty and split == "train":
            logger.warning("no training clips for classes %s", empty)
    info = {
        "options": options,
        "counts": {s: sum(c.values()) for s, c in counts.items()},
        "per_class": counts,
        "skipped": list(survey.bad.values()),
        "sample_rates": rate_summary(survey),
    }
    paths = write_manifests(save, splits, MANIFEST_FIELDS, classes, info)
    logger.info("Speech Commands manifests in %s: %s", save, info["counts"])
    return paths


def download_speech_commands(data_folder: str) -> Path:
    """Fetch and extract the official v0.02 archive (needs network)."""
    target = Path(data_folder).expanduser()
    if (target / "testing_list.txt").is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    return fetch(
        SC_URL,
        target / "speech_commands_v0.02.tar.gz",
        f"extract it into {target} (so that {target}/testing_list.txt exists)",
        extract_to=target,
    )


def _prepare(args: argparse.Namespace) -> None:
    prepare_speech_commands(
        args.data_folder,
        args.save_folder,
        args.n_classes,
        bad_clips=args.bad_clips,
    )


def _check(args: argparse.Namespace) -> str:
    data = Path(args.data_folder)
    rels = scan(data)
    usable = check_audio(data, sum(rels.values(), []), args.bad_clips).seconds
    counts = {k: sum(r in usable for r in v) for k, v in rels.items()}
    return f"Speech Commands OK in {args.data_folder}: {counts}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: optionally download, then check or prepare."""
    options = {
        "--n_classes": {"type": int, "default": 35},
        "--bad_clips": {"choices": BAD_CLIPS, "default": "refuse"},
    }
    return prepare_main(
        argv, __doc__, download_speech_commands, _prepare, _check, options
    )


if __name__ == "__main__":
    sys.exit(main())
