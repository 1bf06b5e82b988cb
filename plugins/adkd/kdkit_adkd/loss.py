"""The ``adkd`` loss: Attribution-Driven Knowledge Distillation (Wu et al., ACL 2023).

    L = (1 - α) · CE(z^s, y) + α · KD(z^s, z^t; T) + β · L_attr

- KD = KL(softmax(z^t/T) ‖ softmax(z^s/T)) (batch mean), times T² only with ``kd_t_squared``: the
  reference code uses the soft cross-entropy without T², which has the same gradient as this KL, and the
  paper's α and β were tuned with it. Regression: MSE(z^s/T, z^t/T) (× T² with ``kd_t_squared``).
- L_attr compares normalised per-token attribution maps (:func:`kdkit.attribution.base.token_maps`) of teacher
  and student, one map per view; the distance is summed over views and averaged over the batch's real tokens (the
  reference code's reduction, so the paper's β values mean what they meant there).

The teacher is frozen and in eval mode, so its logits and maps per example are deterministic: they are
``teacher_signals`` (``{"logits": (B, C), "attr_map": (B, V, L)}``) that kdkit computes once and caches.
The student's maps need a second-order backward (``create_graph``): the trainer runs the student with
eager attention and captures its embedding output in the step's forward, which the ``ig`` provider reuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from types import MappingProxyType
from typing import ClassVar, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor, nn

from kdkit.plugin_api import (
    AttributionProvider,
    Batch,
    ConfigError,
    DistillationLoss,
    EmbeddingForward,
    LossContext,
    LossNeeds,
    PluginError,
    PresetFunction,
    TaskSpec,
    TrainingError,
    labelled,
    num_layers,
    replace_embedding_output,
    step_temperature,
    supervised_term,
    task_loss,
    tempered_kl,
    token_maps,
    uniform_layer,
)
from kdkit_adkd.maps import Distance, map_distance, resolve_top_k
from kdkit_adkd.presets import paper_preset


class ADKDOptions(BaseModel):
    """Options of the ``adkd`` loss (``--set adkd.NAME=VALUE``)."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(0.9, ge=0.0, le=1.0, description="α: weight of KD; the task loss gets 1-α")
    beta: float = Field(1.0, ge=0.0, description="β: weight of the attribution loss (0 = vanilla KD)")
    temperature: float = Field(2.0, gt=0.0, description="T of the KD term")
    anneal: bool = Field(
        False,
        description="decay T linearly to 1 over the epochs, one value per epoch (the reference's kd_anneal; "
        "on in the paper preset for MNLI, MRPC and QQP)",
    )
    top_k: int | None = Field(None, ge=1, description="K: hidden dims kept in the teacher's maps (None/>=D: all)")
    top_k_fraction: float | None = Field(
        None, gt=0.0, le=1.0, description="K as a share of the teacher's hidden size (the paper's K/768); top_k wins"
    )
    views: Literal["all", "gold", "pred"] = Field(
        "all", description="maps per example: every class, the gold label's, or the teacher's prediction"
    )
    distance: Literal["l2", "l1", "smooth_l1"] = Field("l2", description="distance between normalised maps")
    kd_t_squared: bool = Field(False, description="scale KD by T² (Hinton; kdkit's kd) instead of the reference's 1")
    ablation: Literal["none", "no_attr", "no_ce", "no_kd"] = Field(
        "none", description="drop one term (the paper's ablations): attribution, cross-entropy or KD"
    )
    binary_single_view: bool = Field(
        True, description="two classes, views=all: one map when the two views' maps are equal (IG, m=1)"
    )
    provider: str = Field("ig", description="attribution provider (must be differentiable)")
    teacher_provider: str | None = Field(
        None, description="provider of the teacher's maps (None: provider); may be non-differentiable, e.g. occlusion"
    )
    eps: float = Field(1e-12, gt=0.0, description="lower bound of a map's norm in the normalisation")
    teacher_layer: Literal["uniform"] | int = Field(
        "uniform",
        description="with ig.layer=N (attribution at student layer N): the teacher's layer (>= 1); uniform = "
        "round(N*L_t/L_s), halves up (paper Table 3)",
    )

    @field_validator("teacher_layer")
    @classmethod
    def _layer_from_one(cls, value: str | int) -> str | int:
        if isinstance(value, int) and value < 1:
            raise ValueError("a layer number is 1 or more")
        return value


