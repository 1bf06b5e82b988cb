"""The ``kdkit`` command line: a thin Typer layer over :mod:`kdkit.api`.

Every command builds a pydantic config (defaults < ``--preset`` < ``--config FILE`` < flags) and calls the
API. A :class:`~kdkit.errors.KdkitError` is printed as one line (``error: problem: fix``) with exit status 2.

Importing this module does not import torch (the plugin host and the API are imported inside the commands), so
``kdkit predict`` runs where only onnxruntime, tokenizers and numpy are installed besides the CLI's own needs.
"""

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

import kdkit
from kdkit.config import describe_fields, parse_set_options, read_config_file, type_name
from kdkit.errors import KdkitError

if TYPE_CHECKING:
    from kdkit.plugins import PluginManager

app = typer.Typer(
    name="kdkit",
    help="Knowledge distillation for transformer classifiers: fine-tune, distil, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])

DATA = "Data"
TRAIN = "Training"
RUN = "Run"

# -- shared options --------------------------------------------------------------------------------

TaskOpt = Annotated[
    str | None,
    typer.Option("--task", "-t", help="GLUE task (see 'kdkit tasks') or a name for custom data.", rich_help_panel=DATA),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(help="Hub-layout GLUE folder (else KDKIT_GLUE_DIR, else the hub).", rich_help_panel=DATA),
]
TrainFileOpt = Annotated[
    Path | None, typer.Option(help="Custom training data: CSV, TSV, JSON or JSONL.", rich_help_panel=DATA)
]
ValidationFileOpt = Annotated[Path | None, typer.Option(help="Custom validation data.", rich_help_panel=DATA)]
TextColumnsOpt = Annotated[
    str | None, typer.Option(help="Text column(s) of custom data: a or a,b.", rich_help_panel=DATA)
]
LabelColumnOpt = Annotated[
    str | None, typer.Option(help="Label column of custom data \\[default: label].", rich_help_panel=DATA)
]
LabelNamesOpt = Annotated[
    str | None, typer.Option(help="The custom task's labels in id order: a,b,c.", rich_help_panel=DATA)
]
MaxLengthOpt = Annotated[
    int | None, typer.Option(help="Truncate to this many tokens \\[default: 128].", rich_help_panel=DATA)
]
MaxTrainOpt = Annotated[int | None, typer.Option(help="Use only the first N training examples.", rich_help_panel=DATA)]
MaxEvalOpt = Annotated[int | None, typer.Option(help="Use only the first N validation examples.", rich_help_panel=DATA)]
PaddingOpt = Annotated[
    str | None, typer.Option(help="dynamic (per batch) or max_length \\[default: dynamic].", rich_help_panel=DATA)
]
GroupOpt = Annotated[
    bool | None,
    typer.Option(
        "--group-by-length/--no-group-by-length",
        help="Batch examples of similar length together \\[default: off].",
        rich_help_panel=DATA,
    ),
]
HoldoutOpt = Annotated[
    float | None,
    typer.Option(
        help="Evaluate on this held-out share of the training set instead of the dev set (for tuning).",
        rich_help_panel=DATA,
    ),
]

EpochsOpt = Annotated[float | None, typer.Option(help="Training epochs \\[default: 3].", rich_help_panel=TRAIN)]
MaxStepsOpt = Annotated[int | None, typer.Option(help="Stop after N optimiser steps.", rich_help_panel=TRAIN)]
BatchOpt = Annotated[int | None, typer.Option(help="Batch size per device \\[default: 32].", rich_help_panel=TRAIN)]
EvalBatchOpt = Annotated[int | None, typer.Option(help="Evaluation batch size \\[default: 64].", rich_help_panel=TRAIN)]
LrOpt = Annotated[
    float | None,
    typer.Option("--learning-rate", "--lr", help="Peak learning rate \\[default: 5e-5].", rich_help_panel=TRAIN),
]
SeedOpt = Annotated[int | None, typer.Option(help="Random seed \\[default: 42].", rich_help_panel=TRAIN)]
PrecisionOpt = Annotated[
    str | None, typer.Option(help="auto, fp32, bf16 or fp16 \\[default: auto].", rich_help_panel=TRAIN)
]
DeviceOpt = Annotated[str | None, typer.Option(help="auto, cpu or cuda \\[default: auto].", rich_help_panel=TRAIN)]
WarmupOpt = Annotated[
    float | None, typer.Option(help="Warm-up fraction of the steps \\[default: 0.1].", rich_help_panel=TRAIN)
]
GradNormOpt = Annotated[
    float | None, typer.Option(help="Gradient clipping norm \\[default: 1.0].", rich_help_panel=TRAIN)
]
LoggingOpt = Annotated[int | None, typer.Option(help="Log every N steps \\[default: 50].", rich_help_panel=TRAIN)]
EvalStepsOpt = Annotated[
    int | None, typer.Option(help="Evaluate every N steps \\[default: each epoch].", rich_help_panel=TRAIN)
]

OutputOpt = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Run directory \\[default: runs/<task>-<what>-<time>].", rich_help_panel=RUN),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML, TOML or JSON config; flags override it.", rich_help_panel=RUN),
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Replace an existing run directory.", rich_help_panel=RUN)
]
ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Continue the unfinished run in <output>.partial.", rich_help_panel=RUN)
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Plain log lines instead of the live display.", rich_help_panel=RUN)
]

