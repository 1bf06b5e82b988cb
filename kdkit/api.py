"""The Python API behind the CLI: fine-tune, distil, evaluate (:mod:`kdkit.evaluation`).

from kdkit import api
from kdkit.config import DistillConfig, DataConfig
result = api.distill(DistillConfig(loss="kd", data=DataConfig(task="sst2", data_dir="../shared/data/glue")))
print(result.metrics, result.run_dir)
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
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.trainer_callback import PrinterCallback

import kdkit
from kdkit import model_card, models, provenance, teachers, tracking
from kdkit.checkpoints import CompleteCheckpointCallback, last_complete_checkpoint, train_from
from kdkit.composite import CompositeLoss, build_loss, loss_parts
from kdkit.config import (
    DistillConfig,
    FinetuneConfig,
    RunConfig,
    TrainingConfig,
    build_config,
    deep_merge,
    loss_name,
)
from kdkit.data import DistillationCollator, TaskData, data_files, load_raw, load_task_data
from kdkit.errors import ConfigError
from kdkit.evaluation import by_length, evaluate_splits
from kdkit.evaluation import evaluate as evaluate  # re-exported: part of the API
from kdkit.evaluation import evaluate_dataset as evaluate_dataset
from kdkit.losses import DistillationLoss, LossContext
from kdkit.model_outputs import attention_kernel, check_needs
from kdkit.plugins import PluginManager, get_plugin_manager
from kdkit.progress import quiet_libraries, training_display
from kdkit.runs import (
    BEST_DIR,
    LAST_DIR,
    RUN_FILE,
    RunDirectory,
    check_exists,
    is_main_process,
)
from kdkit.teacher_cache import add_teacher_signals
from kdkit.teachers import default_teacher_dir as default_teacher_dir  # re-exported: part of the API
from kdkit.teachers import ensure_teacher as ensure_teacher
from kdkit.trainer import DistillationTrainer, check_compile, provider_factory, training_arguments


@dataclass
class RunResult:
    """What a finished training run returns.

    Attributes:
        run_dir: the finished run directory (``best/``, ``last/``, ``run.json``).
        metrics: the best model's validation metrics (fractions; MNLI keys are prefixed by split).
        summary: the content of ``run.json``.
    """

    run_dir: Path
    metrics: dict[str, float]
    summary: dict[str, Any] = field(default_factory=dict)


# -- configuration helpers --------------------------------------------------------------------------


def resolve_distill_config(raw: dict[str, Any], plugins: PluginManager | None = None) -> DistillConfig:
    """Validate a distill config dict, applying the loss's ``preset`` beneath the user's own values."""
    plugins = plugins or get_plugin_manager()
    preset = raw.get("preset")
    if preset:
        loss_cls = loss_parts(plugins.loss(str(loss_name(raw.get("loss", "kd")))))[0]  # a composite's: its first
        if preset not in loss_cls.presets:
            known = ", ".join(loss_cls.presets) or "none"
            raise ConfigError(f"loss '{loss_cls.name}' has no preset '{preset}'", f"available presets: {known}")
        task = (raw.get("data") or {}).get("task")
        if not task:
            raise ConfigError(f"--preset {preset} needs a --task", "name the task the preset is for")
        raw = deep_merge(loss_cls.presets[preset](str(task)), raw)
    return build_config(DistillConfig, raw)


def resolve_options(plugins: PluginManager, config: DistillConfig) -> dict[str, BaseModel]:
    """Validate ``config.options`` against each component's options model (unknown names are errors)."""
    resolved: dict[str, BaseModel] = {}
    for name, values in config.options.items():
        options_model = plugins.component_options(name)
        if options_model is None:
            known = ", ".join(sorted([*plugins.losses, *plugins.providers]))
            raise ConfigError(f"unknown component '{name}' in --set/options", f"known components: {known}")
        resolved[name] = build_config(options_model, values or {}, where=f"{name}.")
    for part in loss_parts(plugins.loss(config.loss)):  # each loss of a composite (kdkit.composite)
        resolved.setdefault(part.name, part.Options())
    return resolved


