"""ESC-50 recipe with distillation: the teacher stays frozen and outside."""

from __future__ import annotations

import csv
import json
import sys

import pytest
import torch

from fastast_sb.audio import load_audio
from fastast_sb.teachers.frozen import FrozenTeacher
from tests.conftest import ROOT, shared_data

sys.path.insert(0, str(ROOT / "recipes" / "ESC50"))

import kd_experiment  # noqa: E402
import train  # noqa: E402


@pytest.fixture
def teacher_calls(monkeypatch) -> list:
    """(waveform shape, output requires grad) of every teacher call."""
    calls = []
    original = FrozenTeacher.forward

    def counting(self, wavs, lens=None, feats=None):
        out = original(self, wavs, lens, feats)
        calls.append((tuple(wavs.shape), out.requires_grad))
        return out

    monkeypatch.setattr(FrozenTeacher, "forward", counting)
    return calls


def _debug_kd_args(data, ckpt, root, *extra: str) -> list:
    """A 2-epoch, 2-batch tome_kd run on ESC-10 fold 4, MobileNet teacher."""
    return [
        str(ROOT / "hparams" / "tome_kd.yaml"),
        f"--data_folder={data}",
        f"--output_root={root}",
        f"--teacher_checkpoint={ckpt}",
        "--teacher_class_map=esc10",
        "--n_classes=10",
        "--fold=4",
        "--depth=1",
        "--batch_size=4",
        "--r_sweep=[0]",
        "--bench_repeats=1",
        "--debug",
        *extra,
    ]


def test_kd_training_leaves_teacher_untouched(tmp_path, teacher_calls):
    data = shared_data("esc10")
    ckpt = shared_data("teachers", "mn04_as_mAP_432.pt")
    calls = teacher_calls
    result = train.run(_debug_kd_args(data, ckpt, tmp_path))
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
    # How sure the KD targets were is logged per epoch (1/10 <= conf <= 1).
    run_dir = tmp_path / "tome_kd" / "fold4" / "seed1234"
    with open(run_dir / "epoch_metrics.csv", newline="") as f:
        confs = [float(row["train_teacher_conf"]) for row in csv.DictReader(f)]
    assert len(confs) == 2 and all(0.1 <= c <= 1.0 for c in confs)
    assert "teacher_conf" in (run_dir / "train_log.txt").read_text()


def test_teacher_hears_the_student_s_augmented_batch(tmp_path, monkeypatch):
    """Consistent teaching: shifted and mixed waveform, same for both."""
    from fastast_sb.features import KaldiFbank
    from fastast_sb.models.ast import AST

    data = shared_data("esc10")
    ckpt = shared_data("teachers", "mn04_as_mAP_432.pt")
    student_in, teacher_in = [], []
    fbank = KaldiFbank.forward
    teach = FrozenTeacher.forward
    ast_forward = AST.forward

    def fbank_spy(self, wavs, lens=None):
        if torch.is_grad_enabled():  # training batches only
            student_in.append(["wavs", wavs.clone()])
        return fbank(self, wavs, lens)

    def ast_spy(self, x, lens=None, r=None):
        if torch.is_grad_enabled():
            student_in[-1].append(x.clone())
        return ast_forward(self, x, lens, r=r)

    def teacher_spy(self, wavs, lens=None, feats=None):
        teacher_in.append((wavs.clone(), feats.clone()))
        return teach(self, wavs, lens, feats)

    monkeypatch.setattr(KaldiFbank, "forward", fbank_spy)
    monkeypatch.setattr(AST, "forward", ast_spy)
    monkeypatch.setattr(FrozenTeacher, "forward", teacher_spy)
    train.run(
        _debug_kd_args(
            data,
            ckpt,
            tmp_path,
            "--mixup_prob=1.0",
            "--time_shift=2.0",
            "--freqm=24",
        )
    )
    assert len(teacher_in) == len(student_in) == 4
    clean = [load_audio(p, 16000) for p in _fold_clips(tmp_path)]
    for (_, s_wavs, s_feats), (t_wavs, t_feats) in zip(student_in, teacher_in):
        # The same augmented waveform and features reach both networks...
        assert torch.equal(s_wavs, t_wavs)
        assert torch.equal(s_feats, t_feats)
        # ...and they are augmented (no training clip comes through as is).
        for wav in s_wavs:
            assert not any(torch.equal(c, wav[: len(c)]) for c in clean)


def _fold_clips(run_root) -> list:
    """Paths of the training clips in the run's train manifest."""
    manifest = next(run_root.glob("*/fold4/seed*/train.csv"))
    with open(manifest, newline="", encoding="utf-8") as f:
        return [row["wav"] for row in csv.DictReader(f)]


