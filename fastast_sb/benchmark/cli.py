"""``python -m fastast_sb.benchmark``: FastAST's Table 1 on this machine.

Per merge schedule of one model, input length, batch, device, dtype and
thread count: tokens per block, analytic GFLOPs and FLOP ratio, samples/s
and speed-up against r = 0 (same run, round-robin, median of per-round
ratios). ``--mode train`` times training steps, ``--compare-hf`` HF's
``ASTForAudioClassification`` in the same rounds; ``--checkpoint`` and
``--train-inf-checkpoint`` add accuracy / mAP per schedule.
``--precision fp32 bf16 int8`` times every format's schedules in the same
rounds (speed-up over fp32 at r = 0; :mod:`~fastast_sb.benchmark.formats`),
``--latency`` adds ms per clip at batch 1::

    python -m fastast_sb.benchmark --preset base --tdim 512 --batch 8 \\
        --r 0 8 16 32 flops:0.5 --compare-hf --out bench/
    python -m fastast_sb.benchmark --preset base --tdim 512 --batch 4 \\
        --r 0 flops:0.5 --precision fp32 bf16 int8 --latency
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import shlex
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from fastast_sb.benchmark import formats, report
from fastast_sb.models.ast import AST, PRESETS, ASTHead
from fastast_sb.precision import PRECISIONS
from fastast_sb.tables import format_markdown, write_table
from fastast_sb.timing import (
    device_name,
    interleaved_times,
    paired_speedups,
    random_features,
    schedule_steps,
)
from fastast_sb.tome.flops import token_counts
from fastast_sb.tome.schedule import FORMS, parse_schedule

logger = logging.getLogger(__name__)

DTYPES: Dict[str, Optional[torch.dtype]] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
Row = Dict[str, Any]


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface.

    Example
    -------
    >>> build_parser().parse_args(["--r", "0", "16"]).r
    ['0', '16']
    """
    p = argparse.ArgumentParser(
        prog="python -m fastast_sb.benchmark",
        description="AST / FastAST throughput, FLOPs and accuracy over r "
        "(FastAST Table 1 layout).",
    )
    add, num = p.add_argument, functools.partial(p.add_argument, type=int)
    add("--preset", choices=sorted(PRESETS), help="model size (default base)")
    num("--tdim", help="input frames (default 512; fixed by --checkpoint)")
    num("--depth", help="number of blocks (default: the preset's 12)")
    num("--batch", default=8)
    add("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    add("--dtype", choices=sorted(DTYPES), help="autocast to (default fp32)")
    prec_help = (
        "formats timed side by side in one run (fp32 added first: the "
        "reference); int8: dynamic int8 linear layers, CPU"
    )
    add("--precision", nargs="+", choices=PRECISIONS, help=prec_help)
    lat_help = "also time one clip (batch 1) per row: latency in ms"
    add("--latency", action="store_true", help=lat_help)
    r_help = f"schedules, each {FORMS}; r=0 is added first when missing"
    add("--r", nargs="+", default=["0", "8", "16"], help=r_help)
    num("--repeats", default=5, help="rounds, each timing every config once")
    num("--warmup", default=1, help="discarded calls per configuration")
    num("--threads", help="torch.set_num_threads (default: torch's)")
    num(
        "--cpu-batch-tokens",
        help="tokens per encoder pass in CPU inference (AST.cpu_batch_tokens;"
        " 0: the whole batch at once; default: the model's)",
    )
    mode_help = "inference, or training steps (forward + backward + Adam)"
    add("--mode", choices=["infer", "train"], default="infer", help=mode_help)
    hf_help = "also time HF's ASTForAudioClassification (sdpa, r=0) alongside"
    add("--compare-hf", action="store_true", help=hf_help)
    ckpt_help = "model or run folder: accuracy / mAP per r (merging at test)"
    add("--checkpoint", help=ckpt_help)
    add("--train-inf-checkpoint", help="that model trained with merging")
    data_help = "CSV: ID, duration, wav, label (default: the run's test.csv)"
    add("--data", help=data_help)
    num("--eval-batch", default=16, help="clips per pass when evaluating")
    num("--classes", default=527, help="classifier outputs (no --checkpoint)")
    add("--out", help="folder for benchmark.md, benchmark.csv, benchmark.png")
    return p


@dataclass
class BenchmarkResult:
    """One benchmark run: ``rows`` (per schedule, the columns of
    :func:`~fastast_sb.benchmark.report.benchmark_layout` and ``counts``),
    ``meta`` (configuration, machine), ``hf`` (``--compare-hf``: HF's
    ``samples_per_s``, ``ratio`` of ours at r = 0 over HF), ``markdown``
    (as printed) and ``paths`` (the files written, ``--out``)."""

    rows: List[Row]
    meta: Dict[str, Any]
    hf: Optional[Dict[str, float]] = None
    markdown: str = ""
    paths: Dict[str, str] = field(default_factory=dict)


def _parse(argv: List[str]) -> Tuple[argparse.Namespace, Any]:
    """Parsed and checked arguments (``args.device`` a torch.device)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    lows = {"warmup": 0, "threads": 1, "cpu_batch_tokens": 0}
    for name in ("batch", "repeats", "eval_batch", "classes", *lows):
        value, low = getattr(args, name), lows.get(name, 1)
        if value is not None and value < low:
            parser.error(f"--{name.replace('_', '-')} must be >= {low}")
    if args.train_inf_checkpoint and not args.checkpoint:
        parser.error("--train-inf-checkpoint needs --checkpoint")
    if args.data and not args.checkpoint:
        parser.error("--data needs --checkpoint (the model to evaluate)")
    try:
        args.device = torch.device(args.device)
    except RuntimeError as err:
        parser.error(f"--device {args.device}: {err}")
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here")
    if args.checkpoint is not None and (
        args.tdim is not None or args.preset is not None
    ):
        parser.error(
            "--checkpoint fixes the model and its input length; drop "
            "--preset / --tdim"
        )
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.formats = None
    if args.precision is not None:
        if args.dtype is not None:
            parser.error("--dtype and --precision: give one of them")
        try:
            args.formats = formats.resolve_formats(args.precision, args.device)
        except ValueError as err:
            parser.error(f"--precision: {err}")
        if args.mode == "train" and "int8" in args.formats:
            parser.error("--precision int8 is for inference (--mode infer)")
    if args.latency and args.mode == "train":
        parser.error("--latency times inference (--mode infer)")
    args.dtype = args.dtype or "fp32"
    return args, parser


def _build(args: argparse.Namespace):
    """(model, head, tagger) on the requested device."""
    if args.checkpoint is not None:
        from fastast_sb.benchmark.accuracy import load_classifier

        tagger = load_classifier(args.checkpoint, str(args.device))
        model, head = tagger.mods.embedding_model, tagger.mods.classifier
    else:
        torch.manual_seed(0)
        tdim = 512 if args.tdim is None else args.tdim
        depth = {} if args.depth is None else {"depth": args.depth}
        model = AST(tdim, preset=args.preset or "base", **depth)
        model = model.to(args.device).eval()
        head = ASTHead(model.embed_dim, args.classes).to(args.device).eval()
        tagger = None
    if args.cpu_batch_tokens is not None:
        model.cpu_batch_tokens = args.cpu_batch_tokens
    return model, head, tagger


def _rows(
    texts: Sequence[str], model: AST, parser: argparse.ArgumentParser
) -> Tuple[List[Any], List[Row]]:
    """Schedules (r = 0 first) and their rows: tokens, analytic FLOPs."""
    specs, rows = [], []
    for text in texts:
        try:
            spec = parse_schedule(text)
            sched = model.schedule(spec)
        except (ValueError, TypeError) as err:
            parser.error(f"--r {text}: {err}")
        specs.append(spec)
        rows.append({"r": str(spec), "schedule": sched})
    if not rows or any(rows[0]["schedule"]):
        logger.info("adding r=0 as the reference row")
        specs.insert(0, 0)
        rows.insert(0, {"r": "0", "schedule": model.schedule(0)})
    full = model.flops(0)
    for spec, row in zip(specs, rows):
        flops = model.flops(spec)
        row["counts"] = token_counts(model.num_tokens, row["schedule"])
        row["gflops"] = flops / 1e9
        row["flop_ratio"] = full / flops
    return specs, rows


def _add_metrics(
    args: argparse.Namespace,
    tagger: Any,
    specs: List[Any],
    rows: List[Row],
    dtype: Optional[torch.dtype],
    models: Optional[Dict[str, Any]] = None,
) -> str:
    """Accuracy / mAP columns of the checkpoint(s) (per format with
    ``models``); the metric name."""
    from fastast_sb.benchmark import accuracy

    manifest = args.data or accuracy.default_manifest(args.checkpoint)
    if manifest is None:
        raise ValueError(
            "--checkpoint needs --data (a manifest CSV), or a run folder "
            "holding test.csv"
        )
    other = args.train_inf_checkpoint
    if other is not None:
        other = accuracy.load_classifier(other, str(args.device))
    if models is None:
        return accuracy.add_metrics(
            rows, specs, tagger, manifest, other, args.eval_batch, dtype
        )
    return formats.add_format_metrics(
        rows, specs, tagger, other, models, manifest, args.eval_batch
    )


def _time(
    args: argparse.Namespace,
    model: AST,
    head: torch.nn.Module,
    specs: List[Any],
    rows: List[Row],
    dtype: Optional[torch.dtype],
    models: Optional[Dict[str, Any]] = None,
) -> Optional[Dict[str, float]]:
    """Time a step per row (``models``: per format, then schedule), with
    ``--latency`` one per row on a single clip, then HF's, if asked for:
    samples/s, speed-ups (over the first row) and latencies into ``rows``;
    HF's numbers, if timed."""
    feats = random_features(model, args.batch)
    n_classes = head.linear.out_features
    labels = None
    if args.mode == "train":
        gen = torch.Generator().manual_seed(1)
        labels = torch.randint(n_classes, (args.batch,), generator=gen)
        labels = labels.to(feats.device)
    if models is None:
        steps = schedule_steps(model, head, feats, specs, labels, dtype)
    else:
        steps = formats.format_steps(models, head, feats, specs, labels)
    n_rows = len(steps)
    if args.latency:
        clip_models = models or {args.dtype: model}
        steps += formats.latency_steps(clip_models, head, feats[:1], specs)
    if args.compare_hf:
        from fastast_sb.benchmark.hf import hf_step

        steps.append(hf_step(model, feats, labels, dtype, n_classes))
    times = interleaved_times(steps, args.device, args.warmup, args.repeats)
    ours = times[:n_rows]
    for row, t, speedup in zip(rows, ours, paired_speedups(ours)):
        row["samples_per_s"] = args.batch / statistics.median(t)
        row["speedup"] = speedup
        row["speedup_per_flop_ratio"] = speedup / row["flop_ratio"]
    if args.latency:
        for row, t in zip(rows, times[n_rows : 2 * n_rows]):
            row["latency_ms"] = 1000 * statistics.median(t)
    if not args.compare_hf:
        return None
    return {
        "samples_per_s": args.batch / statistics.median(times[-1]),
        "ratio": paired_speedups([times[-1], times[0]])[1],
    }


def _meta(args: argparse.Namespace, argv: List[str], model: AST) -> dict:
    meta = {
        "command": "python -m fastast_sb.benchmark " + shlex.join(argv),
        "model": (
            f"AST {model.embed_dim}-wide, {model.depth} blocks, "
            f"{model.num_heads} heads"
        ),
        "tdim": model.input_tdim,
        "tokens": model.num_tokens,
        "batch": args.batch,
        "device": str(args.device),
        "machine": device_name(args.device),
        "dtype": ", ".join(args.formats or [args.dtype]),
        "threads": torch.get_num_threads(),
        "mode": args.mode,
        "cpu_batch_tokens": model.cpu_batch_tokens,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "torch": torch.__version__,
    }
    if args.latency:
        meta["latency_clip_s"] = model.input_tdim / 100  # 10 ms frames
    if args.device.type == "cpu" and hasattr(os, "getloadavg"):
        meta["load"] = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return meta


def run(argv: Optional[Sequence[str]] = None) -> BenchmarkResult:
    """Run the benchmark on ``argv`` (``sys.argv[1:]``); print, return it.

    Example
    -------
    >>> res = run(["--preset", "tiny", "--depth", "1", "--tdim", "128",
    ...            "--batch", "1", "--r", "0", "8", "--repeats", "1",
    ...            "--warmup", "0"])  # doctest: +ELLIPSIS
    # ...
    >>> [row["r"] for row in res.rows], res.rows[0]["speedup"]
    (['0', '8'], 1.0)
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args, parser = _parse(argv)
    dtype = DTYPES[args.dtype]
    model, head, tagger = _build(args)
    specs, rows = _rows(args.r, model, parser)
    models = None
    if args.formats is not None:
        models = formats.format_models(model, args.formats)
        rows = [dict(row, precision=f) for f in args.formats for row in rows]
    metric = "acc"
    if tagger is not None:
        metric = _add_metrics(args, tagger, specs, rows, dtype, models)
    hf = _time(args, model, head, specs, rows, dtype, models)
    meta = _meta(args, argv, model)
    header, footer = report.benchmark_notes(meta, hf)
    layout = report.benchmark_layout(rows, metric)
    text = format_markdown(rows, layout, metric, header, footer)
    print(text)
    result = BenchmarkResult(rows, meta, hf, text)
    if args.out:
        paths = write_table(
            rows, layout, args.out, "benchmark", metric, header, footer
        )
        title = (
            f"{meta['model']}, T={meta['tdim']}, batch {args.batch}, "
            f"{args.device}, {args.dtype}, {args.mode}"
        )
        paths["png"] = report.plot(
            rows, Path(args.out) / "benchmark.png", title, metric
        )
        result.paths = {k: str(v) for k, v in paths.items()}
        print(f"\nwrote {', '.join(result.paths.values())}")
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console entry point: run, print, return 0.

    Example
    -------
    >>> main(["--preset", "tiny", "--depth", "1", "--tdim", "128", "--batch",
    ...       "1", "--r", "0", "--repeats", "1"])  # doctest: +ELLIPSIS
    # ...
    0
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run(argv)
    return 0
