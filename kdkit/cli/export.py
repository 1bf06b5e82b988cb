"""``kdkit export``: a student to ONNX, validated against PyTorch (:func:`kdkit.export.stage.export_onnx`)."""

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from kdkit.cli.base import command, handle_errors
from kdkit.cli.flags import VALIDATION_DATA_FIELDS, FlagSet, config_flags
from kdkit.cli.output import err, format_metric, is_percent, out
from kdkit.config import DataConfig, build_config
from kdkit.errors import ConfigError
from kdkit.records.fidelity import FidelityReport, class_rows, engine_rows, summary_lines

EXPORT_PANEL = "Export"
VALIDATION_PANEL = "Validation data"

#: the choices of kdkit.export.stage.export_onnx (kdkit.export imports torch, so the CLI names them; a test compares)
Exporter = Literal["dynamo", "torchscript"]
Quantization = Literal["int8"]


def _export_option(*decls: str, help: str) -> Any:
    return typer.Option(*decls, help=help, rich_help_panel=EXPORT_PANEL)


OnnxOpt = Annotated[bool, _export_option("--onnx", help="Export to ONNX (the only format so far).")]
OutputOpt = Annotated[Path | None, _export_option("--output", "-o", help="Export folder \\[default: MODEL/onnx].")]
OpsetOpt = Annotated[int | None, _export_option(help="ONNX opset \\[default: 20 with dynamo, 17 with torchscript].")]
ExporterOpt = Annotated[Exporter, _export_option(help="dynamo (torch.export) or torchscript (the legacy tracer).")]
QuantizeOpt = Annotated[
    Quantization | None, _export_option(help="Also write onnx/model_quantized.onnx: int8 (dynamic quantisation).")
]
MaxLengthOpt = Annotated[
    int | None,
    _export_option(help="Longest input in tokens; longer texts are truncated \\[default: the training max length]."),
]
ToleranceOpt = Annotated[float, _export_option(help="Largest |Δlogit| accepted between ONNX fp32 and PyTorch.")]
OverwriteOpt = Annotated[bool, _export_option("--overwrite", help="Replace an existing export folder.")]
MaxInt8DropOpt = Annotated[
    float,
    _export_option(help="Refuse an int8 model that loses more than this many points of the main metric against fp32."),
]
KeepInt8Opt = Annotated[
    bool, _export_option("--keep-int8", help="Keep an int8 model even when it loses more than --max-int8-drop.")
]
TeacherOpt = Annotated[
    Path | None,
    _export_option(help="Teacher to measure agreement with \\[default: the teacher the run recorded, if any]."),
]

#: the data options of export: the validation data the export is checked on (--max-length is export's own)
EXPORT_DATA_FIELDS = VALIDATION_DATA_FIELDS
_VALIDATION_DATA = FlagSet(
    DataConfig,
    "data",
    fields=EXPORT_DATA_FIELDS,
    panel=VALIDATION_PANEL,
    help={
        "task": "task of the validation data (default: the model's)",
        "validation_file": "validation data of a model trained on custom data",
    },
)


def _mb(size: int | None) -> str:
    return f"{size / 1e6:.1f} MB" if size else "-"


def _print_parity(parity: dict[str, Any]) -> None:
    table = Table(title=f"parity with PyTorch (max |Δlogit|, tolerance {parity['tolerance']:g})")
    for column in ("case", "shape", "max |Δ|"):
        table.add_column(column, justify="right" if column != "case" else "left")
    for case in parity["cases"]:
        table.add_row(case["case"], f"{case['batch']}x{case['length']}", f"{case['max_abs_diff']:.2e}")
    table.add_row("validation set, via tokenizers + onnxruntime", "-", f"{parity['validation_max_abs_diff']:.2e}")
    out.print(table)


def _print_evaluation(manifest: dict[str, Any]) -> None:
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
        table.add_row(f"{key} (%)" if is_percent(key) else key, *(format_metric(key, v) for v in values))
    sizes = manifest.get("sizes", {})
    table.add_row("file size", *(_mb(sizes.get({"pytorch": "pytorch"}.get(e, e.split("_")[-1]))) for e in engines))
    out.print(table)


def _print_fidelity(report: FidelityReport) -> None:
    """The fidelity report's tables (the model card's "Fidelity" section) and its sentences."""
    headers, rows = engine_rows(report)
    table = Table(title="fidelity (kdkit_fidelity.json)")
    for i, header in enumerate(headers):
        table.add_column(header, justify="right" if i else "left")
    for row in rows:
        table.add_row(*row)
    out.print(table)
    headers, rows = class_rows(report)
    if rows:
        classes = Table(title="per class, ONNX fp32 -> int8 (%, Δ in points)")
        for i, header in enumerate(headers):
            classes.add_column(header, justify="right" if i else "left")
        for row in rows:
            classes.add_row(*row)
        out.print(classes)
    for line in summary_lines(report):
        out.print(line, soft_wrap=True)


@command()
@handle_errors
@config_flags(_VALIDATION_DATA)
def export(
    model: Annotated[Path, typer.Argument(help="Run directory (its best/ student) or a saved model directory.")],
    onnx: OnnxOpt = False,
    output: OutputOpt = None,
    opset: OpsetOpt = None,
    exporter: ExporterOpt = "dynamo",
    quantize: QuantizeOpt = None,
    max_length: MaxLengthOpt = None,
    tolerance: ToleranceOpt = 1e-4,
    overwrite: OverwriteOpt = False,
    max_int8_drop: MaxInt8DropOpt = 1.0,
    keep_int8: KeepInt8Opt = False,
    teacher: TeacherOpt = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Evaluation batch size.", rich_help_panel=VALIDATION_PANEL)
    ] = 32,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
    *,
    flags: dict[str, Any],
) -> None:
    """Export a student to ONNX, validated against PyTorch on the task's validation data; optionally int8."""
    from kdkit.export.fidelity import FidelityOptions
    from kdkit.export.stage import ExportOptions, export_onnx

    if not onnx:
        raise ConfigError("no export format given", "pass --onnx (the only format so far)")
    result = export_onnx(
        model,
        ExportOptions(
            output=output,
            data=build_config(DataConfig, flags.get("data", {})),
            exporter=exporter,
            opset=opset,
            quantize=quantize,
            max_length=max_length,
            tolerance=tolerance,
            batch_size=batch_size,
            overwrite=overwrite,
            fidelity=FidelityOptions(teacher=teacher, max_int8_drop=max_int8_drop, keep_int8=keep_int8),
        ),
        log=lambda line: err.print(line, soft_wrap=True),
    )
    if as_json:
        fidelity = result.fidelity.model_dump(mode="json", exclude_none=True) if result.fidelity else None
        out.print_json(json.dumps({"directory": str(result.directory), **result.manifest, "fidelity_report": fidelity}))
    else:
        _print_parity(result.manifest["parity"])
        _print_evaluation(result.manifest)
        if result.fidelity is not None:
            _print_fidelity(result.fidelity)
    for note in result.warnings:
        err.print(f"[yellow]warning:[/] {note}", soft_wrap=True)
    if not as_json:
        out.print(f"exported to {result.directory}")
        out.print(f'try: kdkit predict {result.directory} "some text"')
