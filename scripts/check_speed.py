"""Acceptance measurements of the benchmark issue, on this machine's CPU.

Not part of the test suite (it takes about ten minutes on two cores). Every
check is a ratio measured within one run of ``python -m
fastast_sb.benchmark`` (configurations timed round-robin, median of
per-round ratios), printed with PASS or FAIL against its threshold:

1. ours at r=0 / transformers' SDPA AST, base, batch 8, T=128 and T=512:
   >= 1.0;
2. measured speed-up / analytic FLOP ratio with ToMe, base, batch 8:
   T=512 at r=16 and r=32, T=1024 with a 50 % FLOP budget: >= 0.9;
3. the same for a training step (forward, backward, Adam), T=512, r=32:
   >= 0.8.

Absolute times are printed for information, never compared. On a machine
shared with other jobs one intra-op thread (the default here) avoids
waiting at thread barriers for a descheduled thread; ``--threads`` changes
it.

Usage::

    python scripts/check_speed.py [--threads 1] [--rounds 1.0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Tuple

from fastast_sb.benchmark.cli import run

Check = Tuple[str, float, float]


def _rounds(n: int, scale: float) -> str:
    return str(max(2, round(n * scale)))


def _flop_check(label: str, row: dict, threshold: float) -> Check:
    """Measured speed-up / analytic FLOP ratio of a benchmark row."""
    return (
        f"{label} ({row['speedup']:.2f}x vs {row['flop_ratio']:.2f}x)",
        row["speedup_per_flop_ratio"],
        threshold,
    )


def main(argv: List[str]) -> int:
    """Run the checks, print the summary; 0 if all pass, else 1."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--rounds",
        type=float,
        default=1.0,
        help="scale the number of timed rounds (more: less noise)",
    )
    args = p.parse_args(argv)
    common = ["--preset", "base", "--batch", "8"]
    common += ["--threads", str(args.threads), "--warmup", "1"]
    checks: List[Check] = []
    info: List[str] = []
    start = time.perf_counter()

    def bench(extra: List[str]):
        print(f"\n$ python -m fastast_sb.benchmark {' '.join(common + extra)}")
        return run(common + extra)

    res = bench(
        ["--tdim", "128", "--r", "0", "--compare-hf"]
        + ["--repeats", _rounds(15, args.rounds)]
    )
    checks.append(("ours / HF sdpa, r=0, T=128", res.hf["ratio"], 1.0))

    res = bench(
        ["--tdim", "512", "--r", "0", "16", "32", "--compare-hf"]
        + ["--repeats", _rounds(8, args.rounds)]
    )
    checks.append(("ours / HF sdpa, r=0, T=512", res.hf["ratio"], 1.0))
    for row in res.rows[1:]:
        label = f"speed-up / FLOP ratio, T=512, r={row['r']}"
        checks.append(_flop_check(label, row, 0.9))
    ref = res.rows[0]
    info.append(
        f"T=512 r=0: {ref['samples_per_s']:.2f} samples/s = "
        f"{ref['samples_per_s'] * ref['gflops']:.0f} analytic GFLOP/s on "
        f"{res.meta['threads']} thread(s)"
    )

    res = bench(
        ["--tdim", "1024", "--r", "0", "flops:0.5"]
        + ["--repeats", _rounds(5, args.rounds)]
    )
    label = "speed-up / FLOP ratio, T=1024, flops:0.5"
    checks.append(_flop_check(label, res.rows[1], 0.9))

    res = bench(
        ["--tdim", "512", "--r", "0", "32", "--mode", "train"]
        + ["--repeats", _rounds(4, args.rounds)]
    )
    label = "training step speed-up / FLOP ratio, T=512, r=32"
    checks.append(_flop_check(label, res.rows[1], 0.8))

    print("\n## Acceptance ratios (each measured within one run)\n")
    print("| check | measured | threshold | result |")
    print("|---|---|---|---|")
    failed = 0
    for name, value, threshold in checks:
        ok = value >= threshold
        failed += not ok
        verdict = "PASS" if ok else "FAIL"
        print(f"| {name} | {value:.3f} | >= {threshold} | {verdict} |")
    print()
    for line in info:
        print(f"- {line}")
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"- load average at the end: {load} on {os.cpu_count()} CPUs")
    print(f"- wall time: {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
