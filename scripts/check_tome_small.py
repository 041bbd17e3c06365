"""Does ToMe pay off on the small students? (issue 16.4), on this CPU.

For every r of the recipes' sweeps, the measured speed-up over r = 0
divided by the analytic FLOP ratio of what runs (``model.flops(r,
pooled=True)``: the pooled forward's last block asks for CLS and DIST
only, at r = 0 too; the paper's ratio, every block in full, is printed
beside it), with PASS or FAIL against a threshold (0.9). Each
(model, T, batch) is one run of ``python -m fastast_sb.benchmark``
(configurations timed round-robin, median of per-round ratios, one
thread); the ESC-50 student's non-overlapping patches (stride 16), which
the benchmark's options do not reach, go through the same
``fastast_sb.timing`` protocol directly. Absolute times are never
compared. ``--bound`` adds, from a run of its own, the same ratio for a
free merge (the encoder at the merged token counts, tokens simply cut):
the most any merge implementation could reach on this machine.

Models: the 6-block 192-wide student (``--preset tiny --depth 6``) at
T = 100 and T = 512 (stride 10, the r sweep of ``hparams/ast.yaml``), the
ESC-50 student (stride 16, ``r_sweep="[0, 8, 16, 24, 32]"``), the Speech
Commands student (4 blocks, T = 100, ``[0, 4, 8, 12]``) and with
``--base`` the base preset at T = 512; batch 8 and batch 1 each.

Usage::

    python scripts/check_tome_small.py [--rounds 1.0] [--only tiny6]
        [--base] [--threshold 0.9] [--bound] [--breakdown]

``--breakdown`` instead prints, per (model, T, batch, r), the median time
per forward of each step of the blocks (attention, matching, weighted
average, MLP; see ``_stage_times``): what the merge costs next to the
matrix products it saves.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Dict, List, NamedTuple, Sequence

import torch

from fastast_sb.benchmark.cli import run
from fastast_sb.models.ast import AST, ASTHead
from fastast_sb.timing import (
    interleaved_times,
    paired_speedups,
    random_features,
    schedule_steps,
)
from fastast_sb.tome.merge import bipartite_soft_matching, merge_wavg

SWEEP = ["4", "8", "12", "16", "20", "24"]  # hparams/ast.yaml r_sweep


class Config(NamedTuple):
    label: str
    preset: str
    depth: int
    tdim: int
    stride: int
    rs: Sequence[str]
    rounds: Dict[int, int]  # batch -> timed rounds


CONFIGS = [
    Config("tiny6", "tiny", 6, 100, 10, SWEEP, {1: 40, 8: 15}),
    Config("tiny6", "tiny", 6, 512, 10, SWEEP + ["32"], {1: 15, 8: 5}),
    Config("esc50", "tiny", 6, 512, 16, ["8", "16", "24", "32"], {1: 30, 8: 8}),
    Config("sc4", "tiny", 4, 100, 10, ["4", "8", "12"], {1: 40, 8: 15}),
]
BASE = Config("base", "base", 12, 512, 10, ["4", "8", "16", "32"], {1: 6, 8: 3})


def _rows_by_cli(cfg: Config, batch: int, rounds: int) -> List[dict]:
    argv = ["--preset", cfg.preset, "--depth", str(cfg.depth)]
    argv += ["--tdim", str(cfg.tdim), "--batch", str(batch), "--threads", "1"]
    argv += ["--r", "0", *cfg.rs, "--repeats", str(rounds), "--warmup", "1"]
    print(f"\n$ python -m fastast_sb.benchmark {' '.join(argv)}", flush=True)
    model = _model(cfg)
    rows = run(argv).rows[1:]
    return [_judged(model, row["r"], row["speedup"]) for row in rows]


def _judged(model: AST, spec: str, speedup: float) -> dict:
    """A row: the speed-up against the FLOP ratio of what the pooled
    forward computes (its last block asks for CLS and DIST only, at every
    schedule), and the paper's ratio (every block in full) beside it."""
    ratio = model.flops(0, pooled=True) / model.flops(spec, pooled=True)
    return {
        "r": spec,
        "flop_ratio": ratio,
        "paper_flop_ratio": model.flops(0) / model.flops(spec),
        "speedup": speedup,
        "speedup_per_flop_ratio": speedup / ratio,
    }


