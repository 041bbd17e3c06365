"""The model folder: what ``EncoderClassifier.from_hparams`` loads.

- ``hyperparams.yaml``: the classes the recipes train with (``KaldiFbank``
  -> ``GlobalNorm`` -> ``AST`` -> ``ASTHead``), a ``label_encoder``, an
  ``audio_normalizer`` (for ``classify_file``) and a ``Pretrainer``;
- ``embedding_model.ckpt``, ``classifier.ckpt``: plain state dicts;
- ``label_encoder.ckpt``: a SpeechBrain ``CategoricalEncoder`` file.

Load-time overrides (``overrides={...}``): ``tome_r``, a merge schedule in
the text form of :mod:`fastast_sb.tome.schedule` (``16``, ``"flops:0.5"``,
``"ramp:8:-1"``, ``"16,8,4"``), and ``pretrained_path``, a folder or hub id
holding the weight files (``null``: the ``source`` of ``from_hparams``, so
the folder can be moved as it is); ``inference_precision``, the number
format the encoder computes in, with ``EncoderClassifier`` as with
:class:`~fastast_sb.inference.tagger.AudioTagger`
(:data:`~fastast_sb.precision.PRECISIONS`; ``null``: ``auto``, or the
precision ``AudioTagger.from_folder`` / ``fastast-tag`` is given).

Loading is strict: a weights file that lacks a tensor of the model, holds
one the model lacks or one of another shape is an error naming the file and
the first keys, as is a label file with a class count other than
``n_classes`` (:mod:`~fastast_sb.inference.loading`). SpeechBrain's own
``classify_batch``/``classify_file`` cover a clip longer than the model
input with ``AudioTagger``'s windows and give its clip scores, each clip of
a padded batch by its own length (the modules of
:mod:`~fastast_sb.inference.windowed`). Folders written before that name
:class:`ModelFbank`, ``AST`` and ``ASTHead``: they load as they did and cut
a long clip to its start, with a warning.

References: M. Ravanelli et al., "SpeechBrain: A General-Purpose Speech
Toolkit", 2021; Y. Gong et al., "AST: Audio Spectrogram Transformer",
Interspeech 2021.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import torch

from fastast_sb.dataio import make_label_encoder
from fastast_sb.features import GlobalNorm, KaldiFbank
from fastast_sb.models.ast import AST, ASTHead
from fastast_sb.models.checkpoints import ast_config

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

#: The objects the Pretrainer fills, each from ``<name>.ckpt``.
LOADABLES = ("embedding_model", "classifier", "label_encoder")
HPARAMS_FILE = "hyperparams.yaml"


def pretrained_paths(
    pretrained_path: Optional[str], names: Sequence[str] = LOADABLES
) -> Dict[str, str]:
    """The Pretrainer's ``paths``: ``<pretrained_path>/<name>.ckpt``; none
    for None (the Pretrainer then reads the ``source`` of ``from_hparams``).

    Example
    -------
    >>> pretrained_paths(None)
    {}
    >>> pretrained_paths("/models/esc50/", ["classifier"])
    {'classifier': '/models/esc50/classifier.ckpt'}
    """
    if pretrained_path is None:
        return {}
    root = str(pretrained_path).rstrip("/")
    return {name: f"{root}/{name}.ckpt" for name in names}


def yaml_value(value: Any) -> str:
    """A Python value as YAML flow text that HyperPyYAML reads back.

    Example
    -------
    >>> yaml_value({"flops": 0.5}), yaml_value(1e-06), yaml_value(None)
    ('{flops: 0.5}', '1.0e-06', 'null')
    >>> yaml_value([True, "a b"]), yaml_value("flops:0.5")
    ('[true, "a b"]', '"flops:0.5"')
    """
    if value is None:
        return "null"
    if isinstance(value, (bool, int)):
        return str(value).lower()
    if isinstance(value, float):  # YAML 1.1 floats need a dot: 1.0e-06
        mantissa, e, exponent = repr(value).partition("e")
        dot = ".0" if e and "." not in mantissa else ""
        return f"{mantissa}{dot}{e}{exponent}"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        items = ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, list):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    raise TypeError(
        f"cannot write {value!r} ({type(value).__name__}) to the model "
        "YAML; expected None, bool, int, float, str, list or dict"
    )


class ModelFbank(KaldiFbank):
    """:class:`~fastast_sb.features.KaldiFbank` that warns when it cuts a
    clip longer than the model input (``target_length`` frames), naming
    the input length: the front end of folders written before windows (and
    ``AudioTagger``'s one-input fbank). The first cut is a warning, later
    ones are logged at debug level.

    Example
    -------
    >>> ModelFbank(target_length=100)(torch.randn(1, 40000)).shape
    torch.Size([1, 100, 128])
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cuts_reported = False

    def forward(
        self, wavs: torch.Tensor, lens: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        feats = super().forward(wavs, lens)
        samples = wavs.shape[-1]
        if lens is not None and lens.numel():
            samples = int(round(float(lens.max()) * samples))
        shift = int(round(self.sample_rate * self.frame_shift / 1000))
        frames = 1 + (samples - self.min_samples) // shift
        if self.target_length is not None and frames > self.target_length:
            window = (self.target_length - 1) * shift + self.min_samples
            log = logger.debug if self.cuts_reported else logger.warning
            self.cuts_reported = True
            log(
                "a %.2f s clip is cut to the model input of %.2f s (%d "
                "frames): only its start is scored; AudioTagger.tag_file "
                "and classify_file cover it with windows (further cuts are "
                "logged at debug level)",
                samples / self.sample_rate,
                window / self.sample_rate,
                self.target_length,
            )
        return feats


_TEMPLATE = """\
# FastAST model folder (fastast_sb.inference), {description}.
# Load it with SpeechBrain, no network needed:
#   EncoderClassifier.from_hparams(source=<this folder>, savedir=None)
# or fastast_sb.inference.AudioTagger.from_hparams(...) (sigmoid/softmax
# scores, top-k labels, per-window scores, files read window by window).
# Both cover a clip longer than the model input with windows of
# target_length frames, half a window apart, the last one at the clip's
# end, and average their probabilities (classify_file / classify_batch:
# out_prob = logits of those averages; a clip of one window: the head's
# logits; encode_batch: [B, windows, D], zero past a clip's windows).
# Overrides at load time:
#   tome_r: merge schedule (0 = plain AST; 16; flops:0.5; ramp:8:-1; 8,4)
#   pretrained_path: folder holding the *.ckpt files (null = this folder)
#   inference_precision: the encoder's number format (auto, fp32, bf16,
#     fp16, int8; auto = bf16 where the device computes it natively,
#     else fp32; null = auto, or what AudioTagger / fastast-tag is given)

sample_rate: {sample_rate}
n_mels: {n_mels}
frame_shift: {frame_shift}
target_length: {target_length}
norm_mean: {norm_mean}
norm_std: {norm_std}
n_classes: {n_classes}
# Classes are independent (sigmoid scores) or exclusive (softmax).
multilabel: {multilabel}
tome_r: {tome_r}
prop_attn: {prop_attn}
pretrained_path: null
inference_precision: null

# The whole clip's fbank (never cut); wav_lens decide each clip's frames.
compute_features: !new:fastast_sb.inference.windowed.ClipFbank
    sample_rate: !ref <sample_rate>
    n_mels: !ref <n_mels>
    target_length: !ref <target_length>
    frame_shift: !ref <frame_shift>

mean_var_norm: !new:fastast_sb.inference.windowed.ClipNorm
    mean: !ref <norm_mean>
    std: !ref <norm_std>

# An AST; on whole clips it encodes each window (embedding_model.ckpt).
embedding_model: !new:fastast_sb.inference.windowed.WindowedAST
    input_tdim: !ref <target_length>
    input_fdim: !ref <n_mels>
    fstride: {fstride}
    tstride: {tstride}
    patch_size: {patch_size}
    embed_dim: {embed_dim}
    depth: {depth}
    num_heads: {num_heads}
    mlp_ratio: {mlp_ratio}
    qkv_bias: {qkv_bias}
    norm_eps: {norm_eps}
    r: !apply:fastast_sb.tome.schedule.parse_schedule
        - !ref <tome_r>
    prop_attn: !ref <prop_attn>
    precision: !ref <inference_precision>

# An ASTHead; on windows it averages each clip's probabilities.
classifier: !new:fastast_sb.inference.windowed.WindowedHead
    input_size: {embed_dim}
    n_classes: !ref <n_classes>
    norm_eps: {head_norm_eps}
    multilabel: !ref <multilabel>

# classify_file: resample to sample_rate and average channels.
audio_normalizer: !new:speechbrain.dataio.preprocess.AudioNormalizer
    sample_rate: !ref <sample_rate>

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder
__check_len: !apply:speechbrain.dataio.encoder.CategoricalEncoder.expect_len
    - !ref <label_encoder>
    - !ref <n_classes>

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    classifier: !ref <classifier>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
    paths: !apply:fastast_sb.inference.folder.pretrained_paths
        - !ref <pretrained_path>
    custom_hooks:  # strict: a missing or mismatched tensor is an error
        embedding_model: !name:fastast_sb.inference.loading.load_strict
        classifier: !name:fastast_sb.inference.loading.load_strict
        label_encoder: !name:fastast_sb.inference.loading.load_labels
            n_classes: !ref <n_classes>
"""


def _check_classes(classes: Sequence[str], n_classes: int) -> None:
    if len(classes) != n_classes:
        raise ValueError(
            f"{len(classes)} class names for a head with {n_classes} "
            "outputs; expected one name per output"
        )
    dupes = sorted(c for c, n in Counter(classes).items() if n > 1)
    if dupes:
        raise ValueError(f"class names must be unique; repeated: {dupes[:5]}")
    bad = [c for c in classes if not isinstance(c, str) or not c.strip()]
    if bad:
        raise ValueError(f"class names must be non-empty strings: {bad[:5]}")


def write_model_folder(
    folder: PathLike,
    model: AST,
    head: ASTHead,
    classes: Sequence[str],
    features: KaldiFbank,
    norm: GlobalNorm,
    multilabel: bool = False,
    description: str = "exported model",
) -> Path:
    """Write a model folder that ``EncoderClassifier.from_hparams`` loads.

    Arguments
    ---------
    folder : str or Path
        Output folder (created; the four files are overwritten); returned.
    model, head : AST, ASTHead
        The lobe (its architecture and ``r`` go to the YAML) and its head.
    classes : sequence of str
        Class name of each head output, in order.
    features, norm : KaldiFbank, GlobalNorm
        The front end (matching the model's input) and the normalisation.
    multilabel : bool
        Whether classes are independent (sigmoid) or exclusive (softmax).
    description : str
        Where the model comes from (written as a comment).

    Example
    -------
    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> folder = write_model_folder(
    ...     tmp.name, AST(input_tdim=128, preset="tiny", depth=1),
    ...     ASTHead(192, 2), ["dog", "cat"], KaldiFbank(target_length=128),
    ...     GlobalNorm(-4.27, 4.57))
    >>> sorted(p.stem for p in folder.iterdir())[:3]
    ['classifier', 'embedding_model', 'hyperparams']
    >>> tmp.cleanup()
    """
    if not isinstance(model, AST):
        raise TypeError(f"model must be an AST, got {type(model).__name__}")
    for got, what, want in (
        (features.target_length, "frames", "input_tdim"),
        (features.n_mels, "mel bins", "input_fdim"),
    ):
        if got != getattr(model, want):
            raise ValueError(
                f"features give {got} {what} but the model expects "
                f"{want}={getattr(model, want)}"
            )
    if head.linear.in_features != model.embed_dim:
        raise ValueError(
            f"head takes width {head.linear.in_features}, the model gives "
            f"{model.embed_dim}"
        )
    n_classes = int(head.linear.out_features)
    _check_classes(list(classes), n_classes)
    cfg, r = ast_config(model), model.r
    arch = "fstride tstride patch_size embed_dim depth num_heads mlp_ratio"
    values = {key: cfg[key] for key in f"{arch} qkv_bias norm_eps".split()}
    values.update(
        sample_rate=int(features.sample_rate),
        n_mels=int(features.n_mels),
        frame_shift=float(features.frame_shift),
        target_length=int(model.input_tdim),
        norm_mean=float(norm.mean),
        norm_std=float(norm.std),
        n_classes=n_classes,
        multilabel=bool(multilabel),
        tome_r=r.r if r.kind == "constant" else str(r),
        prop_attn=bool(cfg["prop_attn"]),
        head_norm_eps=float(head.norm.eps),
    )
    text = _TEMPLATE.format(
        description=description.replace("\n", " "),
        **{key: yaml_value(value) for key, value in values.items()},
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / HPARAMS_FILE).write_text(text, encoding="utf-8")
    for name, module in (("embedding_model", model), ("classifier", head)):
        state = module.state_dict()
        state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        torch.save(state, folder / f"{name}.ckpt")
    make_label_encoder(classes, folder / "label_encoder.ckpt")
    logger.info("wrote model folder %s (%d classes)", folder, n_classes)
    return folder
