"""ONNX export of a model folder: waveform in, logits out, fixed length and r.

The graph is the model folder's own modules: the Kaldi fbank of
:class:`~fastast_sb.features.KaldiFbank`, ``GlobalNorm``, the AST (its
merge schedule resolved for the input length; the matching runs on each
input) and the head. Inputs are ``wavs`` ``[batch_size, num_samples]`` 16
kHz mono waveforms (by default one model input) and, optionally,
``wav_lens`` ``[batch_size]``, SpeechBrain's relative lengths (1.0 when not
fed): a shorter clip zero-padded to ``num_samples`` with ``wav_lens =
length / num_samples`` gets the scores ``classify_file`` gives it (its
fbank, mean and frames are the clip's own, the missing frames zero, as
``KaldiFbank.fit`` pads). The AST's input length is fixed (position
embeddings per patch), so a longer clip is windowed around the model as
:meth:`~fastast_sb.inference.tagger.AudioTagger.tag_waveform` does
(:func:`~fastast_sb.inference.tagger.window_starts`). Outputs are
``[batch_size, n_classes]`` logits (apply sigmoid or softmax as the
folder's ``multilabel`` says).

``precision="int8"`` quantizes the encoder's linear layers with ONNX
Runtime's dynamic quantization (int8 weights, per-call activation scales;
:func:`quantize_onnx`): base at T=512, batch 4, one thread on an AMX Xeon
ran 2.4x faster than the fp32 ONNX model, 1.9x torch fp32 (see
:func:`fastast_sb.precision.prepare_model`).

Torch's dynamo exporter lacks ``aten.hann_window`` (Kaldi's window): it is
given ONNX's ``HannWindow``, the same window. With onnxruntime installed,
every export is checked against PyTorch.

    python -m fastast_sb.inference onnx MODEL_DIR model.onnx [--r 16]
"""

from __future__ import annotations

import importlib.util
import logging
import re
import tempfile
from pathlib import Path
from typing import Any, List, Optional, Union

import torch
from torch import nn

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
OPSET = 18
#: ONNX export formats (``export_onnx(precision=...)``).
ONNX_PRECISIONS = ("fp32", "int8")
#: Max |int8 ONNX - fp32 PyTorch| logit, relative to the largest |logit|.
INT8_RTOL = 0.1


def int8_tolerance(logits: torch.Tensor) -> float:
    """Largest |int8 - fp32| logit accepted: ``INT8_RTOL`` times the
    largest |logit|, at least ``INT8_RTOL`` (logits near 0, e.g. a barely
    trained model, would otherwise leave no room for int8 rounding).

    Example
    -------
    >>> int8_tolerance(torch.tensor([-8.0])), int8_tolerance(torch.zeros(1))
    (0.8, 0.1)
    """
    return INT8_RTOL * max(1.0, float(logits.abs().max()))