def _model(cfg: Config) -> AST:
    return AST(
        input_tdim=cfg.tdim,
        preset=cfg.preset,
        depth=cfg.depth,
        fstride=cfg.stride,
        tstride=cfg.stride,
    ).eval()


def _rows_by_timing(cfg: Config, batch: int, rounds: int) -> List[dict]:
    """The benchmark's protocol for an AST the CLI cannot build."""
    model = _model(cfg)
    head = ASTHead(model.embed_dim, 10).eval()
    specs = ["0", *cfg.rs]
    steps = schedule_steps(model, head, random_features(model, batch), specs)
    times = interleaved_times(steps, torch.device("cpu"), 1, rounds)
    speedups = paired_speedups(times)
    return [
        _judged(model, spec, speedup)
        for spec, speedup in zip(specs[1:], speedups[1:])
    ]


def _free_merge_step(model: AST, feats: torch.Tensor, spec: str):
    """The encoder at the merged token counts of ``spec`` with a free
    merge (the first tokens kept, no matching, no sizes) and, as the
    pooled forward, a last block for CLS and DIST only: what no merge
    implementation can beat."""
    schedule = model.schedule(spec)
    *blocks, last = model.blocks

    def step() -> torch.Tensor:
        with torch.inference_mode():
            x = model.patch_embed(feats)  # [B, P, D]
            prefix = [t.expand(len(x), -1, -1) for t in model.prefix_tokens]
            x = torch.cat([*prefix, x], dim=1) + model.pos_embed
            for block, r in zip(blocks, schedule):
                x = x + block.attn(block.norm1(x), need_metric=False)[0]
                x = x[:, : x.shape[1] - r].contiguous()  # [B, N - r, D]
                x = x + block.mlp(block.norm2(x))
            x = last.forward_prefix(x, len(model.prefix_tokens))  # [B, 2, D]
            return model.pool(model.norm(x))

    return step


def _bounds(cfg: Config, batch: int, rounds: int) -> Dict[str, float]:
    """Speed-up / FLOP ratio of a free merge, per r (its own run)."""
    model = _model(cfg)
    model.prefix_tokens = (model.cls_token, model.dist_token)
    feats = random_features(model, batch)
    specs = ["0", *cfg.rs]
    steps = [_free_merge_step(model, feats, spec) for spec in specs]
    times = interleaved_times(steps, torch.device("cpu"), 1, rounds)
    return {
        spec: _judged(model, spec, speedup)["speedup_per_flop_ratio"]
        for spec, speedup in zip(specs, paired_speedups(times))
    }


def _stage_times(cfg: Config, batch: int, rounds: int, spec: str) -> list:
    """Median seconds per forward of attention (with the merge metric and
    the log-size bias), matching, weighted average and MLP, summed over the
    blocks, in the model's own CPU sub-batches: where the merge's cost
    goes (``Block.forward``'s steps, timed one by one)."""
    model = _model(cfg)
    feats = random_features(model, batch)
    schedule = model.schedule(spec)
    clock = time.perf_counter

    def forward(acc: List[float]) -> None:
        for part in feats.split(model._sub_batch(feats)):
            x = model.patch_embed(part)  # [B, P, D]
            prefix = [t.expand(len(x), -1, -1) for t in model.prefix_tokens]
            x = torch.cat([*prefix, x], dim=1) + model.pos_embed
            size = None
            for block, r in zip(model.blocks, schedule):
                t0 = clock()
                attn_size = size if model.prop_attn else None
                y, metric = block.attn(block.norm1(x), attn_size, r > 0)
                x = x + y
                t1 = t2 = clock()
                if metric is not None:
                    merge, _ = bipartite_soft_matching(metric, r)
                    t2 = clock()
                    x, size = merge_wavg(merge, x, size)
                t3 = clock()
                x = x + block.mlp(block.norm2(x))
                for i, t in enumerate(
                    (t1 - t0, t2 - t1, t3 - t2, clock() - t3)
                ):
                    acc[i] += t

    model.prefix_tokens = (model.cls_token, model.dist_token)
    samples = []
    with torch.inference_mode():
        forward([0.0] * 4)  # warm-up
        for _ in range(rounds):
            samples.append([0.0] * 4)
            forward(samples[-1])
    return [statistics.median(s[i] for s in samples) for i in range(4)]