_DATA_FLAGS = (
    "task",
    "data_dir",
    "train_file",
    "validation_file",
    "text_columns",
    "label_column",
    "label_names",
    "max_length",
    "max_train_samples",
    "max_eval_samples",
    "padding",
    "group_by_length",
    "holdout_fraction",
)
_TRAIN_FLAGS = (
    "epochs",
    "max_steps",
    "batch_size",
    "eval_batch_size",
    "learning_rate",
    "seed",
    "precision",
    "device",
    "warmup_ratio",
    "max_grad_norm",
    "logging_steps",
    "eval_steps",
)


def _overrides(values: dict[str, Any]) -> dict[str, Any]:
    """Flags that were given (not None) as a nested config dict."""
    result: dict[str, Any] = {"data": {}, "training": {}}
    for key, value in values.items():
        if value is None:
            continue
        if key in _DATA_FLAGS:
            result["data"][key] = str(value) if isinstance(value, Path) else value
        elif key in _TRAIN_FLAGS:
            result["training"][key] = value
        else:
            result[key] = str(value) if isinstance(value, Path) else value
    return result


def _raw_config(config_file: Path | None, flags: dict[str, Any]) -> dict[str, Any]:
    from kdkit.config import deep_merge

    base = read_config_file(config_file) if config_file else {}
    return deep_merge(base, _overrides(flags))


