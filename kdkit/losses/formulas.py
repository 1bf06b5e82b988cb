"""Loss formulas that losses share: the supervised task loss (and its term's name), Hinton's KD term, the
tempered KL between logits, and the KD temperature of a step (annealed or fixed)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kdkit.data.labels import UNLABELLED
from kdkit.data.tasks import TaskSpec
from kdkit.losses.base import LossContext


def supervised_term(task: TaskSpec) -> str:
    """The name of the supervised term of a task's losses: ``mse`` for regression, else ``ce``."""
    return "mse" if task.is_regression else "ce"


def labelled(task: TaskSpec, labels: Tensor) -> Tensor:
    """(B,) bool: which examples carry a label. Transfer and augmented examples (:mod:`kdkit.data.transfer`)
    carry none: the class id ``UNLABELLED`` (-100), or ``NaN`` for regression."""
    if task.is_regression:
        return torch.isfinite(labels.reshape(-1))
    return labels.reshape(-1) != UNLABELLED


def task_loss(task: TaskSpec, logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """The supervised loss over the labelled examples: cross-entropy over (B, C) logits, or MSE for regression
    (C = 1), summed over the examples with ``mask`` (default :func:`labelled`) and divided by their number N_l:

        L_sup = Σ_i m_i · ℓ(s_i, y_i) / max(N_l, 1)

    so a batch of transfer examples alone contributes 0 (its gradient is zero), and a fully labelled batch gives
    the usual mean."""
    mask = labelled(task, labels) if mask is None else mask.reshape(-1).bool()
    if task.is_regression:
        targets = torch.where(mask, labels.float().reshape(-1), 0.0)
        per_example = (logits.float().reshape(-1) - targets) ** 2
    else:
        targets = torch.where(mask, labels.long().reshape(-1), 0)
        per_example = F.cross_entropy(logits.float(), targets, reduction="none")
    total = torch.where(mask, per_example, 0.0).sum()
    return total / mask.sum().clamp(min=1)


def soft_distillation_loss(
    task: TaskSpec, student_logits: Tensor, teacher_logits: Tensor, temperature: float
) -> Tensor:
    """Hinton's KD term.

    Classification: T² · KL(softmax(t/T) ‖ softmax(s/T)), averaged over the batch.
    Regression: MSE(s, t) on the raw outputs (no temperature).
    """
    if task.is_regression:
        return F.mse_loss(student_logits.float().reshape(-1), teacher_logits.float().reshape(-1))
    t = temperature
    return tempered_kl(student_logits, teacher_logits, t) * t * t


def annealed_temperature(start: float, epoch: int, num_epochs: int) -> float:
    """T of epoch ``epoch`` (0-based) of ``num_epochs`` when T is annealed, as the AD-KD reference's ``kd_anneal``:
    linear from ``start`` at the first epoch to 1 at the last, one value per epoch,

        T_e = T + (1 − T) · e / (E − 1),   e = 0 … E − 1   (T itself when E = 1).
    """
    if num_epochs <= 1:
        return start
    e = min(max(epoch, 0), num_epochs - 1)
    return start + (1.0 - start) * e / (num_epochs - 1)


def step_temperature(start: float, anneal: bool, ctx: LossContext) -> float:
    """The KD temperature of the step in ``ctx``: ``start``, or with ``anneal`` :func:`annealed_temperature`."""
    return annealed_temperature(start, ctx.epoch, ctx.num_epochs) if anneal else start


def tempered_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """KL(softmax(t/T) ‖ softmax(s/T)) of (B, C) logits in float32, averaged over the batch (no T² factor)."""
    log_p_student = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_teacher = torch.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
