"""Frozen teacher models for knowledge distillation: EfficientAT MobileNetV3
(:mod:`.mobilenet`), PSLA / CMKD EfficientNet-B2 (:mod:`.effnet`) and PaSST
(:mod:`.passt`), AudioSet logits mapped to a task's classes
(:mod:`.class_map`) and the wrapper the Brain calls (:mod:`.frozen`).
"""
