"""One trial of ``kdkit compress``, measured as deployed: distil (:func:`kdkit.api.distill`), export
(:func:`kdkit.export.stage.export_onnx`, fp32 and int8 when the plan deploys int8), then measure the exported
model with onnxruntime (:class:`kdkit.export.inference.OnnxClassifier`): the dev score of the deployed
precision, agreement with the teacher's dev predictions, p50/p95 latency at batch 1 on the dev texts
(:func:`kdkit.export.latency.measure_latency`), and the model file's size on disk.

The teacher is measured the same way once per output folder (:func:`measure_teacher`): the reference point of
the report and the score every drop is counted from. Trials share the teacher-signal cache of ``KDKIT_HOME``
(keyed by teacher, data and signal options), so a trial with a max length already tried reuses its signals.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel
from rich.console import Console

from kdkit import api
from kdkit.compress.space import Plan
from kdkit.config import DataConfig
from kdkit.data.metrics import compute_metrics, predictions_from_logits
from kdkit.data.tasks import TaskSpec
from kdkit.export.fidelity import FidelityOptions
from kdkit.export.inference import OnnxClassifier
from kdkit.export.latency import measure_latency
from kdkit.export.stage import ExportOptions, export_onnx
from kdkit.export.validation import texts
from kdkit.models.vocab import prune_vocabulary
from kdkit.plugins.manager import PluginManager
from kdkit.records import model_card
from kdkit.records.fidelity import read_fidelity, write_fidelity
from kdkit.records.manifests import EXPORT_MANIFEST_FILE, file_sha256, read_json, write_json


@dataclass(frozen=True)
class DevSet:
    """The first validation split as served: texts, second texts (pairs), gold labels."""

    task: TaskSpec
    texts: list[str]
    pairs: list[str] | None
    labels: np.ndarray


@dataclass(frozen=True)
class TrialSetup:
    """What every trial shares.

    Attributes:
        teacher: the teacher's model folder.
        data: the data options (the max length is each trial's own).
        dev: the dev texts and labels every export is measured on.
        teacher_predictions: the teacher's dev predictions (from its fp32 export).
        training: training options every trial gets (batch size, seed, device ...).
        threads: onnxruntime intra-op threads of the latency measurement.
        exporter: ``dynamo`` or ``torchscript``.
        plugins, console: the plugin host (losses) and where the trials' progress goes.
    """

    teacher: Path
    data: DataConfig
    dev: DevSet
    teacher_predictions: np.ndarray
    training: dict[str, Any]
    threads: int
    exporter: str
    plugins: PluginManager
    console: Console


def dev_set(data: DataConfig) -> DevSet:
    """The first validation split of ``data``, as texts and labels."""
    from kdkit.data.loading import load_raw

    raw = load_raw(data, need_train=False)
    split = next(iter(raw.validation.values()))
    first, second = texts(split, raw.task)
    task = raw.task
    ids = None if task.label_names is None else {name: i for i, name in enumerate(task.label_names)}
    values = list(split[task.label_column])
    labels = [float(v) for v in values] if ids is None else [ids[v] if isinstance(v, str) else int(v) for v in values]
    return DevSet(task, first, second, np.asarray(labels))


def measure_export(
    directory: Path, precision: str, dev: DevSet, threads: int, reference: np.ndarray | None
) -> dict[str, Any]:
    """Score, agreement with ``reference`` predictions, latency and size of an export's ``precision`` model."""
    classifier = OnnxClassifier(directory, precision=precision, threads=threads)  # type: ignore[arg-type]
    logits, _ = classifier.logits(dev.texts, dev.pairs, warn=False)
    scores = compute_metrics(dev.task, logits, dev.labels)
    predictions = predictions_from_logits(dev.task, logits)
    latency = measure_latency(classifier, dev.texts, dev.pairs)
    agreement = None
    if reference is not None and not dev.task.is_regression:
        agreement = float(np.mean(predictions == reference))
    manifest = classifier.manifest
    return {
        "score": float(scores[dev.task.main_metric]),
        "metrics": scores,
        "main_metric": dev.task.main_metric,
        "agreement": agreement,
        "p50_ms": latency.p50_ms,
        "p95_ms": latency.p95_ms,
        "latency": latency.to_dict(),
        "size_bytes": classifier.model_file.stat().st_size,
        "precision": classifier.precision,
        "export": str(directory),
        "engine_scores": _engine_scores(manifest, dev.task.main_metric),
        "predictions": predictions.tolist(),
    }


def _engine_scores(manifest: dict[str, Any], main_metric: str) -> dict[str, float]:
    """The main metric of each engine the export measured (``pytorch``, ``onnx_fp32``, ``onnx_int8``)."""
    metrics = (manifest.get("evaluation") or {}).get("metrics") or {}
    key = (manifest.get("evaluation") or {}).get("main_metric", main_metric)
    return {engine: float(values[key]) for engine, values in metrics.items() if key in values}


class TeacherRecord(BaseModel):
    """``teacher.json``: the teacher's measured reference, reused while its weights are unchanged."""

    teacher: str
    sha256: str
    threads: int
    measured: dict[str, Any]


def measure_teacher(teacher: Path, data: DataConfig, output: Path, threads: int, exporter: str) -> dict[str, Any]:
    """The teacher exported to ``output/teacher`` (fp32) and measured as a trial is; reused from
    ``output/teacher.json`` when its weights (sha256) and threads are the same. Under a lock: a second process
    sharing the output folder waits, then reuses the first one's."""
    from kdkit.records.locking import RunLock

    lock = RunLock(output / "teacher.json")
    lock.acquire(wait=True)
    try:
        return _measured_teacher(teacher, data, output, threads, exporter)
    finally:
        lock.release()


def _measured_teacher(teacher: Path, data: DataConfig, output: Path, threads: int, exporter: str) -> dict[str, Any]:
    record_path, weights = output / "teacher.json", teacher / "model.safetensors"
    sha = file_sha256(weights) if weights.is_file() else "unknown"
    if record_path.is_file():
        record = read_json(record_path, TeacherRecord, what="the teacher's reference", fix="delete it")
        if record.sha256 == sha and record.threads == threads and Path(record.measured["export"]).is_dir():
            return record.measured
    dev = dev_set(data)
    options = ExportOptions(output=output / "teacher", data=_validation_only(data), exporter=exporter,  # type: ignore[arg-type]
                            overwrite=True)  # fmt: skip
    export_onnx(teacher, options)
    measured = measure_export(output / "teacher", "fp32", dev, threads, None)
    write_json(record_path, TeacherRecord(teacher=str(teacher), sha256=sha, threads=threads, measured=measured))
    return measured


def _validation_only(data: DataConfig) -> DataConfig:
    """The data options an export is validated with (no training data, the given max length dropped: the
    export's own comes from ``ExportOptions.max_length`` or the run)."""
    return data.model_copy(update={"train_file": None, "max_train_samples": None})


def run_trial(plan: Plan, setup: TrialSetup, directory: Path) -> dict[str, Any]:
    """Distil, export and measure ``plan`` in ``directory`` (``run/``, ``pruned/`` when the vocabulary is
    pruned, ``onnx/``); returns what was measured (with ``seconds`` and ``cpu_seconds``, the trial's wall and CPU
    time)."""
    start, cpu = time.perf_counter(), _cpu_seconds()
    data = setup.data.model_copy(update={"max_length": plan.max_length})
    raw = {
        "loss": plan.loss,
        "teacher": str(setup.teacher),
        "student": plan.student,
        "data": data.model_dump(exclude_none=True, mode="json"),
        "training": {**setup.training, "epochs": plan.epochs, "learning_rate": plan.learning_rate},
        "options": plan.loss_options(),
        "output": str(directory / "run"),
        "overwrite": True,
        "quiet": True,
    }
    config = api.resolve_distill_config(raw, setup.plugins)
    result = api.distill(config, plugins=setup.plugins, console=setup.console)
    model_dir = result.run_dir / "best"
    vocab_size = None
    if plan.vocab == "pruned":
        pruned = prune_vocabulary(model_dir, _all_texts(data), directory / "pruned")
        model_dir, vocab_size = pruned.directory, pruned.kept
    export_options = ExportOptions(
        output=directory / "onnx", data=_validation_only(data), exporter=setup.exporter,  # type: ignore[arg-type]
        quantize="int8" if plan.precision == "int8" else None, max_length=plan.max_length, overwrite=True,
        # the budget (--max-drop from the teacher, as deployed) judges int8, not export's own guard
        fidelity=FidelityOptions(teacher=setup.teacher, keep_int8=True),
    )  # fmt: skip
    export_onnx(model_dir, export_options)
    measured = measure_export(directory / "onnx", plan.precision, setup.dev, setup.threads, setup.teacher_predictions)
    measured.pop("predictions")
    record_latency(directory / "onnx", model_dir, measured)
    shutil.rmtree(directory / "run" / "last", ignore_errors=True)  # best/ is what was exported
    return {**measured, "vocab_size": vocab_size, "seconds": time.perf_counter() - start,
            "cpu_seconds": _cpu_seconds() - cpu, "train_metrics": result.metrics}  # fmt: skip


def _cpu_seconds() -> float:
    """User + system CPU time of this process (every thread) and its finished children."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def record_latency(export: Path, model_dir: Path, measured: dict[str, Any]) -> None:
    """The trial's latency (p50/p95 of the deployed precision) in its export's fidelity report and model card,
    so that the chosen student's card states what it costs (issue 26)."""
    report = read_fidelity(export)
    latency = {f"onnx_{measured['precision']}": {"p50_ms": measured["p50_ms"], "p95_ms": measured["p95_ms"]}}
    write_fidelity(export, report.model_copy(update={"latency": latency}))
    manifest = json.loads((export / EXPORT_MANIFEST_FILE).read_text())
    model_card.card_for_export(export, manifest, model_card.find_run_summary(model_dir, model_dir))


def _all_texts(data: DataConfig) -> list[str]:
    """Every text of the training and validation data (both fields of a pair): what the pruned vocabulary
    must tokenise exactly as the full one."""
    from kdkit.data.loading import load_raw

    raw = load_raw(data)
    splits = [raw.train, *raw.validation.values()] if raw.train is not None else list(raw.validation.values())
    found: list[str] = []
    for split in splits:
        first, second = texts(split, raw.task)
        found.extend(first)
        found.extend(second or [])
    return found
