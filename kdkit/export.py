"""Export a student to ONNX, validate it against PyTorch, quantise it to int8, and describe it in a manifest.

    from kdkit.export import export_onnx
    result = export_onnx("runs/sst2-kd", quantize="int8", data=DataConfig(data_dir="../shared/data/glue"))
    result.directory  # runs/sst2-kd/onnx: onnx/model.onnx, onnx/model_quantized.onnx, config.json, tokenizer.json,
                      # kdkit_export.json, README.md (the layout optimum-onnx and transformers.js load: kdkit.hf_layout)

The exporter is chosen explicitly (:data:`EXPORTERS`): ``dynamo`` (``torch.export`` + onnxscript, opset 20,
the default) or ``torchscript`` (the legacy tracer, opset 17). Both give identical logits for BERT-like
students; dynamo is the default because it is the exporter PyTorch maintains (the TorchScript path has been
deprecated since PyTorch 2.9) and because it captures the graph symbolically, where the tracer bakes in Python
branches on shapes (transformers' mask code has such branches). The tracer is kept as
``--exporter torchscript`` for models ``torch.export`` cannot capture; it is also ~10x faster to run.

Validation runs on real examples of the task. The fp32 model must reproduce PyTorch's logits within
``tolerance`` (max |Δlogit|, default 1e-4) at batch 1 and batch 32, on the shortest and longest examples and
padded to ``max_length``, and over the whole validation set through the deployment path
(:class:`kdkit.inference.OnnxClassifier`: ``tokenizers`` + onnxruntime). Otherwise the export fails with an
:class:`~kdkit.errors.ExportError` that says by how much, and leaves nothing behind: everything is written to
``<output>.partial`` and renamed to ``<output>`` only when every check passed.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import PreTrainedModel, PreTrainedTokenizerBase

import kdkit
from kdkit import hf_layout, model_card, models, provenance
from kdkit.config import DataConfig
from kdkit.data import MODEL_INPUTS, DistillationCollator, load_raw, tokenize
from kdkit.errors import ConfigError, DataError, ExportError, ModelError
from kdkit.inference import (
    EXPORT_SUBDIR,
    FP32_FILE,
    INT8_FILE,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    TOKENIZER_FILE,
    OnnxClassifier,
)
from kdkit.metrics import compute_metrics, predictions_from_logits
from kdkit.progress import quiet_libraries
from kdkit.provenance import find_model_dir as find_model_dir  # re-exported: where kdkit has always kept it
from kdkit.tasks import TaskSpec

Exporter = Literal["dynamo", "torchscript"]
#: exporter -> default opset (the opsets the exporters were validated at)
EXPORTERS: dict[str, int] = {"dynamo": 20, "torchscript": 17}
#: default parity tolerance: max |Δlogit| between ONNX fp32 and PyTorch
DEFAULT_TOLERANCE = 1e-4
#: int8 may lose at most this much of the main metric (a fraction: 0.01 = 1 point) before a warning
INT8_WARN_DROP = 0.01
PARITY_BATCH = 32

Log = Callable[[str], None]


@dataclass
class ExportResult:
    """What :func:`export_onnx` returns.

    Attributes:
        directory: the finished export folder.
        manifest: the content of its ``kdkit_export.json``.
        warnings: things the user should know (int8 accuracy loss), also in the manifest.
    """

    directory: Path
    manifest: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


class _LogitsOnly(nn.Module):
    """``forward(input_ids, attention_mask[, token_type_ids]) -> logits (B, C)``: the ONNX signature."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        return self.model(**inputs).logits


# -- locating the model and the output ----------------------------------------------------------------


def check_classifier_config(model_dir: Path) -> None:
    """The saved model must be a sequence classifier (``*ForSequenceClassification`` in config.json)."""
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot read {model_dir / 'config.json'} ({type(exc).__name__})", "save the model again"
        ) from None
    architectures = config.get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        what = f"a {architectures[0]}" if architectures else "a model with no architecture in config.json"
        raise ModelError(
            f"{model_dir} is {what}, not a sequence classifier",
            "export a run directory or a model saved by 'kdkit finetune'/'kdkit distill'",
        )


