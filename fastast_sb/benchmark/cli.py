"""``python -m fastast_sb.benchmark``: FastAST's Table 1 on this machine.

For one model configuration (preset or checkpoint, input length, batch,
device, dtype, threads) and a list of merge schedules, prints and writes a
table with tokens per block, analytic GFLOPs, the FLOP ratio against
r = 0, measured samples/s, the measured speed-up against r = 0 (same run,
round-robin, median of per-round ratios) and the speed-up over the FLOP
ratio. ``--mode train`` times training steps (forward, backward, Adam)
instead of inference. ``--compare-hf`` times transformers'
``ASTForAudioClassification`` (SDPA) of the same size in the same rounds.
``--checkpoint`` adds accuracy / mAP per schedule (inference-only merging),
``--train-inf-checkpoint`` the column of a model trained with merging.

Usage::

    python -m fastast_sb.benchmark --preset base --tdim 512 --batch 8 \\
        --r 0 8 16 32 flops:0.5 --compare-hf --out bench/
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from fastast_sb.benchmark.report import format_markdown, plot, write_csv
from fastast_sb.benchmark.timing import (
    inference_step,
    interleaved_times,
    paired_speedups,
    random_features,
    train_step,
    training_copy,
)
from fastast_sb.models.ast import AST, PRESETS, ASTHead
from fastast_sb.tome.flops import token_counts
from fastast_sb.tome.schedule import RSpec

logger = logging.getLogger(__name__)

DTYPES: Dict[str, Optional[torch.dtype]] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
_R_HELP = "an int (16), flops:F, ratio:P or R,INFLECT (16,-1)"


def parse_r_arg(text: str) -> RSpec:
    """Command-line schedule: ``16``, ``flops:0.5``, ``ratio:0.1``, ``8,-1``.

    Arguments
    ---------
    text : str
        One schedule as typed.

    Returns
    -------
    int, tuple or dict
        A schedule of :mod:`fastast_sb.tome.schedule`.

    Example
    -------
    >>> parse_r_arg("flops:0.5"), parse_r_arg("16"), parse_r_arg("8,-1")
    ({'flops': 0.5}, 16, (8, -1.0))
    >>> parse_r_arg("fast")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: cannot parse r 'fast': expected an int (16), flops:F, ...
    """
    text = text.strip()
    try:
        if ":" in text:
            key, value = text.split(":", 1)
            if key not in ("flops", "ratio"):
                raise ValueError(f"unknown key {key!r}")
            return {key: float(value)}
        if "," in text:
            r, inflect = text.split(",", 1)
            return (int(r), float(inflect))
        return int(text)
    except ValueError as err:
        raise ValueError(
            f"cannot parse r {text!r}: expected {_R_HELP}"
        ) from err


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
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="model size (default base; ignored with --checkpoint)",
    )
    p.add_argument(
        "--tdim",
        type=int,
        default=None,
        help="input frames (default 512; fixed by --checkpoint)",
    )
    p.add_argument(
        "--depth",
        type=int,
        default=None,
        help="number of blocks (default: the preset's 12)",
    )
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default="fp32",
        help="autocast dtype (fp32: none)",
    )
    p.add_argument(
        "--r",
        nargs="+",
        default=["0", "8", "16"],
        help=f"schedules, each {_R_HELP}; r=0 is added first when missing",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="timed rounds (each times every configuration once)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="discarded calls per configuration",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: torch's)",
    )
    p.add_argument(
        "--cpu-batch-tokens",
        type=int,
        default=None,
        help="tokens per encoder pass in CPU inference (AST."
        "cpu_batch_tokens; 0: the whole batch at once; default: the "
        "model's)",
    )
    p.add_argument(
        "--mode",
        choices=["infer", "train"],
        default="infer",
        help="inference, or training steps (forward + backward + Adam)",
    )
    p.add_argument(
        "--compare-hf",
        action="store_true",
        help="also time transformers' ASTForAudioClassification "
        "(sdpa) at r=0 in the same rounds",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="model folder or recipe run folder: accuracy / mAP "
        "per r with merging at inference only",
    )
    p.add_argument(
        "--train-inf-checkpoint",
        default=None,
        help="the same model trained with merging: the Train+Inf column",
    )
    p.add_argument(
        "--data",
        default=None,
        help="manifest CSV (ID, duration, wav, label) to "
        "evaluate on (default: a run folder's test.csv)",
    )
    p.add_argument(
        "--eval-batch",
        type=int,
        default=16,
        help="clips per forward pass when evaluating",
    )
    p.add_argument(
        "--classes",
        type=int,
        default=527,
        help="classifier outputs without --checkpoint",
    )
    p.add_argument(
        "--out",
        default=None,
        help="folder for benchmark.md, benchmark.csv, benchmark.png",
    )
    return p


@dataclass
class BenchmarkResult:
    """What one benchmark run measured.

    Attributes
    ----------
    rows : list of dict
        One row per schedule (see :mod:`fastast_sb.benchmark.report`).
    meta : dict
        The configuration and the machine.
    hf : dict or None
        ``samples_per_s`` of transformers' model and ``ratio`` (ours at
        r = 0 over HF, median of per-round ratios), with ``--compare-hf``.
    markdown : str
        The report as printed.
    paths : dict
        Files written (``--out``).
    """

    rows: List[Dict[str, Any]]
    meta: Dict[str, Any]
    hf: Optional[Dict[str, float]] = None
    markdown: str = ""
    paths: Dict[str, str] = field(default_factory=dict)


def _machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} logical CPUs"


def _build(args: argparse.Namespace, parser: argparse.ArgumentParser):
    """(model, head, tagger) on the requested device."""
    if args.checkpoint is not None:
        if args.tdim is not None or args.preset is not None:
            parser.error(
                "--checkpoint fixes the model and its input length; drop "
                "--preset / --tdim"
            )
        from fastast_sb.benchmark.accuracy import load_classifier

        tagger = load_classifier(args.checkpoint, str(args.device))
        return tagger.mods.embedding_model, tagger.mods.classifier, tagger
    torch.manual_seed(0)
    kwargs: Dict[str, Any] = {
        "input_tdim": 512 if args.tdim is None else args.tdim,
        "preset": args.preset or "base",
    }
    if args.depth is not None:
        kwargs["depth"] = args.depth
    model = AST(**kwargs).to(args.device).eval()
    head = ASTHead(model.embed_dim, args.classes).to(args.device).eval()
    return model, head, None


def _schedules(
    texts: Sequence[str], model: AST, parser: argparse.ArgumentParser
) -> List[tuple]:
    """[(label, spec, per-block schedule)], r = 0 first."""
    out = []
    for text in texts:
        try:
            spec = parse_r_arg(text)
            sched = model.schedule(spec)
        except (ValueError, TypeError) as err:
            parser.error(f"--r {text}: {err}")
        out.append((text, spec, sched))
    if not out or any(out[0][2]):
        logger.info("adding r=0 as the reference row")
        out.insert(0, ("0", 0, model.schedule(0)))
    return out


def _check_same_architecture(a: AST, b: AST) -> None:
    keys = ("input_tdim", "embed_dim", "depth", "num_heads", "num_tokens")
    diff = [k for k in keys if getattr(a, k) != getattr(b, k)]
    if diff:
        raise ValueError(
            "--train-inf-checkpoint differs from --checkpoint in "
            + ", ".join(
                f"{k} ({getattr(b, k)} vs {getattr(a, k)})" for k in diff
            )
            + "; expected the same architecture"
        )


def _add_metrics(
    args: argparse.Namespace,
    tagger: Any,
    schedules: List[tuple],
    rows: List[Dict[str, Any]],
    dtype: Optional[torch.dtype],
) -> str:
    """Evaluate the checkpoint(s) per schedule; returns the metric name."""
    from fastast_sb.benchmark.accuracy import (
        default_manifest,
        evaluate,
        load_classifier,
        load_eval_set,
    )

    manifest = args.data or default_manifest(args.checkpoint)
    if manifest is None:
        raise ValueError(
            "--checkpoint needs --data (a manifest CSV), or a run folder "
            "holding test.csv"
        )
    data = load_eval_set(tagger, manifest)
    name = "acc"
    for (_, spec, _), row in zip(schedules, rows):
        name, row["metric_inf"] = evaluate(
            tagger, data, spec, args.eval_batch, dtype
        )
    if args.train_inf_checkpoint is not None:
        other = load_classifier(args.train_inf_checkpoint, str(args.device))
        _check_same_architecture(
            tagger.mods.embedding_model, other.mods.embedding_model
        )
        for (_, spec, _), row in zip(schedules, rows):
            _, row["metric_train_inf"] = evaluate(
                other, data, spec, args.eval_batch, dtype
            )
    return name


def _steps(
    args: argparse.Namespace,
    model: AST,
    head: torch.nn.Module,
    schedules: List[tuple],
    dtype: Optional[torch.dtype],
) -> List[Any]:
    """One callable per schedule, then HF's when asked for."""
    feats = random_features(model, args.batch)
    n_classes = head.linear.out_features
    hf_model = None
    if args.compare_hf:
        from fastast_sb.benchmark.hf import (
            hf_inference_step,
            hf_reference,
            hf_train_step,
        )

        hf_model = hf_reference(model, n_classes)
    if args.mode == "infer":
        model.eval()
        head.eval()
        steps = [
            inference_step(model, feats, spec, dtype, head)
            for _, spec, _ in schedules
        ]
        if hf_model is not None:
            steps.append(hf_inference_step(hf_model, feats, dtype))
        return steps
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(n_classes, (args.batch,), generator=gen)
    labels = labels.to(feats.device)
    tmodel, thead = training_copy(model), training_copy(head)
    opt = torch.optim.Adam([*tmodel.parameters(), *thead.parameters()])
    steps = [
        train_step(tmodel, thead, feats, labels, opt, spec, dtype)
        for _, spec, _ in schedules
    ]
    if hf_model is not None:
        hf_model.train()
        hf_opt = torch.optim.Adam(hf_model.parameters())
        steps.append(hf_train_step(hf_model, feats, labels, hf_opt, dtype))
    return steps


