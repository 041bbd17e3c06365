"""ONNX export of a model folder: waveform in, logits out, fixed length and r.

The graph is the model folder's own modules: the Kaldi fbank of
:class:`~fastast_sb.features.KaldiFbank`, ``GlobalNorm``, the AST (its
merge schedule resolved for the input length; the matching runs on each
input) and the head. Inputs are ``[batch_size, num_samples]`` 16 kHz mono
waveforms (by default one model input), outputs ``[batch_size, n_classes]``
logits (apply sigmoid or softmax as the folder's ``multilabel`` says).

Torch's dynamo exporter lacks ``aten.hann_window`` (Kaldi's window): it is
given ONNX's ``HannWindow``, the same window. With onnxruntime installed,
every export is checked against PyTorch.

    python -m fastast_sb.inference onnx MODEL_DIR model.onnx [--r 16]
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
OPSET = 18


class WaveformClassifier(nn.Module):
    """Waveforms of a fixed length -> logits, from a model folder's modules.

    ``torch.export`` cannot trace ``KaldiFbank.forward`` (lengths read as
    data): this calls ``KaldiFbank.single`` and ``KaldiFbank.fit`` itself.

    Example
    -------
    >>> from fastast_sb.features import GlobalNorm, KaldiFbank
    >>> from fastast_sb.models.ast import AST, ASTHead
    >>> net = WaveformClassifier(
    ...     KaldiFbank(target_length=128), GlobalNorm(-4.27, 4.57),
    ...     AST(input_tdim=128, preset="tiny", depth=1), ASTHead(192, 3))
    >>> net.eval()(torch.randn(2, 16000)).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        compute_features: nn.Module,
        mean_var_norm: nn.Module,
        embedding_model: nn.Module,
        classifier: nn.Module,
    ) -> None:
        super().__init__()
        self.compute_features = compute_features
        self.mean_var_norm = mean_var_norm
        self.embedding_model = embedding_model
        self.classifier = classifier

    def forward(self, wavs: torch.Tensor) -> torch.Tensor:
        """[B, S] waveforms -> [B, C] logits."""
        fbank = self.compute_features
        feats = [fbank.fit(fbank.single(wav)) for wav in wavs]
        x = self.mean_var_norm(torch.stack(feats))  # [B, T, F]
        return self.classifier(self.embedding_model(x)).squeeze(1)


def _hann_window(window_length: int, periodic: bool = True, **kwargs):
    """ONNX translation of ``aten.hann_window.periodic`` (float32)."""
    from onnxscript import opset18 as op

    size = op.Constant(value_int=window_length)
    return op.HannWindow(size, periodic=1 if periodic else 0, output_datatype=1)


def check_onnx(
    path: PathLike, net: nn.Module, x: torch.Tensor
) -> Optional[float]:
    """Max |ONNX - PyTorch| of the ``.onnx`` file ``path`` and its module
    ``net`` on an input ``x`` of the exported shape (None: no onnxruntime)."""
    if importlib.util.find_spec("onnxruntime") is None:
        logger.warning("onnxruntime not installed: %s is not checked", path)
        return None
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        ref = net(x)
    return float((torch.from_numpy(out) - ref).abs().max())


def export_onnx(
    model_dir: PathLike,
    path: PathLike,
    r: Any = None,
    num_samples: Optional[int] = None,
    batch_size: int = 1,
    atol: float = 1e-4,
) -> Optional[float]:
    """Write ``path``: the folder's model on ``[batch_size, num_samples]``
    waveforms (one window by default) with ``r`` (the folder's by default).
    Returns the max |ONNX - PyTorch| on a random input (None without
    onnxruntime); above ``atol`` it is an error."""
    from fastast_sb.inference.tagger import AudioTagger

    if importlib.util.find_spec("onnxscript") is None:
        raise ImportError(
            "ONNX export needs onnxscript (pip install onnx onnxscript)"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    tagger = AudioTagger.from_folder(model_dir)
    m = tagger.mods
    if r is not None:
        tagger.r = r
    num_samples = num_samples or tagger.window_samples
    if num_samples is None:
        raise ValueError(
            "the model has no target_length: pass num_samples to fix the "
            "input length"
        )
    min_samples = m.compute_features.min_samples
    if num_samples < min_samples:
        raise ValueError(
            f"num_samples={num_samples}; at least {min_samples} (one frame) "
            "are needed"
        )
    net = WaveformClassifier(
        m.compute_features, m.mean_var_norm, m.embedding_model, m.classifier
    ).eval()
    gen = torch.Generator().manual_seed(0)
    example = 0.1 * torch.randn(batch_size, num_samples, generator=gen)
    with torch.no_grad():
        torch.onnx.export(
            net,
            (example,),
            str(path),
            input_names=["wavs"],
            output_names=["logits"],
            opset_version=OPSET,
            verbose=False,
            external_data=False,
            custom_translation_table={
                torch.ops.aten.hann_window.periodic: _hann_window
            },
        )
    check = 0.3 * torch.randn(batch_size, num_samples, generator=gen)
    diff = check_onnx(path, net, check)
    if diff is not None and diff > atol:
        raise RuntimeError(
            f"ONNX output differs from PyTorch by {diff:.2e} (> {atol:.0e})"
        )
    logger.info(
        "wrote %s: [%d, %d] waveforms, r=%s, max |ONNX - torch| = %s",
        path,
        batch_size,
        num_samples,
        tagger.r,
        diff,
    )
    return diff