def test_kd_experiment_driver_reports_both_arms_per_seed(tmp_path):
    data = shared_data("esc10")
    ckpt = shared_data("teachers", "mn04_as_mAP_432.pt")
    root = tmp_path / "exp"
    kd_experiment.main(
        [
            "--seeds=7,8",
            "--jobs=2",
            f"--output_root={root}",
            f"--teacher_checkpoint={ckpt}",
            "--teacher_class_map=esc10",
            f"--data_folder={data}",
            "--n_classes=10",
            "--fold=4",
            "--depth=1",
            "--batch_size=4",
            "--r_sweep=[0, 16]",
            "--bench_repeats=1",
            "--debug",
        ]
    )
    summary = json.loads((root / "kd_experiment.json").read_text())
    assert summary["seeds"] == [7, 8]
    assert summary["teacher_acc"] is None  # a released file, not a run
    assert list(summary["acc"]) == ["0", "16"]
    for arm, variant in (("no_kd", "tome"), ("kd", "tome_kd")):
        for i, seed in enumerate((7, 8)):
            run = root / variant / "fold4" / f"seed{seed}"
            rows = json.loads((run / "test_metrics.json").read_text())
            assert summary["acc"]["16"][arm][i] == rows["r_sweep"][1]["metric"]
            hp = (run / "hyperparams.yaml").read_text()
            assert f"seed: {seed}\n" in hp
            assert ("teacher_checkpoint" in hp) == (arm == "kd")
    for seed in ("7", "8"):  # the KD targets' confidence, epoch 1 and 2
        confs = summary["teacher_conf"][seed]
        assert len(confs) == 2 and all(0.1 <= c <= 1.0 for c in confs)
    report = (root / "kd_experiment.md").read_text()
    assert "| no KD s7 | no KD s8 | KD s7 | KD s8 |" in report
    assert "r-sweep of the KD run, seed 7" in report
    assert "mean top probability on the training batches" in report


def test_kd_experiment_needs_a_teacher():
    with pytest.raises(SystemExit, match="teacher_checkpoint"):
        kd_experiment.split_args(["--seeds=1", "--depth=2"])


def test_cached_teacher_logits_replace_the_teacher_pass(
    tmp_path, teacher_calls
):
    data = shared_data("esc10")
    ckpt = shared_data("teachers", "mn04_as_mAP_432.pt")
    calls = teacher_calls
    args = [
        str(ROOT / "hparams" / "tome_kd.yaml"),
        f"--data_folder={data}",
        f"--output_root={tmp_path}",
        f"--teacher_checkpoint={ckpt}",
        "--teacher_class_map=esc10",
        "--teacher_cache=True",
        "--freqm=0",
        "--timem=0",
        "--n_classes=10",
        "--fold=4",
        "--depth=1",
        "--batch_size=16",
        "--r_sweep=[0]",
        "--bench_repeats=1",
        "--debug",
    ]
    result = train.run(args)
    run_dir = tmp_path / "tome_kd" / "fold4" / "seed1234"
    cache = torch.load(run_dir / "teacher_logits.pt", weights_only=True)
    # Built once over the 240 training clips; no teacher pass in training.
    assert [shape[0] for shape, _ in calls] == [1] * 240
    assert len(cache["logits"]) == 240
    assert cache["source"] == str(ckpt)
    # Each cached row is the teacher's output for the clean clip.
    brain = result["brain"]
    some_id = sorted(cache["logits"])[0]
    wav_path = next(
        r["wav"]
        for r in csv.DictReader(open(run_dir / "train.csv"))
        if r["ID"] == some_id
    )
    wav = load_audio(wav_path, 16000)[None]  # as the data pipeline reads it
    expected = brain.teacher(wav, torch.ones(1))[0]
    torch.testing.assert_close(
        cache["logits"][some_id], expected, atol=1e-4, rtol=0
    )
    # A rerun reuses the file: the teacher does not run again.
    calls.clear()
    train.run(args)
    assert calls == []


def test_cached_teacher_logits_refuse_mixup_and_warn(caplog):
    from fastast_sb.teacher_cache import check_augmentation

    with pytest.raises(ValueError, match="mixup_prob=0.6"):
        check_augmentation({"mixup_prob": 0.6}, "wavs")
    masks = {"mixup_prob": 0.0, "freqm": 24, "timem": 0}
    with caplog.at_level("WARNING", logger="fastast_sb.teacher_cache"):
        check_augmentation(masks, "wavs")  # never sees the masks: exact
        assert not caplog.records
        check_augmentation(masks, "feats")
    assert "not consistent" in caplog.text and "freqm" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="fastast_sb.teacher_cache"):
        # A time shift changes the waveform: even a waveform teacher differs.
        check_augmentation({"mixup_prob": 0.0, "time_shift": 0.5}, "wavs")
    assert "time_shift" in caplog.text
