"""The ``hidden`` loss: distance between mapped student and teacher hidden states (TinyBERT, PKD).

For the layer map (k, t(k)), k = 1..L_s (:mod:`kdkit.losses.layer_map`), student states H^s_k (B, L, D_s), teacher
states H^t_{t(k)} (B, L, D_t), P = L_s pairs, N real tokens in the batch, and W a learned linear map
D_s → D_t when the widths differ (identity otherwise)::

    tokens (TinyBERT):  L_hidden = 1/(P·N·D_t) Σ_k Σ_{b,i real} ‖W H^s_{k,b,i} − H^t_{t(k),b,i}‖²
    cls    (PKD):       L_hidden = 1/(P·B)     Σ_k Σ_b ‖ŝ_{k,b} − t̂_{t(k),b}‖²,   x̂ = x / ‖x‖₂ of the [CLS] state

and the term is ``weight · L_hidden`` (named ``hidden``). Padding positions never count. The mean over pairs
keeps the scale independent of the depth (TinyBERT and PKD sum over layers: multiply ``weight`` by P).

The teacher's states are computed live, one teacher forward per step: per-layer states of a whole data set are
too large to cache (docs/plugins.md has the arithmetic). W is a training-time module
(:meth:`trainable_modules`): optimised with the student, saved in checkpoints, not saved with the student.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from kdkit.data.tasks import TaskSpec
from kdkit.errors import TrainingError
from kdkit.losses.base import Batch, DistillationLoss, LossContext, LossNeeds
from kdkit.losses.layer_map import LayerMapSpec, layer_pairs
from kdkit.models.layers import hidden_size, num_layers

#: seed of the projection's initialisation (the same W in every run with the same widths)
PROJECTION_SEED = 0


class HiddenOptions(BaseModel):
    """Options of the ``hidden`` loss (``--set hidden.NAME=VALUE``)."""

    model_config = ConfigDict(extra="forbid")

    weight: float = Field(1.0, ge=0.0, description="weight of the hidden-state term")
    layers: LayerMapSpec = Field(
        "uniform",
        description="teacher layer of each student layer: uniform = round(k*L_t/L_s), halves up; or a list "
        "of L_s teacher layers (0 = embedding output)",
    )
    target: Literal["tokens", "cls"] = Field(
        "tokens", description="tokens: MSE over every real token (TinyBERT); cls: normalised [CLS] states (PKD)"
    )


def projection(student_width: int, teacher_width: int) -> nn.Linear:
    """W: a linear map D_s → D_t, initialised deterministically (PyTorch's default init, seed 0)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(PROJECTION_SEED)
        return nn.Linear(student_width, teacher_width)


def hidden_distance(
    student: Tensor, teacher: Tensor, attention_mask: Tensor, target: str, project: nn.Module | None = None
) -> Tensor:
    """L_hidden (module docstring) of stacked states.

    Args:
        student: (B, P, L, D_s) the mapped student states.
        teacher: (B, P, L, D_t) the teacher's, or (B, P, D_t) [CLS] states for ``target="cls"``.
        attention_mask: (B, L).
        target: ``tokens`` or ``cls``.
        project: W, or None when D_s = D_t.
    """
    if target == "cls":
        student = student[:, :, 0]
    if project is not None:
        student = project(student)
    student, teacher = student.float(), teacher.float()
    if target == "cls":
        unit_s = student / student.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        unit_t = teacher / teacher.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return (unit_s - unit_t).pow(2).sum(dim=-1).mean()
    mask = attention_mask[:, None, :, None].to(student.dtype)  # (B, 1, L, 1)
    squared = (student - teacher).pow(2) * mask
    pairs, width = student.shape[1], student.shape[-1]
    return squared.sum() / (attention_mask.sum().to(student.dtype).clamp_min(1.0) * pairs * width)


class HiddenStateLoss(DistillationLoss[HiddenOptions]):
    """weight · L_hidden between mapped hidden states (see the module docstring)."""

    name = "hidden"
    Options = HiddenOptions
    description = "MSE of mapped hidden states (TinyBERT), or PKD's normalised [CLS]; use with kd or adkd"
    needs = LossNeeds(student_outputs={"hidden_states"}, teacher_outputs={"hidden_states"})

    def __init__(self, options: HiddenOptions, task: TaskSpec) -> None:
        super().__init__(options, task)
        self.projection: nn.Linear | None = None

    def prepare(self, ctx: LossContext) -> None:
        """Check the layer map against both depths; build W when the widths differ."""
        if ctx.teacher is None:
            raise TrainingError("the hidden loss needs the teacher's layers", "give --teacher")
        layer_pairs(self.options.layers, num_layers(ctx.student), num_layers(ctx.teacher), option="hidden.layers")
        widths = (hidden_size(ctx.student), hidden_size(ctx.teacher))
        self.projection = projection(*widths) if widths[0] != widths[1] else None

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"projection": self.projection} if self.projection is not None else {}

    def live_teacher_signals(self, teacher_outputs: Any, batch: Batch, ctx: LossContext) -> dict[str, Tensor]:
        """``hidden``: the teacher states of the mapped layers, (B, P, L, D_t), or (B, P, D_t) with ``cls``."""
        states = teacher_outputs.hidden_states
        pairs = layer_pairs(self.options.layers, num_layers(ctx.student), len(states) - 1, option="hidden.layers")
        picked = torch.stack([states[t] for _, t in pairs], dim=1).float()
        return {"hidden": picked[:, :, 0] if self.options.target == "cls" else picked}

    def __call__(
        self, batch: Batch, student_logits: Tensor, teacher_signals: Mapping[str, Tensor], ctx: LossContext
    ) -> dict[str, Tensor]:
        states = ctx.student_outputs.hidden_states  # (L_s + 1) x (B, L, D_s)
        student = torch.stack(list(states[1:]), dim=1)  # every student layer k = 1..L_s
        teacher = teacher_signals["hidden"]
        if student.shape[-1] != teacher.shape[-1] and self.projection is None:
            raise TrainingError(
                f"student states are {student.shape[-1]} wide, the teacher's {teacher.shape[-1]}, and the hidden "
                "loss has no projection",
                "call loss.prepare(ctx) before training (kdkit's trainer does)",
            )
        distance = hidden_distance(student, teacher, batch.attention_mask, self.options.target, self.projection)
        return {"hidden": self.options.weight * distance}
