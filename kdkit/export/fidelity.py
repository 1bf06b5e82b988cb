"""The fidelity report of an export: what ONNX fp32 and int8 cost against the PyTorch model and its teacher.

    report = fidelity_report(comparison, task, models, teacher=teacher_outputs(...), options=FidelityOptions())
    check_int8_drop(report)            # ExportError when int8 loses more than --max-int8-drop points of fp32
    write_fidelity(export_dir, report) # kdkit_fidelity.json (kdkit.records.fidelity)

Every figure is computed from the dev outputs that :func:`kdkit.export.validation.compare_engines` already
produced for the export's parity check (:attr:`EngineComparison.logits`): the export's dev predictions are
computed once. The teacher's dev outputs are computed here (:func:`teacher_outputs`), with its own tokenizer.

- **Scores**: the task's metrics for PyTorch, ONNX fp32 and ONNX int8, and ``int8_drop_points`` =
  100 · (fp32 − int8) of the main metric.
- **Agreement**: the share of dev examples where an engine predicts the class PyTorch (or the teacher)
  predicts; for regression the mean |Δ prediction| instead.
- **Per class** (classification): F1 and accuracy (recall) of each class per engine; change fp32 → int8.
- **Calibration** (classification), per engine, with p_i = softmax(z_i) and conf_i = max_c p_ic::

      ECE = Σ_b (|B_b| / N) · |acc(B_b) − conf(B_b)|,   B_b = {i : conf_i ∈ ((b−1)/15, b/15]},  b = 1..15

  acc(B_b) is the share of B_b whose top class is the gold label, conf(B_b) their mean conf_i.
  NLL = −(1/N) Σ_i log softmax(z_i / T)[y_i]; temperature scaling divides the logits by the T that minimises
  it (the NLL is convex in 1/T: a bounded scalar search over 1/T ∈ [0.01, 100]). The "after" figures
  (``ece_scaled``, ``nll_scaled``) are cross-fitted: the dev set is split into two folds (alternate
  examples), each fold's logits are scaled by the temperature fitted on the other fold, so no example chooses
  its own temperature (fitting and measuring on the same examples would flatter the result). The reported
  ``temperature`` is the one fitted on the whole dev set, the one to deploy. Several validation splits (MNLI)
  are pooled for the per-class and calibration figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics as skm

import kdkit
from kdkit.config import DataConfig
from kdkit.data.batching import DistillationCollator
from kdkit.data.metrics import compute_metrics, predictions_from_logits
from kdkit.data.tasks import TaskSpec
from kdkit.data.tokenizing import tokenize
from kdkit.errors import ConfigError, ExportError, KdkitError, ModelError
from kdkit.export.inference import softmax
from kdkit.export.source import ExportInput
from kdkit.export.validation import EngineComparison, metrics_with_prefix, torch_logits
from kdkit.models.checks import check_length_fits
from kdkit.models.loading import load_classifier, load_tokenizer
from kdkit.records.fidelity import (
    Calibration,
    ClassScores,
    FidelityReport,
    MeasuredFile,
    TeacherFidelity,
    write_fidelity,
)
from kdkit.records.manifests import describe_file
from kdkit.records.provenance import find_model_dir, recorded_teacher

#: ECE's bins (equal width over the top probability)
ECE_BINS = 15
#: the default of --max-int8-drop: points of the main metric int8 may lose against fp32
DEFAULT_MAX_INT8_DROP = 1.0
#: the search interval of 1/T when fitting a temperature
_INVERSE_TEMPERATURE = (1e-2, 1e2)


@dataclass(frozen=True)
class FidelityOptions:
    """How the report is made and what it refuses.

    Attributes:
        teacher: the teacher to compare with (a model folder or run directory) [default: the one the run
            recorded, if any and still there].
        max_int8_drop: points of the main metric int8 may lose against fp32 before the export is refused.
        keep_int8: keep an int8 model that loses more (the report says so).
    """

    teacher: Path | None = None
    max_int8_drop: float = DEFAULT_MAX_INT8_DROP
    keep_int8: bool = False

    def check(self) -> None:
        """One line for an option that cannot work, before any work."""
        if not math.isfinite(self.max_int8_drop):
            raise ConfigError(f"--max-int8-drop must be a number, got {self.max_int8_drop}", "pass e.g. 1.0")
        if self.teacher is not None:
            try:
                find_model_dir(Path(self.teacher))
            except ModelError as exc:
                raise ModelError(f"--teacher {exc.problem}", exc.fix) from None


@dataclass
class TeacherOutputs:
    """The teacher's dev logits per split (None when no teacher could be used) and what the report says."""

    path: str | None = None
    logits: dict[str, np.ndarray] | None = None
    note: str | None = None


