"""Inference and deployment of FastAST models through SpeechBrain.

A *model folder* (``hyperparams.yaml`` + ``embedding_model.ckpt`` +
``classifier.ckpt`` + ``label_encoder.ckpt``) loads with SpeechBrain's own
interface, offline::

    from speechbrain.inference.classifiers import EncoderClassifier
    from speechbrain.utils.fetching import FetchConfig
    clf = EncoderClassifier.from_hparams(
        source="model_dir", savedir=None, overrides={"tome_r": 8},
        fetch_config=FetchConfig(allow_network=False))
    logits, score, index, label = clf.classify_file("clip.wav")

Modules: :mod:`~fastast_sb.inference.folder` (the model folder format),
:mod:`~fastast_sb.inference.loading` (its strict weight loading),
:mod:`~fastast_sb.inference.export` (recipe run -> model folder),
:mod:`~fastast_sb.inference.hf_import` (Hugging Face / original AST
checkpoint -> model folder), :mod:`~fastast_sb.inference.tagger`
(:class:`AudioTagger`: probabilities, top-k, sliding windows, precision),
:mod:`~fastast_sb.inference.windows` (windows and their scores),
:mod:`~fastast_sb.inference.streaming` (long files read span by span,
folders of files), :mod:`~fastast_sb.inference.timeline` (per-window CSV,
JSON and PNG), :mod:`~fastast_sb.inference.onnx_export` (model folder ->
ONNX) and :mod:`~fastast_sb.inference.cli` (``fastast-tag``, ``python -m
fastast_sb.inference {export,import,onnx,tag}``).

Reference: S. R. Behera et al., "FastAST: Accelerating Audio Spectrogram
Transformer via Token Merging and Cross-Model Knowledge Distillation", 2024.
"""

from fastast_sb.inference.export import export_run, find_checkpoint
from fastast_sb.inference.folder import pretrained_paths, write_model_folder
from fastast_sb.inference.hf_import import import_ast
from fastast_sb.inference.loading import load_strict
from fastast_sb.inference.onnx_export import WaveformClassifier, export_onnx
from fastast_sb.inference.streaming import AudioReader, find_audio
from fastast_sb.inference.tagger import AudioTagger, TagResult, window_starts
from fastast_sb.inference.timeline import plot_timeline, write_timeline
from fastast_sb.labels import read_labels

__all__ = [
    "AudioReader",
    "AudioTagger",
    "TagResult",
    "WaveformClassifier",
    "export_onnx",
    "export_run",
    "find_audio",
    "find_checkpoint",
    "import_ast",
    "load_strict",
    "plot_timeline",
    "pretrained_paths",
    "read_labels",
    "window_starts",
    "write_model_folder",
    "write_timeline",
]
