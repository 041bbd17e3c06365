"""fp32 vs bf16 vs int8 on a trained model: top-1 agreement and accuracy.

For a model folder or a recipe run folder and a test manifest (CSV with
``ID, duration, wav, label``; by default the run folder's ``test.csv``),
prints per format and merge schedule the accuracy (or mAP), its change
against fp32 at the first schedule and the share of clips whose top-1
class equals fp32's (:func:`fastast_sb.benchmark.parity.format_parity`),
with issue 16's bar: >= 99 % agreement and <= 0.5 points lost. Exit status
1 when a format misses it.

Usage::

    OMP_NUM_THREADS=1 python scripts/precision_parity.py \\
        results/ESC50/tome/fold4/seed1234 --r 0 flops:0.5
    python scripts/precision_parity.py MODEL_DIR --data test.csv \\
        --precision fp32 bf16 int8
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional, Sequence

import torch

from fastast_sb.benchmark import accuracy
from fastast_sb.benchmark.formats import resolve_formats
from fastast_sb.benchmark.parity import format_parity, parity_markdown
from fastast_sb.precision import PRECISIONS
from fastast_sb.tome.schedule import parse_schedule


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python scripts/precision_parity.py",
        description="top-1 agreement with fp32 and accuracy per format",
    )
    p.add_argument("model", help="model folder or recipe run folder")
    p.add_argument("--data", help="manifest CSV (default: the run's test.csv)")
    p.add_argument(
        "--precision",
        nargs="+",
        choices=PRECISIONS,
        default=["bf16", "int8"],
        help="formats compared with fp32 (added first)",
    )
    p.add_argument("--r", nargs="+", default=["0"], help="merge schedules")
    p.add_argument("--batch", type=int, default=16, help="clips per pass")
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    return p


def run(argv: Optional[Sequence[str]] = None) -> int:
    """Print the table; 0 when every format is safe, 1 otherwise."""
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    formats = resolve_formats(args.precision, torch.device("cpu"))
    specs: List = [parse_schedule(text) for text in args.r]
    manifest = args.data or accuracy.default_manifest(args.model)
    if manifest is None:
        raise ValueError(
            f"{args.model} holds no test.csv: pass --data MANIFEST.csv"
        )
    tagger = accuracy.load_classifier(args.model, "cpu")
    tagger.set_precision("fp32")  # the float weights: the reference
    data = accuracy.load_eval_set(tagger, manifest)
    rows = format_parity(
        tagger.mods.embedding_model,
        tagger.mods.classifier,
        data,
        formats,
        specs,
        tagger.multilabel,
        args.batch,
    )
    print(
        f"{args.model}: {len(data.feats)} clips of {manifest}, "
        f"{torch.get_num_threads()} thread(s), torch {torch.__version__}\n"
    )
    print(parity_markdown(rows))
    unsafe = [f"{r['precision']} r={r['r']}" for r in rows if not r["safe"]]
    if unsafe:
        print(f"\nbelow the bar (>= 99 % agreement, <= 0.5 pts): {unsafe}")
        return 1
    print("\nevery format within the bar (>= 99 % agreement, <= 0.5 pts)")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        return run(argv)
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
