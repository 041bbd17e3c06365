"""Frozen teacher models for knowledge distillation.

* :mod:`~fastast_sb.teachers.mobilenet`: EfficientAT MobileNetV3 (AudioSet
  weights) with its own 32 kHz front end;
* :mod:`~fastast_sb.teachers.effnet`: PSLA / CMKD EfficientNet-B2 with
  attention pooling, on AST features;
* :mod:`~fastast_sb.teachers.passt`: our PaSST, on AST features;
* :mod:`~fastast_sb.teachers.class_map`: AudioSet logits to another label set;
* :mod:`~fastast_sb.teachers.frozen`: ``FrozenTeacher``, the frozen,
  eval-locked wrapper (input convention, class map) the Brain calls.
"""
