"""Prepare ESC-50 (or its ESC-10 subset) for the FastAST recipe.

Reads an ESC-50 folder (``audio/`` and ``meta/esc50.csv``) and writes
SpeechBrain CSV manifests (train / valid / test for one held-out fold) and
the class list into ``save_folder``; the data folder is only read. Clips
with NaN/Inf samples or shorter than 25 ms are refused, or left out with
``bad_clips="skip"`` (``--bad_clips=skip``; see :mod:`fastast_sb.clips`).

K. J. Piczak, "ESC: Dataset for Environmental Sound Classification",
ACM Multimedia 2015. https://github.com/karolpiczak/ESC-50

Usage (explicit download for users who are online; tests never download)::

    python recipes/ESC50/prepare.py --download --data_folder data/ESC-50
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from fastast_sb.clips import BAD_CLIPS, ClipSurvey, rate_summary, screen_clips
from fastast_sb.dataio import DataError, fetch, prepare_main, write_manifests

logger = logging.getLogger(__name__)

ESC50_URL = "https://github.com/karoldvl/ESC-50/archive/master.zip"

#: ESC-50's 50 categories by target id.
ESC50_CLASSES = (
    "dog rooster pig cow frog cat hen insects sheep crow rain sea_waves "
    "crackling_fire crickets chirping_birds water_drops wind pouring_water "
    "toilet_flush thunderstorm crying_baby sneezing clapping breathing "
    "coughing footsteps laughing brushing_teeth snoring drinking_sipping "
    "door_wood_knock mouse_click keyboard_typing door_wood_creaks "
    "can_opening washing_machine vacuum_cleaner clock_alarm clock_tick "
    "glass_breaking helicopter chainsaw siren car_horn engine train "
    "church_bells airplane fireworks hand_saw"
).split()

MANIFEST_FIELDS = ["ID", "duration", "wav", "label", "fold"]


def read_metadata(data_folder: Path) -> List[Dict[str, str]]:
    """Rows of ``meta/esc50.csv``, checked against ESC-50's classes."""
    meta = data_folder / "meta" / "esc50.csv"
    if not (data_folder / "audio").is_dir() or not meta.is_file():
        raise DataError(
            f"ESC-50 not found at {data_folder}: expected {data_folder}/audio/ "
            f"and {meta}. Download and extract {ESC50_URL} there, or run: "
            "python recipes/ESC50/prepare.py --download --data_folder "
            f"{data_folder}"
        )
    with open(meta, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise DataError(f"{meta} lists no clips")
    missing_cols = {"filename", "fold", "target", "category"} - set(rows[0])
    if missing_cols:
        raise DataError(
            f"{meta} lacks columns {sorted(missing_cols)}; expected the "
            "ESC-50 columns filename,fold,target,category,..."
        )
    errors = []
    for i, row in enumerate(rows, start=2):
        cat = row["category"]
        if cat not in ESC50_CLASSES:
            errors.append(
                f"line {i}: unknown class {cat!r} (not one of ESC-50's 50)"
            )
        elif int(row["target"]) != ESC50_CLASSES.index(cat):
            errors.append(
                f"line {i}: target {row['target']} does not match class "
                f"{cat!r} (ESC-50 id {ESC50_CLASSES.index(cat)})"
            )
    if errors:
        raise DataError(f"{meta}: " + "; ".join(errors[:20]))
    return rows


def check_audio(
    data_folder: Path,
    rows: Sequence[Dict[str, str]],
    bad_clips: str = "refuse",
) -> ClipSurvey:
    """Duration and rate of every usable clip by file name; unreadable
    files in one error, bad clips as ``bad_clips`` says."""
    clips = {r["filename"]: data_folder / "audio" / r["filename"] for r in rows}
    where = f"listed in {data_folder}/meta/esc50.csv"
    return screen_clips(clips, where, bad_clips)


def prepare_esc50(
    data_folder: str,
    save_folder: str,
    test_fold: int = 5,
    valid_fold: Optional[int] = None,
    train_folds: Optional[Sequence[int]] = None,
    bad_clips: str = "refuse",
) -> Dict[str, str]:
    """Write train/valid/test manifests and ``classes.txt``.

    ``data_folder`` (``audio/``, ``meta/esc50.csv``) is only read;
    manifests go to ``save_folder``. ``test_fold`` is held out;
    ``valid_fold`` (validated every epoch) is the test fold by default (the
    AST protocol), ``train_folds`` all the others; ``bad_clips``: refuse
    or skip clips with NaN/Inf samples or under 25 ms. Returns the paths of
    the manifests and ``classes`` (the categories present, in target order).
    """
    data = Path(data_folder).expanduser().resolve()
    rows = read_metadata(data)
    folds = sorted({int(r["fold"]) for r in rows})
    valid_fold = test_fold if valid_fold is None else valid_fold
    if train_folds is None:
        train_folds = [f for f in folds if f not in (test_fold, valid_fold)]
    split_folds = {
        "train": list(train_folds),
        "valid": [valid_fold],
        "test": [test_fold],
    }
    for name in ("test", "valid", "train"):
        fold_list = split_folds[name]
        if not fold_list or any(f not in folds for f in fold_list):
            raise DataError(
                f"{name} fold(s) {fold_list} not in the data: {data} has "
                f"folds {folds}"
            )
    survey = check_audio(data, rows, bad_clips)
    durations = survey.seconds
    splits = {
        split: [
            {
                "ID": Path(r["filename"]).stem,
                "duration": f"{durations[r['filename']]:.3f}",
                "wav": str(data / "audio" / r["filename"]),
                "label": r["category"],
                "fold": r["fold"],
            }
            for r in rows
            if int(r["fold"]) in wanted and r["filename"] in durations
        ]
        for split, wanted in split_folds.items()
    }
    counts = {k: len(v) for k, v in splits.items()}
    info = {
        "data_folder": str(data),
        "test_fold": test_fold,
        "valid_fold": valid_fold,
        "train_folds": list(train_folds),
        "counts": counts,
        "bad_clips": bad_clips,
        "skipped": list(survey.bad.values()),
        "sample_rates": rate_summary(survey),
    }
    present = {r["category"] for r in rows}
    classes = [c for c in ESC50_CLASSES if c in present]
    paths = write_manifests(save_folder, splits, MANIFEST_FIELDS, classes, info)
    logger.info("ESC-50 manifests in %s: %s", save_folder, counts)
    return paths


def download_esc50(data_folder: str) -> Path:
    """Fetch and extract the official ESC-50 archive (needs network)."""
    target = Path(data_folder).expanduser()
    if (target / "meta" / "esc50.csv").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fetch(
        ESC50_URL,
        target.parent / "ESC-50-master.zip",
        f"extract it so that {target}/audio and {target}/meta/esc50.csv exist",
        extract_to=target.parent,
    )
    (target.parent / "ESC-50-master").rename(target)
    return target


def _prepare(args: argparse.Namespace) -> None:
    prepare_esc50(
        args.data_folder,
        args.save_folder,
        args.test_fold,
        bad_clips=args.bad_clips,
    )


def _check(args: argparse.Namespace) -> str:
    rows = read_metadata(Path(args.data_folder))
    survey = check_audio(Path(args.data_folder), rows, args.bad_clips)
    return f"{len(survey.seconds)} clips OK in {args.data_folder}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: optionally download, then check or prepare."""
    options = {
        "--test_fold": {"type": int, "default": 5},
        "--bad_clips": {"choices": BAD_CLIPS, "default": "refuse"},
    }
    return prepare_main(
        argv, __doc__, download_esc50, _prepare, _check, options
    )


if __name__ == "__main__":
    sys.exit(main())
