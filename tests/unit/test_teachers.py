"""Tests of the teachers (EfficientNet-B2, MobileNetV3) and class maps."""

import csv
import time
from pathlib import Path
from typing import List, Tuple

import pytest
import soundfile as sf
import torch
import torchaudio

from fastast_sb.checkpoint import read_state_dict
from fastast_sb.labels import AUDIOSET_NUM_CLASSES, read_labels, top_labels
from fastast_sb.teachers.class_map import ClassMap, read_class_map
from fastast_sb.teachers.effnet import AttentionPooling, EfficientNetTeacher
from fastast_sb.teachers.mobilenet import (
    MobileNetFrontEnd,
    MobileNetTeacher,
    MobileNetV3,
)
from tests.conftest import ROOT

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TEACHERS = SHARED_DATA / "teachers"
CHECKPOINT = TEACHERS / "mn04_as_mAP_432.pt"
LABELS_CSV = TEACHERS / "class_labels_indices.csv"
ESC10 = SHARED_DATA / "esc10"
ESC10_CLASS_MAP = read_class_map(ROOT / "recipes/ESC50/esc10_class_map.yaml")


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(
            f"real data not found at {path} (it lives beside the repository "
            "in ../shared/data)"
        )
    return path


@pytest.fixture(scope="module")
def mobilenet() -> MobileNetTeacher:
    return MobileNetTeacher.from_state_dict(
        read_state_dict(_require(CHECKPOINT))
    )


@pytest.fixture(scope="module")
def audioset_labels() -> List[str]:
    return read_labels(_require(LABELS_CSV))


# EfficientNet-B2 teacher ------------------------------------------------------


@pytest.fixture(scope="module")
def effnet() -> EfficientNetTeacher:
    torch.manual_seed(0)
    return EfficientNetTeacher(num_classes=35)


@pytest.mark.parametrize("frames", [128, 512])
def test_effnet_output_shape(effnet: EfficientNetTeacher, frames: int) -> None:
    effnet.eval()
    with torch.no_grad():
        logits = effnet(torch.randn(2, frames, 128))
    assert logits.shape == (2, 35)
    assert torch.isfinite(logits).all()


def test_effnet_gradients_flow(effnet: EfficientNetTeacher) -> None:
    effnet.train()
    effnet.zero_grad()
    logits = effnet(torch.randn(2, 128, 128), torch.tensor([1.0, 0.6]))
    logits.logsumexp(-1).sum().backward()
    missing = [
        name
        for name, p in effnet.named_parameters()
        if p.grad is None or not torch.isfinite(p.grad).all()
    ]
    assert not missing, f"no (finite) gradient for {missing[:5]}"
    assert effnet.pooling.head_weight.grad.abs().sum() > 0
    effnet.eval()


def test_effnet_renormalize_matches_psla_convention() -> None:
    teacher = EfficientNetTeacher(
        3,
        model_name="efficientnet-b0",
        renormalize=True,
        input_mean=-6.6268077,
        input_std=5.358466,
    )
    fbank = torch.randn(2, 16, 128) * 4 - 5
    ast = (fbank + 6.6268077) / (2 * 5.358466)
    psla = (fbank + 4.6476) / 4.5699
    assert torch.allclose(teacher.normalize(ast), psla, atol=1e-5)
    plain = EfficientNetTeacher(3, model_name="efficientnet-b0")
    assert torch.equal(plain.normalize(ast), ast)


def test_attention_pooling_ignores_masked_frames() -> None:
    pool = AttentionPooling(8, 4, num_heads=4)
    x = torch.randn(2, 8, 6)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    out = pool(x, mask)
    x_changed = x.clone()
    x_changed[1, :, 3:] = 100.0
    assert torch.allclose(pool(x_changed, mask), out)
    # Uniform attention and a constant sequence give its class outputs.
    const = torch.randn(1, 8, 1).expand(1, 8, 5)
    expected = pool(const[:, :, :1])
    assert torch.allclose(pool(const), expected, atol=1e-6)


# MobileNetV3 teacher ----------------------------------------------------------


def test_mobilenet_frontend_shape_and_silence() -> None:
    frontend = MobileNetFrontEnd()
    feats = frontend(torch.zeros(2, 32000))
    assert feats.shape == (2, 100, 128)  # (S - 1) // 320 + 1
    silence = (torch.log(torch.tensor(1e-5)) + 4.5) / 5
    assert torch.allclose(feats, silence.expand_as(feats))
    # Kaldi banks cover 512 bins: the Nyquist bin is not used.
    assert frontend.mel_banks.shape == (128, 513)
    assert frontend.mel_banks[:, -1].abs().sum() == 0