def default_output(path: Path) -> Path:
    """``<RUN_DIR>/onnx`` for a run directory, ``<MODEL_DIR>/onnx`` for a model directory."""
    return path / EXPORT_SUBDIR


def _prepare_output(output: Path, overwrite: bool) -> Path:
    """Check that ``output`` can be written; return the (fresh) working folder ``<output>.partial``."""
    output = output.expanduser().absolute()
    if output.exists() and not overwrite:
        raise ConfigError(
            f"output {output} already exists", "pass --overwrite to replace it, or choose another --output"
        )
    work = output.with_name(output.name + ".partial")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        if work.exists():  # a stale, failed export of ours: never a result
            shutil.rmtree(work)
        work.mkdir()
        probe = work / f".kdkit-write-test-{uuid.uuid4().hex}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"output location {output.parent} is not writable ({exc.strerror or exc})",
            "choose a writable --output",
        ) from None
    return work


def _commit(work: Path, output: Path) -> Path:
    output = output.expanduser().absolute()
    if output.exists():
        trash = output.with_name(output.name + f".old-{uuid.uuid4().hex[:8]}")
        output.rename(trash)
        work.rename(output)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        work.rename(output)
    return output


# -- data ---------------------------------------------------------------------------------------------


def _texts(split: Any, task: TaskSpec) -> tuple[list[str], list[str] | None]:
    first = list(split[task.text_fields[0]])
    return first, (list(split[task.text_fields[1]]) if len(task.text_fields) == 2 else None)


# -- export -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_exporter() -> Any:
    """Keep the exporters' progress prints, warnings and log lines out of the CLI output (kept for errors)."""
    buffer = io.StringIO()
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(buffer),
            contextlib.redirect_stderr(buffer),
        ):
            warnings.simplefilter("ignore")
            yield buffer
    finally:
        for logger, level in zip(loggers, levels, strict=False):
            logger.setLevel(level)


def export_model(
    model: PreTrainedModel,
    input_names: Sequence[str],
    example: dict[str, torch.Tensor],
    path: Path,
    *,
    exporter: Exporter = "dynamo",
    opset: int | None = None,
) -> int:
    """Write ``model`` as ONNX to ``path``: inputs ``input_names`` of shape (batch, sequence), int64, output
    ``logits`` (batch, C). ``example`` is a real batch (B >= 2, L >= 2, so no axis is specialised).
    Returns the opset used."""
    if exporter not in EXPORTERS:
        raise ConfigError(f"unknown exporter '{exporter}'", f"use one of {', '.join(EXPORTERS)}")
    opset = opset or EXPORTERS[exporter]
    wrapper = _LogitsOnly(model).eval()
    args = tuple(example[name] for name in input_names)
    with _quiet_exporter(), torch.no_grad():
        try:
            if exporter == "dynamo":
                positions = getattr(model.config, "max_position_embeddings", None)
                batch = torch.export.Dim("batch")
                sequence = (
                    torch.export.Dim("sequence", max=int(positions)) if positions else torch.export.Dim("sequence")
                )
                program = torch.onnx.export(
                    wrapper,
                    args,
                    dynamo=True,
                    opset_version=opset,
                    input_names=list(input_names),
                    output_names=["logits"],
                    dynamic_shapes={name: {0: batch, 1: sequence} for name in input_names},
                    verbose=False,
                )
                assert program is not None
                program.save(str(path), external_data=False)
            else:
                torch.onnx.export(
                    wrapper,
                    args,
                    str(path),
                    dynamo=False,
                    opset_version=opset,
                    input_names=list(input_names),
                    output_names=["logits"],
                    dynamic_axes={
                        **{name: {0: "batch", 1: "sequence"} for name in input_names},
                        "logits": {0: "batch"},
                    },
                )
        except Exception as exc:
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            other = "torchscript" if exporter == "dynamo" else "dynamo"
            raise ExportError(
                f"the {exporter} exporter (opset {opset}) failed on {type(model).__name__}: "
                f"{type(exc).__name__}: {detail[:200]}",
                f"try --exporter {other} or another --opset",
            ) from None
    return opset


