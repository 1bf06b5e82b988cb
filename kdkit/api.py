"""The Python API behind the CLI: fine-tune, distil (training: :mod:`kdkit.training_stage`), evaluate
(:mod:`kdkit.evaluation`).

from kdkit import api
from kdkit.config import DistillConfig, DataConfig
result = api.distill(DistillConfig(loss="kd", data=DataConfig(task="sst2", data_dir="../shared/data/glue")))
print(result.metrics, result.run_dir)
"""

from __future__ import annotations

import os
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from rich.console import Console

from kdkit import models, provenance, teachers, tracking
from kdkit.cache_store import home_dir
from kdkit.composite import build_loss, loss_parts
from kdkit.config import (
    DistillConfig,
    FinetuneConfig,
    RunConfig,
    build_config,
    check_finite,
    deep_merge,
    loss_name,
)
from kdkit.data import data_files, load_raw, load_task_data
from kdkit.data_checks import glue_name_warning
from kdkit.errors import ConfigError, KdkitWarning
from kdkit.evaluation import evaluate as evaluate  # re-exported: part of the API
from kdkit.evaluation import evaluate_dataset as evaluate_dataset
from kdkit.losses import DistillationLoss
from kdkit.model_outputs import attention_kernel, check_needs
from kdkit.plugins import PluginManager, get_plugin_manager
from kdkit.progress import quiet_libraries
from kdkit.runs import RunDirectory, check_exists, is_main_process
from kdkit.tasks import TaskSpec
from kdkit.teachers import default_teacher_dir as default_teacher_dir  # re-exported: part of the API
from kdkit.teachers import ensure_teacher as ensure_teacher
from kdkit.trainer import check_compile
from kdkit.training_stage import RunResult as RunResult  # re-exported: part of the API
from kdkit.training_stage import train as _train  # the training stage (kdkit.training_stage)

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
        check_finite(values or {}, name)  # YAML's .inf and .nan
        resolved[name] = build_config(options_model, values or {}, where=f"{name}.")
        check_finite(resolved[name].model_dump(), name)  # "inf" or "nan", which a float field reads as such
    for part in loss_parts(plugins.loss(config.loss)):  # each loss of a composite (kdkit.composite)
        resolved.setdefault(part.name, part.Options())
    return resolved


def check_options_used(
    plugins: PluginManager, config: DistillConfig, options: dict[str, BaseModel], task: TaskSpec
) -> None:
    """Every component given options (``--set NAME.X=V``, ``options.NAME``) must be part of the chosen loss (else
    an error: they would be stored and never used); options of an attribution provider the loss does not use get
    a warning (a preset may set them for a loss whose attribution term is then turned off)."""
    loss_cls = plugins.loss(config.loss)
    parts = [part.name for part in loss_parts(loss_cls)]
    given = list(config.options)
    losses = [name for name in given if name not in parts and name not in plugins.providers]
    if losses:
        raise ConfigError(
            f"options are given for '{losses[0]}' (--set {losses[0]}.OPTION or options.{losses[0]}), which is not "
            f"part of the chosen loss '{config.loss}'",
            f"drop them, or choose that loss (--plugin {losses[0]})",
        )
    providers = [name for name in given if name in plugins.providers and name not in parts]
    if providers:
        used = build_loss(loss_cls, options, task).providers_used()
        unused = [name for name in providers if name not in used]
        if unused:
            uses = ", ".join(used) or "none"
            warnings.warn(
                f"the options of the attribution provider '{unused[0]}' are not used: the loss '{config.loss}' "
                f"does not use it (it uses: {uses})",
                KdkitWarning,
                stacklevel=2,
            )


def default_output(task: str, what: str) -> Path:
    """runs/<task>-<what>-<time>; under torchrun the processes could disagree on the time, so there the
    output must be given."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(
            "the default run directory has a timestamp that the torchrun processes would not agree on",
            "pass --output DIR when running under torchrun",
        )
    return Path("runs") / f"{task}-{what}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


ConfigT = TypeVar("ConfigT", bound=RunConfig)


def _start(
    config: ConfigT, plugins: PluginManager | None, console: Console | None
) -> tuple[PluginManager, Console, ConfigT, dict[str, str]]:
    """What every command starts with: the plugins, a console (quiet on other torchrun processes), quiet
    libraries, and the config with its data paths made absolute (and the paths as given, for run.json)."""
    plugins = plugins or get_plugin_manager()
    console = console or Console(stderr=True, quiet=not is_main_process())
    quiet_libraries()
    named_like_glue = glue_name_warning(config.data)
    if named_like_glue:
        warnings.warn(named_like_glue, KdkitWarning, stacklevel=3)
    given = provenance.given_paths(config.data)
    return plugins, console, config.model_copy(update={"data": provenance.record_paths(config.data)}), given


# -- commands ----------------------------------------------------------------------------------


def finetune(
    config: FinetuneConfig, *, plugins: PluginManager | None = None, console: Console | None = None
) -> RunResult:
    """Fine-tune a teacher (the ``ce`` loss, no teacher) from ``config.model`` or the embedded default."""
    plugins, console, config, given = _start(config, plugins, console)
    tracking.check_installed(config.training.report_to)
    base = config.model or models.default_base_model()
    if config.model:
        check_exists(Path(config.model), allow_hub_id=True, role="base model")
    models.check_max_length(base, config.data.max_length, role="base model")
    tokenizer = models.load_tokenizer(base)
    task_data = load_task_data(config.data, tokenizer)
    task = task_data.task
    try:
        base_config = models.load_config(base)
    except Exception:
        base_config = None  # load_base_for_task reports it
    models.check_token_types(base_config, tokenizer, task, role="base model", name=base)
    run_dir = RunDirectory(
        config.output or default_output(task.name, "teacher"), overwrite=config.overwrite, resume=config.resume
    )
    with run_dir.open("finetune", config, data_files(config.data)):
        model = models.load_base_for_task(base, task, seed=config.training.seed)
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
    plugins, console, config, given = _start(config, plugins, console)
    loss_cls = plugins.loss(config.loss)
    check_needs(loss_cls)
    check_compile(loss_cls, config.training)
    options = resolve_options(plugins, config)
    tracking.check_installed(config.training.report_to)
    task = load_raw(config.data)[0]  # fail on bad data before a teacher is fine-tuned for it
    check_options_used(plugins, config, options, task)
    if config.teacher:
        check_exists(Path(config.teacher), allow_hub_id=True, role="teacher")
        teachers.check_teacher_task(config.teacher, task)
    if config.student.model is not None:
        check_exists(Path(config.student.model), allow_hub_id=True, role="student")
    teachers.check_lengths(config)
    default_teacher = not config.teacher and (loss_cls.requires_teacher or config.student.layers is not None)
    if default_teacher or (config.teacher_cache and loss_cls.requires_teacher):
        home_dir()  # the default teacher and the teacher signals are cached there: it must be writable
    teachers.check_vocabulary(config)
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
        models.check_token_types(teacher.config, tokenizer, task, role="teacher", name=str(teacher_path))
        if attention_kernel(loss_cls, "teacher"):
            models.set_attention(teacher, "eager")
    if config.student.model is not None:
        models.check_same_vocabulary(tokenizer, models.load_tokenizer(config.student.model))
    student = models.build_student(config.student, teacher, task, attn_implementation=attn, seed=config.training.seed)
    models.check_token_types(student.config, tokenizer, task, role="student", name=str(config.student))
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
