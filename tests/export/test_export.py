"""``kdkit export --onnx``: dynamic axes, parity with PyTorch on real examples, int8, manifest, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from kdkit.cli import app
from kdkit.config import DataConfig
from kdkit.errors import ConfigError, DataError, ExportError, ModelError
from kdkit.export.fidelity import FidelityOptions
from kdkit.export.hf_layout import FP32_FILE, INT8_FILE, TOKENIZER_FILE
from kdkit.export.onnx import _LogitsOnly
from kdkit.export.stage import ExportOptions, export_onnx
from kdkit.models.loading import load_classifier, load_tokenizer
from kdkit.records.manifests import EXPORT_MANIFEST_FILE

runner = CliRunner()


def _data(tiny_csv: tuple[Path, Path]) -> DataConfig:
    return DataConfig(validation_file=tiny_csv[1])


def _leftovers(output: Path) -> list[Path]:
    return sorted(output.parent.glob(output.name + "*"))


def test_default_export_is_dynamo_with_dynamic_axes_and_a_full_manifest(tiny_export: Path, tiny_teacher: Path):
    for name in (FP32_FILE, INT8_FILE, TOKENIZER_FILE, EXPORT_MANIFEST_FILE):
        assert (tiny_export / name).is_file(), name
    assert _leftovers(tiny_export) == [tiny_export]  # no .partial left behind
    manifest = json.loads((tiny_export / EXPORT_MANIFEST_FILE).read_text())
    assert manifest["exporter"]["name"] == "dynamo" and manifest["exporter"]["opset"] == 20
    assert manifest["task"]["name"] == "tiny" and manifest["label_names"] == ["neg", "pos"]
    assert manifest["max_length"] == 64  # from the model's kdkit_task.json
    assert manifest["input_names"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest["kdkit_version"]
    assert set(manifest["models"]) == {"fp32", "int8"}
    # parity on real examples, at batch 1 and batch 32, short and long
    cases = manifest["parity"]["cases"]
    assert {case["batch"] for case in cases} == {1, 32}
    assert len({case["length"] for case in cases}) >= 3
    assert max(case["max_abs_diff"] for case in cases) <= 1e-4
    assert manifest["parity"]["validation_max_abs_diff"] <= 1e-4
    metrics = manifest["evaluation"]["metrics"]
    assert set(metrics) == {"pytorch", "onnx_fp32", "onnx_int8"}
    assert metrics["onnx_fp32"] == pytest.approx(metrics["pytorch"])
    assert manifest["evaluation"]["splits"] == {"validation": 32}
    assert manifest["sizes"]["int8"] < manifest["sizes"]["fp32"]
    # both axes are symbolic: any batch size and length run
    session = ort.InferenceSession(str(tiny_export / FP32_FILE), providers=["CPUExecutionProvider"])
    for spec in session.get_inputs():
        assert all(isinstance(dim, str) for dim in spec.shape), spec.shape
    model = load_classifier(str(tiny_teacher))
    for batch, length in ((3, 7), (17, 50)):
        ids = torch.randint(5, 100, (batch, length))
        mask = torch.ones_like(ids)
        mask[0, length // 2 :] = 0
        types = torch.zeros_like(ids)
        with torch.no_grad():
            expected = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits.numpy()
        got = session.run(
            None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()}
        )
        assert np.abs(got[0] - expected).max() <= 1e-4


def test_torchscript_exporter_and_opset(tiny_teacher: Path, tiny_csv: tuple[Path, Path], tmp_path: Path):
    result = export_onnx(
        tiny_teacher, ExportOptions(output=tmp_path / "ts", data=_data(tiny_csv), exporter="torchscript", max_length=32)
    )
    assert result.manifest["exporter"]["name"] == "torchscript" and result.manifest["exporter"]["opset"] == 17
    assert result.manifest["max_length"] == 32
    assert max(case["length"] for case in result.manifest["parity"]["cases"]) == 32  # padded to max_length
    assert "int8" not in result.manifest["models"] and not (tmp_path / "ts" / INT8_FILE).exists()


def test_parity_failure_fails_the_export_and_leaves_nothing(
    tiny_teacher: Path, tiny_csv: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    forward = _LogitsOnly.forward

    def shifted(self: _LogitsOnly, *args: torch.Tensor) -> torch.Tensor:
        return forward(self, *args) + 1e-3  # an exporter bug: the graph is off by 1e-3

    monkeypatch.setattr(_LogitsOnly, "forward", shifted)
    output = tmp_path / "onnx"
    with pytest.raises(ExportError, match=r"differ from PyTorch by 0\.001 \(> tolerance 0\.0001\)"):
        export_onnx(tiny_teacher, ExportOptions(output=output, data=_data(tiny_csv), exporter="torchscript"))
    assert _leftovers(output) == []


def test_cli_export_prints_parity_and_metrics(
    tiny_teacher: Path, tiny_csv: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("kdkit.export.stage.INT8_WARN_DROP", -1.0)  # any int8 result now counts as a loss
    output = tmp_path / "cli"
    args = ["export", str(tiny_teacher), "--onnx", "-o", str(output), "--exporter", "torchscript"]
    result = runner.invoke(app, [*args, "--validation-file", str(tiny_csv[1]), "--quantize", "int8"])
    assert result.exit_code == 0, result.output
    assert "ONNX int8" in result.stdout and "parity with PyTorch" in result.stdout
    assert "warning: int8 loses" in result.stderr
    manifest = json.loads((output / EXPORT_MANIFEST_FILE).read_text())
    assert manifest["warnings"] and manifest["warnings"][0].startswith("int8 loses")
    assert f"exported to {output.absolute()}" in result.stdout.replace("\n", "")
    # an existing export is not replaced without --overwrite
    again = runner.invoke(app, [*args, "--validation-file", str(tiny_csv[1])])
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert runner.invoke(app, [*args, "--validation-file", str(tiny_csv[1]), "--overwrite"]).exit_code == 0


def _one_line_error(args: list[str], match: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert match in " ".join(result.stderr.split()), result.stderr


def test_cli_bad_input_gives_one_line_errors(tiny_teacher: Path, tiny_csv: tuple[Path, Path], tmp_path: Path):
    validation = ["--validation-file", str(tiny_csv[1])]
    _one_line_error(["export", str(tiny_teacher), *validation], "no export format given")
    # a run directory without a student
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    _one_line_error(["export", str(run), "--onnx", *validation], "has no student model")
    _one_line_error(["export", str(tmp_path / "missing"), "--onnx"], "does not exist")
    # an unwritable output path (its parent is a file)
    blocker = tmp_path / "file"
    blocker.write_text("")
    _one_line_error(
        [
            "export",
            str(tiny_teacher),
            "--onnx",
            "-o",
            str(blocker / "out"),
            "--exporter",
            "torchscript",
            *validation,
        ],
        "is not writable",
    )
    _one_line_error(["export", str(tiny_teacher), "--onnx", "--quantize", "int4"], "unknown quantisation")


def test_a_model_that_is_not_a_sequence_classifier(tiny_teacher: Path, tiny_csv: tuple[Path, Path], tmp_path: Path):
    from transformers import AutoModel

    from kdkit.testing.models import tiny_config

    encoder_dir = tmp_path / "encoder"
    AutoModel.from_config(tiny_config(vocab_size=len(load_tokenizer(str(tiny_teacher))))).save_pretrained(encoder_dir)
    load_tokenizer(str(tiny_teacher)).save_pretrained(encoder_dir)
    with pytest.raises(ModelError, match="is a BertModel, not a sequence classifier"):
        export_onnx(encoder_dir, ExportOptions(output=tmp_path / "out", data=_data(tiny_csv)))
    assert _leftovers(tmp_path / "out") == []


def test_validation_data_is_required_and_lengths_are_checked(
    tiny_teacher: Path, tiny_csv: tuple[Path, Path], tmp_path: Path
):
    with pytest.raises(DataError, match=r"trained on custom data.*pass --validation-file"):
        export_onnx(tiny_teacher, ExportOptions(output=tmp_path / "out"))
    with pytest.raises(ConfigError, match="longer than the model's 64 positions"):
        export_onnx(tiny_teacher, ExportOptions(output=tmp_path / "out", data=_data(tiny_csv), max_length=100))
    assert _leftovers(tmp_path / "out") == []


@pytest.mark.e2e
@pytest.mark.slow
def test_real_minilm_student_on_sst2(glue_dir: Path, tmp_path: Path):
    """A copy:3 student of the embedded all-MiniLM-L6-v2 (random head: parity does not need training)."""
    from kdkit.config import default_base_model
    from kdkit.data.tasks import get_task
    from kdkit.export.inference import OnnxClassifier
    from kdkit.models.loading import load_base_for_task
    from kdkit.models.saving import save_model
    from kdkit.models.students import copy_student

    task = get_task("sst2")
    torch.manual_seed(0)
    student = copy_student(load_base_for_task(default_base_model(), task), 3)
    model_dir = tmp_path / "student"
    save_model(student, load_tokenizer(default_base_model()), task, model_dir, max_length=128)
    result = export_onnx(
        model_dir,
        ExportOptions(
            output=tmp_path / "onnx",
            data=DataConfig(data_dir=glue_dir, max_eval_samples=96),
            quantize="int8",
            fidelity=FidelityOptions(keep_int8=True),  # a random head: its int8 may lose points (test_fidelity.py)
        ),
    )
    manifest = result.manifest
    assert manifest["task"]["name"] == "sst2" and manifest["label_names"] == ["negative", "positive"]
    assert manifest["parity"]["validation_max_abs_diff"] <= 1e-4
    assert {case["batch"] for case in manifest["parity"]["cases"]} == {1, 32}
    assert max(case["length"] for case in manifest["parity"]["cases"]) == 128
    metrics = manifest["evaluation"]["metrics"]
    assert metrics["onnx_fp32"]["accuracy"] == pytest.approx(metrics["pytorch"]["accuracy"], abs=1 / 96)
    assert 0.0 <= metrics["onnx_int8"]["accuracy"] <= 1.0
    # the deployment path answers like PyTorch on real SST-2 sentences
    sentences = ["it 's a charming and often affecting journey . ", "unflinchingly bleak and desperate "]
    tokenizer = load_tokenizer(str(model_dir))
    with torch.no_grad():
        expected = student.eval()(**tokenizer(sentences, padding=True, return_tensors="pt")).logits.numpy()
    logits, truncated = OnnxClassifier(result.directory, precision="fp32").logits(sentences)
    assert np.abs(logits - expected).max() <= 1e-4 and not truncated.any()
