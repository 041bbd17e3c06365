"""Inference throughput of an AST for a list of merge schedules.

Measurements follow one protocol: eval mode, fixed input shape, warm-up
runs discarded, device synchronised, median over repeats. Speed-ups are
ratios measured in the same run, never absolute times compared across runs.

Usage::

    python -m fastast_sb.benchmark --preset base --tdim 512 --batch 8 \
        --r 0 16 32 flops:0.5
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, List, Optional, Sequence

import torch

from fastast_sb.models.ast import AST
from fastast_sb.tome.schedule import RSpec


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(
    fn: Callable[[], object],
    device: torch.device,
    warmup: int = 1,
    repeats: int = 3,
) -> float:
    """Median seconds of ``fn()`` after ``warmup`` discarded calls.

    Example
    -------
    >>> time_fn(lambda: None, torch.device("cpu")) >= 0
    True
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.inference_mode()
def throughput(
    model: AST,
    r: RSpec,
    batch_size: int = 8,
    warmup: int = 1,
    repeats: int = 3,
    dtype: Optional[torch.dtype] = None,
) -> float:
    """Samples per second of ``model`` at merge schedule ``r``.

    Arguments
    ---------
    model : AST
        The encoder (its head costs nothing in comparison).
    r : schedule
        Merge schedule for this measurement.
    batch_size : int
        Examples per forward pass.
    warmup, repeats : int
        Discarded runs, measured runs (median).
    dtype : torch.dtype, optional
        Autocast dtype (e.g. torch.bfloat16); fp32 when ``None``.

    Returns
    -------
    float
        Samples per second.

    Example
    -------
    >>> m = AST(input_tdim=128, preset="tiny", depth=1)
    >>> throughput(m, 0, batch_size=1, warmup=0, repeats=1) > 0
    True
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    feats = torch.randn(
        batch_size, model.input_tdim, model.input_fdim, device=device
    )

    def run() -> None:
        with torch.autocast(
            device.type, dtype=dtype, enabled=dtype is not None
        ):
            model(feats, r=r)

    seconds = time_fn(run, device, warmup, repeats)
    model.train(was_training)
    return batch_size / seconds


@torch.inference_mode()
def interleaved_throughput(
    model: AST,
    r_values: Sequence[RSpec],
    batch_size: int = 8,
    warmup: int = 1,
    repeats: int = 3,
    dtype: Optional[torch.dtype] = None,
) -> List[float]:
    """Samples per second for each schedule, timed round-robin.

    Each repeat times every schedule once, in turn, so slow phases of a
    shared, noisy machine hit all schedules alike; the median per schedule
    is reported.

    Example
    -------
    >>> m = AST(input_tdim=128, preset="tiny", depth=1)
    >>> len(interleaved_throughput(m, [0, 8], 1, warmup=0, repeats=1))
    2
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    feats = torch.randn(
        batch_size, model.input_tdim, model.input_fdim, device=device
    )

    def make_run(r: RSpec) -> Callable[[], None]:
        def run() -> None:
            with torch.autocast(
                device.type, dtype=dtype, enabled=dtype is not None
            ):
                model(feats, r=r)

        return run

    runs = [make_run(r) for r in r_values]
    for run in runs:
        for _ in range(warmup):
            run()
    times: List[List[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for i, run in enumerate(runs):
            times[i].append(time_fn(run, device, warmup=0, repeats=1))
    model.train(was_training)
    return [batch_size / statistics.median(t) for t in times]


def parse_r_arg(text: str) -> RSpec:
    """Command-line schedule: ``16``, ``flops:0.5``, ``ratio:0.1``, ``8,-1``.

    Example
    -------
    >>> parse_r_arg("flops:0.5"), parse_r_arg("16"), parse_r_arg("8,-1")
    ({'flops': 0.5}, 16, (8, -1.0))
    """
    if ":" in text:
        key, value = text.split(":", 1)
        return {key: float(value)}
    if "," in text:
        r, inflect = text.split(",", 1)
        return (int(r), float(inflect))
    return int(text)


def main(argv: Optional[Sequence[str]] = None) -> List[dict]:
    """Print a throughput table over r for one model configuration."""
    parser = argparse.ArgumentParser(description="AST/ToMe throughput")
    parser.add_argument("--preset", default="base")
    parser.add_argument("--tdim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--r", nargs="+", default=["0", "8", "16"])
    args = parser.parse_args(argv)
    model = AST(input_tdim=args.tdim, preset=args.preset)
    rows = []
    base = None
    for text in args.r:
        r = parse_r_arg(text)
        sps = throughput(model, r, args.batch, repeats=args.repeats)
        base = base or sps
        flop_ratio = model.flops(0) / model.flops(r)
        rows.append(
            {
                "r": text,
                "samples_per_s": sps,
                "speedup": sps / base,
                "flop_ratio": flop_ratio,
            }
        )
        print(
            f"r={text:>10}  {sps:9.2f} samples/s  speed-up {sps / base:5.2f}x"
            f"  FLOP ratio {flop_ratio:5.2f}x"
        )
    return rows


if __name__ == "__main__":
    main()
