"""What a training run is given and what it returns.

:class:`TrainingJob` is one run, prepared: the API builds it (``kdkit finetune``, ``kdkit distill``, and the
default teacher's fine-tune) and :func:`kdkit.training.stage.train` takes it; :class:`RunResult` is what the
finished run gives back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from kdkit.config import RunConfig
from kdkit.data.tokenizing import TaskData
from kdkit.losses.base import DistillationLoss, ProviderFactory
from kdkit.records.run_summary import RunSummary
from kdkit.records.runs import Command, RunDirectory


@dataclass(frozen=True)
class TrainingJob:
    """One training run, prepared: what is trained, with which loss, on which data, into which directory.

    Attributes:
        command: :attr:`Command.FINETUNE` (a teacher: the task loss alone) or :attr:`Command.DISTILL`.
        config: the run's options (``run.json``'s ``config``).
        data: the tokenised splits.
        tokenizer: the tokenizer that made them (saved with the models).
        student: the model trained (the teacher itself in a fine-tune).
        loss: the loss, built with its options.
        run_dir: the run directory, opened (:meth:`kdkit.records.runs.RunDirectory.open`).
        console: where the progress goes.
        teacher: the frozen teacher the loss asks for, else ``None``.
        options: the validated options of the loss's parts and of the providers they use (``run.json``).
        providers: builds those attribution providers by name (``ctx.provider``); ``None`` when none is used.
        teacher_cache: compute the teacher's signals once and cache them on disk (else in every step).
        record: the command's own fields of ``run.json`` (``base_model``; ``teacher``, ``student``, ...).
    """

    command: Command
    config: RunConfig
    data: TaskData
    tokenizer: PreTrainedTokenizerBase
    student: PreTrainedModel
    loss: DistillationLoss
    run_dir: RunDirectory
    console: Console
    teacher: PreTrainedModel | None = None
    options: dict[str, BaseModel] = field(default_factory=dict)
    providers: ProviderFactory | None = None
    teacher_cache: bool = False
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def caches_teacher_signals(self) -> bool:
        """Whether the teacher's signals are computed once, before training, and read from the cache."""
        return self.loss.needs.teacher and self.teacher_cache


@dataclass
class RunResult:
    """What a finished training run returns.

    Attributes:
        run_dir: the finished run directory (``best/``, ``last/``, ``run.json``).
        metrics: the best model's validation metrics (fractions; MNLI keys are prefixed by split).
        summary: the content of ``run.json`` (``record.to_json_dict()``; empty on other torchrun processes).
        record: ``run.json`` as its model (None on other torchrun processes).
    """

    run_dir: Path
    metrics: dict[str, float]
    summary: dict[str, Any] = field(default_factory=dict)
    record: RunSummary | None = None
