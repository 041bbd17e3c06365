"""Benchmarks of the AST with token merging: speed, FLOPs and accuracy.

``python -m fastast_sb.benchmark`` prints FastAST's Table 1 for this
machine (see :mod:`fastast_sb.benchmark.cli`). Modules, one job each:

- :mod:`~fastast_sb.benchmark.timing`: the timing protocol (warm-up, device
  sync, median, round-robin interleaving, paired speed-ups) and the
  inference / training steps it times;
- :mod:`~fastast_sb.benchmark.hf`: transformers' AST of the same size, the
  ``--compare-hf`` reference;
- :mod:`~fastast_sb.benchmark.accuracy`: accuracy / mAP per schedule of a
  trained model folder or recipe run;
- :mod:`~fastast_sb.benchmark.report`: markdown, CSV and PNG;
- :mod:`~fastast_sb.benchmark.cli`: the command line.

References: D. Bolya et al., "Token Merging: Your ViT But Faster", ICLR
2023; S. R. Behera et al., "FastAST: Accelerating Audio Spectrogram
Transformer via Token Merging and Cross-Model Knowledge Distillation",
Interspeech 2024.
"""

from fastast_sb.benchmark.cli import BenchmarkResult, main, parse_r_arg, run
from fastast_sb.benchmark.timing import (
    inference_step,
    interleaved_throughput,
    interleaved_times,
    paired_speedups,
    random_features,
    synchronize,
    throughput,
    time_fn,
    train_step,
)

__all__ = [
    "BenchmarkResult",
    "inference_step",
    "interleaved_throughput",
    "interleaved_times",
    "main",
    "paired_speedups",
    "parse_r_arg",
    "random_features",
    "run",
    "synchronize",
    "throughput",
    "time_fn",
    "train_step",
]
