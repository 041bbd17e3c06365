#!/usr/bin/env python3
"""Train and evaluate FastAST on ESC-50 (one fold).

    python recipes/ESC50/train.py hparams/tome.yaml --data_folder=PATH \
        [--fold=5] [--key=value ...]

Composes ``recipes/ESC50/dataset.yaml``, the variant file and command-line
overrides; prepares manifests into the output folder; trains with
checkpoints (rerun the same command to resume; changed settings need
another ``--output_folder``, or ``--continue_changed=True``); then
evaluates the test fold for every ``r`` of ``r_sweep`` and writes
``r_sweep.md`` / ``.csv``. SpeechBrain's flags apply (``--debug``,
``--device``, ``--precision``, ``--output_folder``, ...).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import speechbrain as sb

RECIPE_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(RECIPE_DIR))

from prepare import prepare_esc50  # noqa: E402

from fastast_sb.dataio import prepared_datasets  # noqa: E402
from fastast_sb.runner import fit_and_test, load_run, recipe_main  # noqa: E402

DATASET_YAML = RECIPE_DIR / "dataset.yaml"


def build_datasets(hparams: Dict[str, Any]) -> Dict[str, Any]:
    """Prepare manifests, check classes, return datasets and the encoder."""
    return prepared_datasets(
        hparams,
        prepare_esc50,
        test_fold=hparams["fold"],
        valid_fold=hparams["valid_fold"],
    )


def run(argv: Sequence[str]) -> Dict[str, Any]:
    """Run the recipe; returns the sweep rows, paths and the Brain."""
    hparams, run_opts = load_run(argv, DATASET_YAML)
    # SpeechBrain's run folder: log.txt, env.log, a copy of this script and
    # the resolved hyperparams.yaml (composed by load_run) with its header.
    out = hparams["output_folder"]
    sb.create_experiment_directory(out, f"{out}/hyperparams.yaml")
    return fit_and_test(hparams, run_opts, build_datasets(hparams), "acc")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point."""
    return recipe_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