def test_mobilenet_random_state_dict_roundtrip() -> None:
    model = MobileNetV3(width_mult=0.4)
    clone = MobileNetV3(width_mult=0.4)
    clone.load_state_dict(model.state_dict(), strict=True)
    n_params = sum(p.numel() for p in model.parameters())
    assert 0.9e6 < n_params < 1.1e6  # mn04: ~0.98 M parameters


def test_mobilenet_loads_strict(mobilenet: MobileNetTeacher) -> None:
    state = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    own = mobilenet.model.state_dict()
    assert set(own) == set(state)
    for key, value in state.items():
        assert torch.equal(own[key], value), key
    assert not mobilenet.training


def test_mobilenet_resamples_input(mobilenet: MobileNetTeacher) -> None:
    teacher16 = MobileNetTeacher(sample_rate=16000)
    teacher16.model.load_state_dict(mobilenet.model.state_dict())
    teacher16.eval()
    wav16 = torch.randn(1, 16000) * 0.1
    wav32 = torchaudio.functional.resample(wav16, 16000, 32000)
    with torch.no_grad():
        assert torch.allclose(teacher16(wav16), mobilenet(wav32), atol=1e-4)


def test_mobilenet_frontend_stays_fp32_under_bf16_autocast() -> None:
    # Training with --precision=bf16 runs the teacher under autocast; its
    # pre-emphasis and mel projection must not: in bf16 the features of
    # real audio moved by up to 1.5 (range -1.4..2.4).
    torch.manual_seed(0)
    wav = torch.randn(2, 32000) * 0.1
    wav[:, :16000] += torch.sin(torch.arange(16000) * 0.01)  # loud, low
    frontend = MobileNetFrontEnd()
    reference = frontend(wav)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = frontend(wav)
    assert feats.dtype == torch.float32
    assert torch.allclose(feats, reference, atol=1e-5), (
        (feats - reference).abs().max()
    )


def test_mobilenet_preemphasis_matches_its_definition() -> None:
    # y[n] = x[n + 1] - 0.97 x[n] (EfficientAT's conv1d kernel [-0.97, 1]).
    wav = torch.randn(3, 4000)
    expected = torch.nn.functional.conv1d(
        wav.unsqueeze(1), torch.tensor([[[-0.97, 1.0]]])
    ).squeeze(1)
    assert torch.allclose(
        MobileNetFrontEnd.preemphasis(wav), expected, atol=1e-6
    )


def test_mobilenet_teacher_resamples_in_fp32_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    teacher = MobileNetTeacher(sample_rate=16000, width_mult=0.1).eval()
    wav = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        reference = teacher.features(wav)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            feats = teacher.features(wav)
            logits = teacher(wav)
    assert feats.dtype == torch.float32
    assert torch.allclose(feats, reference, atol=1e-5)
    assert logits.shape == (2, AUDIOSET_NUM_CLASSES)


def test_mobilenet_fast_resample_matches_torchaudio() -> None:
    from fastast_sb.audio import Resampler

    torch.manual_seed(0)
    for rate_in, rate_out, length in [
        (16000, 32000, 16000),
        (16000, 32000, 16001),
        (44100, 32000, 9999),
        (32000, 32000, 100),
    ]:
        wav = torch.randn(3, length)
        expected = torchaudio.functional.resample(wav, rate_in, rate_out)
        got = Resampler(rate_in, rate_out)(wav)
        assert got.shape == expected.shape, (rate_in, rate_out, length)
        assert torch.allclose(got, expected, atol=1e-4), (rate_in, rate_out)


def test_audioset_labels(audioset_labels: List[str]) -> None:
    assert len(audioset_labels) == AUDIOSET_NUM_CLASSES
    assert audioset_labels[0] == "Speech"
    assert audioset_labels[137] == "Music"


@pytest.mark.parametrize(
    ("clip", "expected"),
    [
        ("speech", {"Speech"}),
        ("music", {"Music"}),
        ("typing", {"Typing", "Computer keyboard"}),
    ],
)
def test_mobilenet_tags_sample_audio(
    mobilenet: MobileNetTeacher,
    audioset_labels: List[str],
    clip: str,
    expected: set,
) -> None:
    path = _require(TEACHERS / "sample_audio" / f"{clip}.wav")
    wav, rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == 32000
    wav = torch.from_numpy(wav.mean(axis=1))[None]  # [1, S]
    with torch.no_grad():
        logits = mobilenet(wav)
    top = top_labels(logits, audioset_labels, k=3)[0]
    print(f"{clip}: {top}")
    hits = [(name, p) for name, p in top if name in expected]
    assert hits, f"{clip}: none of {expected} in the top classes {top}"
    assert max(p for _, p in hits) > 0.5, f"{clip}: top classes {top}"


