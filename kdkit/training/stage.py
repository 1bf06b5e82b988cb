"""The training stage shared by ``kdkit finetune`` and ``kdkit distill``: train, save, evaluate, record.

:func:`train` takes a prepared :class:`~kdkit.training.job.TrainingJob` (data, tokenizer, student, loss, teacher,
an opened :class:`~kdkit.records.runs.RunDirectory`); it prepares the loss, builds transformers' Trainer
(:class:`~kdkit.training.trainer.DistillationTrainer`), optionally precomputes the teacher's signals
(:mod:`kdkit.training.teacher_cache`), trains (resuming from the last complete checkpoint with ``--resume``),
saves ``last/`` and ``best/``, evaluates the best model and writes ``run.json``
(:class:`~kdkit.records.run_summary.RunSummary`, built by the small functions below), ``config.yaml`` and the
model card, then commits the run directory.
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import transformers
from rich.console import Console
from transformers import TrainingArguments
from transformers.trainer_callback import PrinterCallback

import kdkit
from kdkit.config import RunConfig, TrainingConfig
from kdkit.data.batching import DistillationCollator
from kdkit.data.tokenizing import TaskData
from kdkit.losses.base import LossContext
from kdkit.losses.composite import CompositeLoss, loss_parts
from kdkit.models.loading import count_parameters, load_classifier
from kdkit.models.saving import save_model
from kdkit.records import model_card
from kdkit.records.run_summary import Environment, RunSummary, TeacherCacheUse, TrainStats
from kdkit.records.runs import BEST_DIR, LAST_DIR, RUN_FILE, RunDirectory, is_main_process
from kdkit.training import tracking
from kdkit.training.arguments import training_arguments
from kdkit.training.checkpoints import CompleteCheckpointCallback, last_complete_checkpoint, train_from
from kdkit.training.evaluation import by_length, evaluate_splits
from kdkit.training.job import RunResult, TrainingJob
from kdkit.training.precision import autocast, cpu_bf16_features, resolve_precision
from kdkit.training.progress import training_display
from kdkit.training.teacher_cache import add_teacher_signals
from kdkit.training.trainer import DistillationTrainer


@dataclass
class Timing:
    """What the training itself measured (recorded in ``run.json``'s ``train`` and ``teacher_cache``)."""

    wall_time_s: float
    resumed_from_step: int
    cache_seconds: float
    cached: bool
    final_loss: float | None


def train(job: TrainingJob) -> RunResult:
    """Train ``job.student`` with ``job.loss`` on ``job.data`` into ``job.run_dir``; save, evaluate and record it."""
    data = job.data
    assert data.train is not None
    training = _with_logging_cadence(job.config.training, len(data.train))
    job = replace(job, config=job.config.model_copy(update={"training": training}))  # run.json: the cadence used
    args = _arguments(job.config, data, job.run_dir)
    ctx = LossContext(task=data.task, student=job.student, teacher=job.teacher, provider_factory=job.providers)
    job.loss.prepare(ctx)  # layer maps, trainable modules: before the cache key and the optimiser
    train_dataset, cache_seconds = data.train, 0.0
    if job.caches_teacher_signals:
        train_dataset, cache_seconds = _cache_teacher_signals(job, ctx, args)
    collator = _collator(job)
    validation = {name: by_length(split) for name, split in data.validation.items()}
    live_teacher = not job.caches_teacher_signals or bool(job.loss.needs.teacher_outputs)
    trainer = DistillationTrainer(
        model=job.student,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=next(iter(validation.values())) if len(validation) == 1 else validation,
        data_collator=collator,
        processing_class=job.tokenizer,
        loss=job.loss,
        context=replace(ctx, teacher=job.teacher if live_teacher else None),
        term_grad_norm_steps=training.term_grad_norm_steps if training.term_grad_norm_steps else 0,
        transfer_ratio=getattr(job.config, "transfer_ratio", None),
    )
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(CompleteCheckpointCallback())
    tracking.attach(trainer, job.run_dir.work, job.run_dir.final.name)
    trainer.add_callback(training_display(job.console, f"{job.command} {data.task.name}", plain=job.config.quiet))
    timing = _run(trainer, job, cache_seconds)
    return _finish(trainer, job, collator, timing)


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


def _run(trainer: DistillationTrainer, job: TrainingJob, cache_seconds: float) -> Timing:
    """Train (from the last complete checkpoint with ``--resume``); from here on a failed run is kept."""
    checkpoint, resumed_step = _resume_point(job.config, job.run_dir, trainer.args, job.console)
    job.run_dir.training_started = True
    start = time.perf_counter()
    train_output = train_from(trainer, checkpoint)
    return Timing(
        wall_time_s=round(time.perf_counter() - start, 2),
        resumed_from_step=resumed_step,
        cache_seconds=cache_seconds,
        cached=job.caches_teacher_signals,
        final_loss=train_output.training_loss,
    )


def _cache_teacher_signals(job: TrainingJob, ctx: LossContext, args: TrainingArguments) -> tuple[Any, float]:
    """The training set with the teacher's signals added (:mod:`kdkit.training.teacher_cache`) and the seconds it
    took."""
    teacher, console = job.teacher, job.console
    assert job.data.train is not None and teacher is not None
    teacher.to(args.device)  # type: ignore[arg-type]
    start = time.perf_counter()
    with args.main_process_first(local=False, desc="teacher signals"):
        train_dataset = add_teacher_signals(
            job.data.train,
            job.loss,
            ctx,
            device=args.device,
            pad_token_id=int(job.tokenizer.pad_token_id or 0),
            batch_size=max(args.per_device_eval_batch_size, 1),
            precision=run_precision(args),
            console=console,
        )
    return train_dataset, time.perf_counter() - start


def _collator(job: TrainingJob) -> DistillationCollator:
    """Pads each batch (to ``max_length`` with ``--padding max_length``) and carries the loss's token signals."""
    data = job.config.data
    return DistillationCollator(
        int(job.tokenizer.pad_token_id or 0),
        pad_to=data.max_length if data.padding == "max_length" else None,
        token_signals=sorted(job.loss.token_signals_used()),
        pad_to_multiple_of=data.pad_to_multiple_of,
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


def _finish(
    trainer: DistillationTrainer, job: TrainingJob, collator: DistillationCollator, timing: Timing
) -> RunResult:
    """Save ``last/`` and ``best/``, evaluate the best, write run.json and config.yaml, commit the run (the main
    process; the others wait for it)."""
    config, run_dir = job.config, job.run_dir
    if not trainer.is_world_process_zero():
        trainer.accelerator.wait_for_everyone()
        return RunResult(run_dir=run_dir.final, metrics={})
    best = _save_models(trainer, job)
    model: Any = trainer.model
    with autocast(run_precision(trainer.args), trainer.args.device):  # the precision the run was evaluated in
        metrics = evaluate_splits(model, job.data, collator, config.training.eval_batch_size, trainer.args.device)
    record = _summary(trainer, job, best, metrics, timing)
    summary = record.to_json_dict()
    run_dir.write_json(RUN_FILE, summary)
    run_dir.write_yaml("config.yaml", config.model_dump(mode="json", exclude={"resume", "overwrite"}))
    model_card.card_for_run(run_dir.work, summary, final=run_dir.final, console=job.console)
    final = run_dir.commit(keep_checkpoints=config.training.keep_checkpoints)
    trainer.accelerator.wait_for_everyone()
    return RunResult(run_dir=final, metrics=metrics, summary=summary, record=record)


def _summary(
    trainer: DistillationTrainer, job: TrainingJob, best: str | None, metrics: dict[str, float], timing: Timing
) -> RunSummary:
    """``run.json``: what was trained with which options, the best model's metrics, the logs and the timings."""
    task, loss = job.data.task, job.loss
    return RunSummary(
        kdkit_version=kdkit.__version__,
        command=job.command.value,
        task=task.to_dict(),
        loss=loss.name,
        **({"losses": [part.name for part in loss_parts(type(loss))]} if isinstance(loss, CompositeLoss) else {}),
        options={name: value.model_dump(mode="json") for name, value in job.options.items()},
        config=job.config.model_dump(mode="json"),
        metrics=metrics,
        main_metric=task.main_metric,
        best_checkpoint=Path(best).name if best else None,
        **_logs(trainer),
        train=train_stats(trainer, job.config.training, len(job.data.train or ()), timing),
        teacher_cache=TeacherCacheUse(used=timing.cached, seconds=round(timing.cache_seconds, 2)),
        student_parameters=count_parameters(trainer.model),  # type: ignore[arg-type]
        environment=environment(
            trainer.args, resolve_precision(job.config.training.precision, trainer.args.device.type).reason
        ),
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **job.record,
    )


def _save_models(trainer: DistillationTrainer, job: TrainingJob) -> str | None:
    """Save ``last/``, load the best checkpoint's weights into the model and save it as ``best/``; returns the
    best checkpoint's path (None: no evaluation chose one, the last model is the best)."""
    task, max_length, work = job.data.task, job.config.data.max_length, job.run_dir.work
    save_model(trainer.model, job.tokenizer, task, work / LAST_DIR, max_length)  # type: ignore[arg-type]
    best = trainer.state.best_model_checkpoint
    if best:
        best_model = load_classifier(best, task, role="best checkpoint")
        trainer.model.load_state_dict(best_model.state_dict())  # type: ignore[union-attr]
    save_model(trainer.model, job.tokenizer, task, work / BEST_DIR, max_length)  # type: ignore[arg-type]
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


def run_precision(args: TrainingArguments) -> str:
    """The precision the Trainer's arguments train in: ``bf16``, ``fp16`` or ``fp32``."""
    return "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"


def environment(args: TrainingArguments, precision_reason: str | None = None) -> Environment:
    """``environment`` of run.json: device, precision (and why), the CPU's bf16 units, world size and versions."""
    return Environment(
        device=str(args.device),
        precision=run_precision(args),
        precision_reason=precision_reason,
        cpu_bf16_features=cpu_bf16_features(),
        world_size=args.world_size,
        torch=torch.__version__,
        transformers=transformers.__version__,
        python=platform.python_version(),
        torch_threads=torch.get_num_threads(),
    )