def handle_errors(fn: F) -> F:
    """Print KdkitErrors as one line and exit 2; Ctrl-C exits 130 and says the run can be resumed."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KdkitError as exc:
            err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted:[/] the unfinished run is kept; continue it with --resume")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _manager() -> "PluginManager":
    from kdkit import plugins as plugin_host

    return plugin_host.get_plugin_manager()


def _percent(value: float) -> str:
    return f"{100 * value:.2f}"


def _print_metrics(title: str, metrics: dict[str, float]) -> None:
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value (%)", justify="right")
    for key, value in metrics.items():
        table.add_row(key, _percent(value) if key.split("/")[-1] != "mse" else f"{value:.4f}")
    out.print(table)


# -- commands --------------------------------------------------------------------------------------


def _version(value: bool) -> None:
    if value:
        out.print(f"kdkit {kdkit.__version__}")
        raise typer.Exit()


#: commands that need neither the plugin host nor torch (the callback skips their set-up)
_LIGHT_COMMANDS = frozenset({"predict"})


@app.callback()
def main_callback(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    disable_plugin: Annotated[
        list[str] | None,
        typer.Option("--disable-plugin", help="Block a plugin by name (repeatable); also KDKIT_DISABLE_PLUGINS=a,b."),
    ] = None,
    enable_plugin: Annotated[
        list[str] | None,
        typer.Option(
            "--enable-plugin",
            help="Load an entry point or module even when KDKIT_DISABLE_PLUGIN_AUTOLOAD is set (repeatable).",
        ),
    ] = None,
) -> None:
    """Knowledge distillation for transformer classifiers."""
    if ctx.invoked_subcommand in _LIGHT_COMMANDS:
        return
    from kdkit import plugins as plugin_host
    from kdkit.progress import quiet_libraries

    quiet_libraries()
    plugin_host.set_plugin_manager(plugin_host.PluginManager(disable=disable_plugin or (), enable=enable_plugin or ()))


@app.command()
@handle_errors
def finetune(
    task: TaskOpt = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Base model id or path \\[default: embedded all-MiniLM-L6-v2].")
    ] = None,
    output: OutputOpt = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    train_file: TrainFileOpt = None,
    validation_file: ValidationFileOpt = None,
    text_columns: TextColumnsOpt = None,
    label_column: LabelColumnOpt = None,
    label_names: LabelNamesOpt = None,
    max_length: MaxLengthOpt = None,
    max_train_samples: MaxTrainOpt = None,
    max_eval_samples: MaxEvalOpt = None,
    padding: PaddingOpt = None,
    group_by_length: GroupOpt = None,
    holdout_fraction: HoldoutOpt = None,
    epochs: EpochsOpt = None,
    max_steps: MaxStepsOpt = None,
    batch_size: BatchOpt = None,
    eval_batch_size: EvalBatchOpt = None,
    learning_rate: LrOpt = None,
    seed: SeedOpt = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = None,
    warmup_ratio: WarmupOpt = None,
    max_grad_norm: GradNormOpt = None,
    logging_steps: LoggingOpt = None,
    eval_steps: EvalStepsOpt = None,
    overwrite: OverwriteOpt = False,
    resume: ResumeOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune a teacher on a task (the task loss alone)."""
    flags = dict(locals())
    from kdkit import api
    from kdkit.config import FinetuneConfig, build_config

    flags.pop("config")
    for key in ("overwrite", "resume", "quiet"):
        flags[key] = flags[key] or None
    cfg = build_config(FinetuneConfig, _raw_config(config, flags))
    result = api.finetune(cfg, plugins=_manager(), console=err)
    _print_metrics(f"{result.summary['task']['name']} validation (best checkpoint)", result.metrics)
    out.print(f"teacher saved to {result.run_dir}")


