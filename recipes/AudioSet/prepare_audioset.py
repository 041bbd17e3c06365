"""Prepare AudioSet (balanced train / eval) for the FastAST recipe.

Reads the standard segment lists and label file:

* ``balanced_train_segments.csv``, ``eval_segments.csv`` (or
  ``unbalanced_train_segments.csv``): three header lines starting with
  ``#``, then ``YTID, start_seconds, end_seconds, positive_labels`` rows,
  the labels a quoted, comma-separated list of label ids (``/m/09x0r``);
* ``class_labels_indices.csv``: ``index,mid,display_name``,

and a folder of clips already cut to their segments, named by YouTube id:
``<audio_folder>/**/<YTID>.<ext>`` (``Y<YTID>.<ext>`` is accepted too, as
some download tools write it), in any format soundfile reads (wav, flac,
ogg, ...), any sample rate, mono or stereo. AudioSet is distributed as a
list of YouTube segments, so some clips are always missing: they are
reported (a count, and their ids in ``missing_<split>.txt``) and skipped;
undecodable files are treated the same way.

Manifests (``train.csv``, ``valid.csv`` = ``test.csv`` = the eval set, as
in AST) hold one row per clip with ``label`` = the clip's label ids joined
by ``;``; ``classes.txt`` lists the label ids in index order (the order of
AudioSet-trained teachers' outputs), ``class_labels.csv`` the display names.
Nothing is written into the data folder.

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

from fastast_sb.audio import AudioError, audio_duration
from fastast_sb.dataio import DataError, fetch

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
    indices = [i for i, _, _ in out]
    if indices != list(range(len(out))):
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
            if ext.lower() in (".csv", ".txt", ".json", ".md"):
                continue
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
) -> Tuple[List[Dict[str, str]], List[str]]:
    """Manifest rows of the usable clips, and the skipped ids (with why)."""
    known = set(mids)
    unknown = sorted(
        {m for seg in segments for m in seg["labels"] if m not in known}
    )
    if unknown:
        raise DataError(
            f"{source} uses label ids not in class_labels_indices.csv: "
            f"{unknown[:20]}"
        )
    rows, skipped, seen = [], [], set()
    for seg in segments:
        ytid = str(seg["ytid"])
        if ytid in seen:
            continue
        seen.add(ytid)
        path = find_clip(index, ytid)
        if path is None:
            skipped.append(f"{ytid}\tmissing")
            continue
        try:
            duration = audio_duration(path)
        except AudioError as err:
            skipped.append(f"{ytid}\tunreadable: {path} ({err})")
            continue
        rows.append(
            {
                "ID": ytid,
                "duration": f"{duration:.3f}",
                "wav": str(path.resolve()),
                "label": ";".join(seg["labels"]),
                "start": f"{seg['start']:.3f}",
                "end": f"{seg['end']:.3f}",
            }
        )
    return rows, skipped


def prepare_audioset(
    data_folder: str,
    save_folder: str,
    audio_folder: Optional[str] = None,
    train_segments: str = "balanced_train_segments.csv",
    eval_segments: str = "eval_segments.csv",
    labels_csv: str = "class_labels_indices.csv",
) -> Dict[str, object]:
    """Write manifests, ``classes.txt`` and the missing-clip reports.

    Arguments
    ---------
    data_folder : str
        Folder with the segment CSVs and the label file; only read.
    save_folder : str
        Where manifests go (the run's output folder).
    audio_folder : str, optional
        Root of the clips (searched recursively); ``<data_folder>/audio``
        by default.
    train_segments, eval_segments, labels_csv : str
        File names (or paths) of the lists, relative to ``data_folder``.

    Returns
    -------
    dict
        Paths of ``train``, ``valid``, ``test``, ``classes``, and
        ``counts``: clips used and ``missing`` (skipped) per split.

    Example
    -------
    >>> import tempfile
    >>> prepare_audioset(  # doctest: +IGNORE_EXCEPTION_DETAIL
    ...     tempfile.mkdtemp(), tempfile.mkdtemp())
    Traceback (most recent call last):
    DataError: AudioSet lists not found in ...
    """
    data = Path(data_folder).expanduser().resolve()
    audio = Path(audio_folder) if audio_folder else data / "audio"
    audio = audio.expanduser().resolve()
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
    }
    done = _previous_run(save, options)
    if done is not None:
        return done
    classes = read_class_labels(lists["labels"])
    mids = [m for _, m, _ in classes]
    index = index_clips(audio)
    save.mkdir(parents=True, exist_ok=True)
    paths: Dict[str, object] = {}
    counts: Dict[str, Dict[str, int]] = {}
    for split, source in (("train", lists["train"]), ("eval", lists["eval"])):
        segments = read_segments(source)
        rows, skipped = _clip_rows(segments, index, mids, source)
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
        names = ("train",) if split == "train" else ("valid", "test")
        for name in names:
            path = save / f"{name}.csv"
            with open(path, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
                writer.writeheader()
                writer.writerows(rows)
            paths[name] = str(path)
    (save / "classes.txt").write_text("\n".join(mids) + "\n")
    with open(
        save / "class_labels.csv", "w", newline="", encoding="utf-8"
    ) as f:
        writer = csv.writer(f)
        writer.writerow(["index", "mid", "display_name"])
        writer.writerows(classes)
    paths["classes"] = str(save / "classes.txt")
    paths["counts"] = counts
    info = {"options": options, "paths": paths}
    (save / "prepare.json").write_text(json.dumps(info, indent=2))
    logger.info("AudioSet manifests in %s: %s", save, counts)
    return paths


def _previous_run(
    save: Path, options: Dict[str, object]
) -> Optional[Dict[str, object]]:
    """The result of an earlier identical preparation, if its files exist.

    Delete ``prepare.json`` to rescan (e.g. after fetching more clips).
    """
    info_path = save / "prepare.json"
    if not info_path.is_file():
        return None
    info = json.loads(info_path.read_text())
    paths = info.get("paths", {})
    files = [paths.get(k) for k in ("train", "valid", "test", "classes")]
    if info.get("options") != options or not all(
        f and Path(f).is_file() for f in files
    ):
        return None
    logger.info("AudioSet manifests up to date in %s", save)
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: optionally fetch the lists, then prepare."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--save_folder", required=True)
    parser.add_argument("--audio_folder", default=None)
    parser.add_argument(
        "--train_segments", default="balanced_train_segments.csv"
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="fetch the CSV lists (AudioSet distributes no audio)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        if args.download:
            download_lists(args.data_folder)
        result = prepare_audioset(
            args.data_folder,
            args.save_folder,
            args.audio_folder,
            args.train_segments,
        )
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result["counts"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
