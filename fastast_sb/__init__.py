"""fastast_sb: FastAST for SpeechBrain.

The Audio Spectrogram Transformer with token merging (ToMe) and cross-model
knowledge distillation, as SpeechBrain lobes, losses and recipes.
"""

__version__ = "0.1.0"
