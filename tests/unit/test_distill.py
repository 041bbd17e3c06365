"""Tests of the CMKD distillation loss."""

import math

import pytest
import torch
import torch.nn.functional as F

from fastast_sb.distill import cmkd_loss, target_confidence


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_kd_gradient_zero_when_student_matches_teacher(tau: float) -> None:
    teacher = torch.randn(4, 6)
    student = (teacher / tau).clone().requires_grad_(True)
    targets = torch.tensor([0, 1, 2, 3])
    out = cmkd_loss(student, targets, teacher, tau=tau)
    (grad,) = torch.autograd.grad(out["kd"], student)
    assert torch.allclose(grad, torch.zeros_like(grad), atol=1e-7)
    # The KD term is then the teacher entropy, its minimum over students.
    p_t = torch.softmax(teacher / tau, dim=-1)
    entropy = -(p_t * p_t.log()).sum(-1).mean()
    assert torch.allclose(out["kd"], entropy, atol=1e-6)


def test_kd_gradient_nonzero_when_student_differs() -> None:
    teacher = torch.randn(4, 6)
    student = torch.randn(4, 6, requires_grad=True)
    out = cmkd_loss(student, torch.tensor([0, 1, 2, 3]), teacher)
    (grad,) = torch.autograd.grad(out["kd"], student)
    assert grad.abs().max() > 1e-3


def test_lam_one_is_plain_cross_entropy() -> None:
    student, teacher = torch.randn(5, 4), torch.randn(5, 4)
    targets = torch.tensor([0, 3, 1, 2, 0])
    out = cmkd_loss(student, targets, teacher, lam=1.0)
    expected = F.cross_entropy(student, targets)
    assert torch.allclose(out["total"], expected)
    assert torch.allclose(out["task"], expected)


def test_lam_one_is_plain_bce_multilabel() -> None:
    student, teacher = torch.randn(5, 7), torch.randn(5, 7)
    targets = (torch.rand(5, 7) > 0.5).float()
    out = cmkd_loss(student, targets, teacher, lam=1.0, multilabel=True)
    expected = F.binary_cross_entropy_with_logits(student, targets)
    assert torch.allclose(out["total"], expected)


def test_lam_zero_is_pure_kd() -> None:
    student, teacher = torch.randn(3, 4), torch.randn(3, 4)
    out = cmkd_loss(student, torch.tensor([0, 1, 2]), teacher, lam=0.0)
    assert torch.allclose(out["total"], out["kd"])


def test_multilabel_kd_targets_are_teacher_sigmoids() -> None:
    student, teacher = torch.randn(3, 5), torch.randn(3, 5)
    targets = torch.zeros(3, 5)
    out = cmkd_loss(student, targets, teacher, tau=2.0, multilabel=True)
    kd = F.binary_cross_entropy_with_logits(
        student, torch.sigmoid(teacher / 2.0)
    )
    assert torch.allclose(out["kd"], kd)
    total = 0.1 * out["task"] + 0.9 * out["kd"]
    assert torch.allclose(out["total"], total)


def test_mixed_soft_targets_single_label() -> None:
    student, teacher = torch.randn(4, 3), torch.randn(4, 3)
    hard_a, hard_b = torch.tensor([0, 1, 2, 0]), torch.tensor([1, 1, 0, 2])
    mix = 0.3
    soft = mix * F.one_hot(hard_a, 3).float()
    soft = soft + (1 - mix) * F.one_hot(hard_b, 3).float()
    out = cmkd_loss(student, soft, teacher)
    expected = mix * F.cross_entropy(student, hard_a)
    expected = expected + (1 - mix) * F.cross_entropy(student, hard_b)
    assert torch.allclose(out["task"], expected, atol=1e-6)
    # One-hot probability targets equal index targets.
    one_hot = cmkd_loss(student, F.one_hot(hard_a, 3).float(), teacher)
    index = cmkd_loss(student, hard_a, teacher)
    assert torch.allclose(one_hot["total"], index["total"])


