"""Frozen teacher models for knowledge distillation.

* :mod:`fastast_sb.teachers.mobilenet`: EfficientAT MobileNetV3 (AudioSet
  trained, 32 kHz front end), loaded from its released state dict;
* :mod:`fastast_sb.teachers.effnet`: the PSLA / CMKD EfficientNet-B2 with
  attention pooling, fed AST features;
* :mod:`fastast_sb.teachers.passt`: our PaSST (disentangled positional
  embeddings, structured patchout), fed AST features;
* :mod:`fastast_sb.teachers.class_map`: maps AudioSet logits to another label
  set (zero-shot teaching);
* :mod:`fastast_sb.teachers.frozen`: ``FrozenTeacher``, the frozen, eval-locked
  wrapper the Brain calls on the augmented batch.
"""
