"""The ``ce`` loss (the task loss alone: a student on its own, a teacher's fine-tune) and the ``kd`` loss
(Hinton's), both contributed by the built-in plugin (:mod:`kdkit.plugins.builtin`)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from kdkit.losses.base import Batch, DistillationLoss, LossContext, LossNeeds
from kdkit.losses.formulas import soft_distillation_loss, step_temperature, supervised_term, task_loss


class CrossEntropy(DistillationLoss):
    """Supervised training without a teacher: CE (MSE for regression). Used to fine-tune teachers."""

    name = "ce"
    description = "the task loss alone (cross-entropy, or MSE for regression); no teacher"
    needs = LossNeeds(teacher=False)

    def __call__(
        self, batch: Batch, student_logits: Tensor, teacher_signals: Mapping[str, Tensor], ctx: LossContext
    ) -> dict[str, Tensor]:
        return {supervised_term(self.task): task_loss(self.task, student_logits, batch.labels)}


class KDOptions(BaseModel):
    """Options of vanilla KD."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(0.5, ge=0.0, le=1.0, description="weight of the KD term; the task loss gets 1-alpha")
    temperature: float = Field(2.0, gt=0.0, description="softmax temperature T (classification only)")
    anneal: bool = Field(
        False, description="decay T linearly to 1 over the epochs, one value per epoch (the AD-KD reference's anneal)"
    )


class VanillaKD(DistillationLoss):
    """Hinton et al. (2015): (1-α)·CE(s, y) + α·T²·KL(softmax(t/T) ‖ softmax(s/T)).

    For regression: (1-α)·MSE(s, y) + α·MSE(s, t). With ``anneal``, T is the epoch's
    :func:`~kdkit.losses.formulas.annealed_temperature`.
    """

    name = "kd"
    Options = KDOptions
    description = "vanilla KD: (1-a)*CE + a*T^2*KL(teacher/T || student/T); MSE on outputs for regression"

    def __call__(
        self, batch: Batch, student_logits: Tensor, teacher_signals: Mapping[str, Tensor], ctx: LossContext
    ) -> dict[str, Tensor]:
        options = self.options
        assert isinstance(options, KDOptions)
        supervised = task_loss(self.task, student_logits, batch.labels)
        temperature = step_temperature(options.temperature, options.anneal, ctx)
        distill = soft_distillation_loss(self.task, student_logits, teacher_signals["logits"], temperature)
        return {supervised_term(self.task): (1.0 - options.alpha) * supervised, "kd": options.alpha * distill}
