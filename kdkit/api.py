"""The Python API behind the CLI: ``finetune``, ``distill`` and ``evaluate``.

Each command validates its options, loads the data once, prepares the models and the loss, and hands them to
the training stage as one :class:`~kdkit.training.job.TrainingJob` (:func:`kdkit.training.stage.train`)::

    from kdkit import api
    from kdkit.config import DataConfig, DistillConfig

    result = api.distill(DistillConfig(loss="kd", data=DataConfig(task="sst2", data_dir="../shared/data/glue")))
    print(result.metrics, result.run_dir)
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import torch
from pydantic import BaseModel
from rich.console import Console
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from kdkit.config import (
    DataConfig,
    DistillConfig,
    FinetuneConfig,
    RunConfig,
    TrainingConfig,
    build_config,
    deep_merge,
    default_base_model,
    loss_name,
)
from kdkit.data.batching import DistillationCollator
from kdkit.data.checks import glue_name_warning
from kdkit.data.loading import RawData, load_raw
from kdkit.data.sources import data_files, data_inputs, given_paths, record_paths, transfer_data_files
from kdkit.data.tasks import TaskSpec
from kdkit.data.tokenizing import load_task_data, tokenize_data
from kdkit.errors import ConfigError, KdkitWarning
from kdkit.losses.base import DistillationLoss
from kdkit.losses.composite import build_loss, loss_parts
from kdkit.models.checks import check_exists, check_same_vocabulary, check_token_types
from kdkit.models.loading import (
    check_max_length,
    count_parameters,
    freeze,
    load_base_for_task,
    load_classifier,
    load_config,
    load_tokenizer,
    quiet_libraries,
    set_attention,
)
from kdkit.models.students import build_student
from kdkit.plugins.manager import PluginManager, get_plugin_manager
from kdkit.plugins.options import check_options_used, provider_factory, resolve_options
from kdkit.records.home import home_dir
from kdkit.records.provenance import of_model
from kdkit.records.runs import Command, RunDirectory, is_main_process, resolve_model_dir
from kdkit.training import teachers, tracking
from kdkit.training.arguments import check_compile, resolve_device
from kdkit.training.evaluation import evaluate_splits
from kdkit.training.examples import DistillInputs, augmented_texts, load_inputs, training_data
from kdkit.training.job import RunResult, TrainingJob
from kdkit.training.precision import autocast, resolve_precision
from kdkit.training.stage import train


@dataclass(frozen=True)
class _Session:
    """What every command starts with: the plugins, a console (quiet on other torchrun processes) and the data
    paths as the user gave them (``run.json``'s ``data_given``)."""

    plugins: PluginManager
    console: Console
    given: dict[str, str]


def _start(config: RunConfig, plugins: PluginManager | None, console: Console | None) -> _Session:
    quiet_libraries()
    named_like_glue = glue_name_warning(config.data)
    if named_like_glue:
        warnings.warn(named_like_glue, KdkitWarning, stacklevel=3)
    console = console or Console(stderr=True, quiet=not is_main_process())
    return _Session(plugins or get_plugin_manager(), console, given_paths(config.data))


ConfigT = TypeVar("ConfigT", bound=RunConfig)


def _recorded(config: ConfigT) -> ConfigT:
    """``config`` with its data paths made absolute (:func:`kdkit.data.sources.record_paths`; a distillation's
    transfer files too)."""
    update: dict[str, Any] = {"data": record_paths(config.data)}
    if isinstance(config, DistillConfig):
        update["transfer_files"] = [str(Path(path).expanduser().absolute()) for path in config.transfer_files]
        if config.soft_labels is not None:
            update["soft_labels"] = Path(config.soft_labels).expanduser().absolute()
    return config.model_copy(update=update)


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


def default_output(task: str, what: str) -> Path:
    """runs/<task>-<what>-<time>; under torchrun the processes could disagree on the time, so there the
    output must be given."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(
            "the default run directory has a timestamp that the torchrun processes would not agree on",
            "pass --output DIR when running under torchrun",
        )
    return Path("runs") / f"{task}-{what}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


# -- finetune ------------------------------------------------------------------------------------------


def finetune(
    config: FinetuneConfig, *, plugins: PluginManager | None = None, console: Console | None = None
) -> RunResult:
    """Fine-tune a teacher (the ``ce`` loss, no teacher) from ``config.model`` or the embedded default."""
    session = _start(config, plugins, console)
    return _finetune(_recorded(config), session)


def _finetune(config: FinetuneConfig, session: _Session, raw: RawData | None = None) -> RunResult:
    """The fine-tune of ``config`` on its data, loaded here unless the run that asks for it (the default teacher's:
    :func:`ensure_teacher`) hands its own over as ``raw``."""
    tracking.check_installed(config.training.report_to)
    base = config.model or default_base_model()
    if config.model:
        check_exists(Path(config.model), allow_hub_id=True, role="base model")
    check_max_length(base, config.data.max_length, role="base model")
    tokenizer = load_tokenizer(base)
    raw = raw if raw is not None else load_raw(config.data)
    task_data = tokenize_data(raw, tokenizer, config.data)
    try:
        base_config = load_config(base)
    except Exception:
        base_config = None  # load_base_for_task reports it
    check_token_types(base_config, tokenizer, raw.task, role="base model", name=base)
    output = config.output or default_output(raw.task.name, "teacher")
    inputs = {"base model": config.model, **data_inputs(config.data)}
    run_dir = RunDirectory(output, overwrite=config.overwrite, resume=config.resume, inputs=inputs)
    with run_dir.open(
        Command.FINETUNE, config, {**data_files(config.data), **weight_files("base model", config.model)}
    ):
        loss_cls = session.plugins.loss("ce")
        loss = loss_cls(loss_cls.Options(), raw.task)
        job = TrainingJob(
            command=Command.FINETUNE,
            config=config,
            data=task_data,
            tokenizer=tokenizer,
            student=load_base_for_task(base, raw.task, seed=config.training.seed),
            loss=loss,
            run_dir=run_dir,
            console=session.console,
            options={"ce": loss.options},
            providers=provider_factory(session.plugins.provider, {}),
            record={"base_model": base, "data_given": session.given},
        )
        return train(job)


# -- distill -------------------------------------------------------------------------------------------


def distill(
    config: DistillConfig, *, plugins: PluginManager | None = None, console: Console | None = None
) -> RunResult:
    """Distil a teacher into a student with the loss plugin ``config.loss``."""
    session = _start(config, plugins, console)
    config = _recorded(config)
    loss_cls = session.plugins.loss(config.loss)
    check_compile(loss_cls, config.training)
    options = resolve_options(session.plugins, config)
    tracking.check_installed(config.training.report_to)
    raw = load_raw(config.data)  # once: bad data fails before a teacher is fine-tuned for it
    augmenter = session.plugins.augmenter(config.augment) if config.augment else None
    inputs = load_inputs(config, loss_cls, raw, augmenter)  # transfer texts, soft labels: checked before any work
    check_options_used(session.plugins, config, options, raw.task)
    _check_models(config, loss_cls, raw.task)
    output = config.output or default_output(config.data.task_name, loss_cls.name)
    read, reused = _distill_inputs(config)
    run_dir = RunDirectory(output, overwrite=config.overwrite, resume=config.resume, inputs=read)
    with run_dir.open(Command.DISTILL, config, reused):
        return train(_distill_job(config, loss_cls, options, inputs, run_dir, session))


def _distill_inputs(config: DistillConfig) -> tuple[dict[str, str | Path | None], dict[str, Path]]:
    """What a distillation reads: ``{role: path}`` never written over (teacher, student, data, transfer files, soft
    labels), and the files compared by content on ``--resume`` (data, transfer files, soft labels, the teacher's
    weights)."""
    extra = transfer_data_files(config.transfer_files)
    if config.soft_labels is not None:
        extra["soft_labels"] = Path(config.soft_labels)
    read: dict[str, str | Path | None] = {"teacher": config.teacher, "student": config.student.model}
    read.update(data_inputs(config.data))
    read.update({name.replace("_", " "): path for name, path in extra.items()})
    reused = {**data_files(config.data), **extra, **weight_files("teacher", config.teacher)}
    return read, reused


def weight_files(role: str, model: str | None) -> dict[str, Path]:
    """``{"<role>/<file>": path}`` of a local model's weight files (a run directory's ``best/``): what ``--resume``
    compares by content (a teacher replaced at the same path would otherwise teach the rest of the run)."""
    if not model or not Path(model).is_dir():
        return {}
    folder = resolve_model_dir(Path(model))
    return {f"{role}/{path.name}": path for path in sorted(folder.glob("*.safetensors"))}


def _needs_teacher(config: DistillConfig, loss_cls: type[DistillationLoss]) -> bool:
    """A teacher is loaded when the loss asks for one or the student copies its layers (``copy:N``); never with
    ``--soft-labels`` (the file is the teacher; ``copy:N`` copies the base model's layers)."""
    return config.soft_labels is None and (loss_cls.needs.teacher or config.student.layers is not None)


def _check_models(config: DistillConfig, loss_cls: type[DistillationLoss], task: TaskSpec) -> None:
    """Before any work: the given teacher and student exist, ``--max-length`` fits, the student has the teacher's
    vocabulary, and ``KDKIT_HOME`` can be written where the default teacher or the teacher signals go."""
    if config.teacher:
        check_exists(Path(config.teacher), allow_hub_id=True, role="teacher")
        teachers.check_teacher_task(config.teacher, task)
    if config.student.model is not None:
        check_exists(Path(config.student.model), allow_hub_id=True, role="student")
    teachers.check_lengths(config)
    default_teacher = not config.teacher and _needs_teacher(config, loss_cls)
    if default_teacher or (config.teacher_cache and loss_cls.needs.teacher):
        home_dir()  # the default teacher and the teacher signals are cached there: it must be writable
    teachers.check_vocabulary(config)


def _distill_job(
    config: DistillConfig,
    loss_cls: type[DistillationLoss],
    options: dict[str, BaseModel],
    inputs: DistillInputs,
    run_dir: RunDirectory,
    session: _Session,
) -> TrainingJob:
    """The distillation's job: the teacher (given, cached or fine-tuned now; none with soft labels), the tokenised
    data (with the transfer texts, unlabelled: :mod:`kdkit.training.examples`), the student and the loss built
    with its options (and those of the providers it uses, recorded in run.json)."""
    needs, raw, soft = loss_cls.needs, inputs.raw, inputs.soft_labels
    teacher_path = None
    if _needs_teacher(config, loss_cls):
        teacher_path = ensure_teacher(config, plugins=session.plugins, console=session.console, data=raw)
    source = teacher_path or (_soft_label_base(config) if soft is not None else str(config.student))
    tokenizer = load_tokenizer(source)
    teacher = _load_teacher(teacher_path, config, tokenizer, raw.task, needs.teacher_attention)
    augmented = None
    if inputs.augmenter is not None:
        augment_options = options.setdefault(inputs.augmenter.name, inputs.augmenter.Options())  # run.json
        augmented = augmented_texts(inputs, augment_options, config, tokenizer, teacher)
    task_data = training_data(inputs, tokenize_data(raw, tokenizer, config.data), tokenizer, config.data, augmented)
    copied = teacher if soft is None or config.student.layers is None else _soft_label_source(config, raw.task)
    student = _build_student(config, copied, tokenizer, raw.task, needs.student_attention)
    loss = build_loss(loss_cls, options, raw.task)
    for provider_name in loss.providers_used():
        provider_cls = session.plugins.provider(provider_name)  # fail early on a missing provider
        options.setdefault(provider_name, provider_cls.Options())  # recorded in run.json
    return TrainingJob(
        command=Command.DISTILL,
        config=config,
        data=task_data,
        tokenizer=tokenizer,
        student=student,
        loss=loss,
        run_dir=run_dir,
        console=session.console,
        teacher=teacher if needs.teacher else None,
        options=options,
        providers=provider_factory(session.plugins.provider, options),
        teacher_cache=config.teacher_cache and soft is None,
        record={
            "teacher": teacher_path,
            "student": str(config.student),
            "teacher_parameters": count_parameters(teacher) if teacher is not None else None,
            "data_given": session.given,
            "examples": inputs.counts(len(augmented or ())),
            **({"soft_labels": soft.record()} if soft is not None else {}),
        },
    )


def _soft_label_base(config: DistillConfig) -> str:
    """With ``--soft-labels``, what ``copy:N`` copies and whose tokenizer reads the data: ``--base-model`` (default:
    the embedded MiniLM), not a fine-tuned teacher."""
    return config.base_model or default_base_model()


def _soft_label_source(config: DistillConfig, task: TaskSpec) -> PreTrainedModel:
    """The base model (a fresh head for the task) whose layers a ``copy:N`` student takes with ``--soft-labels``."""
    return load_base_for_task(_soft_label_base(config), task, seed=config.training.seed)


def _load_teacher(
    path: str | None, config: DistillConfig, tokenizer: PreTrainedTokenizerBase, task: TaskSpec, kernel: str | None
) -> PreTrainedModel | None:
    """The frozen teacher, checked against the task and the data (eager attention when the loss asks)."""
    if path is None:
        return None
    teacher = load_classifier(path, task, role="teacher")
    freeze(teacher)
    check_max_length(path, config.data.max_length, role="teacher")
    check_token_types(teacher.config, tokenizer, task, role="teacher", name=path)
    if kernel is not None:
        set_attention(teacher, kernel)
    return teacher


def _build_student(
    config: DistillConfig,
    teacher: PreTrainedModel | None,
    tokenizer: PreTrainedTokenizerBase,
    task: TaskSpec,
    kernel: str | None,
) -> PreTrainedModel:
    """The student of ``--student`` (``copy:N`` of the teacher, or a model of its vocabulary)."""
    if config.student.model is not None:
        check_same_vocabulary(tokenizer, load_tokenizer(config.student.model))
    student = build_student(config.student, teacher, task, attn_implementation=kernel, seed=config.training.seed)
    check_token_types(student.config, tokenizer, task, role="student", name=str(config.student))
    if kernel is not None:
        set_attention(student, kernel)
    return student


def ensure_teacher(
    config: DistillConfig,
    *,
    plugins: PluginManager | None = None,
    console: Console | None = None,
    data: RawData | None = None,
) -> str:
    """The teacher to distil from: ``config.teacher``, the cached default teacher (verified), or one fine-tuned
    now on ``data`` (the run's raw data, loaded here if not given) and cached (:mod:`kdkit.training.teachers`)."""
    session = _Session(plugins or get_plugin_manager(), console or Console(stderr=True), {})
    if config.teacher:
        return teachers.given_teacher(config.teacher)
    raw = data if data is not None else load_raw(config.data)

    def fine_tune(fine: FinetuneConfig) -> RunResult:
        return _finetune(_recorded(fine), replace(session, given=given_paths(fine.data)), raw)

    return teachers.ensure_teacher(config, raw, fine_tune, session.console)


# -- evaluate ------------------------------------------------------------------------------------------


def evaluate(
    model: str | Path,
    data: DataConfig | None = None,
    *,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 64,
) -> tuple[TaskSpec, dict[str, float]]:
    """Evaluate a saved model (or a run directory's best model) on a task's validation split(s), in ``precision``
    (``auto`` resolves as a run's does: bf16 on CPUs with bf16 units); the data options not given come from what
    the run recorded (:mod:`kdkit.records.provenance`)."""
    quiet_libraries()
    given = data or DataConfig()
    saved = of_model(model, hub_id_ok=given.task is not None or given.is_custom)
    options = saved.data_options(given)
    assert saved.model is not None
    check_max_length(saved.model, options.max_length)
    tokenizer = load_tokenizer(saved.model)
    task_data = load_task_data(options, tokenizer, need_train=False)
    classifier = load_classifier(saved.model, task_data.task)
    check_token_types(classifier.config, tokenizer, task_data.task, name=str(saved.model))
    target = resolve_device(TrainingConfig(device=device))
    collator = DistillationCollator(int(tokenizer.pad_token_id or 0))
    with autocast(resolve_precision(precision, target).name, target):
        return task_data.task, evaluate_splits(classifier, task_data, collator, batch_size, torch.device(target))