def run(argv: Optional[Sequence[str]] = None) -> BenchmarkResult:
    """Run the benchmark as on the command line; print and return it.

    Arguments
    ---------
    argv : sequence of str, optional
        Command-line arguments (``sys.argv[1:]`` if ``None``).

    Returns
    -------
    BenchmarkResult

    Example
    -------
    >>> res = run(["--preset", "tiny", "--depth", "1", "--tdim", "128",
    ...            "--batch", "1", "--r", "0", "8", "--repeats", "1",
    ...            "--warmup", "0"])  # doctest: +ELLIPSIS
    # ...
    >>> [row["r"] for row in res.rows], res.rows[0]["speedup"]
    (['0', '8'], 1.0)
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    for name in ("batch", "repeats", "eval_batch", "classes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if args.train_inf_checkpoint and not args.checkpoint:
        parser.error("--train-inf-checkpoint needs --checkpoint")
    if args.data and not args.checkpoint:
        parser.error("--data needs --checkpoint (the model to evaluate)")
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        parser.error(f"--device {args.device}: {err}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here")
    args.device = device
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    dtype = DTYPES[args.dtype]

    model, head, tagger = _build(args, parser)
    if args.cpu_batch_tokens is not None:
        if args.cpu_batch_tokens < 0:
            parser.error("--cpu-batch-tokens must be >= 0")
        model.cpu_batch_tokens = args.cpu_batch_tokens
    schedules = _schedules(args.r, model, parser)
    full = model.flops(0)
    rows: List[Dict[str, Any]] = []
    for text, spec, sched in schedules:
        flops = model.flops(spec)
        rows.append(
            {
                "r": text,
                "schedule": sched,
                "counts": token_counts(model.num_tokens, sched),
                "gflops": flops / 1e9,
                "flop_ratio": full / flops,
            }
        )
    metric = "acc"
    if tagger is not None:
        metric = _add_metrics(args, tagger, schedules, rows, dtype)

    steps = _steps(args, model, head, schedules, dtype)
    times = interleaved_times(steps, device, args.warmup, args.repeats)
    ours = times[: len(schedules)]
    for row, t, speedup in zip(rows, ours, paired_speedups(ours)):
        row["samples_per_s"] = args.batch / statistics.median(t)
        row["speedup"] = speedup
        row["speedup_per_flop_ratio"] = speedup / row["flop_ratio"]
    hf = None
    if args.compare_hf:
        ratio = paired_speedups([times[-1], times[0]])[1]
        hf = {
            "samples_per_s": args.batch / statistics.median(times[-1]),
            "ratio": ratio,
        }

    meta = {
        "command": "python -m fastast_sb.benchmark " + shlex.join(argv),
        "model": (
            f"AST {model.embed_dim}-wide, {model.depth} blocks, "
            f"{model.num_heads} heads"
        ),
        "tdim": model.input_tdim,
        "tokens": model.num_tokens,
        "batch": args.batch,
        "device": str(device),
        "machine": _machine(device),
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "mode": args.mode,
        "cpu_batch_tokens": model.cpu_batch_tokens,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "torch": torch.__version__,
    }
    if device.type == "cpu" and hasattr(os, "getloadavg"):
        meta["load"] = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    text = _markdown(rows, meta, hf, metric)
    print(text)
    result = BenchmarkResult(rows, meta, hf, text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "benchmark.md").write_text(text + "\n", encoding="utf-8")
        write_csv(rows, out / "benchmark.csv")
        title = (
            f"{meta['model']}, T={meta['tdim']}, batch {args.batch}, "
            f"{device}, {args.dtype}, {args.mode}"
        )
        plot(rows, out / "benchmark.png", title, metric)
        result.paths = {
            k: str(out / f"benchmark.{k}") for k in ("md", "csv", "png")
        }
        print(f"\nwrote {', '.join(result.paths.values())}")
    return result


def _markdown(
    rows: List[Dict[str, Any]],
    meta: Dict[str, Any],
    hf: Optional[Dict[str, float]],
    metric: str,
) -> str:
    what = "training steps" if meta["mode"] == "train" else "inference"
    header = [
        f"# AST / FastAST {what}: {meta['model']}, T={meta['tdim']} "
        f"({meta['tokens']} tokens), batch {meta['batch']}",
        "",
        f"- command: `{meta['command']}`",
        f"- device: {meta['device']} ({meta['machine']}), dtype "
        f"{meta['dtype']}, {meta['threads']} threads, torch {meta['torch']}"
        + (f", load average {meta['load']}" if "load" in meta else ""),
        f"- protocol: {meta['warmup']} warm-up call(s) discarded per "
        f"configuration, then {meta['repeats']} rounds timing every "
        "configuration once, round-robin, device synchronised; samples/s "
        "from the median time; speed-up = median over rounds of the "
        "per-round time ratio to r=0 (same run); FLOP ratio = analytic "
        "FLOPs at r=0 / at r",
        "",
    ]
    if meta["device"] == "cpu" and meta["mode"] == "infer":
        tokens = meta["cpu_batch_tokens"]
        split = f"at most {tokens} tokens per encoder pass" if tokens else "off"
        header.insert(
            -2,
            f"- CPU sub-batching: {split} (AST.cpu_batch_tokens: whole "
            "examples, same numbers as one pass)",
        )
    footer = []
    if hf is not None:
        footer = [
            "",
            f"transformers `ASTForAudioClassification` (sdpa, r=0): "
            f"{hf['samples_per_s']:.2f} samples/s; ours at r=0 / HF = "
            f"**{hf['ratio']:.3f}** (same rounds, median per-round ratio)",
        ]
    return format_markdown(rows, metric, header, footer)


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
