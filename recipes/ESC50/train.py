#!/usr/bin/env python3
"""Train and evaluate FastAST on ESC-50 (one fold).

    python recipes/ESC50/train.py hparams/tome.yaml --data_folder=PATH \
        [--fold=5] [--key=value ...]

Composes ``recipes/ESC50/dataset.yaml``, the variant file and command-line
overrides; prepares manifests into the output folder; trains with
checkpoints (rerun the same command to resume); then evaluates the test
fold for every ``r`` of ``r_sweep`` and writes ``r_sweep.md`` / ``.csv``.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

RECIPE_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(RECIPE_DIR))

from prepare import DataError, prepare_esc50  # noqa: E402

from fastast_sb.brain import FastASTBrain  # noqa: E402
from fastast_sb.config import load_hparams  # noqa: E402
from fastast_sb.dataio import (  # noqa: E402
    classification_dataset,
    make_label_encoder,
    read_classes,
)
from fastast_sb.sweep import r_sweep, write_tables  # noqa: E402

logger = logging.getLogger(__name__)
DATASET_YAML = RECIPE_DIR / "dataset.yaml"


def load_pretrained(hparams: Dict[str, Any]) -> None:
    """Copy encoder weights from ``pretrained_path`` (any supported format)."""
    path = hparams["pretrained_path"]
    if path is None:
        return
    from fastast_sb.models.ast import AST

    model = hparams["embedding_model"]
    source = AST.from_pretrained(path, input_tdim=model.input_tdim)
    model.load_state_dict(source.state_dict())
    logger.info("encoder initialised from %s", path)


def build_datasets(hparams: Dict[str, Any]) -> Dict[str, Any]:
    """Prepare manifests, check classes, return datasets and the encoder."""
    out = hparams["output_folder"]
    sb.utils.distributed.run_on_main(
        prepare_esc50,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": out,
            "test_fold": hparams["fold"],
            "valid_fold": hparams["valid_fold"],
        },
    )
    classes = read_classes(Path(out) / "classes.txt")
    if len(classes) != hparams["n_classes"]:
        raise DataError(
            f"the data has {len(classes)} classes but n_classes="
            f"{hparams['n_classes']}; pass --n_classes={len(classes)}"
        )
    encoder = make_label_encoder(classes, Path(out) / "label_encoder.txt")
    sets = {
        split: classification_dataset(
            Path(out) / f"{split}.csv",
            encoder,
            hparams["sample_rate"],
            hparams["multilabel"],
        )
        for split in ("train", "valid", "test")
    }
    sets["encoder"] = encoder
    return sets


def run(argv: Sequence[str]) -> Dict[str, Any]:
    """Run the recipe; returns the sweep rows and paths (for tests)."""
    variant_file, run_opts, overrides_text = sb.parse_arguments(list(argv))
    overrides = load_hyperpyyaml(overrides_text) if overrides_text else {}
    hparams, resolved = load_hparams(
        DATASET_YAML, variant_file, overrides=overrides
    )
    out = Path(hparams["output_folder"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "hyperparams.yaml").write_text(resolved, encoding="utf-8")
    sb.utils.logger.setup_logging()
    if run_opts.get("debug"):
        hparams["r_sweep"] = hparams["r_sweep"][:2]

    sets = build_datasets(hparams)
    load_pretrained(hparams)
    brain = FastASTBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        teacher=hparams["teacher"],
    )
    brain.fit(
        hparams["epoch_counter"],
        sets["train"],
        sets["valid"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["test_dataloader_opts"],
    )

    key = "epoch" if hparams["test_checkpoint"] == "last" else "acc"

    def evaluate(r: Any) -> float:
        brain.eval_r = r
        brain.evaluate(
            sets["test"],
            max_key=key,
            test_loader_kwargs=hparams["test_dataloader_opts"],
        )
        return brain.last_metrics["acc"]

    rows: List[Dict[str, Any]] = []
    paths: Dict[str, str] = {}
    if sb.utils.distributed.if_main_process():
        rows = r_sweep(
            brain.modules.embedding_model,
            evaluate,
            hparams["r_sweep"],
            batch_size=hparams["bench_batch_size"],
            repeats=hparams["bench_repeats"],
        )
        paths = write_tables(rows, str(out), metric="acc")
        (out / "test_metrics.json").write_text(
            json.dumps({"r_sweep": rows}, indent=2), encoding="utf-8"
        )
        print(Path(paths["markdown"]).read_text(encoding="utf-8"))
    return {"rows": rows, "paths": paths, "output_folder": str(out)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point."""
    try:
        run(sys.argv[1:] if argv is None else argv)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