def fuse_for_onnxruntime(source: Path, target: Path) -> dict[str, int]:
    """onnxscript's onnxruntime fusions (``optimize_for_ort``): attention subgraphs become ``Attention``,
    residual + LayerNorm ``SkipLayerNormalization``, bias + GELU ``BiasGelu`` (onnxruntime contrib ops, so the
    result runs on onnxruntime only). Returns the count of each fusion applied. The attention fusion matches the
    dynamo exporter's graphs, not the TorchScript tracer's."""
    import onnx_ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    with _quiet_exporter():
        try:
            model, counts = optimize_for_ort(onnx_ir.load(str(source)))
            onnx_ir.save(model, str(target))
        except Exception as exc:
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ExportError(
                f"the onnxruntime fusions failed: {type(exc).__name__}: {detail[:200]}", "export with --no-fuse"
            ) from None
    return {name: int(count) for name, count in counts.items() if count}


def quantize_int8(source: Path, target: Path, *, per_channel: bool = False) -> None:
    """Dynamic int8 quantisation (onnxruntime): int8 weights, activations quantised per batch at run time
    (MatMul -> MatMulInteger / DynamicQuantizeMatMul). Shape inference runs first (``quant_pre_process``)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_name(target.stem + ".prep.onnx")
    with _quiet_exporter():
        try:
            quant_pre_process(str(source), str(prepared), skip_optimization=False, skip_symbolic_shape=True)
            quantize_dynamic(prepared, target, weight_type=QuantType.QInt8, per_channel=per_channel)
        except Exception as exc:
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ExportError(
                f"int8 quantisation failed: {type(exc).__name__}: {detail[:200]}", "export without --quantize"
            ) from None
        finally:
            prepared.unlink(missing_ok=True)


# -- validation ---------------------------------------------------------------------------------------


def torch_logits(
    model: PreTrainedModel, dataset: Any, collator: DistillationCollator, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch logits (N, C) and gold labels (N,) of a tokenised split, in order (as ``kdkit evaluate``)."""
    model.eval()
    logits, labels = [], []
    loader = DataLoader(
        dataset.select_columns([c for c in dataset.column_names if c != "length"]),
        batch_size=batch_size,
        collate_fn=collator,
    )
    with torch.no_grad():
        for batch in loader:
            labels.append(batch.pop("labels").numpy())
            logits.append(model(**batch).logits.float().numpy())
    return np.concatenate(logits), np.concatenate(labels)


def _parity_batches(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    pairs: list[str] | None,
    max_length: int,
    input_names: Sequence[str],
) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """Real batches of several shapes: batch 1 (shortest, longest); batch 32 (as is, padded to max_length)."""

    def encode(indices: Sequence[int], padding: str | bool) -> dict[str, torch.Tensor]:
        first = [texts[i] for i in indices]
        second = [pairs[i] for i in indices] if pairs is not None else None
        encoded = tokenizer(first, second, truncation=True, max_length=max_length, padding=padding, return_tensors="pt")
        return {name: encoded[name] for name in input_names}

    lengths = [len(ids) for ids in tokenizer(texts, pairs, truncation=True, max_length=max_length)["input_ids"]]
    by_length = sorted(range(len(texts)), key=lambda i: lengths[i])
    size = min(PARITY_BATCH, len(texts))
    return [
        ("batch 1, shortest example", encode([by_length[0]], False)),
        ("batch 1, longest example", encode([by_length[-1]], False)),
        (f"batch {size}, padded to the longest", encode(list(range(size)), True)),
        (f"batch {size}, longest examples padded to {max_length}", encode(by_length[-size:], "max_length")),
    ]