@app.command()
@handle_errors
def distill(
    plugin: Annotated[
        list[str] | None,
        typer.Option(
            "--plugin",
            "-p",
            help="Loss plugin: kd, ce, adkd ... (see 'kdkit plugins') \\[default: kd]. Repeat it to sum the terms of "
            "several: --plugin adkd --plugin hidden (the first one's supervised term and presets count).",
        ),
    ] = None,
    task: TaskOpt = None,
    teacher: Annotated[
        str | None,
        typer.Option(help="Fine-tuned teacher (run dir, model dir or hub id) \\[default: cached, or fine-tuned now]."),
    ] = None,
    student: Annotated[
        str | None, typer.Option(help="copy:N (N teacher layers) or a model id/path \\[default: copy:3].")
    ] = None,
    base_model: Annotated[
        str | None, typer.Option(help="Base model of the default teacher \\[default: embedded all-MiniLM-L6-v2].")
    ] = None,
    preset: Annotated[str | None, typer.Option(help="A named preset of the loss, e.g. 'paper'.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Plugin option NAME.OPTION=VALUE (repeatable), e.g. kd.temperature=2."),
    ] = None,
    teacher_cache: Annotated[
        bool | None,
        typer.Option("--teacher-cache/--no-teacher-cache", help="Cache teacher signals on disk \\[default: on]."),
    ] = None,
    output: OutputOpt = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    train_file: TrainFileOpt = None,
    validation_file: ValidationFileOpt = None,
    text_columns: TextColumnsOpt = None,
    label_column: LabelColumnOpt = None,
    label_names: LabelNamesOpt = None,
    max_length: MaxLengthOpt = None,
    max_train_samples: MaxTrainOpt = None,
    max_eval_samples: MaxEvalOpt = None,
    padding: PaddingOpt = None,
    group_by_length: GroupOpt = None,
    holdout_fraction: HoldoutOpt = None,
    epochs: EpochsOpt = None,
    max_steps: MaxStepsOpt = None,
    batch_size: BatchOpt = None,
    eval_batch_size: EvalBatchOpt = None,
    learning_rate: LrOpt = None,
    seed: SeedOpt = None,
    precision: PrecisionOpt = None,
    device: DeviceOpt = None,
    warmup_ratio: WarmupOpt = None,
    max_grad_norm: GradNormOpt = None,
    logging_steps: LoggingOpt = None,
    eval_steps: EvalStepsOpt = None,
    overwrite: OverwriteOpt = False,
    resume: ResumeOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Distil a teacher into a smaller student with a loss plugin."""
    flags = dict(locals())
    from kdkit import api
    from kdkit.config import deep_merge

    flags.pop("config")
    set_options = parse_set_options(flags.pop("set_") or [])
    plugins_named = flags.pop("plugin") or []
    flags["loss"] = "+".join(plugins_named) or None  # one --plugin: its name, as before
    for key in ("overwrite", "resume", "quiet"):
        flags[key] = flags[key] or None
    raw = _raw_config(config, flags)
    if set_options:
        raw = deep_merge(raw, {"options": set_options})
    manager = _manager()
    cfg = api.resolve_distill_config(raw, manager)
    result = api.distill(cfg, plugins=manager, console=err)
    _print_metrics(f"{result.summary['task']['name']} validation, student (best checkpoint)", result.metrics)
    out.print(f"student saved to {result.run_dir}")


@app.command()
@handle_errors
def evaluate(
    model: Annotated[str, typer.Argument(help="Run directory (uses its best/ model), model directory or hub id.")],
    task: TaskOpt = None,
    data_dir: DataDirOpt = None,
    validation_file: ValidationFileOpt = None,
    text_columns: TextColumnsOpt = None,
    label_column: LabelColumnOpt = None,
    label_names: LabelNamesOpt = None,
    max_length: MaxLengthOpt = None,
    max_eval_samples: MaxEvalOpt = None,
    batch_size: Annotated[int, typer.Option(help="Evaluation batch size.")] = 64,
    device: DeviceOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Evaluate a model on a task's validation set(s)."""
    flags = {k: v for k, v in locals().items() if k in _DATA_FLAGS and v is not None}
    from kdkit import api
    from kdkit.config import DataConfig, build_config

    data = build_config(DataConfig, {k: str(v) if isinstance(v, Path) else v for k, v in flags.items()})
    task_spec, metrics = api.evaluate(model, data, device=device or "auto", batch_size=batch_size)
    if as_json:
        out.print_json(json.dumps({"task": task_spec.name, "metrics": metrics}))
    else:
        _print_metrics(f"{task_spec.name}: {model}", metrics)


def _options_text(options_model: Any) -> str:
    return describe_fields(options_model)


@app.command()
@handle_errors
def plugins(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List installed plugins, where each came from, what it provides, and failures."""
    manager = _manager()
    rows = []
    for info in manager.plugins():
        for kind, components in (("loss", info.losses), ("attribution provider", info.providers)):
            for component in components:
                entry: dict[str, Any] = {
                    "plugin": info.name,
                    "source": info.source,
                    "kind": kind,
                    "name": component.name,
                    "description": component.description,
                    "options": {
                        name: {
                            "type": type_name(field.annotation),
                            "default": field.get_default(call_default_factory=True),
                            "description": field.description or "",
                        }
                        for name, field in component.Options.model_fields.items()
                    },
                }
                if kind == "attribution provider":
                    entry["differentiable"] = bool(getattr(component, "differentiable", False))
                else:
                    entry["presets"] = list(getattr(component, "presets", {}))
                rows.append(entry)
        if not info.losses and not info.providers:
            rows.append({"plugin": info.name, "source": info.source, "kind": "-", "name": "-", "options": {}})
    failures = [{"plugin": f.name, "source": f.source, "error": f.error} for f in manager.failures]
    disabled = sorted(manager.disabled)
    if as_json:
        listing = {"components": rows, "failures": failures, "disabled": disabled, "autoload": manager.autoload}
        out.print_json(json.dumps(listing, default=str))
        return
    table = Table(title="kdkit plugins", show_lines=True)
    for column in ("plugin", "source", "kind", "name", "options (type, default)"):
        table.add_column(column, overflow="fold")
    for row in rows:
        options = "\n".join(f"{k}: {v['type']} = {v['default']!r}" for k, v in row["options"].items()) or "-"
        extra = []
        if row.get("differentiable"):
            extra.append("differentiable")
        if row.get("presets"):
            extra.append("presets: " + ", ".join(row["presets"]))
        name = row["name"] + (f"\n({'; '.join(extra)})" if extra else "")
        table.add_row(row["plugin"], row["source"], row["kind"], name, options)
    out.print(table)
    for failure in failures:
        out.print(f"[red]failed:[/] {failure['plugin']} ({failure['source']}): {failure['error']}", soft_wrap=True)
    from kdkit.plugins import ENV_DISABLE_AUTOLOAD, ENV_DISABLE_PLUGINS

    if disabled:
        out.print(f"disabled: {', '.join(disabled)} (--disable-plugin / {ENV_DISABLE_PLUGINS})")
    if not manager.autoload:
        out.print(
            f"entry-point autoloading is disabled ({ENV_DISABLE_AUTOLOAD}); "
            "only plugins named with --enable-plugin or KDKIT_PLUGINS are loaded"
        )


@app.command()
@handle_errors
def tasks(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the built-in tasks: text fields, labels and metrics."""
    from kdkit.tasks import GLUE_TASKS

    if as_json:
        out.print_json(json.dumps({name: spec.to_dict() for name, spec in GLUE_TASKS.items()}))
        return
    table = Table(title="GLUE tasks (custom data: --train-file/--validation-file)")
    for column in ("task", "text fields", "labels", "metrics", "description"):
        table.add_column(column)
    for spec in GLUE_TASKS.values():
        labels = ", ".join(spec.label_names) if spec.label_names else "regression (1 output)"
        table.add_row(spec.name, ", ".join(spec.text_fields), labels, ", ".join(spec.metrics), spec.description)
    out.print(table)


# -- export and predict ------------------------------------------------------------------------------

EXPORT = "Export"
VALIDATION = "Validation data"


def _mb(size: int | None) -> str:
    return f"{size / 1e6:.1f} MB" if size else "-"


def _print_export(manifest: dict[str, Any], directory: Path) -> None:
    parity = manifest["parity"]
    table = Table(title=f"parity with PyTorch (max |Δlogit|, tolerance {parity['tolerance']:g})")
    for column in ("case", "shape", "max |Δ|"):
        table.add_column(column, justify="right" if column != "case" else "left")
    for case in parity["cases"]:
        table.add_row(case["case"], f"{case['batch']}x{case['length']}", f"{case['max_abs_diff']:.2e}")
    table.add_row("validation set, via tokenizers + onnxruntime", "-", f"{parity['validation_max_abs_diff']:.2e}")
    out.print(table)
    evaluation = manifest["evaluation"]
    engines = [e for e in ("pytorch", "onnx_fp32", "onnx_int8") if e in evaluation["metrics"]]
    titles = {"pytorch": "PyTorch", "onnx_fp32": "ONNX fp32", "onnx_int8": "ONNX int8"}
    examples = ", ".join(f"{name} {count}" for name, count in evaluation["splits"].items())
    table = Table(title=f"{manifest['task']['name']} validation ({examples} examples)")
    table.add_column("")
    for engine in engines:
        table.add_column(titles[engine], justify="right")
    for key in evaluation["metrics"]["pytorch"]:
        values = [evaluation["metrics"][e][key] for e in engines]
        table.add_row(
            f"{key} (%)" if key.split("/")[-1] != "mse" else key,
            *(_percent(v) if key.split("/")[-1] != "mse" else f"{v:.4f}" for v in values),
        )
    sizes = manifest.get("sizes", {})
    table.add_row("file size", *(_mb(sizes.get({"pytorch": "pytorch"}.get(e, e.split("_")[-1]))) for e in engines))
    out.print(table)


@app.command()
@handle_errors
def export(
    model: Annotated[Path, typer.Argument(help="Run directory (its best/ student) or a saved model directory.")],
    onnx: Annotated[
        bool, typer.Option("--onnx", help="Export to ONNX (the only format so far).", rich_help_panel=EXPORT)
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Export folder \\[default: MODEL/onnx].", rich_help_panel=EXPORT),
    ] = None,
    opset: Annotated[
        int | None,
        typer.Option(help="ONNX opset \\[default: 20 with dynamo, 17 with torchscript].", rich_help_panel=EXPORT),
    ] = None,
    exporter: Annotated[
        str,
        typer.Option(help="dynamo (torch.export) or torchscript (the legacy tracer).", rich_help_panel=EXPORT),
    ] = "dynamo",
    quantize: Annotated[
        str | None,
        typer.Option(help="Also write model.int8.onnx: int8 (dynamic quantisation).", rich_help_panel=EXPORT),
    ] = None,
    max_length: Annotated[
        int | None,
        typer.Option(
            help="Longest input in tokens; longer texts are truncated \\[default: the training max length].",
            rich_help_panel=EXPORT,
        ),
    ] = None,
    tolerance: Annotated[
        float,
        typer.Option(help="Largest |Δlogit| accepted between ONNX fp32 and PyTorch.", rich_help_panel=EXPORT),
    ] = 1e-4,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing export folder.", rich_help_panel=EXPORT)
    ] = False,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            "-t",
            help="Task of the validation data \\[default: the model's].",
            rich_help_panel=VALIDATION,
        ),
    ] = None,
    data_dir: DataDirOpt = None,
    validation_file: Annotated[
        Path | None,
        typer.Option(help="Validation data of a model trained on custom data.", rich_help_panel=VALIDATION),
    ] = None,
    text_columns: TextColumnsOpt = None,
    label_column: LabelColumnOpt = None,
    label_names: LabelNamesOpt = None,
    max_eval_samples: MaxEvalOpt = None,
    batch_size: Annotated[int, typer.Option(help="Evaluation batch size.", rich_help_panel=VALIDATION)] = 32,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Export a student to ONNX, validated against PyTorch on the task's validation data; optionally int8."""
    flags = {
        k: v
        for k, v in locals().items()
        if k
        in (
            "task",
            "data_dir",
            "validation_file",
            "text_columns",
            "label_column",
            "label_names",
            "max_eval_samples",
        )
        and v is not None
    }
    from kdkit.config import DataConfig, build_config
    from kdkit.errors import ConfigError
    from kdkit.export import export_onnx

    if not onnx:
        raise ConfigError("no export format given", "pass --onnx (the only format so far)")
    if exporter not in ("dynamo", "torchscript"):
        raise ConfigError(f"unknown exporter '{exporter}'", "use --exporter dynamo or --exporter torchscript")
    if quantize not in (None, "int8"):
        raise ConfigError(f"unknown quantisation '{quantize}'", "use --quantize int8")
    data = build_config(DataConfig, {k: str(v) if isinstance(v, Path) else v for k, v in flags.items()})
    result = export_onnx(
        model,
        output,
        data=data,
        exporter=exporter,  # type: ignore[arg-type]
        opset=opset,
        quantize=quantize,  # type: ignore[arg-type]
        max_length=max_length,
        tolerance=tolerance,
        batch_size=batch_size,
        overwrite=overwrite,
        log=lambda line: err.print(line, soft_wrap=True),
    )
    if as_json:
        out.print_json(json.dumps({"directory": str(result.directory), **result.manifest}))
    else:
        _print_export(result.manifest, result.directory)
    for note in result.warnings:
        err.print(f"[yellow]warning:[/] {note}", soft_wrap=True)
    if not as_json:
        out.print(f"exported to {result.directory}")
        out.print(f'try: kdkit predict {result.directory} "some text"')


