"""``kdkit_fidelity.json``: what an export costs against the PyTorch model it came from and against its teacher
(:class:`FidelityReport`), written into the export folder by ``kdkit export`` and read back verified.

The figures are measured by :mod:`kdkit.export.fidelity`; this module only describes and checks the file, so
that a reader (the model card, ``kdkit compress``'s report) needs no torch. :func:`read_fidelity` checks the
fields and that the ONNX files the report measured are still the ones in the folder (size and SHA-256): a
report copied from another export, or a model re-quantised after the report was written, is refused.

Engines are ``pytorch``, ``onnx_fp32`` and ``onnx_int8``. Metric values are fractions (0.91), as everywhere in
kdkit; ``int8_drop_points`` is in points (percent of the main metric: 0.91 -> 0.89 is 2.0).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from kdkit.errors import ModelError
from kdkit.records.manifests import FileEntry, _Record, _relative_file, check_files, read_json, write_json

#: the report's file in an export folder
FIDELITY_FILE = "kdkit_fidelity.json"
#: the version of its layout (a reader refuses newer ones)
FIDELITY_FORMAT = 1
#: the engines a report may hold, in display order
ENGINES = ("pytorch", "onnx_fp32", "onnx_int8")


class MeasuredFile(FileEntry):
    """An ONNX file the report measured: its path in the export folder, size and SHA-256."""

    file: str

    _inside = field_validator("file")(_relative_file)


class Calibration(_Record):
    """Calibration of one engine's probabilities (classification).

    ``ece``: expected calibration error of the softmax (15 equal-width bins of the top probability);
    ``temperature``: the one temperature that minimises the dev NLL; ``ece_scaled`` and ``nll_scaled``: after
    dividing the logits by a temperature fitted on the other half of the dev set (two-fold cross-fitting, so
    the "after" figures are not measured on the examples that chose their temperature)."""

    ece: float = Field(ge=0, le=1)
    ece_scaled: float = Field(ge=0, le=1)
    nll: float = Field(ge=0)
    nll_scaled: float = Field(ge=0)
    temperature: float = Field(gt=0)


class ClassScores(_Record):
    """One class: its dev examples (``support``), F1 and accuracy (recall: the share of its examples predicted
    as it) per engine, and the change fp32 -> int8 in points (None without int8)."""

    label: str
    support: int = Field(ge=0)
    f1: dict[str, float]
    accuracy: dict[str, float]
    f1_change_int8: float | None = None
    accuracy_change_int8: float | None = None


class TeacherFidelity(_Record):
    """The teacher the student was distilled from: its path, its dev metrics, and per engine the share of
    examples predicted as the teacher predicts (classification) or the mean |Δ prediction| (regression)."""

    path: str
    metrics: dict[str, float]
    agreement: dict[str, float] | None = None
    mean_abs_diff: dict[str, float] | None = None


class FidelityReport(_Record):
    """``kdkit_fidelity.json``: dev scores of every engine, agreement, per-class changes, calibration.

    ``latency`` is left for the latency measurement of ``kdkit compress``: ``{engine: {"p50_ms": ...,
    "p95_ms": ..., ...}}`` at batch 1; None when not measured."""

    format: int = FIDELITY_FORMAT
    kdkit_version: str | None = None
    created_at: str | None = None
    task: str
    regression: bool
    label_names: list[str] | None = None
    #: examples per validation split; the per-class and calibration figures pool every split
    splits: dict[str, int]
    models: dict[str, MeasuredFile]
    main_metric: str
    #: ``{engine: {metric: value}}`` (``split/metric`` keys with several splits), as in kdkit_export.json
    metrics: dict[str, dict[str, float]]
    #: ONNX fp32 main metric minus ONNX int8's, in points (None without int8)
    int8_drop_points: float | None = None
    max_int8_drop_points: float | None = None
    #: True when int8 dropped more than allowed and was kept on request (``--keep-int8``)
    int8_kept_anyway: bool = False
    #: per ONNX engine: share of examples with PyTorch's class (classification)
    agreement_with_pytorch: dict[str, float] | None = None
    #: per ONNX engine: mean |Δ prediction| against PyTorch (regression)
    mean_abs_diff_vs_pytorch: dict[str, float] | None = None
    teacher: TeacherFidelity | None = None
    per_class: list[ClassScores] | None = None
    calibration: dict[str, Calibration] | None = None
    #: set by kdkit compress (p50/p95 at batch 1): {engine: {"p50_ms", "p95_ms", ...}}; None when not measured
    latency: dict[str, dict[str, Any]] | None = None
    #: things a reader should know (a recorded teacher that could not be loaded)
    notes: list[str] = Field(default_factory=list)


def write_fidelity(directory: Path, report: FidelityReport) -> Path:
    """Write ``report`` as ``directory / kdkit_fidelity.json`` (atomically); returns the path."""
    path = directory / FIDELITY_FILE
    write_json(path, report.model_dump(mode="json", exclude_none=True))
    return path


def read_fidelity(directory: Path, *, checksums: bool = True) -> FidelityReport:
    """The fidelity report of an export folder, verified: its fields, its format, and the ONNX files it measured
    (size and, with ``checksums``, SHA-256). Anything wrong is one :class:`~kdkit.errors.ModelError` line."""
    path = directory / FIDELITY_FILE
    fix = "export the model again ('kdkit export ... --onnx --overwrite')"
    if not path.is_file():
        raise ModelError(f"{directory} has no fidelity report ({FIDELITY_FILE})", fix)
    report = read_json(path, FidelityReport, what="the fidelity report", fix=fix)
    if report.format > FIDELITY_FORMAT:
        raise ModelError(f"{path} has format {report.format}, newer than this kdkit reads", "upgrade kdkit")
    entries = {entry.file: FileEntry(bytes=entry.bytes, sha256=entry.sha256) for entry in report.models.values()}
    problem = check_files(directory, entries, checksums=checksums)
    if problem is not None:
        raise ModelError(f"{path} does not describe this export: {problem.message}", fix)
    return report


# -- shown in the model card and by kdkit export ------------------------------------------------------

#: how the tables name the engines
ENGINE_TITLES = {"pytorch": "PyTorch", "onnx_fp32": "ONNX fp32", "onnx_int8": "ONNX int8"}


def _percent(value: float) -> str:
    return f"{100 * value:.2f}"


def _row(title: str, values: dict[str, Any] | None, engines: list[str], show: Callable[[Any], str]) -> list[list[str]]:
    """One row of per-engine values (``-`` where an engine has none); no row when there are no values."""
    if not values:
        return []
    return [[title] + [show(values[e]) if e in values else "-" for e in engines]]


def engine_rows(report: FidelityReport) -> tuple[list[str], list[list[str]]]:
    """The headers and rows of the per-engine table: main metric, agreement, |Δ|, calibration, latency."""
    engines = [e for e in ENGINES if e in report.metrics]
    main, teacher, calibration = report.main_metric, report.teacher, report.calibration or {}
    rows = _row(f"{main} (%)", {e: report.metrics[e][main] for e in engines}, engines, _percent)
    rows += _row("agreement with PyTorch (%)", report.agreement_with_pytorch, engines, _percent)
    rows += _row("agreement with the teacher (%)", teacher.agreement if teacher else None, engines, _percent)
    rows += _row("mean |Δ| vs PyTorch", report.mean_abs_diff_vs_pytorch, engines, "{:.4f}".format)
    rows += _row("mean |Δ| vs the teacher", teacher.mean_abs_diff if teacher else None, engines, "{:.4f}".format)
    rows += _row("ECE (%)", {e: c.ece for e, c in calibration.items()}, engines, _percent)
    rows += _row("ECE, temperature-scaled (%)", {e: c.ece_scaled for e, c in calibration.items()}, engines, _percent)
    rows += _row("temperature", {e: c.temperature for e, c in calibration.items()}, engines, "{:.2f}".format)
    latency = {e: f"{v.get('p50_ms', 0):.2f} / {v.get('p95_ms', 0):.2f}" for e, v in (report.latency or {}).items()}
    rows += _row("latency p50 / p95 (ms)", latency, engines, str)
    return [""] + [ENGINE_TITLES[e] for e in engines], rows


def class_rows(report: FidelityReport) -> tuple[list[str], list[list[str]]]:
    """Per class (with int8): examples, F1 and accuracy of fp32 and int8 (%), their changes (points)."""
    headers = ["class", "examples", "F1 fp32", "F1 int8", "Δ F1", "acc. fp32", "acc. int8", "Δ acc."]
    rows = [
        [
            c.label,
            str(c.support),
            *(_percent(c.f1[e]) for e in ("onnx_fp32", "onnx_int8")),
            f"{c.f1_change_int8:+.2f}",
            *(_percent(c.accuracy[e]) for e in ("onnx_fp32", "onnx_int8")),
            f"{c.accuracy_change_int8:+.2f}",
        ]
        for c in report.per_class or []
        if c.f1_change_int8 is not None and c.accuracy_change_int8 is not None
    ]
    return headers, rows


def summary_lines(report: FidelityReport) -> list[str]:
    """Sentences: the teacher and its score, the int8 drop against the allowed one, the notes."""
    lines = []
    main = report.main_metric
    if report.teacher is not None:
        score = report.teacher.metrics.get(main)
        lines.append(
            f"Teacher {report.teacher.path}" + (f": dev {main} {_percent(score)}." if score is not None else ".")
        )
    if report.int8_drop_points is not None:
        kept = " (more than allowed: kept with --keep-int8)" if report.int8_kept_anyway else ""
        lines.append(
            f"int8 loses {report.int8_drop_points:.2f} points of {main} against fp32 "
            f"(allowed: {report.max_int8_drop_points:g}){kept}."
        )
    return lines + [f"Note: {note}." for note in report.notes]
