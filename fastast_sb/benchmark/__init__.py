"""Benchmarks of the AST with token merging: speed, FLOPs and accuracy.

``python -m fastast_sb.benchmark`` prints FastAST's Table 1 for this
machine, with the timing protocol of :mod:`fastast_sb.timing` and the
Table-1 writer of :mod:`fastast_sb.tables` (both shared with the r sweep
after training). Modules, one job each (this ``__init__`` imports none):

- :mod:`~fastast_sb.benchmark.report`: the benchmark's table layout, notes
  and PNG;
- :mod:`~fastast_sb.benchmark.hf`: transformers' AST of the same size, the
  ``--compare-hf`` reference;
- :mod:`~fastast_sb.benchmark.accuracy`: accuracy / mAP per schedule of a
  trained model folder or recipe run;
- :mod:`~fastast_sb.benchmark.cli`: the command line.

References: D. Bolya et al., "Token Merging: Your ViT But Faster", ICLR
2023; S. R. Behera et al., "FastAST: Accelerating Audio Spectrogram
Transformer via Token Merging and Cross-Model Knowledge Distillation",
Interspeech 2024.
"""
