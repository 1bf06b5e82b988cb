"""Golden values of the built-in losses against plain re-implementations of the formulas."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from kdkit.data.tasks import get_task
from kdkit.losses.base import Batch, LossContext
from kdkit.losses.kd import CrossEntropy, KDOptions, VanillaKD


def plain_kd(student: list[list[float]], teacher: list[list[float]], labels: list[int], alpha: float, t: float):
    """(1-a)*CE + a*T^2*KL(softmax(t/T) || softmax(s/T)), averaged over examples, with math only."""

    def softmax(row: list[float], temperature: float) -> list[float]:
        exps = [math.exp(v / temperature) for v in row]
        return [e / sum(exps) for e in exps]

    ce = kl = 0.0
    for s_row, t_row, y in zip(student, teacher, labels):
        ce += -math.log(softmax(s_row, 1.0)[y])
        p_t, p_s = softmax(t_row, t), softmax(s_row, t)
        kl += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
    n = len(labels)
    return (1 - alpha) * ce / n, alpha * t * t * kl / n


STUDENT = [[1.0, -0.5, 0.2], [0.3, 0.1, 2.0], [-1.0, 0.0, 1.0], [0.5, 0.5, 0.5]]
TEACHER = [[2.0, -1.0, 0.0], [0.0, 0.5, 1.5], [-0.2, 0.4, 0.9], [1.0, 0.2, -0.3]]
LABELS = [0, 2, 1, 0]


@pytest.mark.parametrize(("alpha", "temperature"), [(0.5, 2.0), (0.9, 1.0), (0.0, 4.0), (1.0, 3.0)])
def test_vanilla_kd_golden_values(alpha: float, temperature: float):
    task = get_task("mnli")
    loss = VanillaKD(KDOptions(alpha=alpha, temperature=temperature), task)
    batch = Batch(inputs={}, labels=torch.tensor(LABELS))
    terms = loss(
        batch, torch.tensor(STUDENT), {"logits": torch.tensor(TEACHER)}, LossContext(task, torch.nn.Linear(1, 1))
    )
    expected_ce, expected_kd = plain_kd(STUDENT, TEACHER, LABELS, alpha, temperature)
    assert set(terms) == {"ce", "kd"}
    assert float(terms["ce"]) == pytest.approx(expected_ce, rel=1e-5, abs=1e-7)
    assert float(terms["kd"]) == pytest.approx(expected_kd, rel=1e-5, abs=1e-7)


def test_kd_for_regression_is_mse_on_outputs():
    task = get_task("stsb")
    loss = VanillaKD(KDOptions(alpha=0.25, temperature=5.0), task)
    student = torch.tensor([[1.0], [2.0], [3.5]])
    teacher = torch.tensor([[1.5], [2.0], [3.0]])
    labels = torch.tensor([1.0, 3.0, 3.0])
    terms = loss(
        Batch(inputs={}, labels=labels), student, {"logits": teacher}, LossContext(task, torch.nn.Linear(1, 1))
    )
    assert set(terms) == {"mse", "kd"}
    assert float(terms["mse"]) == pytest.approx(0.75 * (0 + 1 + 0.25) / 3)
    assert float(terms["kd"]) == pytest.approx(0.25 * (0.25 + 0 + 0.25) / 3)


def test_cross_entropy_loss_needs_no_teacher():
    task = get_task("sst2")
    assert CrossEntropy.needs.teacher is False
    loss = CrossEntropy(CrossEntropy.Options(), task)
    logits = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    terms = loss(Batch(inputs={}, labels=torch.tensor([1, 1])), logits, {}, LossContext(task, torch.nn.Linear(1, 1)))
    expected = (-math.log(math.e / (1 + math.e)) - math.log(1 / (1 + math.e**2))) / 2
    assert float(terms["ce"]) == pytest.approx(expected)


@pytest.mark.parametrize("options", [{"alpha": -0.1}, {"alpha": 1.5}, {"temperature": 0}, {"temperature": -1}])
def test_kd_options_are_validated(options):
    with pytest.raises(ValidationError):
        KDOptions(**options)
