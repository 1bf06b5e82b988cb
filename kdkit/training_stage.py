"""The training stage shared by ``kdkit finetune`` and ``kdkit distill``: train, save, evaluate, record.

:func:`train` takes the prepared pieces (data, tokenizer, student, loss, teacher) and a
:class:`~kdkit.runs.RunDirectory`; it builds transformers' Trainer (:class:`kdkit.trainer.DistillationTrainer`),
optionally precomputes the teacher's signals (:mod:`kdkit.teacher_cache`), trains (resuming from the last
complete checkpoint with ``--resume``), saves ``last/`` and ``best/``, evaluates the best model and writes
``run.json`` (:class:`kdkit.run_summary.RunSummary`, built by the small functions below), ``config.yaml`` and the
model card, then commits the run directory.
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import transformers
from pydantic import BaseModel
from rich.console import Console
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainingArguments
from transformers.trainer_callback import PrinterCallback

import kdkit
from kdkit import model_card, models, tracking
from kdkit.checkpoints import CompleteCheckpointCallback, last_complete_checkpoint, train_from
from kdkit.composite import CompositeLoss, loss_parts
from kdkit.config import RunConfig, TrainingConfig
from kdkit.data import DistillationCollator, TaskData
from kdkit.evaluation import by_length, evaluate_splits
from kdkit.losses import DistillationLoss, LossContext
from kdkit.plugins import PluginManager
from kdkit.progress import training_display
from kdkit.run_summary import Environment, RunSummary, TeacherCacheUse, TrainStats
from kdkit.runs import BEST_DIR, LAST_DIR, RUN_FILE, RunDirectory, is_main_process
from kdkit.teacher_cache import add_teacher_signals
from kdkit.trainer import DistillationTrainer, provider_factory, training_arguments


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


@dataclass
class Timing:
    """What the training itself measured (recorded in ``run.json``'s ``train`` and ``teacher_cache``)."""

    wall_time_s: float
    resumed_from_step: int
    cache_seconds: float
    cached: bool
    final_loss: float | None


def train(
    *,
    config: RunConfig,
    command: str,
    task_data: TaskData,
    tokenizer: PreTrainedTokenizerBase,
    student: PreTrainedModel,
    loss: DistillationLoss,
    teacher: PreTrainedModel | None,
    plugins: PluginManager,
    options: dict[str, BaseModel],
    use_teacher_cache: bool,
    run_dir: RunDirectory,
    console: Console,
    extra_summary: dict[str, Any],
) -> RunResult:
    """Train ``student`` with ``loss`` on ``task_data`` into ``run_dir``; ``extra_summary`` adds the command's
    own fields of :class:`RunSummary` (``base_model``; ``teacher``, ``student``, ``teacher_parameters``)."""
    assert task_data.train is not None
    training = _with_logging_cadence(config.training, len(task_data.train))
    config = config.model_copy(update={"training": training})  # run.json records the cadence used
    args = _arguments(config, task_data, run_dir)
    factory = provider_factory(plugins.providers, options)
    ctx = LossContext(task=task_data.task, student=student, teacher=teacher, provider_factory=factory)
    loss.prepare(ctx)  # layer maps, trainable modules: before the cache key and the optimiser
    train_dataset, cache_seconds = task_data.train, 0.0
    cached = loss.requires_teacher and use_teacher_cache
    if cached:
        assert teacher is not None
        train_dataset, cache_seconds = _cache_teacher_signals(task_data, tokenizer, loss, teacher, ctx, args, console)
    collator = _collator(config, tokenizer, loss)
    validation = {name: by_length(split) for name, split in task_data.validation.items()}
    trainer = DistillationTrainer(
        model=student,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=next(iter(validation.values())) if len(validation) == 1 else validation,
        data_collator=collator,
        processing_class=tokenizer,
        loss=loss,
        task=task_data.task,
        teacher=None if cached and not loss.needs_teacher_outputs else teacher,
        provider_factory=factory,
        term_grad_norm_steps=training.term_grad_norm_steps if training.term_grad_norm_steps else 0,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(CompleteCheckpointCallback())
    tracking.attach(trainer, run_dir.work, run_dir.final.name)
    trainer.add_callback(training_display(console, f"{command} {task_data.task.name}", plain=config.quiet))
    timing = _run(trainer, config, run_dir, cache_seconds, cached, console)
    run = _Run(config, command, task_data, tokenizer, loss, options, run_dir, console, extra_summary)
    return _finish(trainer, run, collator, timing)


def _arguments(config: RunConfig, task_data: TaskData, run_dir: RunDirectory) -> TrainingArguments:
    """The Trainer's arguments (checkpoints in the run directory), and the working directory created."""
    args = training_arguments(
        config.training,
        task_data.task,
        str(run_dir.checkpoints),
        first_split=next(iter(task_data.validation)),
        eval_splits=len(task_data.validation),
        group_by_length=config.data.group_by_length,
    )
    with args.main_process_first(local=False, desc="run directory"):
        run_dir.prepare()
    return args


def _run(
    trainer: DistillationTrainer,
    config: RunConfig,
    run_dir: RunDirectory,
    cache_seconds: float,
    cached: bool,
    console: Console,
) -> Timing:
    """Train (from the last complete checkpoint with ``--resume``); from here on a failed run is kept."""
    checkpoint, resumed_step = _resume_point(config, run_dir, trainer.args, console)
    run_dir.training_started = True
    start = time.perf_counter()
    train_output = train_from(trainer, checkpoint)
    return Timing(
        wall_time_s=round(time.perf_counter() - start, 2),
        resumed_from_step=resumed_step,
        cache_seconds=cache_seconds,
        cached=cached,
        final_loss=train_output.training_loss,
    )


def _cache_teacher_signals(
    task_data: TaskData,
    tokenizer: PreTrainedTokenizerBase,
    loss: DistillationLoss,
    teacher: PreTrainedModel,
    ctx: LossContext,
    args: TrainingArguments,
    console: Console,
) -> tuple[Any, float]:
    """The training set with the teacher's signals added (:mod:`kdkit.teacher_cache`) and the seconds it took."""
    assert task_data.train is not None
    teacher.to(args.device)  # type: ignore[arg-type]
    start = time.perf_counter()
    with args.main_process_first(local=False, desc="teacher signals"):
        train_dataset = add_teacher_signals(
            task_data.train,
            loss,
            teacher,
            ctx,
            device=args.device,
            pad_token_id=int(tokenizer.pad_token_id or 0),
            batch_size=max(args.per_device_eval_batch_size, 1),
            say=lambda line: console.print(f"[yellow]warning:[/] {line}", soft_wrap=True),
            console=console,
        )
    return train_dataset, time.perf_counter() - start


def _collator(config: RunConfig, tokenizer: PreTrainedTokenizerBase, loss: DistillationLoss) -> DistillationCollator:
    """Pads each batch (to ``max_length`` with ``--padding max_length``) and carries the loss's token signals."""
    return DistillationCollator(
        int(tokenizer.pad_token_id or 0),
        pad_to=config.data.max_length if config.data.padding == "max_length" else None,
        token_signals=sorted(loss.token_signals),
        pad_to_multiple_of=config.data.pad_to_multiple_of,
    )


def _with_logging_cadence(training: TrainingConfig, examples: int) -> TrainingConfig:
    """``training`` with ``logging_steps`` resolved for a run over ``examples`` training examples."""
    per_step = training.batch_size * training.gradient_accumulation_steps * int(os.environ.get("WORLD_SIZE", "1"))
    steps = training.max_steps or math.ceil(examples / per_step) * math.ceil(training.epochs)
    return training.model_copy(update={"logging_steps": training.logging_every(steps)})


def _resume_point(
    config: RunConfig, run_dir: RunDirectory, args: TrainingArguments, console: Console
) -> tuple[Path | None, int]:
    """With ``--resume``: the last complete checkpoint and its step (incomplete ones are reported and removed)."""
    if not config.resume:
        return None, 0
    with args.main_process_first(local=False, desc="checkpoints"):
        checkpoint, step = last_complete_checkpoint(
            run_dir.checkpoints, say=console.print, remove_incomplete=is_main_process()
        )
    console.print(f"resuming from {checkpoint or 'the start (no checkpoint was saved yet)'}")
    return checkpoint, step


# -- after training: save, evaluate, record ---------------------------------------------------------------


@dataclass
class _Run:
    """What the stage was given, for the steps after training (``config`` with the logging cadence used)."""

    config: RunConfig
    command: str
    task_data: TaskData
    tokenizer: PreTrainedTokenizerBase
    loss: DistillationLoss
    options: dict[str, BaseModel]
    run_dir: RunDirectory
    console: Console
    extra_summary: dict[str, Any]


def _finish(trainer: DistillationTrainer, run: _Run, collator: DistillationCollator, timing: Timing) -> RunResult:
    """Save ``last/`` and ``best/``, evaluate the best, write run.json and config.yaml, commit the run (the main
    process; the others wait for it)."""
    config, run_dir = run.config, run.run_dir
    if not trainer.is_world_process_zero():
        trainer.accelerator.wait_for_everyone()
        return RunResult(run_dir=run_dir.final, metrics={})
    best = _save_models(trainer, run.tokenizer, run.task_data, config, run_dir)
    model: Any = trainer.model
    metrics = evaluate_splits(model, run.task_data, collator, config.training.eval_batch_size, trainer.args.device)
    record = _summary(trainer, run, best, metrics, timing)
    summary = record.to_json_dict()
    run_dir.write_json(RUN_FILE, summary)
    run_dir.write_yaml("config.yaml", config.model_dump(mode="json", exclude={"resume", "overwrite"}))
    model_card.card_for_run(run_dir.work, summary, final=run_dir.final, console=run.console)
    final = run_dir.commit(keep_checkpoints=config.training.keep_checkpoints)
    trainer.accelerator.wait_for_everyone()
    return RunResult(run_dir=final, metrics=metrics, summary=summary, record=record)


def _summary(
    trainer: DistillationTrainer, run: _Run, best: str | None, metrics: dict[str, float], timing: Timing
) -> RunSummary:
    """``run.json``: what was trained with which options, the best model's metrics, the logs and the timings."""
    task, loss = run.task_data.task, run.loss
    return RunSummary(
        kdkit_version=kdkit.__version__,
        command=run.command,
        task=task.to_dict(),
        loss=loss.name,
        **({"losses": [part.name for part in loss_parts(type(loss))]} if isinstance(loss, CompositeLoss) else {}),
        options={name: value.model_dump(mode="json") for name, value in run.options.items()},
        config=run.config.model_dump(mode="json"),
        metrics=metrics,
        main_metric=task.main_metric,
        best_checkpoint=Path(best).name if best else None,
        **_logs(trainer),
        train=train_stats(trainer, run.config.training, len(run.task_data.train or ()), timing),
        teacher_cache=TeacherCacheUse(used=timing.cached, seconds=round(timing.cache_seconds, 2)),
        student_parameters=models.count_parameters(trainer.model),  # type: ignore[arg-type]
        environment=environment(trainer.args),
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **run.extra_summary,
    )


def _save_models(
    trainer: DistillationTrainer,
    tokenizer: PreTrainedTokenizerBase,
    task_data: TaskData,
    config: RunConfig,
    run_dir: RunDirectory,
) -> str | None:
    """Save ``last/``, load the best checkpoint's weights into the model and save it as ``best/``; returns the
    best checkpoint's path (None: no evaluation chose one, the last model is the best)."""
    task, max_length = task_data.task, config.data.max_length
    models.save_model(trainer.model, tokenizer, task, run_dir.work / LAST_DIR, max_length)  # type: ignore[arg-type]
    best = trainer.state.best_model_checkpoint
    if best:
        best_model = models.load_classifier(best, task, role="best checkpoint")
        trainer.model.load_state_dict(best_model.state_dict())  # type: ignore[union-attr]
    models.save_model(trainer.model, tokenizer, task, run_dir.work / BEST_DIR, max_length)  # type: ignore[arg-type]
    return best


def _logs(trainer: DistillationTrainer) -> dict[str, list[dict[str, Any]]]:
    """``history`` (evaluation entries), ``train_log`` (training entries) and ``term_grad_norms``."""
    log_history = trainer.state.log_history
    return {
        "history": [entry for entry in log_history if any(key.startswith("eval_") for key in entry)],
        "train_log": [entry for entry in log_history if "loss" in entry],
        "term_grad_norms": trainer.term_grad_norms,
    }


def train_stats(trainer: DistillationTrainer, training: TrainingConfig, examples: int, timing: Timing) -> TrainStats:
    """``train`` of run.json; the throughput counts this process's own steps (a resumed run trained only those
    in its wall time): examples/s = (steps - resumed) * batch * accumulation * world size / wall time."""
    steps = trainer.state.global_step
    seen = (steps - timing.resumed_from_step) * training.batch_size * training.gradient_accumulation_steps
    seen *= trainer.args.world_size
    seconds = timing.wall_time_s
    return TrainStats(
        wall_time_s=seconds,
        steps=steps,
        resumed_from_step=timing.resumed_from_step,
        epochs=trainer.state.epoch,
        examples=examples,
        examples_per_second=round(seen / seconds, 2) if seconds > 0 else None,
        final_loss=timing.final_loss,
    )


def environment(args: TrainingArguments) -> Environment:
    """``environment`` of run.json: device, precision, world size and versions."""
    return Environment(
        device=str(args.device),
        precision="bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        world_size=args.world_size,
        torch=torch.__version__,
        transformers=transformers.__version__,
        python=platform.python_version(),
        torch_threads=torch.get_num_threads(),
    )
