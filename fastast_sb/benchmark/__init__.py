"""Benchmarks of the AST with token merging: speed, FLOPs and accuracy.

``python -m fastast_sb.benchmark`` prints FastAST's Table 1 for this
machine with :mod:`fastast_sb.timing` and :mod:`fastast_sb.tables` (shared
with the r sweep after training). Modules (this ``__init__`` imports none):
:mod:`~fastast_sb.benchmark.report` (table layout, notes, PNG),
:mod:`~fastast_sb.benchmark.hf` (transformers' AST, ``--compare-hf``),
:mod:`~fastast_sb.benchmark.accuracy` (accuracy / mAP per schedule) and
:mod:`~fastast_sb.benchmark.cli` (the command line).

References: D. Bolya et al., "Token Merging: Your ViT But Faster", ICLR
2023; S. R. Behera et al., "FastAST: Accelerating Audio Spectrogram
Transformer via Token Merging and Cross-Model Knowledge Distillation",
Interspeech 2024.
"""
