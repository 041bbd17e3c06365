#!/usr/bin/env python3
"""Train and evaluate FastAST on Speech Commands v0.02 (35 or 12 classes).

    python recipes/SpeechCommands/train.py hparams/tome.yaml \
        --data_folder=PATH [--n_classes=12] [--key=value ...]

Composes ``recipes/SpeechCommands/dataset.yaml``, the variant file and
command-line overrides; prepares manifests (official validation / testing
lists) into the output folder; trains with checkpoints (rerun the same
command to resume; changed settings need another ``--output_folder``, or
``--continue_changed=True``); then evaluates the test split for every
``r`` of ``r_sweep`` and writes ``r_sweep.md`` / ``.csv``. Multi-GPU:
start the same command with ``torchrun --nproc_per_node=N`` (see
docs/multi_gpu.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import speechbrain as sb

RECIPE_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(RECIPE_DIR))

from prepare_speech_commands import prepare_speech_commands  # noqa: E402

from fastast_sb.dataio import prepared_datasets  # noqa: E402
from fastast_sb.runner import fit_and_test, load_run, recipe_main  # noqa: E402

DATASET_YAML = RECIPE_DIR / "dataset.yaml"


def build_datasets(hparams: Dict[str, Any]) -> Dict[str, Any]:
    """Prepare manifests; return the train / valid / test datasets and the
    label ``encoder``."""
    return prepared_datasets(
        hparams,
        prepare_speech_commands,
        n_classes=hparams["n_classes"],
        unknown_percentage=hparams["unknown_percentage"],
        silence_percentage=hparams["silence_percentage"],
        seed=hparams["prepare_seed"],
    )


def run(argv: Sequence[str]) -> Dict[str, Any]:
    """Run the recipe; returns the sweep rows, paths and the Brain."""
    hparams, run_opts = load_run(argv, DATASET_YAML)
    # SpeechBrain's run folder, as in recipes/ESC50/train.py.
    out = hparams["output_folder"]
    sb.create_experiment_directory(out, f"{out}/hyperparams.yaml")
    sets = build_datasets(hparams)
    augment = hparams["feature_augment"]
    return fit_and_test(hparams, run_opts, sets, "acc", augment)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point."""
    return recipe_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