def leaf_embedding_forward(model: nn.Module, inputs: dict[str, Tensor], layer: int | None = None) -> EmbeddingForward:
    """A forward pass whose embedding output E (with ``layer`` N: layer N's output) is a leaf that requires
    grad: gradients w.r.t. E only (the frozen teacher's parameters take no part)."""
    held: dict[str, Tensor] = {}

    def leaf(embeddings: Tensor) -> Tensor:
        held["e"] = embeddings.detach().requires_grad_(True)
        return held["e"]

    with torch.enable_grad(), replace_embedding_output(model, leaf, layer=layer):
        logits = model(**inputs).logits
    return EmbeddingForward(held["e"], logits, layer=layer)


def distributed_mean(value: Tensor) -> Tensor:
    """The mean of ``value`` over data-parallel processes (itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


class ADKDLoss(DistillationLoss[ADKDOptions]):
    """(1-α)·CE + α·KD(T) + β·L_attr (see the module docstring and docs/adkd.md)."""

    name = "adkd"
    Options = ADKDOptions
    description = "AD-KD: (1-a)*CE + a*KD(T) + b*attribution-map distance (Integrated Gradients)"
    needs = LossNeeds(double_backward=True, student_embeddings=True, token_signals={"attr_map"})
    presets: ClassVar[Mapping[str, PresetFunction]] = MappingProxyType({"paper": paper_preset})

    def __init__(self, options: ADKDOptions, task: TaskSpec) -> None:
        super().__init__(options, task)
        #: the teacher layer of the maps when the student's are at a transformer layer (set by ``prepare``)
        self.teacher_layer: int | None = None
        self._prepared = False

    @property
    def uses_attribution(self) -> bool:
        """False when the attribution term is off (β = 0 or the ``no_attr`` ablation): vanilla KD."""
        return self.options.beta > 0 and self.options.ablation != "no_attr"

    def prepare(self, ctx: LossContext) -> None:
        """With the student's provider at layer N (``ig.layer``): the teacher's layer, for the maps and the
        cache key (it depends on both depths)."""
        self.teacher_layer, self._prepared = None, True
        if not self.uses_attribution:
            return
        layer = self.provider(ctx).layer
        if layer is None:
            return
        if ctx.teacher is None:
            raise TrainingError("AD-KD at an intermediate layer needs the teacher to map layers", "give --teacher")
        student_layers, teacher_layers = num_layers(ctx.student), num_layers(ctx.teacher)
        if layer > student_layers:
            raise ConfigError(
                f"ig.layer={layer}, but the student has {student_layers} layers",
                f"use ig.layer between 1 and {student_layers}",
            )
        option = self.options.teacher_layer
        teacher = uniform_layer(layer, student_layers, teacher_layers) if option == "uniform" else int(option)
        if teacher > teacher_layers:
            raise ConfigError(
                f"adkd.teacher_layer={teacher}, but the teacher has {teacher_layers} layers",
                f"use a layer between 1 and {teacher_layers}",
            )
        self.teacher_provider(ctx).at_layer(teacher)  # a teacher provider without layers fails here
        self.teacher_layer = teacher

    def _teacher_layer(self, ctx: LossContext) -> int | None:
        if not self._prepared:
            self.prepare(ctx)
        return self.teacher_layer

    @property
    def teacher_provider_name(self) -> str:
        """The provider of the teacher's maps: ``teacher_provider``, else ``provider``."""
        return self.options.teacher_provider or self.options.provider

    def providers_used(self) -> list[str]:
        if not self.uses_attribution:
            return []
        return list(dict.fromkeys([self.options.provider, self.teacher_provider_name]))

    def token_signals_used(self) -> AbstractSet[str]:
        """``{"attr_map"}``, or none when the attribution term is off (vanilla KD: logits only)."""
        return self.needs.token_signals if self.uses_attribution else frozenset()

    def teacher_signal_key(self) -> str:
        if not self.uses_attribution:
            return "logits"
        o = self.options
        # the teacher's provider joins the key only when it differs (keys of earlier runs stay valid)
        teacher = f":teacher_provider={self.teacher_provider_name}" if self.teacher_provider_name != o.provider else ""
        # so does the teacher's layer, when attributions are not at the embeddings (set by prepare)
        if self.teacher_layer is not None:
            teacher += f":teacher_layer={self.teacher_layer}"
        return (
            f"logits+attr_map:adkd-v1:views={o.views}:top_k={o.top_k}:top_k_fraction={o.top_k_fraction}"
            f":eps={o.eps}:single={o.binary_single_view}:provider={o.provider}{teacher}"
        )

    # -- the teacher -----------------------------------------------------------------------------

    def teacher_signals(self, teacher: nn.Module, batch: Batch, ctx: LossContext) -> dict[str, Tensor]:
        """``logits`` (B, C) and, with the attribution term on, ``attr_map`` (B, V, L): the teacher's
        normalised maps with top-K over its hidden dimensions. One forward (E as a grad-requiring leaf)
        serves both, and V backward passes w.r.t. E (more path points with ``ig.steps`` > 1).

        With a non-differentiable ``teacher_provider`` (e.g. ``occlusion``) the logits come from a plain
        forward and that provider computes the maps (top-K over D = 1 changes nothing)."""
        if not self.uses_attribution:
            return super().teacher_signals(teacher, batch, ctx)
        student_provider = self.provider(ctx)  # checked before the (long) teacher pass
        layer = self._teacher_layer(ctx)
        provider = self.teacher_provider(ctx).at_layer(layer)
        forward: EmbeddingForward | None = None
        if provider.differentiable:
            forward = leaf_embedding_forward(teacher, batch.inputs, layer)
            logits = forward.logits.detach().float()
        else:
            logits = teacher(**batch.inputs).logits.detach().float()
        targets, _ = self.views(logits, batch.labels, logits, provider, other=student_provider)
        attributions = provider.attribute(teacher, batch.inputs, targets, forward=forward)
        top_k = resolve_top_k(int(attributions.shape[-1]), self.options.top_k, self.options.top_k_fraction)
        maps = token_maps(attributions, batch.attention_mask, top_k=top_k, eps=self.options.eps)
        return {"logits": logits, "attr_map": maps}

    # -- views -----------------------------------------------------------------------------------

    def views(
        self,
        own_logits: Tensor,
        labels: Tensor,
        teacher_logits: Tensor,
        provider: AttributionProvider,
        *,
        other: AttributionProvider | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The classes each model explains, (B, V), and the views' weights (V,) in L_attr.

        ``all``: every class (weight 1 each, the reference's sum over views). For two classes, when the
        provider says the two views' maps are equal (IG with m = 1), one view (weight 1, as in the
        reference), the class that ``own_logits`` finds least likely (its gradient is the best conditioned);
        otherwise (or with ``binary_single_view`` off) both, weight 1/2 each, so L_attr keeps its scale.
        ``gold``: the label (the teacher's prediction for an example without one: transfer data).
        ``pred``: the teacher's prediction. Regression: the single output.
        ``other``: the other side's provider when teacher and student use different ones; one view only if
        both say the two views' maps are equal, so teacher and student always have the same views.
        """
        size = int(own_logits.shape[0])
        device = own_logits.device
        one = torch.ones(1, device=device)
        if self.task.is_regression:
            return torch.zeros(size, 1, dtype=torch.long, device=device), one
        if self.options.views == "gold":  # an example without a label (transfer data): the teacher's prediction
            gold = torch.where(labelled(self.task, labels), labels.long(), teacher_logits.argmax(dim=-1))
            return gold.view(-1, 1), one
        if self.options.views == "pred":
            return teacher_logits.argmax(dim=-1).view(-1, 1), one
        classes = int(own_logits.shape[-1])
        equal = all(p.binary_views_equal() for p in (provider, other) if p is not None)
        if classes == 2 and equal and self.options.binary_single_view:
            return own_logits.detach().argmin(dim=-1).view(-1, 1), one
        every = torch.arange(classes, device=device).expand(size, classes)
        weight = 0.5 if classes == 2 else 1.0
        return every, torch.full((classes,), weight, device=device)

    def provider(self, ctx: LossContext) -> AttributionProvider:
        """The student's provider (``provider``), which must be differentiable."""
        provider = ctx.provider(self.options.provider)
        if not provider.differentiable:
            raise PluginError(
                f"attribution provider '{provider.name}' is not differentiable",
                "AD-KD differentiates through the student's attributions: use --set adkd.provider=ig "
                f"(a non-differentiable provider can serve the teacher: --set adkd.teacher_provider={provider.name})",
            )
        return provider

    def teacher_provider(self, ctx: LossContext) -> AttributionProvider:
        """The teacher's provider (``teacher_provider``, else ``provider``); it need not be differentiable."""
        return ctx.provider(self.teacher_provider_name)

    # -- the loss --------------------------------------------------------------------------------

    def kd_term(self, student_logits: Tensor, teacher_logits: Tensor, temperature: float | None = None) -> Tensor:
        """KL(softmax(t/T) ‖ softmax(s/T)) (batch mean), or MSE(s/T, t/T) for regression; × T² with
        ``kd_t_squared``. T: ``temperature`` (the step's, when annealed), else the option."""
        t = self.options.temperature if temperature is None else temperature
        scale = t * t if self.options.kd_t_squared else 1.0
        if self.task.is_regression:
            return scale * F.mse_loss(student_logits.float().reshape(-1) / t, teacher_logits.float().reshape(-1) / t)
        return scale * tempered_kl(student_logits, teacher_logits, t)

    def attribution_loss(
        self, batch: Batch, student_logits: Tensor, teacher_signals: Mapping[str, Tensor], ctx: LossContext
    ) -> Tensor:
        """L_attr between the cached (or live) teacher maps and the student's maps of this step."""
        teacher_maps = teacher_signals["attr_map"]
        mask = batch.attention_mask
        if teacher_maps.shape[-1] != mask.shape[-1]:
            raise TrainingError(
                f"teacher attribution maps cover {teacher_maps.shape[-1]} tokens, the batch {mask.shape[-1]}",
                "clear the teacher-signal cache (KDKIT_HOME/teacher-signals) or run with --no-teacher-cache",
            )
        provider = self.provider(ctx)
        targets, weights = self.views(
            student_logits, batch.labels, teacher_signals["logits"], provider, other=self.teacher_provider(ctx)
        )
        if targets.shape[1] != teacher_maps.shape[1]:
            raise TrainingError(
                f"the teacher's cached maps have {teacher_maps.shape[1]} view(s), the student {targets.shape[1]}",
                "clear the teacher-signal cache (KDKIT_HOME/teacher-signals) or run with --no-teacher-cache",
            )
        attributions = provider.attribute(
            ctx.student, batch.inputs, targets, create_graph=True, forward=ctx.student_forward
        )
        student_maps = token_maps(attributions, mask, eps=self.options.eps)
        distance: Distance = self.options.distance
        return map_distance(
            teacher_maps.to(student_maps.dtype),
            student_maps,
            mask,
            distance=distance,
            view_weights=weights,
            token_count=distributed_mean(mask.sum().float()),
        )

    def __call__(
        self, batch: Batch, student_logits: Tensor, teacher_signals: Mapping[str, Tensor], ctx: LossContext
    ) -> dict[str, Tensor]:
        o = self.options
        terms: dict[str, Tensor] = {}
        if o.ablation != "no_ce":
            terms[supervised_term(self.task)] = (1.0 - o.alpha) * task_loss(self.task, student_logits, batch.labels)
        if o.ablation != "no_kd":
            temperature = step_temperature(o.temperature, o.anneal, ctx)
            terms["kd"] = o.alpha * self.kd_term(student_logits, teacher_signals["logits"], temperature)
        if self.uses_attribution:
            terms["attr"] = o.beta * self.attribution_loss(batch, student_logits, teacher_signals, ctx)
        return terms
