"""``kdkit predict`` and :mod:`kdkit.export.inference`: onnxruntime + tokenizers only, bad input, truncation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from kdkit.cli import app
from kdkit.errors import DataError, ModelError, TruncationWarning
from kdkit.export.hf_layout import FP32_FILE, INT8_FILE
from kdkit.export.inference import OnnxClassifier
from kdkit.models.loading import load_classifier, load_tokenizer
from kdkit.records.manifests import EXPORT_MANIFEST_FILE

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()

#: run first in a subprocess: any import of these packages fails, as on a machine without them
_BLOCK_TORCH = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "datasets"):
            raise ImportError(f"{name} is not installed here")
sys.meta_path.insert(0, _Block())
"""


def _run_without_torch(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_TORCH + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_inference_module_serves_without_torch(tiny_export: Path):
    result = _run_without_torch(f"""
        import json, kdkit.export.inference
        classifier = kdkit.export.inference.OnnxClassifier({str(tiny_export)!r})
        predictions = classifier.predict(["a good film", "bad plot"])
        assert not any(m.split(".")[0] in ("torch", "transformers", "datasets") for m in sys.modules)
        print(json.dumps(predictions))
    """)
    assert result.returncode == 0, result.stderr
    predictions = json.loads(result.stdout)
    assert [p["label"] in ("neg", "pos") for p in predictions] == [True, True]


def test_cli_predict_runs_without_torch(tiny_export: Path):
    result = _run_without_torch(f"""
        from kdkit.entry import main
        sys.argv = ["kdkit", "predict", {str(tiny_export)!r}, "the cat sat on the mat", "--json"]
        try:
            main()
        except SystemExit as exit:
            assert not exit.code, exit.code
        assert "torch" not in sys.modules
    """)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["precision"] == "int8"
    assert payload["predictions"][0]["text"] == "the cat sat on the mat"


def test_predictions_match_pytorch(tiny_export: Path, tiny_teacher: Path):
    texts = ["the movie was good", "awful boring plot", "a", "i love this film, really fun and very happy"]
    tokenizer = load_tokenizer(str(tiny_teacher))
    with torch.no_grad():
        expected = load_classifier(str(tiny_teacher))(**tokenizer(texts, padding=True, return_tensors="pt"))
    probabilities = torch.softmax(expected.logits, -1).numpy()
    classifier = OnnxClassifier(tiny_export, precision="fp32")
    predictions = classifier.predict(texts, batch_size=3)  # batches sorted by length, answers in input order
    for row, prediction in zip(probabilities, predictions, strict=True):
        assert prediction["label"] == ("neg", "pos")[int(row.argmax())]
        assert prediction["score"] == pytest.approx(float(row.max()), abs=1e-5)
        assert sum(prediction["scores"].values()) == pytest.approx(1.0, abs=1e-6)
        assert prediction["truncated"] is False
    assert OnnxClassifier(tiny_export).precision == "int8"  # auto: int8 when exported


def test_long_text_is_truncated_and_said_so(tiny_export: Path):
    classifier = OnnxClassifier(tiny_export)
    long_text = "good " * 200
    with pytest.warns(TruncationWarning, match="1 of 2 text.* longer than 64 tokens"):
        predictions = classifier.predict([long_text, "short"])
    assert [p["truncated"] for p in predictions] == [True, False]
    inputs, truncated = classifier.encode([long_text])
    assert inputs["input_ids"].shape == (1, 64) and truncated.tolist() == [True]
    result = runner.invoke(app, ["predict", str(tiny_export), long_text])
    assert result.exit_code == 0
    assert "warning: 1 of 1 text(s) are longer than 64 tokens and were truncated" in " ".join(result.stderr.split())


def test_predict_from_csv_and_jsonl_files(tiny_export: Path, tmp_path: Path):
    texts = ["the dog ran fast", "a sad story", "great fun"]
    csv_file = tmp_path / "texts.csv"
    csv_file.write_text("id,review\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(texts)))
    jsonl_file = tmp_path / "texts.jsonl"
    jsonl_file.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    outputs = []
    for args in (["--file", str(csv_file), "--text-column", "review"], ["--file", str(jsonl_file)]):
        result = runner.invoke(app, ["predict", str(tiny_export), *args, "--json", "--precision", "fp32"])
        assert result.exit_code == 0, result.output
        outputs.append(json.loads(result.stdout)["predictions"])
    assert [p["text"] for p in outputs[0]] == texts
    assert outputs[0] == outputs[1]
    table = runner.invoke(app, ["predict", str(tiny_export), "--file", str(jsonl_file)])
    assert table.exit_code == 0 and "a sad story" in table.stdout


def _one_line_error(args: list[str], match: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert match in " ".join(result.stderr.split()), result.stderr


def test_empty_input_is_an_error(tiny_export: Path, tmp_path: Path):
    directory = str(tiny_export)
    _one_line_error(["predict", directory, ""], "text 1 (text) is empty")
    _one_line_error(["predict", directory, "   "], "text 1 (text) is empty")
    _one_line_error(["predict", directory], "nothing to classify")
    empty = tmp_path / "empty.csv"
    empty.write_text("text\n")
    _one_line_error(["predict", directory, "--file", str(empty)], "has no rows")
    holes = tmp_path / "holes.csv"
    holes.write_text('text\nfine\n""\n')
    _one_line_error(["predict", directory, "--file", str(holes)], "row 2 of")
    _one_line_error(["predict", directory, "--file", str(holes), "--text-column", "review"], "has no column review")
    _one_line_error(["predict", directory, "a pair", "for a single-text task"], "classifies single texts")
    with pytest.raises(DataError, match="no texts"):
        OnnxClassifier(tiny_export).predict([])


def test_missing_or_corrupt_model_is_an_error(tiny_export: Path, tmp_path: Path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_export, broken)
    (broken / FP32_FILE).write_bytes(b"this is not a protobuf")
    _one_line_error(["predict", str(broken), "text", "--precision", "fp32"], "not a valid ONNX model")
    (broken / INT8_FILE).unlink()
    _one_line_error(["predict", str(broken), "text", "--precision", "int8"], "model_quantized.onnx is missing")
    (broken / EXPORT_MANIFEST_FILE).unlink()
    _one_line_error(["predict", str(broken), "text"], "is not a kdkit ONNX export")
    _one_line_error(["predict", str(tmp_path / "nowhere"), "text"], "does not exist")
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        shutil.copy(tiny_export / EXPORT_MANIFEST_FILE, broken / EXPORT_MANIFEST_FILE)
        OnnxClassifier(broken, precision="fp32")


def test_sentence_pair_task(tiny_teacher: Path, tmp_path: Path):
    """A two-text task: the pair is encoded with token type ids, as in training."""
    from kdkit.config import DataConfig
    from kdkit.export.stage import ExportOptions, export_onnx

    validation = tmp_path / "pairs.csv"
    rows = [("the cat sat", "the dog ran", "no"), ("good film", "great movie", "yes")] * 4
    validation.write_text("sentence1,sentence2,label\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
    result = export_onnx(
        tiny_teacher,
        ExportOptions(
            output=tmp_path / "onnx",
            data=DataConfig(
                validation_file=validation, text_columns=["sentence1", "sentence2"], label_names=["no", "yes"]
            ),
            exporter="torchscript",
        ),
    )
    classifier = OnnxClassifier(result.directory)
    assert classifier.text_fields == ("sentence1", "sentence2")
    inputs, _ = classifier.encode(["good film"], ["great movie"])
    assert set(np.unique(inputs["token_type_ids"])) == {0, 1}
    cli = runner.invoke(app, ["predict", str(result.directory), "good film", "great movie", "--json"])
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout)["predictions"][0]["label"] in ("no", "yes")
    _one_line_error(["predict", str(result.directory), "only one text"], "classifies pairs")


def test_read_texts_reads_pairs_and_falls_back_to_a_text_column(tmp_path: Path):
    from kdkit.export.inference import read_texts

    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("premise\thypothesis\ttext\na cat\tan animal\tx\nrain\tdry\ty\n")
    assert read_texts(pairs, None, ("premise", "hypothesis")) == (["a cat", "rain"], ["an animal", "dry"])
    assert read_texts(pairs, "hypothesis , premise", ("sentence",)) == (["an animal", "dry"], ["a cat", "rain"])
    assert read_texts(pairs, None, ("sentence",)) == (["x", "y"], None)  # the task's column is absent: 'text'
    with pytest.raises(DataError, match="has no column sentence"):
        read_texts(pairs, "sentence", ("premise",))  # a named column does not fall back
    lines = tmp_path / "lines.jsonl"
    lines.write_text('["not", "an object"]\n')
    with pytest.raises(DataError, match="not a list of JSON objects"):
        read_texts(lines)
    plain = tmp_path / "texts.txt"
    plain.write_text("a cat\n")
    with pytest.raises(DataError, match="unsupported file"):
        read_texts(plain)