# -- calibration --------------------------------------------------------------------------------------


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE of (N, C) probabilities against (N,) gold labels over ``bins`` equal-width bins of the top
    probability (the module docstring gives the formula); bin b holds conf ∈ ((b−1)/bins, b/bins]."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.sum() * abs(float(correct[members].mean()) - float(confidence[members].mean()))
    return total / len(labels)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean −log softmax(z / T)[y] over (N, C) logits and (N,) labels."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probabilities[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T that minimises the NLL of softmax(z / T) (convex in 1/T: Brent's bounded search)."""
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(
        lambda inverse: negative_log_likelihood(logits, labels, 1.0 / inverse),
        bounds=_INVERSE_TEMPERATURE,
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(1.0 / result.x)


def calibration(logits: np.ndarray, labels: np.ndarray) -> Calibration:
    """ECE and NLL before temperature scaling and after it (cross-fitted on two folds), and the temperature."""
    folds = np.arange(len(labels)) % 2
    scaled = np.asarray(logits, dtype=np.float64).copy()
    for fold in (0, 1):
        fit = folds != fold if len(labels) > 1 else folds == fold
        scaled[folds == fold] /= fit_temperature(logits[fit], labels[fit])
    return Calibration(
        ece=expected_calibration_error(softmax(np.asarray(logits, dtype=np.float64)), labels),
        ece_scaled=expected_calibration_error(softmax(scaled), labels),
        nll=negative_log_likelihood(logits, labels),
        nll_scaled=negative_log_likelihood(scaled, labels),
        temperature=fit_temperature(logits, labels),
    )


# -- agreement and classes ----------------------------------------------------------------------------


def _pooled(by_split: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate(list(by_split.values()))


def per_class(
    label_names: tuple[str, ...], predictions: dict[str, np.ndarray], labels: np.ndarray
) -> list[ClassScores]:
    """F1 and accuracy (recall) of each class per engine; the change fp32 -> int8 in points."""
    classes = list(range(len(label_names)))
    f1 = {e: skm.f1_score(labels, p, labels=classes, average=None, zero_division=0) for e, p in predictions.items()}
    recall = {
        e: skm.recall_score(labels, p, labels=classes, average=None, zero_division=0) for e, p in predictions.items()
    }
    int8 = "onnx_int8" in predictions
    return [
        ClassScores(
            label=name,
            support=int((labels == c).sum()),
            f1={e: float(values[c]) for e, values in f1.items()},
            accuracy={e: float(values[c]) for e, values in recall.items()},
            f1_change_int8=_points(f1["onnx_int8"][c] - f1["onnx_fp32"][c]) if int8 else None,
            accuracy_change_int8=_points(recall["onnx_int8"][c] - recall["onnx_fp32"][c]) if int8 else None,
        )
        for c, name in enumerate(label_names)
    ]


def _points(fraction: float) -> float:
    """A difference of fractions in points, rounded (so 0.90 - 0.89 is 1.0, not 1.0000000000000009)."""
    return round(100.0 * float(fraction), 6)


def _agreement(task: TaskSpec, outputs: dict[str, np.ndarray], reference: np.ndarray) -> dict[str, float]:
    """Per engine: the share of identical classes (classification) or mean |Δ prediction| (regression)."""
    expected = predictions_from_logits(task, reference)
    if task.is_regression:
        return {e: float(np.abs(predictions_from_logits(task, z) - expected).mean()) for e, z in outputs.items()}
    return {e: float(np.mean(predictions_from_logits(task, z) == expected)) for e, z in outputs.items()}


# -- the teacher --------------------------------------------------------------------------------------


def teacher_outputs(
    options: FidelityOptions,
    source_path: Path,
    task: TaskSpec,
    raw_splits: dict[str, Any],
    data: DataConfig,
    batch_size: int,
) -> TeacherOutputs:
    """The teacher's dev logits: ``options.teacher``, else the teacher the run recorded. A recorded teacher
    that is gone or cannot be loaded gives a note, not an error (the export itself is sound)."""
    given = options.teacher is not None
    name = str(options.teacher) if given else recorded_teacher(source_path)
    if name is None:
        return TeacherOutputs()
    if not given and not Path(name).exists():
        return TeacherOutputs(note=f"the recorded teacher {name} is not here: no agreement with it (pass --teacher)")
    try:
        model_dir = find_model_dir(Path(name))
        tokenizer = load_tokenizer(str(model_dir))
        model = load_classifier(str(model_dir), task, role="teacher").eval()
        check_length_fits(model.config, data.max_length)
        collator = DistillationCollator(int(tokenizer.pad_token_id or 0))
        logits = {
            split: torch_logits(model, tokenize(raw, task, tokenizer, data), collator, batch_size)[0]
            for split, raw in raw_splits.items()
        }
    except KdkitError as exc:
        if given:
            raise
        return TeacherOutputs(note=f"the recorded teacher {name} could not be used ({exc.problem})")
    return TeacherOutputs(path=str(model_dir), logits=logits)


def _teacher_fidelity(task: TaskSpec, comparison: EngineComparison, teacher: TeacherOutputs) -> TeacherFidelity | None:
    if teacher.logits is None or teacher.path is None:
        return None
    metrics = {split: compute_metrics(task, z, comparison.labels[split]) for split, z in teacher.logits.items()}
    outputs = {engine: _pooled(by_split) for engine, by_split in comparison.logits.items()}
    agreement = _agreement(task, outputs, _pooled(teacher.logits))
    return TeacherFidelity(
        path=teacher.path,
        metrics=metrics_with_prefix(metrics),
        **({"mean_abs_diff": agreement} if task.is_regression else {"agreement": agreement}),
    )


# -- the report ---------------------------------------------------------------------------------------


def measured_files(directory: Path, models: dict[str, str]) -> dict[str, MeasuredFile]:
    """``{precision: file}`` (relative to the export folder) with each file's size and SHA-256."""
    return {
        precision: MeasuredFile(file=file, **describe_file(directory / file).model_dump())
        for precision, file in models.items()
    }


def fidelity_report(
    comparison: EngineComparison,
    task: TaskSpec,
    models: dict[str, MeasuredFile],
    *,
    teacher: TeacherOutputs | None = None,
    options: FidelityOptions | None = None,
) -> FidelityReport:
    """The report of an export from its engine comparison (and the teacher's dev logits, if any)."""
    options = options or FidelityOptions()
    splits = list(comparison.labels)
    main = task.main_metric if len(splits) == 1 else f"{splits[0]}/{task.main_metric}"
    flat = comparison.flat_metrics()
    drop = _points(flat["onnx_fp32"][main] - flat["onnx_int8"][main]) if "onnx_int8" in flat else None
    labels = _pooled(comparison.labels)
    outputs = {engine: _pooled(by_split) for engine, by_split in comparison.logits.items()}
    onnx = {engine: z for engine, z in outputs.items() if engine != "pytorch"}
    vs_pytorch = _agreement(task, onnx, outputs["pytorch"])
    classes, gold = task.label_names, labels.astype(np.int64)
    teacher = teacher or TeacherOutputs()
    by_class = None if classes is None else per_class(classes, {e: z.argmax(axis=1) for e, z in outputs.items()}, gold)
    return FidelityReport(
        kdkit_version=kdkit.__version__,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        task=task.name,
        regression=task.is_regression,
        label_names=list(classes) if classes is not None else None,
        splits={name: len(values) for name, values in comparison.labels.items()},
        models=models,
        main_metric=main,
        metrics=flat,
        int8_drop_points=drop,
        max_int8_drop_points=options.max_int8_drop if drop is not None else None,
        int8_kept_anyway=drop is not None and options.keep_int8 and drop > options.max_int8_drop,
        **({"mean_abs_diff_vs_pytorch": vs_pytorch} if task.is_regression else {"agreement_with_pytorch": vs_pytorch}),
        teacher=_teacher_fidelity(task, comparison, teacher),
        per_class=by_class,
        calibration=None if classes is None else {e: calibration(z, gold) for e, z in outputs.items()},
        notes=[teacher.note] if teacher.note else [],
    )


def check_int8_drop(report: FidelityReport) -> None:
    """ExportError when int8 loses more than ``max_int8_drop_points`` of the main metric against fp32 and was
    not kept on request: a silently broken int8 model must not ship."""
    drop, allowed = report.int8_drop_points, report.max_int8_drop_points
    if drop is None or allowed is None or report.int8_kept_anyway or drop <= allowed:
        return
    main = report.main_metric
    fp32, int8 = report.metrics["onnx_fp32"][main], report.metrics["onnx_int8"][main]
    raise ExportError(
        f"int8 loses {drop:.2f} points of {main} against fp32 ({100 * fp32:.2f} -> {100 * int8:.2f}), more than "
        f"--max-int8-drop {allowed:g}; nothing was exported",
        "export without --quantize (fp32), raise --max-int8-drop, or pass --keep-int8 to keep it anyway",
    )


def measure_into(
    work: Path,
    source: ExportInput,
    comparison: EngineComparison,
    models: dict[str, str],
    options: FidelityOptions,
    batch_size: int,
) -> FidelityReport:
    """Measure the report of the export being written in ``work``, refuse a broken int8 model
    (:func:`check_int8_drop`, before the teacher is run), and write ``kdkit_fidelity.json``."""
    files = measured_files(work, models)
    report = fidelity_report(comparison, source.task, files, options=options)
    check_int8_drop(report)
    teacher = teacher_outputs(options, source.path, source.task, source.raw_splits, source.data, batch_size)
    if teacher.path is not None or teacher.note is not None:
        report = fidelity_report(comparison, source.task, files, teacher=teacher, options=options)
    write_fidelity(work, report)
    return report
