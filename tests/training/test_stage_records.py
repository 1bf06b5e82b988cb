"""The typed records of the two stages: run.json (kdkit.records.run_summary) and kdkit_export.json
(kdkit.export.manifest), and the partial-then-rename of a one-go output (runs.RunDirectory.start_fresh)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from kdkit.errors import ConfigError, ModelError
from kdkit.export.inference import read_manifest
from kdkit.export.manifest import ExportRecord
from kdkit.records.manifests import EXPORT_MANIFEST_FILE, read_json
from kdkit.records.run_summary import RunSummary
from kdkit.records.runs import RUN_FILE, RunDirectory
from kdkit.records.safe_paths import PARTIAL_MARK, mark_partial
from kdkit.training.precision import cpu_bf16_features, resolve_precision


def test_run_json_is_exactly_what_its_model_writes(tiny_run: Path) -> None:
    written = json.loads((tiny_run / RUN_FILE).read_text())
    record = read_json(tiny_run / RUN_FILE, RunSummary, fix="")
    assert record.to_json_dict() == written  # nothing lost or added by the model
    assert record.train is not None and record.train.steps == 2 * -(-record.train.examples // 16)  # 2 epochs, batch 16
    assert record.teacher_cache is not None and record.teacher_cache.used is True
    env = record.environment
    assert env is not None and env.precision == resolve_precision("auto", "cpu").name  # the tiny run's default
    assert env.precision_reason is not None and env.precision_reason.startswith("auto: ")
    assert env.cpu_bf16_features == cpu_bf16_features()
    assert record.command == "distill" and record.student == "copy:1" and "base_model" not in written
    assert "losses" not in written  # only a composite loss records its parts


def test_a_bad_field_of_run_json_is_one_line_naming_it(tiny_run: Path, tmp_path: Path) -> None:
    written = json.loads((tiny_run / RUN_FILE).read_text())
    written["train"]["steps"] = "many"
    (tmp_path / RUN_FILE).write_text(json.dumps(written))
    with pytest.raises(ModelError, match=r"train\.steps"):
        read_json(tmp_path / RUN_FILE, RunSummary, fix="train the run again")


def test_a_run_json_of_an_older_kdkit_with_fewer_fields_still_reads() -> None:
    task = {"name": "t", "text_fields": ["sentence"], "metrics": ["accuracy"], "main_metric": "accuracy"}
    record = RunSummary.model_validate({"kdkit_version": "0.0.1", "command": "finetune", "task": task, "metrics": {}})
    assert record.train is None and record.to_json_dict().keys() == {"kdkit_version", "command", "task", "metrics"}


def test_the_export_manifest_round_trips_and_is_what_inference_reads(tiny_export: Path) -> None:
    written = json.loads((tiny_export / EXPORT_MANIFEST_FILE).read_text())
    record = ExportRecord.model_validate(written)
    assert record.to_json_dict() == written
    assert list(record.to_json_dict()) == list(written)  # the file's key order
    assert record.parity is not None and all(
        case.max_abs_diff <= record.parity.tolerance for case in record.parity.cases
    )
    assert record.evaluation is not None and set(record.evaluation.metrics) == {"pytorch", "onnx_fp32", "onnx_int8"}
    assert set(record.models) == {"fp32", "int8"} and read_manifest(tiny_export)["max_length"] == record.max_length


def test_a_partial_export_manifest_holds_only_the_fields_set_so_far() -> None:
    record = ExportRecord(
        task={"name": "t"},
        max_length=8,
        input_names=["input_ids", "attention_mask"],
        models={"fp32": {"file": "a.onnx"}},
    )
    assert set(record.to_json_dict()) == {"task", "max_length", "input_names", "models"}
    record.warnings = []
    assert record.to_json_dict()["warnings"] == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("models", {"fp32": {"file": "../elsewhere.onnx"}}), ("input_names", ["pixels"]), ("max_length", 0)],
)
def test_a_bad_export_manifest_field_is_rejected(field: str, value: object) -> None:
    values = {"task": {"name": "t"}, "max_length": 8, "input_names": ["input_ids"], "models": {}, field: value}
    with pytest.raises(ValidationError, match=field):
        ExportRecord.model_validate(values)


def test_a_bad_parity_case_is_rejected() -> None:
    case = {"case": "batch 1", "batch": 1, "length": 4, "max_abs_diff": -1.0}
    with pytest.raises(ValidationError, match="max_abs_diff"):
        ExportRecord.model_validate(
            {"task": {}, "max_length": 8, "input_names": ["input_ids"], "models": {},
             "parity": {"tolerance": 1e-4, "cases": [case], "validation_max_abs_diff": 0.0}}
        )  # fmt: skip


def test_a_one_go_output_replaces_a_stale_partial_and_is_renamed_on_commit(tmp_path: Path) -> None:
    output = RunDirectory(tmp_path / "onnx")
    output.work.mkdir()
    mark_partial(output.work)  # a failed export of kdkit's
    (output.work / "stale.onnx").write_text("from a failed export")
    output.start_fresh()
    assert [p.name for p in output.work.iterdir()] == [PARTIAL_MARK]
    (output.work / "model.onnx").write_text("new")
    assert output.commit() == tmp_path / "onnx" and (tmp_path / "onnx" / "model.onnx").read_text() == "new"
    with pytest.raises(ConfigError, match="already exists"):
        RunDirectory(tmp_path / "onnx").start_fresh()
    # without kdkit_export.json this folder is not recognisably kdkit's: --overwrite refuses it, and touches nothing
    with pytest.raises(ConfigError, match="not a kdkit run or export"):
        RunDirectory(tmp_path / "onnx", overwrite=True).start_fresh()
    assert (tmp_path / "onnx" / "model.onnx").read_text() == "new" and not (tmp_path / "onnx.partial").exists()
