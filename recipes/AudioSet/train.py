#!/usr/bin/env python3
"""Train and evaluate FastAST on AudioSet (multi-label tagging, mAP).

    python recipes/AudioSet/train.py hparams/tome.yaml --data_folder=PATH \
        [--audio_folder=PATH] [--key=value ...]

Composes ``recipes/AudioSet/dataset.yaml``, the variant file and
command-line overrides; prepares manifests from the segment CSVs (missing
clips are reported and skipped); trains with BCE (or multi-label CMKD with
``hparams/tome_kd.yaml``), keeping the checkpoint of best validation mAP;
then evaluates the eval set for every ``r`` of ``r_sweep`` and writes
``r_sweep.md`` / ``.csv`` (mAP). Multi-GPU: start the same command with
``torchrun --nproc_per_node=N`` (see docs/multi_gpu.md).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import speechbrain as sb

RECIPE_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(RECIPE_DIR))

from prepare_audioset import prepare_audioset  # noqa: E402

from fastast_sb.dataio import DataError, prepared_datasets  # noqa: E402
from fastast_sb.runner import fit_and_test, load_run, recipe_main  # noqa: E402

DATASET_YAML = RECIPE_DIR / "dataset.yaml"
#: hparams handed to prepare_audioset under the same names.
PREPARE_KEYS = (
    "audio_folder",
    "train_segments",
    "eval_segments",
    "labels_csv",
)


def manifest_labels(path: Path) -> list:
    """Label sets (lists of label ids) of a manifest, in row order."""
    with open(path, newline="", encoding="utf-8") as f:
        return [row["label"].split(";") for row in csv.DictReader(f)]


def build_datasets(hparams: Dict[str, Any]) -> Dict[str, Any]:
    """Prepare manifests; return the train / valid / test datasets and the
    label ``encoder``. With ``balanced_sampler``, the training loader gets
    ``balanced_train_sampler`` in place of shuffling."""
    if not hparams["multilabel"]:
        raise DataError(
            "AudioSet is multi-label: multilabel must be True (BCE, mAP), "
            f"got {hparams['multilabel']}"
        )
    sets = prepared_datasets(
        hparams,
        prepare_audioset,
        **{key: hparams[key] for key in PREPARE_KEYS},
    )
    if hparams["balanced_sampler"]:
        out = Path(hparams["output_folder"])
        labels = manifest_labels(out / "train.csv")
        sampler = hparams["balanced_train_sampler"](labels)
        opts = dict(hparams["train_dataloader_opts"])
        opts.update(sampler=sampler, shuffle=False)
        hparams["train_dataloader_opts"] = opts
    return sets


def run(argv: Sequence[str]) -> Dict[str, Any]:
    """Run the recipe; returns the sweep rows, paths and the Brain."""
    hparams, run_opts = load_run(argv, DATASET_YAML)
    # SpeechBrain's run folder, as in recipes/ESC50/train.py.
    out = hparams["output_folder"]
    sb.create_experiment_directory(out, f"{out}/hyperparams.yaml")
    sets = build_datasets(hparams)
    return fit_and_test(hparams, run_opts, sets, metric="mAP")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point."""
    return recipe_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