def _print_breakdown(configs: List[Config], batches: List[int], scale: float):
    print("\n## where the time goes (ms per forward, medians, all blocks)\n")
    print(
        "| model | T | stride | batch | r | attention | matching | "
        "weighted average | MLP | merge share |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for cfg in configs:
        for batch in batches:
            rounds = max(3, round(cfg.rounds[batch] * scale))
            for spec in ["0", *cfg.rs]:
                attn, match, wavg, mlp = (
                    1e3 * t for t in _stage_times(cfg, batch, rounds, spec)
                )
                share = (match + wavg) / (attn + match + wavg + mlp)
                print(
                    f"| {cfg.label} | {cfg.tdim} | {cfg.stride} | {batch} | "
                    f"{spec} | {attn:.2f} | {match:.2f} | {wavg:.2f} | "
                    f"{mlp:.2f} | {share:.1%} |",
                    flush=True,
                )


def main(argv: List[str]) -> int:
    """Measure, print the table; 0 if every ratio passes, else 1."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=float, default=1.0, help="scale rounds")
    p.add_argument("--only", help="labels to run, comma-separated")
    p.add_argument("--batches", default="8,1", help="comma-separated")
    p.add_argument("--base", action="store_true", help="also base, T=512")
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument(
        "--bound",
        action="store_true",
        help="also time a free merge (same token counts, no matching)",
    )
    p.add_argument(
        "--breakdown",
        action="store_true",
        help="only print the time of each block step (no PASS/FAIL)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    configs = CONFIGS + ([BASE] if args.base else [])
    if args.only:
        wanted = set(args.only.split(","))
        configs = [c for c in configs if c.label in wanted]
    if args.breakdown:
        batches = [int(b) for b in args.batches.split(",")]
        _print_breakdown(configs, batches, args.rounds)
        return 0
    start = time.perf_counter()
    lines = []
    for cfg in configs:
        for batch in (int(b) for b in args.batches.split(",")):
            rounds = max(3, round(cfg.rounds[batch] * args.rounds))
            measure = _rows_by_cli if cfg.stride == 10 else _rows_by_timing
            bound = _bounds(cfg, batch, rounds) if args.bound else {}
            for row in measure(cfg, batch, rounds):
                row["bound"] = bound.get(row["r"], float("nan"))
                lines.append((cfg, batch, row))
    print(f"\n## speed-up / FLOP ratio >= {args.threshold} (one thread)\n")
    print(
        "| model | T | stride | batch | r | FLOP ratio | paper's FLOP ratio "
        "| speed-up | ratio | free-merge bound | result |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    failed = 0
    for cfg, batch, row in lines:
        value = row["speedup_per_flop_ratio"]
        ok = value >= args.threshold
        failed += not ok
        print(
            f"| {cfg.label} ({cfg.preset}, {cfg.depth} blocks) | {cfg.tdim} | "
            f"{cfg.stride} | {batch} | {row['r']} | {row['flop_ratio']:.2f}x"
            f" | {row['paper_flop_ratio']:.2f}x | {row['speedup']:.2f}x | "
            f"{value:.3f} | {row['bound']:.3f} | "
            f"{'PASS' if ok else 'FAIL'} |"
        )
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\n- {len(lines) - failed} of {len(lines)} pass")
    print(f"- load average at the end: {load} on {os.cpu_count()} CPUs")
    print(f"- wall time: {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