def test_hand_computed_two_class_value() -> None:
    # Student softmax [3/4, 1/4], true class 1, uniform teacher.
    student = torch.tensor([[math.log(3.0), 0.0]])
    teacher = torch.zeros(1, 2)
    out = cmkd_loss(student, torch.tensor([1]), teacher)
    task = math.log(4.0)
    kd = 0.5 * math.log(4.0 / 3.0) + 0.5 * math.log(4.0)
    assert out["task"].item() == pytest.approx(task, rel=1e-6)
    assert out["kd"].item() == pytest.approx(kd, rel=1e-6)
    assert out["total"].item() == pytest.approx(0.1 * task + 0.9 * kd)


def test_tau2_scales_kd() -> None:
    student, teacher = torch.randn(2, 3), torch.randn(2, 3)
    targets = torch.tensor([0, 1])
    plain = cmkd_loss(student, targets, teacher, tau=3.0)
    scaled = cmkd_loss(student, targets, teacher, tau=3.0, tau2=True)
    assert torch.allclose(scaled["kd"], 9.0 * plain["kd"])


def test_teacher_receives_no_gradient() -> None:
    student = torch.randn(2, 3, requires_grad=True)
    teacher = torch.randn(2, 3, requires_grad=True)
    out = cmkd_loss(student, torch.tensor([0, 1]), teacher)
    out["total"].backward()
    assert teacher.grad is None
    assert student.grad is not None


def test_class_mismatch_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(2, 10\).*\(2, 527\)"):
        cmkd_loss(torch.randn(2, 10), torch.tensor([0, 1]), torch.randn(2, 527))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lam": 1.5}, "lam must be in"),
        ({"lam": -0.1}, "lam must be in"),
        ({"tau": 0.0}, "tau must be > 0"),
    ],
)
def test_bad_hyperparameters(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cmkd_loss(
            torch.randn(2, 3), torch.tensor([0, 1]), torch.randn(2, 3), **kwargs
        )


def test_bad_targets() -> None:
    student, teacher = torch.randn(2, 3), torch.randn(2, 3)
    with pytest.raises(ValueError, match="multi-label targets"):
        cmkd_loss(student, torch.tensor([0, 1]), teacher, multilabel=True)
    with pytest.raises(ValueError, match="do not match logits"):
        cmkd_loss(student, torch.zeros(2, 4), teacher)
    with pytest.raises(ValueError, match="batch size"):
        cmkd_loss(student, torch.tensor([0, 1, 2]), teacher)


def test_target_confidence_hand_values() -> None:
    # softmax([0, log 3]) = [0.25, 0.75]; softmax([log 4, 0, 0]) = [4, 1, 1]/6
    z = torch.tensor([[0.0, math.log(3.0), -1e4], [math.log(4.0), 0.0, 0.0]])
    assert target_confidence(z).item() == pytest.approx((0.75 + 4 / 6) / 2)
    # sigmoid(0) = 0.5, sigmoid(log 3) = 0.75, sigmoid(-1e4) = 0 -> 1
    multi = target_confidence(z[:1], multilabel=True).item()
    assert multi == pytest.approx((0.5 + 0.75 + 1.0) / 3)


def test_target_confidence_falls_with_temperature() -> None:
    z = torch.randn(16, 10) * 5
    confs = [target_confidence(z, tau).item() for tau in (1.0, 2.0, 3.0, 1e6)]
    assert confs == sorted(confs, reverse=True)
    assert confs[0] > confs[1] > confs[2]
    assert confs[-1] == pytest.approx(0.1, abs=1e-4)  # uniform over 10
    assert target_confidence(z, 1e6, multilabel=True).item() == (
        pytest.approx(0.5, abs=1e-4)
    )


def test_target_confidence_bad_input() -> None:
    with pytest.raises(ValueError, match="tau must be > 0, got 0"):
        target_confidence(torch.zeros(2, 3), tau=0.0)
    with pytest.raises(ValueError, match=r"\[B, C\], got shape \(3,\)"):
        target_confidence(torch.zeros(3))