def _read_texts(path: Path, columns: list[str], *, explicit: bool) -> tuple[list[str], list[str] | None]:
    """The text column(s) of a CSV/TSV or JSONL file: (texts, second texts or None). Unless the columns were
    given (``explicit``), a single-text task falls back to a column named ``text``."""
    from kdkit.errors import DataError

    suffix = path.suffix.lower()
    if not path.is_file():
        raise DataError(f"file {path} does not exist", "check the path given to --file")
    rows: list[dict[str, Any]] = []
    try:
        if suffix in (".csv", ".tsv"):
            import csv

            with path.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ","))
        elif suffix in (".jsonl", ".json"):
            with path.open(encoding="utf-8") as handle:
                rows = [json.loads(line) for line in handle if line.strip()]
        else:
            raise DataError(f"unsupported file {path}", "use a .csv, .tsv or .jsonl file")
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"cannot read {path} ({type(exc).__name__}: {str(exc)[:120]})", "check the file") from None
    if not rows:
        raise DataError(f"{path} has no rows", "give a file with a header (CSV) and at least one text")
    if not all(isinstance(row, dict) for row in rows):
        raise DataError(f"{path} is not a list of JSON objects", 'write one object per line: {"text": "..."}')
    available = list(rows[0])
    if not explicit and len(columns) == 1 and columns[0] not in available and "text" in available:
        columns = ["text"]
    missing = [column for column in columns if column not in available]
    if missing:
        raise DataError(
            f"{path} has no column {', '.join(missing)} (columns: {', '.join(map(str, available))})",
            "name the text column(s) with --text-column a[,b]",
        )
    values: list[list[str]] = [[], []]
    for number, row in enumerate(rows, start=1):
        for slot, column in enumerate(columns):
            text = row.get(column)
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"row {number} of {path} has no text in column '{column}'", "fill in or remove the row")
            values[slot].append(text)
    return values[0], (values[1] if len(columns) == 2 else None)


