"""Distillation losses: the interface a loss plugin implements, and what the trainer hands it.

One training step, seen from a loss (see docs/architecture.md)::

    loss.prepare(ctx)                                           # once per run, the models known
    batch            = Batch(inputs, labels)                    # inputs: (B, L) tensors
    teacher_signals  = loss.teacher_signals(teacher, batch, ctx) # or read from the on-disk cache
    teacher_outputs  = teacher(**batch.inputs, output_hidden_states=...)  # only if needs_teacher_outputs
    teacher_signals |= loss.live_teacher_signals(teacher_outputs, batch, ctx)
    ctx.student_outputs = student(**batch.inputs, ...)          # output_* only for needs_student_outputs
    terms            = loss(batch, ctx.student_outputs.logits, teacher_signals, ctx)
    total            = sum(terms.values())                       # backpropagated; each term logged

What a loss needs from the models is declared, so the trainer asks for nothing more: ``needs_student_outputs``
and ``needs_teacher_outputs`` name the extra outputs of the forward passes ("hidden_states", "attentions"; see
:mod:`kdkit.model_outputs`). Teacher signals come in two kinds: ``teacher_signals`` are small per example
(logits, attribution maps) and cached on disk once; ``live_teacher_signals`` are computed from a teacher
forward in every step (per-layer hidden states and attentions are too large to cache: docs/plugins.md).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic

import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import Tensor, nn

from kdkit.attribution import AttributionProvider, EmbeddingForward, NoOptions, OptionsT
from kdkit.tasks import TaskSpec

#: a preset: task name -> {"options": {component: {option: value}}, "training": {field: value}}
PresetFunction = Callable[[str], dict[str, Any]]


@dataclass
class Batch:
    """A training batch.

    Attributes:
        inputs: model inputs, each (B, L): ``input_ids``, ``attention_mask`` and, for BERT-like models,
            ``token_type_ids``.
        labels: (B,) class ids (long), or (B,) targets (float) for regression.
    """

    inputs: dict[str, Tensor]
    labels: Tensor

    @property
    def attention_mask(self) -> Tensor:
        """(B, L): 1 for real tokens, 0 for padding."""
        return self.inputs["attention_mask"]

    @property
    def size(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class LossContext:
    """What a loss may use besides the batch and the models' outputs.

    Attributes:
        task: the task being distilled.
        student: the student model (unwrapped from any DDP wrapper).
        teacher: the frozen teacher in eval mode, or ``None`` when every teacher signal comes from the
            cache (or the loss needs no teacher).
        step: the optimiser step (0-based).
        epoch: the epoch of this step (0-based; Trainer's progress, restored by ``--resume``).
        num_epochs: the run's epochs, rounded up (Trainer's count; 1 outside training).
        student_forward: the student's forward of this step with its embedding output in the graph,
            when the loss sets ``captures_student_embeddings`` (else ``None``).
        provider_factory: builds attribution providers by name with the run's options.
        student_outputs: the student's model output of this step (``logits`` (B, C), and the
            ``hidden_states`` / ``attentions`` named in the loss's ``needs_student_outputs``), in the graph; ``None``
            outside a training step.
    """

    task: TaskSpec
    student: nn.Module
    teacher: nn.Module | None = None
    step: int = 0
    epoch: int = 0
    num_epochs: int = 1
    student_forward: EmbeddingForward | None = None
    provider_factory: Callable[[str], AttributionProvider] | None = field(default=None, repr=False)
    student_outputs: Any = field(default=None, repr=False)

    def provider(self, name: str) -> AttributionProvider:
        """The attribution provider ``name``, built with the options the user set for it."""
        if self.provider_factory is None:
            raise RuntimeError("this LossContext has no attribution providers")
        return self.provider_factory(name)


class DistillationLoss(abc.ABC, Generic[OptionsT]):
    """Base class of distillation losses contributed through :func:`kdkit.hookspecs.kdkit_losses`.

    A loss is built once per run with its validated options and the task: ``Loss(Loss.Options(...), task)``;
    ``class Loss(DistillationLoss[LossOptions])`` with ``Options = LossOptions`` types ``self.options`` as
    ``LossOptions``. Subclasses implement ``__call__`` and may override the methods with a default (``prepare``,
    ``trainable_modules``, ``providers_used``, ``teacher_signals``, ``live_teacher_signals``,
    ``teacher_signal_key``: docs/plugins.md lists them).
    """

    #: the name users select (``kdkit distill --plugin NAME``) and the ``--set NAME.option`` prefix
    name: ClassVar[str]
    #: pydantic model of the options
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: one line for ``kdkit plugins``
    description: ClassVar[str] = ""
    #: the trainer must provide a frozen teacher (its signals come from the cache or ``teacher_signals``)
    requires_teacher: ClassVar[bool] = True
    #: the loss differentiates through gradients of the student (create_graph); the trainer then runs the
    #: student with eager attention, since CPU SDPA kernels have no double backward
    needs_double_backward: ClassVar[bool] = False
    #: the trainer captures the student's embedding output in the step's forward (``ctx.student_forward``)
    captures_student_embeddings: ClassVar[bool] = False
    #: names of teacher signals whose last dimension is the sequence (padded with the batch)
    token_signals: ClassVar[frozenset[str]] = frozenset()
    #: extra outputs of the student's forward of the step, handed to the loss as ``ctx.student_outputs``:
    #: "hidden_states" (L_s + 1 tensors (B, L, D_s), the embedding output first) and/or "attentions" (L_s
    #: tensors (B, H, L, L); the student then runs eager attention)
    needs_student_outputs: ClassVar[frozenset[str]] = frozenset()
    #: the same of a teacher forward run in every step (no grad, never cached), for ``live_teacher_signals``
    needs_teacher_outputs: ClassVar[frozenset[str]] = frozenset()
    #: named presets (``--preset NAME``)
    presets: ClassVar[Mapping[str, PresetFunction]] = {}

    def __init__(self, options: OptionsT, task: TaskSpec) -> None:
        self.options: OptionsT = options
        self.task = task

    def prepare(self, ctx: LossContext) -> None:
        """Called once per run, when the models exist (``ctx.student``, ``ctx.teacher``, ``ctx.provider``) and
        before the teacher-signal cache and the optimiser: resolve layer maps, build ``trainable_modules``."""
        return None

    def trainable_modules(self) -> dict[str, nn.Module]:
        """Modules the loss trains along with the student (a projection between hidden sizes, say), built in
        ``prepare``: kdkit optimises them with the student, saves them in checkpoints (``--resume`` restores
        them) and never with the student. Default: none."""
        return {}

    def providers_used(self) -> list[str]:
        """Names of the attribution providers this loss will ask ``ctx.provider`` for."""
        return []

    def teacher_signals(self, teacher: nn.Module, batch: Batch, ctx: LossContext) -> dict[str, Tensor]:
        """What the frozen teacher contributes per example; each tensor's first dimension is B.

        Called under ``torch.no_grad()`` (providers may enable grad for their inputs). Deterministic, so
        kdkit computes it once per training example and caches it; signals named in ``token_signals`` have
        the sequence as last dimension and padding positions set to zero. Default: ``{"logits": (B, C)}``.
        """
        return {"logits": teacher(**batch.inputs).logits.float()}

    def live_teacher_signals(self, teacher_outputs: Any, batch: Batch, ctx: LossContext) -> dict[str, Tensor]:
        """Teacher signals computed in every step from a teacher forward that returned ``needs_teacher_outputs``
        (e.g. ``teacher_outputs.hidden_states``), under ``torch.no_grad()``; never cached (too large: per-layer
        states of a whole data set). Merged into ``teacher_signals`` for ``__call__``. Default: none."""
        return {}

    def teacher_signal_key(self) -> str:
        """Everything ``teacher_signals`` depends on besides the teacher, the data and the options of the
        providers in ``providers_used()`` (kdkit adds their ``cache_key()``): part of the cache key."""
        return "logits"

    @abc.abstractmethod
    def __call__(
        self,
        batch: Batch,
        student_logits: Tensor,
        teacher_signals: Mapping[str, Tensor],
        ctx: LossContext,
    ) -> dict[str, Tensor]:
        """Named, already-weighted scalar loss terms; the trainer minimises their sum.

        Args:
            batch: the batch (inputs (B, L), labels (B,)).
            student_logits: (B, C) student outputs (C = 1 for regression).
            teacher_signals: the teacher's signals for this batch (see ``teacher_signals``); empty when
                ``requires_teacher`` is False.
            ctx: task, models, step and attribution providers.
        """


def supervised_term(task: TaskSpec) -> str:
    """The name of the supervised term of a task's losses: ``mse`` for regression, else ``ce``."""
    return "mse" if task.is_regression else "ce"


def task_loss(task: TaskSpec, logits: Tensor, labels: Tensor) -> Tensor:
    """The supervised loss: cross-entropy over (B, C) logits, or MSE for regression (C = 1)."""
    if task.is_regression:
        return F.mse_loss(logits.float().reshape(-1), labels.float().reshape(-1))
    return F.cross_entropy(logits.float(), labels.long())


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
