"""Export a student to ONNX, validate it against PyTorch, quantise it to int8, and describe it in a manifest.

    from kdkit.export.stage import ExportOptions, export_onnx
    options = ExportOptions(quantize="int8", data=DataConfig(data_dir="../shared/data/glue"))
    result = export_onnx("runs/sst2-kd", options)
    result.directory  # runs/sst2-kd/onnx: onnx/model.onnx, onnx/model_quantized.onnx, config.json, tokenizer.json,
                      # kdkit_export.json, README.md (the layout optimum-onnx and transformers.js load:
                      # kdkit.export.hf_layout)

The exporter is chosen explicitly (:data:`EXPORTERS`): ``dynamo`` (``torch.export`` + onnxscript, opset 20,
the default) or ``torchscript`` (the legacy tracer, opset 17). Both give identical logits for BERT-like
students; dynamo is the default because it is the exporter PyTorch maintains (the TorchScript path has been
deprecated since PyTorch 2.9) and because it captures the graph symbolically, where the tracer bakes in Python
branches on shapes (transformers' mask code has such branches). The tracer is kept as
``--exporter torchscript`` for models ``torch.export`` cannot capture; it is also ~10x faster to run.

Validation runs on real examples of the task. The fp32 model must reproduce PyTorch's logits within
``tolerance`` (max |Δlogit|, default 1e-4) at batch 1 and batch 32, on the shortest and longest examples and
padded to ``max_length``, and over the whole validation set through the deployment path
(:class:`kdkit.export.inference.OnnxClassifier`: ``tokenizers`` + onnxruntime). Otherwise the export fails with an
:class:`~kdkit.errors.ExportError` that says by how much, and leaves nothing behind: everything is written to
``<output>.partial`` and renamed to ``<output>`` only when every check passed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import torch

import kdkit
from kdkit.config import DataConfig
from kdkit.data.sources import data_inputs
from kdkit.errors import ConfigError, DataError, ExportError
from kdkit.export import hf_layout
from kdkit.export.fidelity import FidelityOptions, measure_into
from kdkit.export.hf_layout import FP32_FILE, INT8_FILE, TOKENIZER_FILE
from kdkit.export.manifest import (
    EXAMPLE_MAX_CHARS,
    EXAMPLES,
    Evaluation,
    ExporterInfo,
    ExportRecord,
    ExportSource,
    Parity,
    ParityCase,
)
from kdkit.export.onnx import (
    EXPORTERS,
    Exporter,
    check_opset,
    export_model,
    quantize_int8,
)
from kdkit.export.source import ExportInput, load_source
from kdkit.export.validation import (
    PARITY_BATCH,
    EngineComparison,
    check_parity,
    check_validation_parity,
    compare_engines,
    int8_warnings,
    parity_batches,
    texts,
)
from kdkit.models.loading import quiet_libraries
from kdkit.records import model_card
from kdkit.records.fidelity import FIDELITY_FILE, FidelityReport, read_fidelity
from kdkit.records.manifests import (
    EXPORT_MANIFEST_FILE,
    EXPORT_MANIFEST_FORMAT,
    EXPORT_SUBDIR,
    ExportExample,
    ExportModelFile,
    ExportTask,
    ExportTokenizer,
    write_json,
)
from kdkit.records.provenance import find_model_dir
from kdkit.records.runs import RunDirectory, resolve_model_dir

#: what the model given to export is called in an error (the export may go inside it: ``<run>/onnx``)
SOURCE_ROLE = "model being exported"
#: default parity tolerance: max |Δlogit| between ONNX fp32 and PyTorch
DEFAULT_TOLERANCE = 1e-4
#: int8 may lose at most this much of the main metric (a fraction: 0.01 = 1 point) before a warning
INT8_WARN_DROP = 0.01

Log = Callable[[str], None]


@dataclass
class ExportResult:
    """What :func:`export_onnx` returns.

    Attributes:
        directory: the finished export folder.
        record: its ``kdkit_export.json`` (:class:`~kdkit.export.manifest.ExportRecord`).
        warnings: things the user should know (int8 accuracy loss), also in the manifest.
        fidelity: its ``kdkit_fidelity.json``, read back verified (:mod:`kdkit.export.fidelity`).
    """

    directory: Path
    record: ExportRecord
    warnings: list[str] = field(default_factory=list)
    fidelity: FidelityReport | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        """The content of ``kdkit_export.json``."""
        return self.record.to_json_dict()


# -- locating the model and the output ----------------------------------------------------------------


def default_output(path: Path) -> Path:
    """``<RUN_DIR>/onnx`` for a run directory, ``<MODEL_DIR>/onnx`` for a model directory."""
    return path / EXPORT_SUBDIR


# -- the command ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportOptions:
    """How a model is exported (the options of ``kdkit export --onnx``).

    Attributes:
        output: the export folder [default: ``<model>/onnx``].
        data: the validation data options given; the rest come from what the run recorded (its data dir, files
            and columns, :mod:`kdkit.records.provenance`), else the task of ``kdkit_task.json``;
            ``max_eval_samples`` limits it.
        exporter: ``dynamo`` or ``torchscript`` (see the module docstring); ``opset`` overrides its default.
        quantize: ``int8`` adds ``onnx/model_quantized.onnx`` (dynamic quantisation) and its metric.
        max_length: the longest input in tokens [default: the training max length]; longer ones are truncated.
        tolerance: the largest |Δlogit| accepted between ONNX fp32 and PyTorch.
        batch_size: batch size of the metric evaluation.
        overwrite: replace an existing export folder.
        fidelity: the teacher to compare with and the int8 guard (``--max-int8-drop``, ``--keep-int8``).
    """

    output: Path | None = None
    data: DataConfig | None = None
    exporter: Exporter = "dynamo"
    opset: int | None = None
    quantize: Literal["int8"] | None = None
    max_length: int | None = None
    tolerance: float = DEFAULT_TOLERANCE
    batch_size: int = 32
    overwrite: bool = False
    fidelity: FidelityOptions = field(default_factory=FidelityOptions)

    def check(self) -> None:
        """One line for an option that cannot work, before any work."""
        if self.quantize not in (None, "int8"):
            raise ConfigError(f"unknown quantisation '{self.quantize}'", "use --quantize int8")
        if not self.tolerance > 0 or not math.isfinite(self.tolerance):
            raise ConfigError(
                f"tolerance must be a positive number, got {self.tolerance}", "pass e.g. --tolerance 1e-4"
            )
        if self.batch_size < 1:
            raise ConfigError(f"bad batch size {self.batch_size}", "pass --batch-size 1 or more")
        check_opset(self.exporter, self.opset)  # an opset the exporter or onnxruntime does not support
        self.fidelity.check()


def export_onnx(model: str | Path, options: ExportOptions | None = None, *, log: Log | None = None) -> ExportResult:
    """Export a run directory's student (``best/``) or a saved sequence classifier to ONNX, validated and described
    in a manifest; ``log`` is called with one line per step."""
    options = options or ExportOptions()
    say = log or (lambda _line: None)
    quiet_libraries()
    options.check()
    find_model_dir(Path(model))  # the input's own errors first: missing, unfinished, an export itself
    sources = {SOURCE_ROLE: resolve_model_dir(Path(model)), "run being exported": model}
    inputs = {**sources, **(data_inputs(options.data) if options.data else {})}
    output = options.output or default_output(Path(model))
    out = RunDirectory(output, overwrite=options.overwrite, inputs=inputs, may_hold_output=sources)
    out.check_output()  # before the model is loaded
    source = load_source(Path(model), options.data, options.max_length)
    out.start_fresh()
    try:
        record = _export_into(out.work, source, options, say)
        final = out.commit()
    except BaseException:
        out.discard()
        raise
    return ExportResult(
        directory=final, record=record, warnings=list(record.warnings or []), fidelity=read_fidelity(final)
    )


def _export_into(work: Path, source: ExportInput, options: ExportOptions, say: Log) -> ExportRecord:
    """Write, check and describe the export in ``work``: the fp32 graph (parity-checked), the manifest, the
    int8 graph, the evaluation of every engine, the model card."""
    task, tolerance, int8 = source.task, options.tolerance, options.quantize == "int8"
    batches = parity_batches(source.tokenizer, *texts(next(iter(source.raw_splits.values())), task),
                             source.data.max_length, source.input_names)  # fmt: skip
    record = _write_fp32(work, source, batches, options, say)
    record.layout = hf_layout.layout_manifest(int8)
    say(f"checking parity with PyTorch on {len(batches)} real batches (tolerance {tolerance:g})")
    cases = check_parity(source.classifier, work / FP32_FILE, batches, tolerance)
    _write_manifest(work, record)
    if int8:
        say("quantising to int8 (onnxruntime dynamic quantisation)")
        quantize_int8(work / FP32_FILE, work / INT8_FILE)
        record.models["int8"] = _file_info(work / INT8_FILE, work)
        _write_manifest(work, record)
    say(
        f"evaluating PyTorch, ONNX fp32{' and int8' if options.quantize else ''} on {task.name} "
        f"({', '.join(f'{n}: {len(s)}' for n, s in source.raw_splits.items())} examples)"
    )
    comparison = compare_engines(source.classifier, source.tokenizer, task, source.raw_splits, source.data, work,
                                 int8=int8, batch_size=options.batch_size)  # fmt: skip
    check_validation_parity(comparison, tolerance)
    say("measuring fidelity: agreement with PyTorch and the teacher, per-class scores, calibration")
    models = {precision: info.file for precision, info in record.models.items()}
    measure_into(work, source, comparison, models, options.fidelity, options.batch_size)
    record.fidelity = FIDELITY_FILE
    _add_results(record, source, cases, comparison, tolerance, int8=int8)
    manifest = record.to_json_dict()
    record.card = model_card.card_for_export(work, manifest, model_card.find_run_summary(source.path, source.model_dir))
    record.warnings = manifest["warnings"]  # the card may have added one
    _write_manifest(work, record)
    return record


def _write_fp32(work: Path, source: ExportInput, batches: list[Any], options: ExportOptions, say: Log) -> ExportRecord:
    """Export the fp32 graph (from the largest parity batch), the tokenizer and config.json; the first manifest."""
    size = min(PARITY_BATCH, len(texts(next(iter(source.raw_splits.values())), source.task)[0]))
    example = next(batch for name, batch in batches if name.startswith(f"batch {size}"))
    if example["input_ids"].shape[0] < 2 or example["input_ids"].shape[1] < 2:
        raise DataError("the validation set is too small to export from", "give at least 2 validation examples")
    fp32_path, exporter, opset = work / FP32_FILE, options.exporter, options.opset
    fp32_path.parent.mkdir(parents=True, exist_ok=True)
    say(f"exporting {source.model_dir} with the {exporter} exporter (opset {opset or EXPORTERS.get(exporter, 0)})")
    start = time.perf_counter()
    used_opset = export_model(source.classifier, source.input_names, example, fp32_path, exporter=exporter, opset=opset)
    seconds = time.perf_counter() - start
    hf_layout.save_tokenizer(source.tokenizer, work, source.data.max_length)
    hf_layout.write_config(source.model_dir, work, source.task)
    if not (work / TOKENIZER_FILE).is_file():
        raise ExportError(
            f"the tokenizer of {source.model_dir} did not save a {TOKENIZER_FILE}", "use a fast tokenizer"
        )
    return _first_record(work, source, ExporterInfo(
        name=exporter, opset=used_opset, seconds=round(seconds, 2), torch=torch.__version__,
        onnx=_version("onnx"), onnxruntime=_version("onnxruntime"),
    ))  # fmt: skip


def _first_record(work: Path, source: ExportInput, exporter: ExporterInfo) -> ExportRecord:
    """The manifest once the fp32 graph is written: task, inputs, files, tokenizer, exporter, source."""
    task, tokenizer = source.task, source.tokenizer
    return ExportRecord(
        format=EXPORT_MANIFEST_FORMAT,
        kdkit_version=kdkit.__version__,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        task=ExportTask.model_validate(task.to_dict()),
        label_names=list(task.label_names) if task.label_names is not None else None,
        max_length=source.data.max_length,
        input_names=source.input_names,
        output_names=["logits"],
        models={"fp32": _file_info(work / FP32_FILE, work)},
        tokenizer=ExportTokenizer(
            file=TOKENIZER_FILE,
            pad_id=int(tokenizer.pad_token_id or 0),
            pad_token=str(tokenizer.pad_token or "[PAD]"),
        ),
        exporter=exporter,
        source=ExportSource(
            path=str(source.path.absolute()),
            model_dir=str(source.model_dir.absolute()),
            architecture=type(source.classifier).__name__,
        ),
        examples=_examples(source),
    )


def _examples(source: ExportInput) -> list[ExportExample]:
    """The first :data:`EXAMPLES` distinct inputs of the validation data no longer than :data:`EXAMPLE_MAX_CHARS`
    characters (both texts of a pair together), in the data's order."""
    first, second = texts(next(iter(source.raw_splits.values())), source.task)
    chosen: list[ExportExample] = []
    for i, text in enumerate(first):
        pair = second[i] if second is not None else None
        if not isinstance(text, str) or not text.strip() or (second is not None and not str(pair or "").strip()):
            continue
        example = ExportExample(text=text, pair=pair) if pair is not None else ExportExample(text=text)
        if len(text) + len(pair or "") <= EXAMPLE_MAX_CHARS and example not in chosen:
            chosen.append(example)
        if len(chosen) == EXAMPLES:
            break
    return chosen


