"""Prepare AudioSet (balanced train / eval) for the FastAST recipe.

Reads the segment lists (``balanced_train_segments.csv``,
``eval_segments.csv`` or ``unbalanced_train_segments.csv``: ``#`` header
lines, then ``YTID, start_seconds, end_seconds, positive_labels`` rows with
quoted, comma-separated label ids such as ``/m/09x0r``), the label file
``class_labels_indices.csv`` (``index,mid,display_name``) and the clips cut
to their segments, named by YouTube id: ``<audio_folder>/**/<YTID>.<ext>``
(or ``Y<YTID>.<ext>``, as some download tools write it), in any soundfile
format, rate and channel count. Some clips of a YouTube list are always
missing: missing and undecodable clips are counted, listed in
``missing_<split>.txt`` and skipped. Clips with NaN/Inf samples or shorter
than 25 ms are refused, or left out with ``bad_clips="skip"``
(``--bad_clips=skip``; see :mod:`fastast_sb.clips`).

Manifests: ``train.csv``; ``valid.csv`` = ``test.csv`` = the eval set (as in
AST); one row per clip, ``label`` = its label ids joined by ``;``.
``classes.txt`` lists the label ids in index order (that of AudioSet-trained
teachers' outputs), ``class_labels.csv`` the display names. The data folder
is only read.

J. F. Gemmeke et al., "Audio Set: An ontology and human-labeled dataset for
audio events", ICASSP 2017. https://research.google.com/audioset/
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from fastast_sb.clips import BAD_CLIPS, ClipSurvey, rate_summary, screen_clips
from fastast_sb.dataio import (
    DataError,
    fetch,
    manifest_paths,
    prepare_main,
    previous_prepare,
    write_manifests,
)

logger = logging.getLogger(__name__)

AUDIOSET_URL = "http://storage.googleapis.com/us_audioset/youtube_corpus/v1"
CSV_FILES = (
    "balanced_train_segments.csv",
    "eval_segments.csv",
    "class_labels_indices.csv",
)
MANIFEST_FIELDS = ["ID", "duration", "wav", "label", "start", "end"]


def read_class_labels(path: Path) -> List[Tuple[int, str, str]]:
    """``(index, mid, display_name)`` rows of ``class_labels_indices.csv``.

    Example
    -------
    >>> import tempfile, os
    >>> f = Path(tempfile.mkdtemp()) / "labels.csv"
    >>> _ = f.write_text('index,mid,display_name\\n0,/m/09x0r,"Speech"\\n')
    >>> read_class_labels(f)
    [(0, '/m/09x0r', 'Speech')]
    """
    if not path.is_file():
        raise DataError(f"class label file not found: {path}")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"index", "mid", "display_name"} <= set(rows[0]):
        raise DataError(
            f"{path} should have the columns index,mid,display_name with "
            "one row per class"
        )
    out = sorted((int(r["index"]), r["mid"], r["display_name"]) for r in rows)
    if [i for i, _, _ in out] != list(range(len(out))):
        raise DataError(
            f"{path}: class indices must be 0..{len(out) - 1} without gaps"
        )
    mids = [m for _, m, _ in out]
    if len(set(mids)) != len(mids):
        raise DataError(f"{path}: a label id (mid) appears twice")
    return out


def read_segments(path: Path) -> List[Dict[str, object]]:
    """Rows of a segment CSV: ``ytid``, ``start``, ``end``, ``labels``.

    Example
    -------
    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "eval_segments.csv"
    >>> _ = f.write_text(
    ...     "# Segments csv\\n# num_ytids=1\\n"
    ...     "# YTID, start_seconds, end_seconds, positive_labels\\n"
    ...     '--4gqARaEJE, 0.000, 10.000, "/m/068hy,/m/07q6cd_"\\n')
    >>> read_segments(f)[0]["labels"]
    ['/m/068hy', '/m/07q6cd_']
    """
    if not path.is_file():
        raise DataError(f"segment list not found: {path}")
    rows: List[Dict[str, object]] = []
    with open(path, newline="", encoding="utf-8") as f:
        lines = [line for line in f if not line.startswith("#")]
    reader = csv.reader(lines, skipinitialspace=True)
    for k, fields in enumerate(reader, start=1):
        if not fields:
            continue
        if len(fields) != 4:
            raise DataError(
                f"{path}: data row {k} has {len(fields)} fields, expected 4 "
                f"(YTID, start_seconds, end_seconds, positive_labels): "
                f"{fields}"
            )
        ytid, start, end, labels = fields
        mids = [m.strip() for m in labels.split(",") if m.strip()]
        if not mids:
            raise DataError(f"{path}: clip {ytid} has no labels")
        rows.append(
            {
                "ytid": ytid.strip(),
                "start": float(start),
                "end": float(end),
                "labels": mids,
            }
        )
    if not rows:
        raise DataError(f"{path} lists no segments")
    return rows


def index_clips(audio_folder: Path) -> Dict[str, Path]:
    """Audio files under ``audio_folder`` (recursive) by file stem."""
    if not audio_folder.is_dir():
        raise DataError(
            f"audio folder not found: {audio_folder}; expected the clips as "
            f"{audio_folder}/<YTID>.wav (any soundfile format, subfolders "
            "allowed)"
        )
    index: Dict[str, Path] = {}
    for root, _, files in os.walk(audio_folder):
        for name in files:
            stem, ext = os.path.splitext(name)
            if ext.lower() not in (".csv", ".txt", ".json", ".md"):
                index.setdefault(stem, Path(root) / name)
    return index


def find_clip(index: Dict[str, Path], ytid: str) -> Optional[Path]:
    """The clip of ``ytid`` (``<ytid>.*`` or ``Y<ytid>.*``), or None.

    Example
    -------
    >>> find_clip({"Yabc": Path("Yabc.flac")}, "abc")
    PosixPath('Yabc.flac')
    """
    return index.get(ytid) or index.get(f"Y{ytid}")


def _clip_rows(
    segments: Sequence[Dict[str, object]],
    index: Dict[str, Path],
    mids: Sequence[str],
    source: Path,
    bad_clips: str = "refuse",
) -> Tuple[List[Dict[str, str]], List[str], ClipSurvey]:
    """Manifest rows of the usable clips, the missing or unreadable ids
    (with why) and what :func:`screen_clips` found."""
    known = set(mids)
    unknown = sorted(
        {m for seg in segments for m in seg["labels"] if m not in known}
    )
    if unknown:
        raise DataError(
            f"{source} uses label ids not in class_labels_indices.csv: "
            f"{unknown[:20]}"
        )
    first: Dict[str, Dict[str, object]] = {}
    for seg in segments:  # each clip once, with its first segment
        first.setdefault(str(seg["ytid"]), seg)
    paths = {ytid: find_clip(index, ytid) for ytid in first}
    survey = screen_clips(paths, f"of {source}", bad_clips, skip_missing=True)
    durations = survey.seconds
    rows = [
        {
            "ID": ytid,
            "duration": f"{durations[ytid]:.3f}",
            "wav": str(paths[ytid].resolve()),
            "label": ";".join(seg["labels"]),
            "start": f"{seg['start']:.3f}",
            "end": f"{seg['end']:.3f}",
        }
        for ytid, seg in first.items()
        if ytid in durations
    ]
    skipped = [f"{ytid}\t{why}" for ytid, why in survey.problems.items()]
    return rows, skipped, survey


def prepare_audioset(
    data_folder: str,
    save_folder: str,
    audio_folder: Optional[str] = None,
    train_segments: str = "balanced_train_segments.csv",
    eval_segments: str = "eval_segments.csv",
    labels_csv: str = "class_labels_indices.csv",
    bad_clips: str = "refuse",
) -> Dict[str, object]:
    """Write manifests, ``classes.txt`` and the missing-clip reports.

    ``data_folder`` holds the lists ``train_segments``, ``eval_segments``
    and ``labels_csv`` (names relative to it) and is only read; the clips
    are searched under ``audio_folder`` (``<data_folder>/audio`` by
    default); manifests go to ``save_folder``; ``bad_clips``: refuse or
    skip clips with NaN/Inf samples or under 25 ms. Returns the paths of
    ``train``, ``valid``, ``test``, ``classes`` and ``counts`` (clips used
    and ``missing`` per split).

    Example
    -------
    >>> import tempfile
    >>> prepare_audioset(  # doctest: +IGNORE_EXCEPTION_DETAIL
    ...     tempfile.mkdtemp(), tempfile.mkdtemp())
    Traceback (most recent call last):
    DataError: AudioSet lists not found in ...
    """
    data = Path(data_folder).expanduser().resolve()
    audio = Path(audio_folder or data / "audio").expanduser().resolve()
    lists = {
        "train": data / train_segments,
        "eval": data / eval_segments,
        "labels": data / labels_csv,
    }
    absent = [str(p) for p in lists.values() if not p.is_file()]
    if absent:
        raise DataError(
            f"AudioSet lists not found in {data}: missing {absent}. Download "
            f"{', '.join(CSV_FILES)} from {AUDIOSET_URL}/csv/ (or run "
            "recipes/AudioSet/prepare_audioset.py --download) and put "
            f"the clips under {audio} as <YTID>.wav"
        )
    save = Path(save_folder)
    options = {
        "data_folder": str(data),
        "audio_folder": str(audio),
        "lists": {k: str(v) for k, v in lists.items()},
        "bad_clips": bad_clips,
    }
    done = previous_prepare(save, options)
    if done and done.get("paths"):
        logger.info("AudioSet manifests up to date in %s", save)
        return done["paths"]
    classes = read_class_labels(lists["labels"])
    mids = [m for _, m, _ in classes]
    index = index_clips(audio)
    save.mkdir(parents=True, exist_ok=True)
    splits: Dict[str, List[Dict[str, str]]] = {}
    counts: Dict[str, Dict[str, int]] = {}
    surveys: List[ClipSurvey] = []
    for split, source in (("train", lists["train"]), ("eval", lists["eval"])):
        segments = read_segments(source)
        rows, skipped, survey = _clip_rows(
            segments, index, mids, source, bad_clips
        )
        surveys.append(survey)
        counts[split] = {"used": len(rows), "missing": len(skipped)}
        missing_file = save / f"missing_{split}.txt"
        missing_file.write_text("".join(f"{s}\n" for s in skipped))
        if skipped:
            logger.warning(
                "%d of %d %s clips are missing or unreadable and skipped "
                "(listed in %s)",
                len(skipped),
                len(rows) + len(skipped),
                source.name,
                missing_file,
            )
        if not rows:
            raise DataError(
                f"none of the {len(skipped)} clips of {source} was found "
                f"under {audio} (expected <YTID>.wav or Y<YTID>.wav, any "
                "soundfile format)"
            )
        for name in ("train",) if split == "train" else ("valid", "test"):
            splits[name] = rows
    names = save / "class_labels.csv"
    with open(names, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("index", "mid", "display_name"), *classes])
    paths = {k: str(v) for k, v in manifest_paths(save).items()}
    paths["counts"] = counts
    info = {
        "options": options,
        "paths": paths,
        "skipped": [bad for s in surveys for bad in s.bad.values()],
        "sample_rates": rate_summary(*surveys),
    }
    write_manifests(save, splits, MANIFEST_FIELDS, mids, info)
    logger.info("AudioSet manifests in %s: %s", save, counts)
    return paths


def download_lists(data_folder: str) -> Path:
    """Fetch the segment CSVs and the label file (needs network).

    The clips themselves are YouTube videos: AudioSet distributes no audio,
    so they must be collected with a tool of the user's choice.
    """
    target = Path(data_folder).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    for name in CSV_FILES:
        if not (target / name).is_file():
            url = f"{AUDIOSET_URL}/csv/{name}"
            fetch(url, target / name, f"put it at {target / name}")
    return target


def _prepare(args: argparse.Namespace) -> str:
    keys = "data_folder save_folder audio_folder train_segments bad_clips"
    result = prepare_audioset(**{k: getattr(args, k) for k in keys.split()})
    return json.dumps(result["counts"])


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: optionally fetch the lists, then prepare."""
    options = {
        "--audio_folder": {"default": None},
        "--train_segments": {"default": "balanced_train_segments.csv"},
        "--bad_clips": {"choices": BAD_CLIPS, "default": "refuse"},
    }
    download_help = "fetch the CSV lists (AudioSet distributes no audio)"
    return prepare_main(
        argv, __doc__, download_lists, _prepare, None, options, download_help
    )


if __name__ == "__main__":
    sys.exit(main())
