"""Composite losses: the terms of several loss plugins in one run (``--plugin adkd --plugin hidden``).

``kdkit distill --plugin adkd --plugin hidden`` (or ``loss: [adkd, hidden]`` / ``loss: adkd+hidden`` in a config
file) minimises the sum of the terms of every loss named, each weighted by its own options
(``--set hidden.weight=...``). The trainer sees one :class:`~kdkit.losses.DistillationLoss`, a
:class:`CompositeLoss` named ``adkd+hidden``, whose needs are the union of its parts' needs.

Rules:

- the **first** loss is the primary one: its presets are the run's (``--preset paper`` is AD-KD's), and only
  it keeps the supervised term (``ce``, or ``mse`` for regression). The task loss of every later loss is
  dropped, so it is counted once, with the primary loss's weight;
- any other term name returned by two losses is an error (``kd`` and ``adkd`` both return ``kd``: pick one);
- teacher signals are shared by name (``logits`` is the teacher's logits for every loss); a loss whose
  ``teacher_signal_key()`` equals an earlier one's computes nothing more; live signals must not clash;
- a loss may be named once.

A single loss is not wrapped: ``--plugin kd`` is exactly the ``kd`` loss (its run name, cache key and
``run.json`` are unchanged).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from enum import Enum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, create_model
from torch import Tensor, nn

from kdkit.config import LOSS_SEPARATOR, split_loss_names
from kdkit.data.tasks import TaskSpec
from kdkit.errors import ConfigError, TrainingError
from kdkit.losses.base import Batch, DistillationLoss, LossContext
from kdkit.losses.formulas import supervised_term


class CompositeLoss(DistillationLoss):
    """The sum of the terms of several losses (see the module docstring); built by :func:`composite_class`.

    Its ``Options`` has one section per part (``Options(adkd=ADKDOptions(...), hidden=HiddenOptions(...))``).
    """

    #: the losses combined, the primary one first
    part_classes: ClassVar[tuple[type[DistillationLoss], ...]] = ()

    def __init__(self, options: BaseModel, task: TaskSpec) -> None:
        super().__init__(options, task)
        self.parts = [cls(getattr(options, cls.name), task) for cls in self.part_classes]

    def prepare(self, ctx: LossContext) -> None:
        for part in self.parts:
            part.prepare(ctx)

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {f"{part.name}:{key}": module for part in self.parts for key, module in part.trainable_modules().items()}

    def providers_used(self) -> list[str]:
        return list(dict.fromkeys(name for part in self.parts for name in part.providers_used()))

    def token_signals_used(self) -> AbstractSet[str]:
        return frozenset(name for part in self._signal_parts() for name in part.token_signals_used())

    def _signal_parts(self) -> list[DistillationLoss]:
        """The parts whose cacheable signals are computed: with a teacher, each key once."""
        keys: dict[str, DistillationLoss] = {}
        for part in self.parts:
            if part.needs.teacher:
                keys.setdefault(part.teacher_signal_key(), part)
        return list(keys.values())

    def teacher_signal_key(self) -> str:
        return LOSS_SEPARATOR.join(part.teacher_signal_key() for part in self._signal_parts())

    def teacher_signals(self, teacher: nn.Module, batch: Batch, ctx: LossContext) -> dict[str, Tensor]:
        signals: dict[str, Tensor] = {}
        for part in self._signal_parts():
            for name, value in part.teacher_signals(teacher, batch, ctx).items():
                signals.setdefault(name, value)  # same name, same signal (logits)
        return signals

    def live_teacher_signals(self, teacher_outputs: Any, batch: Batch, ctx: LossContext) -> dict[str, Tensor]:
        signals: dict[str, Tensor] = {}
        owners: dict[str, str] = {}
        for part in self.parts:
            if not part.needs.teacher_outputs:
                continue
            for name, value in part.live_teacher_signals(teacher_outputs, batch, ctx).items():
                _claim(signals, owners, part.name, name, value, _Clash.LIVE_SIGNAL)
        return signals

    def __call__(
        self, batch: Batch, student_logits: Tensor, teacher_signals: Mapping[str, Tensor], ctx: LossContext
    ) -> dict[str, Tensor]:
        """The terms of every part; the supervised term of the primary part only; no name twice."""
        supervised = supervised_term(self.task)
        terms: dict[str, Tensor] = {}
        owners: dict[str, str] = {}
        for index, part in enumerate(self.parts):
            for name, value in part(batch, student_logits, teacher_signals, ctx).items():
                if index > 0 and name == supervised:
                    continue  # the task loss is the primary loss's
                _claim(terms, owners, part.name, name, value, _Clash.TERM)
        return terms


class _Clash(Enum):
    """What two parts may not both produce under one name: what they did, and the fix."""

    LIVE_SIGNAL = ("produce the live teacher signal", "rename the signal in one of the plugins")
    TERM = ("return a term", "combine losses whose terms differ (for example kd or adkd, not both)")

    def __init__(self, what: str, fix: str) -> None:
        self.what = what
        self.fix = fix


def _claim(
    merged: dict[str, Tensor], owners: dict[str, str], part: str, name: str, value: Tensor, clash: _Clash
) -> None:
    """``merged[name] = value`` for loss ``part``, with a :class:`TrainingError` when another part has ``name``."""
    if name in merged:
        raise TrainingError(f"losses '{owners[name]}' and '{part}' both {clash.what} '{name}'", clash.fix)
    owners[name] = part
    merged[name] = value


def _options_model(parts: tuple[type[DistillationLoss], ...]) -> type[BaseModel]:
    fields: dict[str, Any] = {
        cls.name: (cls.Options, Field(default_factory=cls.Options, description=f"options of '{cls.name}'"))
        for cls in parts
    }
    return create_model("CompositeOptions", __config__=ConfigDict(extra="forbid"), **fields)


@functools.cache
def composite_class(parts: tuple[type[DistillationLoss], ...]) -> type[CompositeLoss]:
    """The :class:`CompositeLoss` subclass of ``parts`` (the primary loss first), its needs the union of theirs."""
    if len(parts) < 2:
        raise ConfigError("a composite loss needs two losses or more", "name them as --plugin A --plugin B")
    split_loss_names(LOSS_SEPARATOR.join(cls.name for cls in parts))  # no loss twice
    attributes: dict[str, Any] = {
        "__module__": __name__,
        "name": LOSS_SEPARATOR.join(cls.name for cls in parts),
        "part_classes": parts,
        "Options": _options_model(parts),
        "description": " + ".join(cls.name for cls in parts),
        "needs": functools.reduce(operator.or_, (cls.needs for cls in parts)),
        "presets": parts[0].presets,
    }
    return type("CompositeLoss_" + "_".join(cls.__name__ for cls in parts), (CompositeLoss,), attributes)


def loss_parts(loss_cls: type[DistillationLoss]) -> tuple[type[DistillationLoss], ...]:
    """The losses a loss class combines: its parts, or itself."""
    if issubclass(loss_cls, CompositeLoss):
        return loss_cls.part_classes
    return (loss_cls,)


def build_loss(loss_cls: type[DistillationLoss], options: Mapping[str, BaseModel], task: TaskSpec) -> DistillationLoss:
    """The loss of a run, from the validated options of each component (``{name: options}``)."""
    parts = loss_parts(loss_cls)
    if len(parts) == 1:
        return loss_cls(options.get(loss_cls.name) or loss_cls.Options(), task)
    sections = {cls.name: options.get(cls.name) or cls.Options() for cls in parts}
    return loss_cls(loss_cls.Options(**sections), task)
