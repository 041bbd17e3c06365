"""Command-line entry points of :mod:`fastast_sb.inference`.

``fastast-tag`` tags audio files (or folders of them, recursively) with a
model folder::

    fastast-tag FILE_OR_FOLDER... --model DIR [--r 16] [--top 5]
        [--hop SECONDS] [--batch-size 8] [--json] [--device cpu]
        [--precision auto] [--timeline OUT.csv|OUT.json] [--plot OUT.png]

Long clips are scored with sliding windows, read from disk a batch of
windows at a time. ``--timeline`` writes each window's start, end and top
labels; ``--plot`` draws the labels over time (one PNG, or a folder of
them for several files). A progress bar runs on stderr when it is a
terminal. A file (or model) that cannot be used gives exit status 1 and
its reason on stderr; the rest is tagged.

``python -m fastast_sb.inference`` manages model folders::

    python -m fastast_sb.inference export RUN_DIR OUT_DIR [--checkpoint best]
    python -m fastast_sb.inference import SRC OUT_DIR [--labels FILE]
    python -m fastast_sb.inference onnx MODEL_DIR OUT.onnx [--r 16]
    python -m fastast_sb.inference tag FILE... --model DIR   (= fastast-tag)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from fastast_sb.audio import AudioError
from fastast_sb.precision import PRECISIONS
from fastast_sb.tome.schedule import FORMS, Schedule, parse_schedule


def _add_r(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--r", help=f"merge schedule: {FORMS} (default: the model folder's)"
    )


def _schedule(args: argparse.Namespace) -> Optional[Schedule]:
    """The ``--r`` schedule (None: keep the model's); ValueError if bad."""
    return None if args.r is None else parse_schedule(args.r)


# ----------------------------------------------------------------- tagging
def tag_parser(prog: str = "fastast-tag") -> argparse.ArgumentParser:
    """Arguments of ``fastast-tag``."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Tag audio files with a FastAST model folder."
    )
    parser.add_argument(
        "files",
        nargs="+",
        help="audio files (any format) or folders (searched recursively)",
    )
    parser.add_argument(
        "--model", required=True, help="model folder (hyperparams.yaml)"
    )
    _add_r(parser)
    parser.add_argument("--top", type=int, default=5, help="labels to show")
    parser.add_argument(
        "--hop",
        type=float,
        help="seconds between windows on long clips (default: half one)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="windows per forward pass"
    )
    parser.add_argument("--device", default="cpu", help="e.g. cpu, cuda:0")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="number format (auto: bf16 where the device computes it "
        "natively, else fp32; int8: CPU)",
    )
    parser.add_argument("--json", action="store_true", help="JSON output")
    parser.add_argument(
        "--timeline", help="write every window's top labels (.csv or .json)"
    )
    parser.add_argument(
        "--plot",
        help="PNG of the labels over time (a folder of PNGs for several files)",
    )
    return parser


def _fail(message: str) -> int:
    """Print ``error: message`` on stderr; the exit status 1."""
    print(f"error: {message}", file=sys.stderr)
    return 1


def _print_table(entry: Dict[str, Any]) -> None:
    print(
        f"{entry['file']}  ({entry['duration_s']:.2f} s, "
        f"{entry['windows']} window{'s' * (entry['windows'] != 1)}, "
        f"{entry['time_s']:.3f} s)"
    )
    width = max(len(t["label"]) for t in entry["top"])
    for rank, item in enumerate(entry["top"], 1):
        print(f"  {rank:>2}. {item['label']:<{width}}  {item['score']:.4f}")


def _plot_paths(plot: Optional[str], files: List[str]) -> Dict[str, Path]:
    """File -> its PNG: ``plot`` itself for one file (``.png``), else
    ``plot/<name>.png`` in a folder (a number added to repeated names)."""
    if plot is None:
        return {}
    if Path(plot).suffix.lower() == ".png":
        if len(files) > 1:
            raise ValueError(
                f"--plot {plot} is one PNG but {len(files)} files are "
                "tagged; pass a folder to get one PNG per file"
            )
        return {files[0]: Path(plot)} if files else {}
    paths: Dict[str, Path] = {}
    taken: Dict[str, int] = {}
    for file in files:
        stem = Path(file).stem
        taken[stem] = taken.get(stem, 0) + 1
        name = stem if taken[stem] == 1 else f"{stem}_{taken[stem]}"
        paths[file] = Path(plot) / f"{name}.png"
    return paths


def tag_main(argv: Optional[Sequence[str]] = None) -> int:
    """``fastast-tag``: returns the exit status (0 ok, 1 a file failed)."""
    args = tag_parser().parse_args(argv)
    problems = [
        f"--{name} must be > 0, got {value}"
        for name, value in (
            ("top", args.top),
            ("batch-size", args.batch_size),
            ("hop", 1 if args.hop is None else args.hop),
        )
        if value <= 0
    ]
    if problems:
        return _fail("; ".join(problems))
    from fastast_sb.inference import timeline
    from fastast_sb.inference.streaming import find_audio

    try:
        files = [str(path) for path in find_audio(args.files)]
        if args.timeline is not None:
            timeline.check_timeline_path(args.timeline)
        plots = _plot_paths(args.plot, files)
    except (FileNotFoundError, ValueError) as err:
        return _fail(str(err))
    start = time.perf_counter()
    try:
        from fastast_sb.inference.tagger import AudioTagger

        tagger = AudioTagger.from_folder(args.model, args.device)
    except (FileNotFoundError, ValueError, TypeError, RuntimeError) as err:
        return _fail(f"cannot load model {args.model}: {err}")
    try:
        tagger.set_precision(args.precision)
    except (ValueError, ImportError, RuntimeError) as err:
        return _fail(f"invalid --precision: {err}")
    try:
        if args.r is not None:
            tagger.r = _schedule(args)
    except (TypeError, ValueError) as err:
        return _fail(f"invalid --r: {err}")
    load_s = time.perf_counter() - start
    entries: List[Dict[str, Any]] = []
    rows: List[Dict[str, Any]] = []
    failed = 0
    from tqdm import tqdm

    many = len(files) > 1
    for file in tqdm(files, unit="file", disable=None if many else True):
        t0 = time.perf_counter()
        try:
            result = tagger.tag_file(file, args.hop, args.batch_size)
        except (FileNotFoundError, AudioError, ValueError) as err:
            failed += _fail(str(err))
            entries.append({"file": file, "error": str(err)})
            continue
        entry = {
            "file": file,
            "duration_s": round(result.duration, 3),
            "windows": result.windows,
            "time_s": round(time.perf_counter() - t0, 4),
            "top": [
                {"label": label, "score": round(score, 6)}
                for label, score in result.top(args.top)
            ],
        }
        entries.append(entry)
        if args.timeline is not None:
            rows += timeline.timeline_rows(file, result, args.top)
        try:
            if file in plots:
                timeline.plot_timeline(plots[file], result, title=file)
        except OSError as err:
            return _fail(f"cannot write --plot {plots[file]}: {err}")
        if not args.json:
            _print_table(entry)
    try:
        if args.timeline is not None:
            timeline.write_timeline(args.timeline, rows, args.top)
    except OSError as err:
        return _fail(f"cannot write --timeline {args.timeline}: {err}")
    total_s = time.perf_counter() - start
    if args.json:
        summary = {
            "model": args.model,
            "r": str(tagger.r),
            "precision": tagger.inference_precision,
            "multilabel": tagger.multilabel,
            "files": entries,
            "failed": failed,
            "load_time_s": round(load_s, 4),
            "total_time_s": round(total_s, 4),
        }
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"tagged {len(entries) - failed} of {len(entries)} file(s) in "
            f"{total_s:.2f} s (model load {load_s:.2f} s, r={tagger.r}, "
            f"{tagger.inference_precision})"
        )
    return 1 if failed else 0


#: Console-script entry point of ``fastast-tag``.
main = tag_main


# -------------------------------------------------------------- management
def manage_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m fastast_sb.inference``."""
    parser = argparse.ArgumentParser(
        prog="python -m fastast_sb.inference",
        description="Build, convert and run FastAST model folders.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    exp = sub.add_parser("export", help="recipe run -> model folder")
    exp.add_argument("run_dir", help="recipe run folder (hyperparams.yaml)")
    exp.add_argument("out_dir", help="model folder to write")
    exp.add_argument(
        "--checkpoint",
        help="last, best or a CKPT folder (default: the one the run tested)",
    )
    _add_r(exp)

    imp = sub.add_parser(
        "import", help="Hugging Face / original AST checkpoint -> model folder"
    )
    imp.add_argument("source", help="HF folder (config.json) or .pth file")
    imp.add_argument("out_dir", help="model folder to write")
    imp.add_argument(
        "--labels", help="class_labels_indices.csv or one name a line"
    )
    imp.add_argument(
        "--norm",
        help="audioset, esc50 or speechcommands statistics (default: the "
        "HF feature extractor's, else audioset)",
    )
    imp.add_argument("--mean", type=float)
    imp.add_argument("--std", type=float)
    imp.add_argument("--target-length", type=int, help="frames per input")
    imp.add_argument(
        "--single-label",
        action="store_true",
        help="softmax scores (default: sigmoid, multi-label)",
    )
    _add_r(imp)

    onx = sub.add_parser("onnx", help="model folder -> ONNX (fixed shapes)")
    onx.add_argument("model_dir")
    onx.add_argument("out", help="output .onnx file")
    onx.add_argument(
        "--samples", type=int, help="samples per input (default: one window)"
    )
    onx.add_argument("--batch-size", type=int, default=1)
    onx.add_argument(
        "--precision",
        choices=["fp32", "int8"],
        default="fp32",
        help="int8: ONNX Runtime dynamic quantization of the encoder",
    )
    _add_r(onx)

    sub.add_parser(
        "tag", help="tag files (same as fastast-tag)", add_help=False
    )
    return parser


def manage_main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m fastast_sb.inference``: returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["tag"]:
        return tag_main(argv[1:])
    args = manage_parser().parse_args(argv)
    try:
        if args.command == "onnx":
            from fastast_sb.inference.onnx_export import export_onnx

            diff = export_onnx(
                args.model_dir,
                args.out,
                r=_schedule(args),
                num_samples=args.samples,
                batch_size=args.batch_size,
                precision=args.precision,
            )
            checked = "unchecked" if diff is None else f"{diff:.2e}"
            print(f"wrote {args.out} (max |ONNX - PyTorch| = {checked})")
            return 0
        if args.command == "export":
            from fastast_sb.inference.export import export_run

            out = export_run(
                args.run_dir, args.out_dir, args.checkpoint, _schedule(args)
            )
        else:
            from fastast_sb.inference.hf_import import import_ast

            if (args.mean is None) != (args.std is None):
                raise ValueError("--mean and --std go together")
            out = import_ast(
                args.source,
                args.out_dir,
                labels=args.labels,
                norm=args.norm if args.mean is None else (args.mean, args.std),
                target_length=args.target_length,
                r=0 if args.r is None else _schedule(args),
                multilabel=not args.single_label,
            )
        print(f"wrote model folder {out}")
    except (FileNotFoundError, ValueError, TypeError, ImportError) as err:
        return _fail(str(err))
    return 0
