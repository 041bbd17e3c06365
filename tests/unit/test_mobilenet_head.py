"""Fine-tuning the MobileNet teacher to a new label set keeps its trunk."""

from __future__ import annotations

import torch

from fastast_sb.checkpoint import read_state_dict
from fastast_sb.teachers.mobilenet import MobileNetTeacher


def test_new_head_reinitialises_only_the_last_layer(tmp_path):
    source = MobileNetTeacher(width_mult=0.1, num_classes=527)
    path = tmp_path / "mn.pt"
    torch.save(source.model.state_dict(), path)
    teacher = MobileNetTeacher.from_state_dict(
        read_state_dict(path), width_mult=0.1, num_classes=12
    )
    assert teacher.model.state_dict()["classifier.5.bias"].shape == (12,)
    loaded = teacher.model.state_dict()
    for key, value in source.model.state_dict().items():
        if not key.startswith("classifier.5."):
            assert torch.equal(loaded[key], value), key
    assert teacher(torch.randn(2, 32000)).shape == (2, 12)
    # A fine-tuned run's checkpoint ("model." prefix) loads back strictly.
    path2 = tmp_path / "embedding_model.ckpt"
    torch.save(teacher.state_dict(), path2)
    again = MobileNetTeacher.from_state_dict(
        read_state_dict(path2), width_mult=0.1
    )
    for key, value in teacher.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[key], value), key
