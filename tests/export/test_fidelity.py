"""The fidelity report of an export (``kdkit_fidelity.json``): calibration formulas, agreement and per-class
changes, the int8 guard (``--max-int8-drop``, ``--keep-int8``), the report read back verified and shown in the
model card, a recorded teacher, and the regression path."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kdkit.cli import app
from kdkit.config import DataConfig
from kdkit.errors import ExportError, ModelError
from kdkit.export.fidelity import (
    FidelityOptions,
    calibration,
    check_int8_drop,
    expected_calibration_error,
    fidelity_report,
    fit_temperature,
    negative_log_likelihood,
)
from kdkit.export.inference import softmax
from kdkit.export.stage import ExportOptions, export_onnx
from kdkit.export.validation import EngineComparison
from kdkit.records.fidelity import FIDELITY_FILE, MeasuredFile, read_fidelity
from kdkit.records.manifests import EXPORT_MANIFEST_FILE
from kdkit.testing.models import BINARY_TASK, REGRESSION_TASK, THREE_CLASS_TASK, TINY_WORDS, save_tiny_classifier

runner = CliRunner()


def _export(model: Path, output: Path, validation: Path, **fidelity: object) -> object:
    options = ExportOptions(
        output=output,
        data=DataConfig(validation_file=validation),
        exporter="torchscript",
        quantize="int8",
        fidelity=FidelityOptions(**fidelity),  # type: ignore[arg-type]
    )
    return export_onnx(model, options)


# -- the formulas --------------------------------------------------------------------------------------


def test_ece_of_hand_made_probabilities_equals_a_direct_computation():
    # top probabilities 0.95 (bin 15: (14/15, 1]) twice, one right one wrong; 0.55 (bin 9: (8/15, 9/15]) twice,
    # both right: ECE = 2/4 * |0.5 - 0.95| + 2/4 * |1 - 0.55| = 0.45
    probabilities = np.array([[0.95, 0.05], [0.95, 0.05], [0.45, 0.55], [0.55, 0.45]])
    labels = np.array([0, 1, 1, 0])
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.45)
    # random three-class probabilities against a direct loop over the 15 intervals
    rng = np.random.default_rng(0)
    probabilities = softmax(rng.normal(size=(200, 3)) * 2)
    labels = np.array([rng.choice(3, p=row) for row in probabilities])  # calibrated on average: bins differ in sign
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == labels
    direct = 0.0
    for b in range(15):
        inside = (confidence > b / 15) & (confidence <= (b + 1) / 15)
        if inside.any():
            direct += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    assert expected_calibration_error(probabilities, labels) == pytest.approx(direct)
    assert expected_calibration_error(probabilities, labels, bins=5) != pytest.approx(direct)


def test_temperature_scaling_lowers_the_nll_of_an_overconfident_model():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 400)
    logits = rng.normal(size=(400, 3))
    logits[np.arange(400), labels] += 1.0  # right about 60% of the time ...
    logits *= 6.0  # ... with probabilities near 1: overconfident
    temperature = fit_temperature(logits, labels)
    assert temperature > 2.0
    before, after = negative_log_likelihood(logits, labels), negative_log_likelihood(logits, labels, temperature)
    assert after < 0.8 * before
    for other in (0.5, 1.0, temperature * 0.8, temperature * 1.25, 20.0):  # the fitted one is the minimum
        assert negative_log_likelihood(logits, labels, other) >= after
    result = calibration(logits, labels)
    assert result.temperature == pytest.approx(temperature)
    assert result.ece_scaled < result.ece / 2 and result.nll_scaled < result.nll


def _comparison(task_labels: np.ndarray, engines: dict[str, np.ndarray]) -> EngineComparison:
    metrics = {e: {"validation": {"accuracy": float(np.mean(z.argmax(1) == task_labels))}} for e, z in engines.items()}
    return EngineComparison(
        metrics=metrics, logits={e: {"validation": z} for e, z in engines.items()}, labels={"validation": task_labels}
    )


def test_agreement_per_class_changes_and_the_guard_on_hand_made_outputs():
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    one_hot = np.eye(3)
    fp32 = one_hot[[0, 0, 1, 1, 2, 2, 2, 2]] * 4  # always right
    int8 = one_hot[[0, 1, 1, 1, 2, 2, 2, 0]] * 4  # two wrong: a 0 read as 1, a 2 read as 0
    comparison = _comparison(labels, {"pytorch": fp32, "onnx_fp32": fp32.copy(), "onnx_int8": int8})
    files = {"fp32": MeasuredFile(file="onnx/model.onnx", bytes=1, sha256="0" * 64)}
    report = fidelity_report(comparison, THREE_CLASS_TASK, files, options=FidelityOptions(max_int8_drop=30.0))
    assert report.int8_drop_points == 25.0  # 100 -> 75
    assert report.agreement_with_pytorch == {"onnx_fp32": 1.0, "onnx_int8": 0.75}
    by_label = {c.label: c for c in report.per_class or []}
    assert [c.support for c in by_label.values()] == [2, 2, 4]
    assert by_label["a"].accuracy_change_int8 == -50.0 and by_label["c"].accuracy_change_int8 == -25.0
    assert by_label["b"].accuracy_change_int8 == 0.0
    assert by_label["b"].f1_change_int8 == pytest.approx(100 * (0.8 - 1.0))  # precision 2/3, recall 1
    assert report.calibration is not None and set(report.calibration) == {"pytorch", "onnx_fp32", "onnx_int8"}
    check_int8_drop(report)  # 25 points allowed 30: kept
    strict = fidelity_report(comparison, THREE_CLASS_TASK, files, options=FidelityOptions(max_int8_drop=24.99))
    with pytest.raises(ExportError, match=r"int8 loses 25\.00 points of accuracy against fp32 \(100\.00 -> 75\.00\)"):
        check_int8_drop(strict)
    keep = FidelityOptions(max_int8_drop=1, keep_int8=True)
    kept = fidelity_report(comparison, THREE_CLASS_TASK, files, options=keep)
    assert kept.int8_kept_anyway
    check_int8_drop(kept)


# -- on real exports -----------------------------------------------------------------------------------


def test_the_report_is_written_read_back_verified_and_shown_in_the_card(tiny_export: Path, tmp_path: Path):
    report = read_fidelity(tiny_export)
    manifest = json.loads((tiny_export / EXPORT_MANIFEST_FILE).read_text())
    assert manifest["fidelity"] == FIDELITY_FILE
    assert report.metrics == manifest["evaluation"]["metrics"]  # one owner: the export's own evaluation
    assert report.int8_drop_points == pytest.approx(
        100 * (report.metrics["onnx_fp32"]["accuracy"] - report.metrics["onnx_int8"]["accuracy"])
    )
    assert set(report.models) == {"fp32", "int8"} and report.teacher is None  # a bare model records no teacher
    assert report.calibration is not None and report.latency is None
    card = (tiny_export / "README.md").read_text()
    assert "## Fidelity" in card and "agreement with PyTorch (%)" in card and "ECE, temperature-scaled (%)" in card
    assert f"| ECE (%) | {100 * report.calibration['pytorch'].ece:.2f} |" in card
    # a model changed after the report, or a damaged report, is refused on read
    copy = tmp_path / "copy"
    shutil.copytree(tiny_export, copy)
    with (copy / "onnx" / "model_quantized.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelError, match="does not describe this export: onnx/model_quantized.onnx has"):
        read_fidelity(copy)
    shutil.copy(tiny_export / "onnx" / "model_quantized.onnx", copy / "onnx" / "model_quantized.onnx")
    assert read_fidelity(copy).models["int8"].sha256 == report.models["int8"].sha256
    data = json.loads((copy / FIDELITY_FILE).read_text())
    data["calibration"]["pytorch"]["ece"] = 2.0
    (copy / FIDELITY_FILE).write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"fidelity report .* is damaged or was edited: calibration\.pytorch\.ece"):
        read_fidelity(copy)


def test_the_int8_guard_refuses_with_the_figure_and_keeps_with_the_flag(
    tiny_teacher: Path, tiny_csv: tuple[Path, Path], tmp_path: Path
):
    output = tmp_path / "onnx"
    args = ["export", str(tiny_teacher), "--onnx", "-o", str(output), "--exporter", "torchscript", "--quantize", "int8"]
    args += ["--validation-file", str(tiny_csv[1]), "--max-int8-drop", "-1"]  # any int8 result is a drop over -1
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2, refused.output
    lines = refused.stderr.strip().splitlines()  # the progress lines, then one error line
    assert [line for line in lines if line.startswith("error:")] == lines[-1:] and "Traceback" not in refused.stderr
    assert lines[-1].startswith("error: int8 loses 0.00 points of accuracy against fp32"), lines
    assert "more than --max-int8-drop -1; nothing was exported" in lines[-1] and "--keep-int8" in lines[-1]
    assert sorted(tmp_path.glob("onnx*")) == []  # nothing half-written
    kept = runner.invoke(app, [*args, "--keep-int8"])
    assert kept.exit_code == 0, kept.output
    assert "fidelity (kdkit_fidelity.json)" in kept.stdout and "kept with --keep-int8" in kept.stdout
    assert read_fidelity(output).int8_kept_anyway
    assert "kept with --keep-int8" in (output / "README.md").read_text()


def test_a_distilled_runs_teacher_is_compared_and_a_missing_one_is_a_note(
    tiny_run: Path, tiny_teacher: Path, tmp_path: Path
):
    validation = Path(json.loads((tiny_run / "run.json").read_text())["config"]["data"]["validation_file"])
    report = _export(tiny_run, tmp_path / "onnx", validation).fidelity  # type: ignore[attr-defined]
    assert report.teacher is not None and Path(report.teacher.path).resolve() == tiny_teacher.resolve()
    assert set(report.teacher.agreement) == {"pytorch", "onnx_fp32", "onnx_int8"}
    assert report.teacher.agreement["onnx_fp32"] == report.teacher.agreement["pytorch"]
    # the student itself as --teacher agrees with itself everywhere PyTorch's fp32 does
    itself = _export(tiny_run, tmp_path / "self", validation, teacher=tiny_run).fidelity  # type: ignore[attr-defined]
    assert itself.teacher.agreement["pytorch"] == 1.0 and itself.teacher.metrics == itself.metrics["pytorch"]
    with pytest.raises(ModelError, match=r"^--teacher .*missing does not exist"):  # before any work
        _export(tiny_run, tmp_path / "none", validation, teacher=tmp_path / "missing")
    assert not (tmp_path / "none").exists()
    # a run whose recorded teacher is gone still exports, and says so
    moved = tmp_path / "run"
    shutil.copytree(tiny_run, moved, ignore=shutil.ignore_patterns("onnx"))
    summary = json.loads((moved / "run.json").read_text())
    summary["teacher"] = str(tmp_path / "gone")
    (moved / "run.json").write_text(json.dumps(summary))
    gone = _export(moved, tmp_path / "gone-onnx", validation).fidelity  # type: ignore[attr-defined]
    assert gone.teacher is None and "is not here" in gone.notes[0]
    assert "Note: the recorded teacher" in (tmp_path / "gone-onnx" / "README.md").read_text()


def test_regression_reports_the_metric_and_mean_prediction_differences(tmp_path: Path):
    model = save_tiny_classifier(tmp_path / "model", REGRESSION_TASK, num_layers=1, max_length=32)
    validation = tmp_path / "validation.csv"
    rng = np.random.default_rng(0)
    with validation.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for _ in range(24):
            writer.writerow([" ".join(rng.choice(TINY_WORDS, 6)), f"{rng.uniform(0, 5):.2f}"])
    result = _export(model, tmp_path / "onnx", validation, teacher=model, keep_int8=True)
    report = result.fidelity  # type: ignore[attr-defined]
    assert report.regression and report.main_metric == "pearson"
    assert report.calibration is None and report.per_class is None and report.agreement_with_pytorch is None
    assert set(report.mean_abs_diff_vs_pytorch) == {"onnx_fp32", "onnx_int8"}
    fp32, int8 = report.mean_abs_diff_vs_pytorch["onnx_fp32"], report.mean_abs_diff_vs_pytorch["onnx_int8"]
    assert fp32 < 1e-6 < int8 <= result.manifest["parity"]["int8_validation_max_abs_diff"]  # type: ignore[attr-defined]
    assert report.teacher.mean_abs_diff["pytorch"] == 0.0 and report.teacher.agreement is None
    card = (tmp_path / "onnx" / "README.md").read_text()
    assert "mean \\|Δ\\| vs PyTorch" in card and "ECE" not in card.split("## Fidelity")[1].split("## ")[0]


def test_fidelity_of_binary_task_names_labels(tiny_export: Path):
    report = read_fidelity(tiny_export)
    assert report.label_names == list(BINARY_TASK.label_names or ())
    assert [c.label for c in report.per_class or []] == ["neg", "pos"]
    assert sum(c.support for c in report.per_class or []) == report.splits["validation"]