def default_output(task: str, what: str) -> Path:
    """runs/<task>-<what>-<time>; under torchrun the processes could disagree on the time, so there the
    output must be given."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(
            "the default run directory has a timestamp that the torchrun processes would not agree on",
            "pass --output DIR when running under torchrun",
        )
    return Path("runs") / f"{task}-{what}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _console(config: RunConfig, console: Console | None) -> Console:
    return console or Console(stderr=True, quiet=not is_main_process())


# -- the shared training pipeline -------------------------------------------------------------------


def _train(
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
    task = task_data.task
    assert task_data.train is not None
    training = _with_logging_cadence(config.training, len(task_data.train))
    config = config.model_copy(update={"training": training})  # run.json records the cadence used
    first_split = next(iter(task_data.validation))
    args = training_arguments(
        training,
        task,
        str(run_dir.checkpoints),
        first_split=first_split,
        eval_splits=len(task_data.validation),
        group_by_length=config.data.group_by_length,
    )
    with args.main_process_first(local=False, desc="run directory"):
        run_dir.prepare()

    factory = provider_factory(plugins.providers, options)
    ctx = LossContext(task=task, student=student, teacher=teacher, provider_factory=factory)
    loss.prepare(ctx)  # layer maps, trainable modules: before the cache key and the optimiser
    train_dataset = task_data.train
    cache_seconds = 0.0
    cached = False
    if loss.requires_teacher and use_teacher_cache:
        assert teacher is not None
        teacher.to(args.device)  # type: ignore[arg-type]
        start = time.perf_counter()
        with args.main_process_first(local=False, desc="teacher signals"):
            train_dataset = add_teacher_signals(
                train_dataset,
                loss,
                teacher,
                ctx,
                device=args.device,
                pad_token_id=int(tokenizer.pad_token_id or 0),
                batch_size=max(training.eval_batch_size, 1),
                say=lambda line: console.print(f"[yellow]warning:[/] {line}", soft_wrap=True),
                console=console,
            )
        cache_seconds = time.perf_counter() - start
        cached = True

    pad_to = config.data.max_length if config.data.padding == "max_length" else None
    collator = DistillationCollator(
        int(tokenizer.pad_token_id or 0),
        pad_to=pad_to,
        token_signals=sorted(loss.token_signals),
        pad_to_multiple_of=config.data.pad_to_multiple_of,
    )
    validation = {name: by_length(split) for name, split in task_data.validation.items()}
    eval_dataset: Any = validation[first_split] if len(validation) == 1 else validation
    trainer = DistillationTrainer(
        model=student,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        processing_class=tokenizer,
        loss=loss,
        task=task,
        teacher=None if cached and not loss.needs_teacher_outputs else teacher,
        provider_factory=factory,
        term_grad_norm_steps=training.term_grad_norm_steps if training.term_grad_norm_steps else 0,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(CompleteCheckpointCallback())
    tracking.attach(trainer, run_dir.work, run_dir.final.name)
    trainer.add_callback(training_display(console, f"{command} {task.name}", plain=config.quiet))

    checkpoint, resumed_step = _resume_point(config, run_dir, args, console)
    run_dir.training_started = True
    start = time.perf_counter()
    train_output = train_from(trainer, checkpoint)
    train_seconds = time.perf_counter() - start
    timing = {
        "wall_time_s": round(train_seconds, 2),
        "resumed_from_step": resumed_step,
        "cache_seconds": cache_seconds,
        "cached": cached,
        "final_loss": train_output.training_loss,
    }
    return _finish(
        trainer, config, command, task_data, tokenizer, loss, options, collator, run_dir, timing, extra_summary, console
    )


def _with_logging_cadence(training: TrainingConfig, examples: int) -> TrainingConfig:
    """``training`` with ``logging_steps`` resolved for a run over ``examples`` training examples."""
    per_step = training.batch_size * training.gradient_accumulation_steps * int(os.environ.get("WORLD_SIZE", "1"))
    steps = training.max_steps or math.ceil(examples / per_step) * math.ceil(training.epochs)
    return training.model_copy(update={"logging_steps": training.logging_every(steps)})


def _resume_point(config: RunConfig, run_dir: RunDirectory, args: Any, console: Console) -> tuple[Path | None, int]:
    """With ``--resume``: the last complete checkpoint and its step (incomplete ones are reported and removed)."""
    if not config.resume:
        return None, 0
    with args.main_process_first(local=False, desc="checkpoints"):
        checkpoint, step = last_complete_checkpoint(
            run_dir.checkpoints, say=console.print, remove_incomplete=is_main_process()
        )
    console.print(f"resuming from {checkpoint or 'the start (no checkpoint was saved yet)'}")
    return checkpoint, step


def _finish(
    trainer: DistillationTrainer,
    config: RunConfig,
    command: str,
    task_data: TaskData,
    tokenizer: PreTrainedTokenizerBase,
    loss: DistillationLoss,
    options: dict[str, BaseModel],
    collator: DistillationCollator,
    run_dir: RunDirectory,
    timing: dict[str, Any],
    extra_summary: dict[str, Any],
    console: Console,
) -> RunResult:
    """Save ``last/`` and ``best/``, evaluate the best, write run.json and config.yaml, commit the run."""
    task, training, args = task_data.task, config.training, trainer.args
    metrics: dict[str, float] = {}
    summary: dict[str, Any] = {}
    if trainer.is_world_process_zero():
        max_length = config.data.max_length
        models.save_model(trainer.model, tokenizer, task, run_dir.work / LAST_DIR, max_length)  # type: ignore[arg-type]
        best = trainer.state.best_model_checkpoint
        if best:
            best_model = models.load_classifier(best, task, role="best checkpoint")
            trainer.model.load_state_dict(best_model.state_dict())  # type: ignore[union-attr]
        models.save_model(trainer.model, tokenizer, task, run_dir.work / BEST_DIR, max_length)  # type: ignore[arg-type]
        metrics = evaluate_splits(trainer.model, task_data, collator, training.eval_batch_size, args.device)  # type: ignore[arg-type]
        history = [entry for entry in trainer.state.log_history if any(k.startswith("eval_") for k in entry)]
        train_logs = [entry for entry in trainer.state.log_history if "loss" in entry]
        steps = trainer.state.global_step
        # throughput of this process's own steps (a resumed run trained only those in its wall time)
        steps_here = steps - timing["resumed_from_step"]
        examples_seen = steps_here * training.batch_size * training.gradient_accumulation_steps * args.world_size
        seconds = timing["wall_time_s"]
        summary = {
            "kdkit_version": kdkit.__version__,
            "command": command,
            "task": task.to_dict(),
            "loss": loss.name,
            **({"losses": [part.name for part in loss_parts(type(loss))]} if isinstance(loss, CompositeLoss) else {}),
            "options": {name: value.model_dump(mode="json") for name, value in options.items()},
            "config": config.model_dump(mode="json"),
            "metrics": metrics,
            "main_metric": task.main_metric,
            "best_checkpoint": Path(best).name if best else None,
            "history": history,
            "train_log": train_logs,
            "term_grad_norms": trainer.term_grad_norms,
            "train": {
                "wall_time_s": seconds,
                "steps": steps,
                "resumed_from_step": timing["resumed_from_step"],
                "epochs": trainer.state.epoch,
                "examples": len(task_data.train or ()),
                "examples_per_second": round(examples_seen / seconds, 2) if seconds > 0 else None,
                "final_loss": timing["final_loss"],
            },
            "teacher_cache": {"used": timing["cached"], "seconds": round(timing["cache_seconds"], 2)},
            "student_parameters": models.count_parameters(trainer.model),  # type: ignore[arg-type]
            "environment": _environment(args),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **extra_summary,
        }
        run_dir.write_json(RUN_FILE, summary)
        run_dir.write_yaml("config.yaml", config.model_dump(mode="json", exclude={"resume", "overwrite"}))
        model_card.card_for_run(run_dir.work, summary, final=run_dir.final, console=console)
        final = run_dir.commit(keep_checkpoints=training.keep_checkpoints)
    else:
        final = run_dir.final
    trainer.accelerator.wait_for_everyone()
    return RunResult(run_dir=final, metrics=metrics, summary=summary)


def _environment(args: Any) -> dict[str, Any]:
    return {
        "device": str(args.device),
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "world_size": args.world_size,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
    }


# -- commands ----------------------------------------------------------------------------------


def finetune(
    config: FinetuneConfig, *, plugins: PluginManager | None = None, console: Console | None = None
) -> RunResult:
    """Fine-tune a teacher (the ``ce`` loss, no teacher) from ``config.model`` or the embedded default."""
    plugins = plugins or get_plugin_manager()
    console = _console(config, console)
    quiet_libraries()
    given = provenance.given_paths(config.data)
    config = config.model_copy(update={"data": provenance.record_paths(config.data)})
    tracking.check_installed(config.training.report_to)
    base = config.model or models.default_base_model()
    models.check_max_length(base, config.data.max_length, role="base model")
    tokenizer = models.load_tokenizer(base)
    task_data = load_task_data(config.data, tokenizer)
    task = task_data.task
    run_dir = RunDirectory(
        config.output or default_output(task.name, "teacher"), overwrite=config.overwrite, resume=config.resume
    )
    with run_dir.open("finetune", config, data_files(config.data)):
        model = models.load_base_for_task(base, task)
        loss_cls = plugins.loss("ce")
        loss = loss_cls(loss_cls.Options(), task)
        return _train(
            config=config,
            command="finetune",
            task_data=task_data,
            tokenizer=tokenizer,
            student=model,
            loss=loss,
            teacher=None,
            plugins=plugins,
            options={"ce": loss.options},
            use_teacher_cache=False,
            run_dir=run_dir,
            console=console,
            extra_summary={"base_model": base, "data_given": given},
        )


def distill(
    config: DistillConfig, *, plugins: PluginManager | None = None, console: Console | None = None
) -> RunResult:
    """Distil a teacher into a student with the loss plugin ``config.loss``."""
    plugins = plugins or get_plugin_manager()
    console = _console(config, console)
    quiet_libraries()
    given = provenance.given_paths(config.data)
    config = config.model_copy(update={"data": provenance.record_paths(config.data)})
    loss_cls = plugins.loss(config.loss)
    check_needs(loss_cls)
    check_compile(loss_cls, config.training)
    options = resolve_options(plugins, config)
    tracking.check_installed(config.training.report_to)
    load_raw(config.data)  # fail on bad data before a teacher is fine-tuned for it
    if config.teacher:
        check_exists(Path(config.teacher), allow_hub_id=True)
    teachers.check_lengths(config)
    run_dir = RunDirectory(
        config.output or default_output(config.data.task_name, loss_cls.name),
        overwrite=config.overwrite,
        resume=config.resume,
    )
    with run_dir.open("distill", config, data_files(config.data)):
        return _distill_into(run_dir, config, loss_cls, options, plugins, console, given)


def _distill_into(
    run_dir: RunDirectory,
    config: DistillConfig,
    loss_cls: type[DistillationLoss],
    options: dict[str, BaseModel],
    plugins: PluginManager,
    console: Console,
    data_given: dict[str, str],
) -> RunResult:
    teacher_path = (
        ensure_teacher(config, plugins=plugins, console=console)
        if loss_cls.requires_teacher or config.student.layers is not None
        else None
    )
    tokenizer = models.load_tokenizer(teacher_path or str(config.student))
    task_data = load_task_data(config.data, tokenizer)
    task = task_data.task
    attn = attention_kernel(loss_cls, "student")
    teacher = models.load_classifier(teacher_path, task, role="teacher") if teacher_path else None
    if teacher is not None:
        models.freeze(teacher)
        models.check_max_length(str(teacher_path), config.data.max_length, role="teacher")
        if attention_kernel(loss_cls, "teacher"):
            models.set_attention(teacher, "eager")
    if config.student.model is not None:
        models.check_same_vocabulary(tokenizer, models.load_tokenizer(config.student.model))
    student = models.build_student(config.student, teacher, task, attn_implementation=attn)
    if attn is not None:
        models.set_attention(student, attn)
    loss = build_loss(loss_cls, options, task)
    for provider_name in loss.providers_used():
        provider_cls = plugins.provider(provider_name)  # fail early on a missing provider
        options.setdefault(provider_name, provider_cls.Options())  # recorded in run.json
    return _train(
        config=config,
        command="distill",
        task_data=task_data,
        tokenizer=tokenizer,
        student=student,
        loss=loss,
        teacher=teacher if loss.requires_teacher else None,
        plugins=plugins,
        options=options,
        use_teacher_cache=config.teacher_cache,
        run_dir=run_dir,
        console=console,
        extra_summary={
            "teacher": teacher_path,
            "student": str(config.student),
            "teacher_parameters": models.count_parameters(teacher) if teacher is not None else None,
            "data_given": data_given,
        },
    )