def _add_results(
    record: ExportRecord,
    source: ExportInput,
    cases: list[ParityCase],
    comparison: EngineComparison,
    tolerance: float,
    *,
    int8: bool,
) -> None:
    """Add what the validation measured: parity, evaluation, sizes, warnings."""
    splits = source.raw_splits
    main_key = source.task.main_metric if len(splits) == 1 else f"{next(iter(splits))}/{source.task.main_metric}"
    flat = comparison.flat_metrics()
    record.parity = Parity(
        tolerance=tolerance,
        cases=cases,
        validation_max_abs_diff=comparison.fp32_diff,
        **({"int8_validation_max_abs_diff": comparison.int8_diff} if int8 else {}),
    )
    record.evaluation = Evaluation(
        splits={name: len(split) for name, split in splits.items()},
        main_metric=main_key,
        metrics=flat,
        **({"int8_agreement_with_pytorch": comparison.agreement} if comparison.agreement else {}),
    )
    weights = source.model_dir / "model.safetensors"
    record.sizes = {
        **({"pytorch": weights.stat().st_size} if weights.is_file() else {}),
        **{precision: info.bytes or 0 for precision, info in record.models.items()},
    }
    record.warnings = int8_warnings(flat, main_key, INT8_WARN_DROP)


def _file_info(path: Path, root: Path) -> ExportModelFile:
    """``file``: the path relative to the export folder (``onnx/model.onnx``), ``bytes``: its size."""
    return ExportModelFile(file=path.relative_to(root).as_posix(), bytes=path.stat().st_size)


def _write_manifest(directory: Path, record: ExportRecord) -> None:
    write_json(directory / EXPORT_MANIFEST_FILE, record.to_json_dict())


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
