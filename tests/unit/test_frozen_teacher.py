"""Tests of FrozenTeacher: frozen, eval-locked, no grad, inputs, class maps."""

import csv
from pathlib import Path
from typing import List, Optional

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from torch import nn

from fastast_sb.distill import cmkd_loss
from fastast_sb.teachers.class_map import (
    ClassMap,
    build_class_map,
    read_class_map,
)
from fastast_sb.teachers.frozen import FrozenTeacher
from fastast_sb.teachers.mobilenet import MobileNetTeacher
from fastast_sb.teachers.passt import PaSST
from tests.conftest import ROOT

# The ESC-50 recipe's named class map, as hparams/tome_kd.yaml names it.
CLASS_MAPS = {"esc10": ROOT / "recipes" / "ESC50" / "esc10_class_map.yaml"}
ESC10_CLASS_MAP = read_class_map("esc10", CLASS_MAPS)


class StandIn(nn.Module):
    """Tiny teacher over [B, T, F] features or [B, S] waveforms.

    Dropout and batch norm make training mode visible; ``seen`` records the
    rank of each input it got.
    """

    def __init__(
        self, width: int, n_out: int, declare: bool = True, p: float = 0.5
    ) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(width)
        self.drop = nn.Dropout(p)
        self.linear = nn.Linear(width, n_out)
        if declare:
            self.num_classes = n_out
        self.seen: List[int] = []

    def forward(
        self, x: torch.Tensor, lens: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        self.seen.append(x.dim())
        if x.dim() == 2:  # waveform: frames of `width` samples
            x = x.reshape(x.shape[0], -1, self.linear.in_features)
        h = self.norm(x.mean(dim=1))
        return self.linear(self.drop(h))


def _batch(b: int = 4, width: int = 8):
    torch.manual_seed(0)
    wavs = torch.randn(b, 5 * width)
    lens = torch.ones(b)
    feats = torch.randn(b, 6, width)
    return wavs, lens, feats


def test_parameters_frozen_and_unchanged_by_student_step() -> None:
    torch.manual_seed(0)
    teacher = FrozenTeacher(StandIn(8, 3), input="feats", n_classes=3)
    assert all(not p.requires_grad for p in teacher.parameters())
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = nn.Linear(8, 3)
    student_before = student.weight.detach().clone()
    optimizer = torch.optim.AdamW(student.parameters(), lr=0.1)
    wavs, lens, feats = _batch()
    targets = torch.eye(3)[torch.tensor([0, 1, 2, 0])]
    teacher.train()  # as a Brain would at the start of an epoch
    for _ in range(2):
        optimizer.zero_grad()
        logits = student(feats.mean(dim=1))
        teacher_logits = teacher(wavs, lens, feats)
        cmkd_loss(logits, targets, teacher_logits)["total"].backward()
        optimizer.step()
    assert not torch.equal(student.weight, student_before)
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, before[name]), name  # incl. BN stats
    assert all(p.grad is None for p in teacher.parameters())


def test_eval_locked() -> None:
    teacher = FrozenTeacher(StandIn(8, 3), n_classes=3)
    assert not teacher.training
    for mode in (True, False, True):
        teacher.train(mode)
        assert not any(m.training for m in teacher.modules())
    wavs, lens, feats = _batch()
    teacher.train()
    first = teacher(wavs, lens, feats)
    assert torch.equal(first, teacher(wavs, lens, feats))  # no dropout


def test_output_has_no_grad() -> None:
    teacher = FrozenTeacher(StandIn(8, 3))
    wavs, lens, feats = _batch()
    feats.requires_grad_(True)
    with torch.enable_grad():
        logits = teacher(wavs, lens, feats)
    assert not logits.requires_grad
    assert logits.grad_fn is None


def test_input_routing() -> None:
    wavs, lens, feats = _batch()
    by_feats = FrozenTeacher(StandIn(8, 3), input="feats")
    by_wavs = FrozenTeacher(StandIn(8, 3), input="wavs")
    by_feats(wavs, lens, feats)
    by_wavs(wavs, lens, feats)
    assert by_feats.model.seen == [3]
    assert by_wavs.model.seen == [2]
    with pytest.raises(ValueError, match="reads 'feats', but feats=None"):
        by_feats(wavs, lens)
    with pytest.raises(ValueError, match="input must be one of"):
        FrozenTeacher(StandIn(8, 3), input="fbank")


def test_class_count_mismatch_at_construction() -> None:
    with pytest.raises(ValueError) as err:
        FrozenTeacher(StandIn(8, 527), n_classes=10)
    message = str(err.value)
    assert "527" in message and "n_classes=10" in message
    assert "class_map" in message


def test_class_count_mismatch_at_first_forward() -> None:
    teacher = FrozenTeacher(StandIn(8, 5, declare=False), n_classes=3)
    wavs, lens, feats = _batch()
    with pytest.raises(ValueError, match="emits 5 classes.*n_classes=3"):
        teacher(wavs, lens, feats)


def test_undeclared_class_count_checked_once() -> None:
    teacher = FrozenTeacher(StandIn(8, 5, declare=False), n_classes=5)
    assert teacher.model_classes is None
    teacher(*_batch())
    assert teacher.model_classes == 5  # later forwards skip the check


def test_named_class_map_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_class_map("esc10", {"esc10": tmp_path / "missing.yaml"})


def test_n_classes_defaults() -> None:
    assert FrozenTeacher(StandIn(8, 4)).n_classes == 4
    assert FrozenTeacher(StandIn(8, 4, declare=False)).n_classes is None