class WaveformClassifier(nn.Module):
    """Waveforms of a fixed length -> logits, from a model folder's modules.

    ``torch.export`` cannot trace ``KaldiFbank.forward`` (lengths read as
    data): this calls ``KaldiFbank.single`` and ``KaldiFbank.fit`` itself.
    With relative lengths ``wav_lens`` the samples past each clip's end are
    masked as tensors (traceable), giving ``classify_batch``'s numbers.

    Example
    -------
    >>> from fastast_sb.features import GlobalNorm, KaldiFbank
    >>> from fastast_sb.models.ast import AST, ASTHead
    >>> net = WaveformClassifier(
    ...     KaldiFbank(target_length=128), GlobalNorm(-4.27, 4.57),
    ...     AST(input_tdim=128, preset="tiny", depth=1), ASTHead(192, 3))
    >>> net.eval()(torch.randn(2, 16000)).shape
    torch.Size([2, 3])
    >>> net(torch.randn(2, 16000), torch.tensor([1.0, 0.5])).shape
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

    def forward(
        self, wavs: torch.Tensor, wav_lens: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """[B, S] waveforms (relative lengths ``wav_lens`` [B]) -> [B, C]
        logits."""
        fbank = self.compute_features
        if wav_lens is not None:
            wavs, keep = self._clip(wavs, wav_lens)
        feats = torch.stack([fbank.fit(fbank.single(wav)) for wav in wavs])
        if wav_lens is not None:
            feats = feats * keep[:, : feats.shape[1], None]  # [B, T, F]
        x = self.mean_var_norm(feats)  # [B, T, F]
        return self.classifier(self.embedding_model(x)).squeeze(1)

    def _clip(self, wavs: torch.Tensor, wav_lens: torch.Tensor):
        """Each clip's samples past its length zeroed and its own mean
        removed (so the fbank's mean removal finds ~0), and [B, T] the
        frames inside the clip (the others zero, as ``fit`` pads)."""
        fbank = self.compute_features
        n = torch.round(wav_lens.float() * wavs.shape[1])  # [B] samples
        idx = torch.arange(wavs.shape[1], device=wavs.device)
        valid = idx[None, :] < n[:, None]  # [B, S]
        mean = (wavs * valid).sum(1, keepdim=True) / n.clamp(min=1)[:, None]
        wavs = torch.where(valid, wavs - mean, torch.zeros_like(wavs))
        shift = int(fbank.sample_rate * fbank.frame_shift * 0.001)
        frames = torch.div(n - fbank.min_samples, shift, rounding_mode="floor")
        count = fbank.target_length or wavs.shape[1] // shift + 1
        steps = torch.arange(count, device=wavs.device)
        return wavs, (steps[None, :] <= frames[:, None]).to(wavs.dtype)


def _hann_window(window_length: int, periodic: bool = True, **kwargs):
    """ONNX translation of ``aten.hann_window.periodic`` (float32)."""
    from onnxscript import opset18 as op

    size = op.Constant(value_int=window_length)
    return op.HannWindow(size, periodic=1 if periodic else 0, output_datatype=1)


def check_onnx(
    path: PathLike,
    net: nn.Module,
    x: torch.Tensor,
    wav_lens: Optional[torch.Tensor] = None,
) -> Optional[float]:
    """Max |ONNX - PyTorch| of the ``.onnx`` file ``path`` and its module
    ``net`` on an input ``x`` of the exported shape (with ``wav_lens``
    when given; None: no onnxruntime)."""
    if importlib.util.find_spec("onnxruntime") is None:
        logger.warning("onnxruntime not installed: %s is not checked", path)
        return None
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x.numpy()}
    if wav_lens is not None:
        feed["wav_lens"] = wav_lens.numpy()
    (out,) = sess.run(None, feed)
    with torch.no_grad():
        ref = net(x, wav_lens)
    return float((torch.from_numpy(out) - ref).abs().max())


def _default_lens(path: PathLike, batch_size: int) -> None:
    """Make the ``wav_lens`` input optional: an initializer of ones of the
    same name is its default (ONNX's overridable initializer)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    ones = numpy_helper.from_array(
        torch.ones(batch_size).numpy(), name="wav_lens"
    )
    model.graph.initializer.append(ones)
    onnx.save(model, str(path))


def _encoder_matmuls(model: Any) -> List[str]:
    """Names of the MatMul nodes of the encoder's blocks with a constant
    weight (the linear layers; not the fbank, patch embedding or head)."""
    weights = {init.name for init in model.graph.initializer}
    block = re.compile(r"\bblocks\.\d+\.")
    names = []
    for node in model.graph.node:
        scopes = {p.key: p.value for p in node.metadata_props}.get(
            "pkg.torch.onnx.name_scopes", ""
        )
        if (
            node.op_type == "MatMul"
            and node.input[1] in weights
            and block.search(scopes)
        ):
            names.append(node.name)
    return names


def quantize_onnx(src: PathLike, dst: PathLike) -> Path:
    """Write ``dst``: ``src`` with the encoder's linear layers in int8
    (ONNX Runtime's dynamic quantization: QInt8 weights, activation scales
    per call); returns ``dst``. Needs a graph of the dynamo exporter
    (it names each node's module)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = _encoder_matmuls(onnx.load(str(src)))
    if not nodes:
        raise ValueError(
            f"{src}: no linear layer of the encoder's blocks found to "
            "quantize (expected a torch.onnx.export dynamo graph of an AST)"
        )
    quantize_dynamic(
        str(src),
        str(dst),
        op_types_to_quantize=["MatMul"],
        nodes_to_quantize=nodes,
        weight_type=QuantType.QInt8,
    )
    return Path(dst)


def _export(net: nn.Module, example: torch.Tensor, path: PathLike) -> None:
    lens = torch.ones(example.shape[0])
    with torch.no_grad():
        torch.onnx.export(
            net,
            (example, lens),
            str(path),
            input_names=["wavs", "wav_lens"],
            output_names=["logits"],
            opset_version=OPSET,
            verbose=False,
            external_data=False,
            custom_translation_table={
                torch.ops.aten.hann_window.periodic: _hann_window
            },
        )


def _check(
    path: PathLike, net: nn.Module, x: torch.Tensor, atol: float, what: str
) -> Optional[float]:
    """Max |ONNX - PyTorch| over full clips and, the last clip cut to 40 %,
    padded ones; above ``atol`` it is an error."""
    lens = torch.ones(x.shape[0])
    lens[-1] = 0.4
    diffs = [check_onnx(path, net, x), check_onnx(path, net, x, lens)]
    if diffs[0] is None:
        return None
    diff = max(diffs)
    if diff > atol:
        raise ValueError(
            f"{what} ONNX output differs from PyTorch by {diff:.2e} "
            f"(> {atol:.2e})"
        )
    return diff


def export_onnx(
    model_dir: PathLike,
    path: PathLike,
    r: Any = None,
    num_samples: Optional[int] = None,
    batch_size: int = 1,
    atol: float = 1e-4,
    precision: str = "fp32",
) -> Optional[float]:
    """Write ``path``: the folder's model on ``[batch_size, num_samples]``
    waveforms (one window by default) and their optional ``wav_lens``,
    with ``r`` (the folder's by default), in ``precision`` (fp32, or int8:
    :func:`quantize_onnx`). Returns the max |ONNX - PyTorch fp32| on random
    inputs, whole and padded (None without onnxruntime); above ``atol``
    (int8: :func:`int8_tolerance`) it is an error."""
    from fastast_sb.inference.tagger import AudioTagger

    if importlib.util.find_spec("onnxscript") is None:
        raise ImportError(
            "ONNX export needs onnxscript (pip install onnx onnxscript)"
        )
    if precision not in ONNX_PRECISIONS:
        raise ValueError(
            f"ONNX precision {precision!r} is not one of "
            f"{', '.join(ONNX_PRECISIONS)}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    tagger = AudioTagger.from_folder(model_dir, precision="fp32")
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
    check = 0.3 * torch.randn(batch_size, num_samples, generator=gen)
    if precision == "fp32":
        _export(net, example, path)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = Path(tmp) / "fp32.onnx"
            _export(net, example, fp32)
            quantize_onnx(fp32, path)
        with torch.no_grad():
            atol = int8_tolerance(net(check))
    _default_lens(path, batch_size)
    diff = _check(path, net, check, atol, precision)
    logger.info(
        "wrote %s: [%d, %d] waveforms, r=%s, %s, max |ONNX - torch| = %s",
        path,
        batch_size,
        num_samples,
        tagger.r,
        precision,
        diff,
    )
    return diff