def check_parity(
    model: PreTrainedModel,
    onnx_path: Path,
    batches: list[tuple[str, dict[str, torch.Tensor]]],
    tolerance: float,
) -> list[dict[str, Any]]:
    """Max |Δlogit| between ONNX (onnxruntime, fp32) and PyTorch per batch; ExportError over ``tolerance``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    cases = []
    for name, batch in batches:
        with torch.no_grad():
            expected = model(**batch).logits.float().numpy()
        got = session.run(None, {k: v.numpy().astype(np.int64) for k, v in batch.items()})[0]
        diff = float(np.abs(got - expected).max())
        shape = tuple(batch["input_ids"].shape)
        cases.append({"case": name, "batch": shape[0], "length": shape[1], "max_abs_diff": diff})
        if not diff <= tolerance:
            raise ExportError(
                f"ONNX fp32 logits differ from PyTorch by {diff:.3g} (> tolerance {tolerance:g}) at {name} "
                f"(shape {shape[0]}x{shape[1]}); nothing was exported",
                "try the other --exporter or another --opset, or raise --tolerance if you accept it",
            )
    return cases


def _file_info(path: Path, root: Path) -> dict[str, Any]:
    """``file``: the path relative to the export folder (``onnx/model.onnx``), ``bytes``: its size."""
    return {"file": path.relative_to(root).as_posix(), "bytes": path.stat().st_size}


def _metrics_with_prefix(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    if len(metrics) == 1:
        return next(iter(metrics.values()))
    return {f"{split}/{k}": v for split, values in metrics.items() for k, v in values.items()}


# -- the command ---------------------------------------------------------------------------------------


def export_onnx(
    model: str | Path,
    output: Path | None = None,
    *,
    data: DataConfig | None = None,
    exporter: Exporter = "dynamo",
    opset: int | None = None,
    quantize: Literal["int8"] | None = None,
    max_length: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    batch_size: int = 32,
    overwrite: bool = False,
    log: Log | None = None,
) -> ExportResult:
    """Export a run directory's student (or a saved model) to ONNX, validated and described in a manifest.

    Args:
        model: a run directory (uses ``best/``) or a saved sequence-classifier directory.
        output: the export folder [default: ``<model>/onnx``].
        data: the validation data options given; the rest come from what the run recorded (its data dir,
            files and columns, :mod:`kdkit.provenance`), else the task of ``kdkit_task.json``;
            ``max_eval_samples`` limits it.
        exporter: ``dynamo`` or ``torchscript`` (see the module docstring); ``opset`` overrides its default.
        quantize: ``int8`` adds ``model.int8.onnx`` (dynamic quantisation) and its metric.
        max_length: the longest input in tokens [default: the training max length]; longer ones are truncated.
        tolerance: the largest |Δlogit| accepted between ONNX fp32 and PyTorch.
        batch_size: batch size of the metric evaluation.
        overwrite: replace an existing export folder.
        log: called with one line per step.
    """
    say = log or (lambda _line: None)
    quiet_libraries()
    source = Path(model)
    saved = provenance.of_model(source)
    assert saved.model is not None
    model_dir = Path(saved.model)
    check_classifier_config(model_dir)
    if quantize not in (None, "int8"):
        raise ConfigError(f"unknown quantisation '{quantize}'", "use --quantize int8")
    if not tolerance > 0:
        raise ConfigError(f"tolerance must be positive, got {tolerance}", "pass e.g. --tolerance 1e-4")
    data = saved.data_options(data, max_length=max_length).model_copy(update={"padding": "dynamic"})
    tokenizer = models.load_tokenizer(str(model_dir))
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError(
            f"the tokenizer of {model_dir} has no tokenizer.json (not a fast tokenizer)",
            "save the model with a fast (Rust) tokenizer; kdkit predict needs tokenizer.json",
        )
    task, _, raw_splits = load_raw(data, need_train=False)
    classifier = models.load_classifier(str(model_dir), task, role="model").eval()
    positions = getattr(classifier.config, "max_position_embeddings", None)
    if positions is not None and data.max_length > int(positions):
        raise ConfigError(
            f"--max-length {data.max_length} is longer than the model's {positions} positions",
            f"use --max-length {positions} or less",
        )
    input_names = [name for name in MODEL_INPUTS if name in tokenizer.model_input_names]
    if "input_ids" not in input_names or "attention_mask" not in input_names:
        raise ExportError(
            f"the tokenizer of {model_dir} gives inputs {tokenizer.model_input_names}",
            "export a model whose tokenizer gives input_ids and attention_mask",
        )
    work = _prepare_output(output or default_output(source), overwrite)
    try:
        result = _export_into(
            work,
            source,
            model_dir,
            classifier,
            tokenizer,
            task,
            raw_splits,
            data,
            input_names,
            exporter=exporter,
            opset=opset,
            quantize=quantize,
            tolerance=tolerance,
            batch_size=batch_size,
            say=say,
        )
        final = _commit(work, output or default_output(source))
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return ExportResult(directory=final, manifest=result[0], warnings=result[1])


def _export_into(
    work: Path,
    source: Path,
    model_dir: Path,
    classifier: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: TaskSpec,
    raw_splits: dict[str, Any],
    data: DataConfig,
    input_names: list[str],
    *,
    exporter: Exporter,
    opset: int | None,
    quantize: Literal["int8"] | None,
    tolerance: float,
    batch_size: int,
    say: Log,
) -> tuple[dict[str, Any], list[str]]:
    first_split = next(iter(raw_splits.values()))
    texts, pairs = _texts(first_split, task)
    batches = _parity_batches(tokenizer, texts, pairs, data.max_length, input_names)
    example = next(batch for name, batch in batches if name.startswith(f"batch {min(PARITY_BATCH, len(texts))}"))
    if example["input_ids"].shape[0] < 2 or example["input_ids"].shape[1] < 2:
        raise DataError("the validation set is too small to export from", "give at least 2 validation examples")

    fp32_path = work / FP32_FILE
    fp32_path.parent.mkdir(parents=True, exist_ok=True)
    opset_default = opset or EXPORTERS.get(exporter, 0)
    say(f"exporting {model_dir} with the {exporter} exporter (opset {opset_default})")
    start = time.perf_counter()
    used_opset = export_model(classifier, input_names, example, fp32_path, exporter=exporter, opset=opset)
    export_seconds = time.perf_counter() - start
    hf_layout.save_tokenizer(tokenizer, work, data.max_length)
    hf_layout.write_config(model_dir, work, task)
    if not (work / TOKENIZER_FILE).is_file():
        raise ExportError(f"the tokenizer of {model_dir} did not save a {TOKENIZER_FILE}", "use a fast tokenizer")

    say(f"checking parity with PyTorch on {len(batches)} real batches (tolerance {tolerance:g})")
    cases = check_parity(classifier, fp32_path, batches, tolerance)

    files = {"fp32": _file_info(fp32_path, work)}
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "kdkit_version": kdkit.__version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "task": task.to_dict(),
        "label_names": list(task.label_names) if task.label_names is not None else None,
        "max_length": data.max_length,
        "input_names": input_names,
        "output_names": ["logits"],
        "models": files,
        "tokenizer": {
            "file": TOKENIZER_FILE,
            "pad_id": int(tokenizer.pad_token_id or 0),
            "pad_token": str(tokenizer.pad_token or "[PAD]"),
        },
        "exporter": {
            "name": exporter,
            "opset": used_opset,
            "seconds": round(export_seconds, 2),
            "torch": torch.__version__,
            "onnx": _version("onnx"),
            "onnxruntime": _version("onnxruntime"),
        },
        "source": {
            "path": str(source.absolute()),
            "model_dir": str(model_dir.absolute()),
            "architecture": type(classifier).__name__,
        },
        "layout": hf_layout.layout_manifest(quantize == "int8"),
    }
    _write_manifest(work, manifest)

    if quantize == "int8":
        say("quantising to int8 (onnxruntime dynamic quantisation)")
        quantize_int8(fp32_path, work / INT8_FILE)
        files["int8"] = _file_info(work / INT8_FILE, work)
        _write_manifest(work, manifest)

    say(
        f"evaluating PyTorch, ONNX fp32{' and int8' if quantize else ''} on {task.name} "
        f"({', '.join(f'{n}: {len(s)}' for n, s in raw_splits.items())} examples)"
    )
    collator = DistillationCollator(int(tokenizer.pad_token_id or 0))
    engines = ["pytorch", "onnx_fp32", *(["onnx_int8"] if quantize else [])]
    metrics: dict[str, dict[str, dict[str, float]]] = {engine: {} for engine in engines}
    agreement: dict[str, float] = {}
    validation_diff = 0.0
    int8_diff = 0.0
    onnx_fp32 = OnnxClassifier(work, precision="fp32")
    onnx_int8 = OnnxClassifier(work, precision="int8") if quantize else None
    for split_name, raw in raw_splits.items():
        tokenized = tokenize(raw, task, tokenizer, data)
        reference, labels = torch_logits(classifier, tokenized, collator, batch_size)
        split_texts, split_pairs = _texts(raw, task)
        fp32_logits, _ = onnx_fp32.logits(split_texts, split_pairs, batch_size=batch_size, warn=False)
        validation_diff = max(validation_diff, float(np.abs(fp32_logits - reference).max()))
        metrics["pytorch"][split_name] = compute_metrics(task, reference, labels)
        metrics["onnx_fp32"][split_name] = compute_metrics(task, fp32_logits, labels)
        if onnx_int8 is not None:
            int8_logits, _ = onnx_int8.logits(split_texts, split_pairs, batch_size=batch_size, warn=False)
            int8_diff = max(int8_diff, float(np.abs(int8_logits - reference).max()))
            metrics["onnx_int8"][split_name] = compute_metrics(task, int8_logits, labels)
            if not task.is_regression:
                same = predictions_from_logits(task, int8_logits) == predictions_from_logits(task, reference)
                agreement[split_name] = float(np.mean(same))
    if not validation_diff <= tolerance:
        raise ExportError(
            f"through tokenizers + onnxruntime, ONNX fp32 logits differ from PyTorch by {validation_diff:.3g}"
            " "
            f"(> tolerance {tolerance:g}) on the validation set; nothing was exported",
            "check that the tokenizer saved with the model is the one it was trained with",
        )

    notes: list[str] = []
    flat = {engine: _metrics_with_prefix(values) for engine, values in metrics.items()}
    main_key = task.main_metric if len(raw_splits) == 1 else f"{next(iter(raw_splits))}/{task.main_metric}"
    if quantize:
        drop = flat["pytorch"][main_key] - flat["onnx_int8"][main_key]
        if drop > INT8_WARN_DROP:
            notes.append(
                f"int8 loses {100 * drop:.2f} points of {main_key} ({100 * flat['pytorch'][main_key]:.2f} -> "
                f"{100 * flat['onnx_int8'][main_key]:.2f}); serve model.onnx (--precision fp32)"
                " if that matters"
            )
    manifest["parity"] = {
        "tolerance": tolerance,
        "cases": cases,
        "validation_max_abs_diff": validation_diff,
        **({"int8_validation_max_abs_diff": int8_diff} if quantize else {}),
    }
    manifest["evaluation"] = {
        "splits": {name: len(split) for name, split in raw_splits.items()},
        "main_metric": main_key,
        "metrics": flat,
        **({"int8_agreement_with_pytorch": agreement} if agreement else {}),
    }
    weights = model_dir / "model.safetensors"
    manifest["sizes"] = {
        **({"pytorch": weights.stat().st_size} if weights.is_file() else {}),
        **{precision: info["bytes"] for precision, info in files.items()},
    }
    manifest["warnings"] = notes
    manifest["card"] = model_card.card_for_export(work, manifest, model_card.find_run_summary(source, model_dir))
    _write_manifest(work, manifest)
    return manifest, notes


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