@app.command()
@handle_errors
def predict(
    model: Annotated[
        Path, typer.Argument(help="Export folder from 'kdkit export --onnx' (or a run directory with onnx/).")
    ],
    text: Annotated[str | None, typer.Argument(help="The text to classify.")] = None,
    text_pair: Annotated[str | None, typer.Argument(help="Its second text, for sentence-pair tasks.")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Classify the texts of a CSV, TSV or JSONL file.")
    ] = None,
    text_column: Annotated[
        str | None,
        typer.Option(help="Text column(s) of --file: a or a,b \\[default: the task's text fields, else 'text']."),
    ] = None,
    precision: Annotated[str, typer.Option(help="auto (int8 when exported, else fp32), fp32 or int8.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Texts per onnxruntime call.")] = 32,
    threads: Annotated[
        int | None, typer.Option(help="onnxruntime intra-op threads \\[default: onnxruntime's].")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the predictions as JSON.")] = False,
) -> None:
    """Classify texts with an exported model: onnxruntime and tokenizers only, no torch."""
    import warnings

    from kdkit.errors import ConfigError, DataError
    from kdkit.inference import OnnxClassifier, TruncationWarning

    if precision not in ("auto", "fp32", "int8"):
        raise ConfigError(f"unknown precision '{precision}'", "use auto, fp32 or int8")
    if file is not None and text is not None:
        raise ConfigError("both a text and --file given", "give one or the other")
    if file is None and text is None:
        raise DataError("nothing to classify", 'give a text (kdkit predict DIR "text") or --file')
    classifier = OnnxClassifier(model, precision=precision, threads=threads)  # type: ignore[arg-type]
    if file is not None:
        columns = text_column.split(",") if text_column else list(classifier.text_fields)
        columns = [c.strip() for c in columns if c.strip()]
        texts, pairs = _read_texts(file, columns, explicit=bool(text_column))
    else:
        assert text is not None
        texts, pairs = [text], ([text_pair] if text_pair is not None else None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncationWarning)
        results = classifier.predict(texts, pairs, batch_size=batch_size)
    for warning in caught:
        if issubclass(warning.category, TruncationWarning):
            err.print(f"[yellow]warning:[/] {warning.message} (max length from the export manifest)", soft_wrap=True)
    if as_json:
        rows = [
            {"text": t, **({"text_pair": pairs[i]} if pairs else {}), **r}
            for i, (t, r) in enumerate(zip(texts, results, strict=True))
        ]
        out.print_json(
            json.dumps({"model": str(classifier.model_file), "precision": classifier.precision, "predictions": rows})
        )
        return
    regression = classifier.label_names is None
    table = Table(title=f"{classifier.task_name} ({classifier.precision}, {classifier.model_file.name})")
    table.add_column("#", justify="right")
    table.add_column("text", overflow="fold")
    table.add_column("value" if regression else "label")
    if not regression:
        table.add_column("score", justify="right")
    for number, (t, r) in enumerate(zip(texts, results, strict=True), start=1):
        shown = t if len(t) <= 80 else t[:77] + "..."
        if pairs:
            shown += f" | {pairs[number - 1][:40]}"
        if regression:
            table.add_row(str(number), shown, f"{r['score']:.4f}")
        else:
            table.add_row(str(number), shown, str(r["label"]), f"{r['score']:.4f}" + (" *" if r["truncated"] else ""))
    if any(r["truncated"] for r in results):
        table.caption = f"* truncated to {classifier.max_length} tokens"
    out.print(table)


@app.command()
@handle_errors
def explain(
    model: Annotated[str, typer.Argument(help="Run directory (its best/ model) or model directory.")],
    text: Annotated[str, typer.Argument(help="The text to explain.")],
    text_pair: Annotated[str | None, typer.Argument(help="Its second text, for sentence-pair tasks.")] = None,
    task: TaskOpt = None,
    provider: Annotated[str, typer.Option(help="Attribution provider (see 'kdkit plugins').")] = "ig",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Provider option NAME.OPTION=VALUE, e.g. ig.steps=32 (repeatable)."),
    ] = None,
    views: Annotated[str, typer.Option(help="pred (the predicted class) or all (one map per class).")] = "pred",
    html: Annotated[Path | None, typer.Option("--html", help="Also write the heatmap as an HTML page.")] = None,
    svg: Annotated[Path | None, typer.Option("--svg", help="Also write the heatmap as an SVG image.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print tokens and maps as JSON.")] = False,
) -> None:
    """Show which tokens a prediction rests on: a token heatmap of attributions at the embedding output."""
    from dataclasses import asdict

    from kdkit.config import build_config
    from kdkit.errors import ConfigError
    from kdkit.explain import explain_batch, get_provider, load_for_explain, render_terminal, write_html, write_svg
    from kdkit.tasks import get_task

    if views not in ("pred", "all"):
        raise ConfigError(f"unknown views '{views}'", "use pred or all")
    manager = _manager()
    options = parse_set_options(set_ or [])
    unknown = [name for name in options if name != provider]
    if unknown:
        raise ConfigError(
            f"--set {unknown[0]}.* does not name the provider '{provider}'", f"use --set {provider}.OPTION=V"
        )
    provider_cls = manager.provider(provider)
    build_config(provider_cls.Options, options.get(provider, {}), where=f"{provider}.")
    task_spec = get_task(task) if task else None
    classifier, tokenizer, task_spec, max_length = load_for_explain(model, task_spec)
    if (text_pair is not None) != (len(task_spec.text_fields) == 2):
        raise ConfigError(
            f"task '{task_spec.name}' takes {len(task_spec.text_fields)} text(s)",
            "give a text pair for sentence-pair tasks and one text otherwise",
        )
    [result] = explain_batch(
        classifier,
        tokenizer,
        task_spec,
        get_provider(provider, manager, options.get(provider)),
        [text],
        [text_pair] if text_pair is not None else None,
        views=views,  # type: ignore[arg-type]
        max_length=max_length,
    )
    if as_json:
        out.print_json(json.dumps({"model": model, "task": task_spec.name, **asdict(result)}))
    else:
        render_terminal(result, out, title=task_spec.name)
    heading = text if text_pair is None else f"{text} | {text_pair}"
    if html is not None:
        write_html(html, [(heading, [(model, result)])])
        err.print(f"heatmap written to {html}")
    if svg is not None:
        write_svg(svg, [(heading, [(model, result)])])
        err.print(f"heatmap written to {svg}")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="kdkit")


if __name__ == "__main__":  # pragma: no cover
    main()
