"""ESC-50 recipe with distillation: the teacher stays frozen and outside."""

from __future__ import annotations

import sys

import torch

from fastast_sb.teachers.frozen import FrozenTeacher
from tests.conftest import ROOT, shared_data

sys.path.insert(0, str(ROOT / "recipes" / "ESC50"))

import train  # noqa: E402


def test_kd_training_leaves_teacher_untouched(tmp_path, monkeypatch):
    data = shared_data("esc10")
    ckpt = shared_data("teachers", "mn04_as_mAP_432.pt")
    calls = []
    original = FrozenTeacher.forward

    def counting(self, wavs, lens=None, feats=None):
        out = original(self, wavs, lens, feats)
        calls.append((tuple(wavs.shape), out.requires_grad))
        return out

    monkeypatch.setattr(FrozenTeacher, "forward", counting)
    result = train.run(
        [
            str(ROOT / "hparams" / "tome_kd.yaml"),
            f"--data_folder={data}",
            f"--output_root={tmp_path}",
            f"--teacher_checkpoint={ckpt}",
            "--teacher_class_map=esc10",
            "--n_classes=10",
            "--fold=4",
            "--depth=1",
            "--batch_size=4",
            "--r_sweep=[0]",
            "--bench_repeats=1",
            "--debug",
        ]
    )
    brain = result["brain"]
    teacher = brain.teacher
    # The teacher ran on training batches only, without gradients.
    assert len(calls) == 4  # --debug: 2 epochs x 2 training batches
    assert not any(requires_grad for _, requires_grad in calls)
    # Still in eval mode, frozen, bit-identical to the released weights.
    assert not teacher.training
    assert all(not m.training for m in teacher.modules())
    released = torch.load(ckpt, map_location="cpu", weights_only=True)
    state = teacher.model.model.state_dict()
    assert set(state) == set(released)
    for key, value in released.items():
        assert torch.equal(state[key], value), key
    # Outside the Brain's modules and its optimiser.
    teacher_ids = {id(p) for p in teacher.parameters()}
    optimised = {
        id(p) for group in brain.optimizer.param_groups for p in group["params"]
    }
    assert not teacher_ids & optimised
    assert not teacher_ids & {id(p) for p in brain.modules.parameters()}
    assert len(optimised) > 0