def test_class_map_with_mobilenet() -> None:
    torch.manual_seed(0)
    net = MobileNetTeacher(sample_rate=16000, width_mult=0.1)
    cmap = ClassMap({"a": [0, 5], "b": [7], "c": [1, 2, 3]})
    teacher = FrozenTeacher(net, input="wavs", n_classes=3, class_map=cmap)
    wavs = torch.randn(2, 8000)
    logits = teacher(wavs, torch.ones(2), None)
    assert logits.shape == (2, 3)
    with torch.no_grad():
        assert torch.allclose(logits, cmap(net.eval()(wavs)))


def test_class_map_errors() -> None:
    cmap = ClassMap({"a": [0], "b": [1]}, num_source_classes=4)
    with pytest.raises(ValueError, match="class map gives 2 classes"):
        FrozenTeacher(StandIn(8, 4), n_classes=3, class_map=cmap)
    with pytest.raises(ValueError, match="emits 5 classes, the class map"):
        FrozenTeacher(StandIn(8, 5), class_map=cmap)
    late = FrozenTeacher(StandIn(8, 5, declare=False), class_map=cmap)
    with pytest.raises(ValueError, match="emits 5 classes, the class map"):
        late(*_batch())
    with pytest.raises(ValueError, match="give labels_csv"):
        build_class_map("esc10", class_maps=CLASS_MAPS)
    with pytest.raises(ValueError, match="unknown class map 'esc99'"):
        build_class_map("esc99", class_maps=CLASS_MAPS)


def _audioset_csv(path: Path) -> Path:
    names = [n for names in ESC10_CLASS_MAP.values() for n in names]
    names += [f"class {i}" for i in range(527 - len(names))]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "mid", "display_name"])
        for i, name in enumerate(names):
            writer.writerow([i, f"/m/{i}", name])
    return path


def test_mobilenet_factory_esc10(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ckpt = tmp_path / "mn01.pt"
    torch.save(MobileNetTeacher(width_mult=0.1).model.state_dict(), ckpt)
    _audioset_csv(tmp_path / "class_labels_indices.csv")  # found beside
    teacher = FrozenTeacher.mobilenet(
        str(ckpt),
        n_classes=10,
        class_map="esc10",
        width_mult=0.1,
        class_maps=CLASS_MAPS,
    )
    assert teacher.input == "wavs" and teacher.n_classes == 10
    assert teacher.class_map.target_labels == list(ESC10_CLASS_MAP)
    logits = teacher(torch.randn(2, 16000), torch.ones(2), None)
    assert logits.shape == (2, 10) and not logits.requires_grad
    with pytest.raises(ValueError, match="class map gives 10 classes"):
        FrozenTeacher.mobilenet(
            str(ckpt),
            n_classes=50,
            class_map="esc10",
            width_mult=0.1,
            class_maps=CLASS_MAPS,
        )


def test_checkpoint_loading(tmp_path: Path) -> None:
    torch.manual_seed(0)
    saved = StandIn(8, 3)
    ckpt = tmp_path / "teacher.ckpt"
    torch.save({f"module.{k}": v for k, v in saved.state_dict().items()}, ckpt)
    teacher = FrozenTeacher(StandIn(8, 3), checkpoint=str(ckpt))
    assert torch.equal(teacher.model.linear.weight, saved.linear.weight)
    assert not teacher.model.linear.weight.requires_grad
    with pytest.raises(ValueError, match="does not fit StandIn"):
        FrozenTeacher(StandIn(8, 4), checkpoint=str(ckpt))
    with pytest.raises(ValueError, match="is a folder"):
        FrozenTeacher(StandIn(8, 3), checkpoint=str(tmp_path))


def test_passt_factory_from_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    saved = PaSST(input_tdim=128, preset="mini", depth=1, num_classes=6)
    ckpt = tmp_path / "passt.pt"
    torch.save(saved.state_dict(), ckpt)
    teacher = FrozenTeacher.passt(str(ckpt), n_classes=6, num_heads=2)
    feats = torch.randn(2, 128, 128)
    with torch.no_grad():
        assert torch.equal(teacher(None, None, feats), saved.eval()(feats))
    with pytest.raises(ValueError, match="emits 6 classes"):
        FrozenTeacher.passt(str(ckpt), n_classes=5, num_heads=2)


def test_effnet_factory_from_checkpoint(tmp_path: Path) -> None:
    teacher = FrozenTeacher.effnet(n_classes=3, model_name="efficientnet-b0")
    ckpt = tmp_path / "effnet.pt"
    torch.save(teacher.model.state_dict(), ckpt)
    loaded = FrozenTeacher.effnet(
        str(ckpt), n_classes=3, model_name="efficientnet-b0"
    )
    feats = torch.randn(1, 64, 128)
    assert torch.equal(loaded(None, None, feats), teacher(None, None, feats))


def test_factory_from_hyperpyyaml() -> None:
    yaml = """
n_classes: 4
teacher: !apply:fastast_sb.teachers.frozen.FrozenTeacher.passt
    n_classes: !ref <n_classes>
    input_tdim: 128
    preset: mini
    depth: 1
"""
    teacher = load_hyperpyyaml(yaml)["teacher"]
    assert isinstance(teacher, FrozenTeacher)
    assert teacher.n_classes == 4 and not teacher.training
    assert teacher(None, None, torch.randn(1, 128, 128)).shape == (1, 4)