# Class maps -------------------------------------------------------------------


def test_class_map_aggregations() -> None:
    names = ["a", "b", "c", "d"]
    mapping = {"x": ["a", "c"], "y": [3], "z": ["b", 1]}
    logits = torch.tensor([[1.0, 2.0, 3.0, -1.0], [0.0, 0.0, 0.0, 0.0]])
    lse = ClassMap(mapping, names)(logits)
    mx = ClassMap(mapping, names, aggregation="max")(logits)
    assert lse.shape == mx.shape == (2, 3)
    assert torch.allclose(lse[:, 0], torch.logsumexp(logits[:, [0, 2]], -1))
    assert torch.allclose(mx[:, 0], logits[:, [0, 2]].amax(-1))
    assert torch.allclose(mx[:, 1], logits[:, 3])
    assert torch.allclose(lse[:, 1], logits[:, 3])  # one class: identity


def test_class_map_errors() -> None:
    names = ["Dog", "Bark"]
    with pytest.raises(ValueError, match="'Woof'"):
        ClassMap({"dog": ["Dog", "Woof"]}, names)
    with pytest.raises(ValueError, match="outside"):
        ClassMap({"dog": [5]}, names)
    with pytest.raises(ValueError, match="no source classes"):
        ClassMap({"dog": []}, names)
    with pytest.raises(ValueError, match="aggregation"):
        ClassMap({"dog": [0]}, names, aggregation="mean")
    with pytest.raises(ValueError, match=r"expected \[B, 2\]"):
        ClassMap({"dog": [0]}, names)(torch.zeros(1, 3))


def test_esc10_class_map_names_exist(audioset_labels: List[str]) -> None:
    cmap = ClassMap(ESC10_CLASS_MAP, audioset_labels)
    assert cmap.target_labels[0] == "dog" and len(cmap.target_labels) == 10


def _load_esc10() -> Tuple[torch.Tensor, List[str]]:
    """All ESC-10 clips at 44.1 kHz, cut / zero-padded to 5 s: [N, S]."""
    meta = _require(ESC10 / "meta" / "esc50.csv")
    with meta.open(newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["esc10"] == "True"]
    length = 5 * 44100
    wavs, categories = [], []
    for row in rows:
        wav, rate = sf.read(
            ESC10 / "audio" / row["filename"], dtype="float32", always_2d=True
        )
        assert rate == 44100, row["filename"]
        wav = torch.from_numpy(wav.mean(axis=1))[:length]
        wavs.append(torch.nn.functional.pad(wav, (0, length - len(wav))))
        categories.append(row["category"])
    return torch.stack(wavs), categories


def test_mobilenet_zero_shot_esc10(
    mobilenet: MobileNetTeacher, audioset_labels: List[str]
) -> None:
    start = time.perf_counter()
    wavs, categories = _load_esc10()
    assert len(categories) == 320
    wavs = torchaudio.functional.resample(wavs, 44100, 32000)
    cmap = ClassMap(ESC10_CLASS_MAP, audioset_labels)
    with torch.no_grad():
        logits = torch.cat([cmap(mobilenet(batch)) for batch in wavs.split(32)])
    predicted = [cmap.target_labels[i] for i in logits.argmax(-1).tolist()]
    correct = sum(p == c for p, c in zip(predicted, categories))
    accuracy = correct / len(categories)
    elapsed = time.perf_counter() - start
    print(
        f"zero-shot ESC-10 accuracy {accuracy:.4f} ({correct}/"
        f"{len(categories)}) in {elapsed:.1f} s"
    )
    assert accuracy >= 0.90


def test_teacher_precision_script_legacy_front_end() -> None:
    # scripts/teacher_precision.py re-creates the pre-fix front end: equal
    # to ours in fp32, moved under bf16 autocast (what it measures).
    from tests.conftest import load_recipe_module

    script = load_recipe_module(
        "teacher_precision", ROOT / "scripts" / "teacher_precision.py"
    )
    torch.manual_seed(0)
    from fastast_sb.teachers.frozen import FrozenTeacher

    net = MobileNetTeacher(sample_rate=16000, width_mult=0.1)
    teacher = FrozenTeacher(net, input="wavs")
    wav = torch.randn(2, 16000) * 0.1
    wav[:, :8000] += torch.sin(torch.arange(8000) * 0.01)
    with torch.no_grad():
        ours = net.features(wav)
        # resample / conv1d vs ours: 2e-4 at most, in near-silent bins
        assert torch.allclose(
            script.legacy_features(teacher, wav), ours, atol=1e-3
        )
        with torch.autocast("cpu", dtype=torch.bfloat16):
            legacy = script.legacy_features(teacher, wav).float()
    assert (legacy - ours).abs().max() > 0.05
