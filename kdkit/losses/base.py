"""The interface a loss plugin implements (:class:`DistillationLoss`), what it asks of the models
(:class:`LossNeeds`), and what the trainer hands it (:class:`Batch`, :class:`LossContext`).

One training step, seen from a loss (the whole step: docs/architecture.md, "One training step")::

    loss.prepare(ctx)                                            # once per run, the models known
    teacher_signals  = loss.teacher_signals(teacher, batch, ctx)  # or read from the on-disk cache
    teacher_signals |= loss.live_teacher_signals(teacher_outputs, batch, ctx)  # needs.teacher_outputs only
    ctx.student_outputs = student(**batch.inputs, ...)           # output_* only for needs.student_outputs
    terms            = loss(batch, ctx.student_outputs.logits, teacher_signals, ctx)
    total            = sum(terms.values())                        # backpropagated; each term logged
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic

from pydantic import BaseModel
from torch import Tensor, nn

from kdkit.attribution.base import AttributionProvider, EmbeddingForward, NoOptions, OptionsT
from kdkit.data.tasks import TaskSpec
from kdkit.errors import PluginError

#: builds the attribution provider of a name with the run's options (:func:`kdkit.plugins.options.provider_factory`)
ProviderFactory = Callable[[str], AttributionProvider]
#: a preset: task name -> {"options": {component: {option: value}}, "training": {field: value}}
PresetFunction = Callable[[str], dict[str, Any]]


#: the extra outputs of a forward pass a loss may ask for (transformers' ``output_<name>`` flags)
MODEL_OUTPUTS = frozenset({"hidden_states", "attentions"})


@dataclass(frozen=True)
class LossNeeds:
    """What a loss asks of the models and the trainer, declared once (``needs = LossNeeds(...)`` on the class), so
    the trainer provides exactly that and nothing more. Needs combine with ``|`` (a composite loss needs what any
    of its parts needs).

    Attributes:
        teacher: a frozen teacher must be given (its signals come from the cache or ``teacher_signals``).
        double_backward: the loss differentiates through gradients of the student (``create_graph``); the
            student then runs eager attention (CPU SDPA kernels have no double backward) and ``--compile`` is
            refused.
        student_embeddings: the trainer captures the student's embedding output in the step's forward
            (``ctx.student_forward``).
        token_signals: names of teacher signals whose last dimension is the sequence (padded with the batch).
        student_outputs: extra outputs of the student's forward of each step, handed to the loss as
            ``ctx.student_outputs``: ``"hidden_states"`` (L_s + 1 tensors (B, L, D_s), the embedding output
            first) and/or ``"attentions"`` (L_s tensors (B, H, L, L); the student then runs eager attention).
        teacher_outputs: the same of a teacher forward run in every step (no grad, never cached), for
            ``live_teacher_signals``.
    """

    teacher: bool = True
    double_backward: bool = False
    student_embeddings: bool = False
    token_signals: AbstractSet[str] = frozenset()
    student_outputs: AbstractSet[str] = frozenset()
    teacher_outputs: AbstractSet[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("token_signals", "student_outputs", "teacher_outputs"):
            object.__setattr__(self, name, frozenset(getattr(self, name)))  # stored frozen: a set is taken too
        for name in ("student_outputs", "teacher_outputs"):
            unknown = sorted(getattr(self, name) - MODEL_OUTPUTS)
            if unknown:
                raise PluginError(
                    f"a loss asks for unknown {name} {unknown}", f"use a subset of {sorted(MODEL_OUTPUTS)}"
                )

    def __or__(self, other: LossNeeds) -> LossNeeds:
        return LossNeeds(
            teacher=self.teacher or other.teacher,
            double_backward=self.double_backward or other.double_backward,
            student_embeddings=self.student_embeddings or other.student_embeddings,
            token_signals=self.token_signals | other.token_signals,
            student_outputs=self.student_outputs | other.student_outputs,
            teacher_outputs=self.teacher_outputs | other.teacher_outputs,
        )

    @property
    def student_attention(self) -> str | None:
        """``"eager"`` when the student must run eager attention: its attention weights are asked for (SDPA
        returns none) or a double backward (CPU SDPA kernels have none); else ``None`` (its default kernel)."""
        return "eager" if "attentions" in self.student_outputs or self.double_backward else None

    @property
    def teacher_attention(self) -> str | None:
        """``"eager"`` when the teacher must run eager attention (its attention weights are asked for)."""
        return "eager" if "attentions" in self.teacher_outputs else None


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
            when the loss's ``needs.student_embeddings`` (else ``None``).
        provider_factory: builds attribution providers by name with the run's options.
        student_outputs: the student's model output of this step (``logits`` (B, C), and the
            ``hidden_states`` / ``attentions`` named in the loss's ``needs.student_outputs``), in the graph; ``None``
            outside a training step.
    """

    task: TaskSpec
    student: nn.Module
    teacher: nn.Module | None = None
    step: int = 0
    epoch: int = 0
    num_epochs: int = 1
    student_forward: EmbeddingForward | None = None
    provider_factory: ProviderFactory | None = field(default=None, repr=False)
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
    #: what the loss asks of the models and the trainer (:class:`LossNeeds`)
    needs: ClassVar[LossNeeds] = LossNeeds()
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

    def token_signals_used(self) -> AbstractSet[str]:
        """The token signals (of ``needs.token_signals``) that ``teacher_signals`` returns with these options;
        the teacher-signal cache expects exactly their columns. Default: all of ``needs.token_signals``."""
        return self.needs.token_signals

    def teacher_signals(self, teacher: nn.Module, batch: Batch, ctx: LossContext) -> dict[str, Tensor]:
        """What the frozen teacher contributes per example; each tensor's first dimension is B.

        Called under ``torch.no_grad()`` (providers may enable grad for their inputs). Deterministic, so
        kdkit computes it once per training example and caches it; signals named in ``needs.token_signals`` have
        the sequence as last dimension and padding positions set to zero. Default: ``{"logits": (B, C)}``.
        """
        return {"logits": teacher(**batch.inputs).logits.float()}

    def live_teacher_signals(self, teacher_outputs: Any, batch: Batch, ctx: LossContext) -> dict[str, Tensor]:
        """Teacher signals computed in every step from a teacher forward that returned ``needs.teacher_outputs``
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
                ``needs.teacher`` is False.
            ctx: task, models, step and attribution providers.
        """
