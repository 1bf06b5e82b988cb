"""Exports load, unchanged, in the ecosystem's clients and give the labels ``kdkit predict`` gives:
transformers.js in Node (fp32 and q8) and optimum-onnx's ORTModelForSequenceClassification (fp32 and int8,
in its own virtual environment: it pins transformers < 4.58). Real clients, no mocks (clients/harness.py).

The transformers.js tests skip only where node or npm are missing; the npm packages are installed from
clients/js/package-lock.json on first use (.ci/run installs them up front)."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import shlex
import shutil
import sys
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from typer.testing import CliRunner

from kdkit.cli import app
from kdkit.config import DataConfig
from kdkit.data.tasks import TaskSpec
from kdkit.errors import ModelError, TruncationWarning
from kdkit.export.fidelity import FidelityOptions
from kdkit.export.inference import OnnxClassifier
from kdkit.export.stage import ExportOptions, export_onnx
from kdkit.models.saving import save_model
from kdkit.records.manifests import EXPORT_MANIFEST_FILE
from kdkit.testing.models import BINARY_TASK, TINY_WORDS, perturb_parameters, tiny_classifier, tiny_tokenizer

pytestmark = pytest.mark.slow  # optimum-onnx and transformers.js in their own environments

REPO = Path(__file__).resolve().parents[2]
#: keep an int8 model whatever it loses: these tests check the clients, not int8's accuracy (test_fidelity.py does)
KEEP_INT8 = FidelityOptions(keep_int8=True)
PAIR_TASK = TaskSpec(
    name="tinypair",
    text_fields=("premise", "hypothesis"),
    label_names=("no", "yes"),
    metrics=("accuracy",),
    main_metric="accuracy",
)
TEXTS = [
    "the movie was good",
    "bad plot and an awful actor",
    "i love this film so much",
    "boring story",
    "the cat sat on the mat",
    "they win the game",
    "a sad slow movie with no fun",
    "great great great",
    # longer than the export's 32 tokens: every client must truncate where kdkit does
    " ".join(TINY_WORDS[:45]),
]
PAIRS = ["a good film", "the plot was bad", "we love it", "so boring", "a cat ran", "they lose", "fun", "awful", "one"]


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kdkit_client_harness", REPO / "clients" / "harness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


harness = _harness()


def _export(directory: Path, task: TaskSpec, seed: int) -> Path:
    """A tiny classifier with perturbed weights (so that its labels vary), exported with the defaults + int8."""
    tokenizer = tiny_tokenizer(directory / "tokenizer")
    model = perturb_parameters(tiny_classifier(num_labels=task.num_labels, vocab_size=len(tokenizer), seed=seed), seed)
    save_model(model, tokenizer, task, directory / "model", max_length=32)
    validation = directory / "validation.csv"
    with validation.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*task.text_fields, "label"])
        for i, text in enumerate(TEXTS):
            writer.writerow([text, *([PAIRS[i]] if len(task.text_fields) == 2 else []), task.label_names[i % 2]])
    export = directory / "export"
    data = DataConfig(validation_file=validation)
    export_onnx(directory / "model", ExportOptions(output=export, data=data, quantize="int8", fidelity=KEEP_INT8))
    return export


@pytest.fixture(scope="module")
def single_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(tmp_path_factory.mktemp("client-single"), BINARY_TASK, seed=3)


@pytest.fixture(scope="module")
def pair_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(tmp_path_factory.mktemp("client-pair"), PAIR_TASK, seed=5)


def _kdkit(
    export: Path, precision: str, texts: list[str], pairs: list[str] | None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """What kdkit predict gives, one text per call as the clients are called: labels, scores, logits."""
    classifier = OnnxClassifier(export, precision=precision)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)
        results = classifier.predict(texts, pairs, batch_size=1)
    logits, _ = classifier.logits(texts, pairs, batch_size=1, warn=False)
    return [r["label"] for r in results], np.asarray([r["score"] for r in results]), logits


# -- the layout ------------------------------------------------------------------------------------------


def test_the_export_is_in_the_layout_the_clients_load(single_export: Path):
    manifest = json.loads((single_export / EXPORT_MANIFEST_FILE).read_text())
    # each ONNX model stored once, where transformers.js looks; the manifest points there
    assert sorted(p.relative_to(single_export).as_posix() for p in single_export.rglob("*.onnx")) == [
        "onnx/model.onnx",
        "onnx/model_quantized.onnx",
    ]
    assert {k: v["file"] for k, v in manifest["models"].items()} == {
        "fp32": "onnx/model.onnx",
        "int8": "onnx/model_quantized.onnx",
    }
    assert manifest["layout"] == {
        "name": "hf",
        "config": "config.json",
        "onnx_subfolder": "onnx",
        "transformers_js_dtypes": ["fp32", "q8"],
    }
    config = json.loads((single_export / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["label2id"] == {"neg": 0, "pos": 1}
    assert config["model_type"] == "bert" and config["architectures"] == ["BertForSequenceClassification"]
    tokenizer_config = json.loads((single_export / "tokenizer_config.json").read_text())
    assert tokenizer_config["model_max_length"] == manifest["max_length"] == 32
    assert "is_local" not in tokenizer_config and "local_files_only" not in tokenizer_config
    assert (single_export / "tokenizer.json").is_file() and (single_export / "README.md").is_file()
    result = CliRunner().invoke(app, ["predict", str(single_export), TEXTS[0], "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["model"].endswith("onnx/model_quantized.onnx")


def test_exports_of_the_older_flat_layout_still_load(single_export: Path, tmp_path: Path):
    old = tmp_path / "old"
    shutil.copytree(single_export, old)
    (old / "onnx" / "model.onnx").rename(old / "model.onnx")
    (old / "onnx" / "model_quantized.onnx").rename(old / "model.int8.onnx")
    for name in ("onnx", "config.json", "README.md", "training_curves.svg"):
        target = old / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    manifest = json.loads((old / EXPORT_MANIFEST_FILE).read_text())
    manifest["models"]["fp32"]["file"], manifest["models"]["int8"]["file"] = "model.onnx", "model.int8.onnx"
    del manifest["layout"], manifest["card"]
    (old / EXPORT_MANIFEST_FILE).write_text(json.dumps(manifest))
    for precision in ("fp32", "int8"):
        now = OnnxClassifier(single_export, precision=precision).logits(TEXTS, warn=False)[0]  # type: ignore[arg-type]
        before = OnnxClassifier(old, precision=precision).logits(TEXTS, warn=False)[0]  # type: ignore[arg-type]
        np.testing.assert_array_equal(now, before)


def test_exporting_an_export_is_a_clear_error(single_export: Path):
    with pytest.raises(ModelError, match="is an ONNX export, not a PyTorch model"):
        export_onnx(single_export)


# -- the clients ----------------------------------------------------------------------------------------

CASES = [("single", "fp32"), ("single", "int8"), ("pair", "fp32"), ("pair", "int8")]
JS_DTYPES = {"fp32": "fp32", "int8": "q8"}


def _case(request: pytest.FixtureRequest, kind: str) -> tuple[Path, list[str] | None]:
    return request.getfixturevalue(f"{kind}_export"), (PAIRS if kind == "pair" else None)


@pytest.fixture(scope="module")
def js_results(request: pytest.FixtureRequest) -> dict[str, dict]:
    """transformers.js on both exports, fp32 and q8 (one Node process per export)."""
    reason = harness.node_missing()
    if reason:
        pytest.skip(reason)
    results = {}
    for kind in ("single", "pair"):
        export, pairs = _case(request, kind)
        # transformers.js 4.3 truncates by cutting the token list, [SEP] included (its tokenizer library has
        # no truncation of its own): a text longer than the export's max length is left out (docs/deploy.md)
        results[kind] = harness.transformers_js(export, TEXTS[:-1], pairs[:-1] if pairs else None)
    return results


@pytest.fixture(scope="module")
def optimum_results(request: pytest.FixtureRequest) -> dict[str, dict]:
    """optimum-onnx on both exports, fp32 and int8 (one process per export, in its own environment)."""
    results = {}
    for kind in ("single", "pair"):
        export, pairs = _case(request, kind)
        results[kind] = harness.optimum(export, TEXTS, pairs)
    return results


@pytest.mark.parametrize(("kind", "precision"), CASES)
def test_transformers_js_gives_the_labels_of_kdkit_predict(
    kind: str, precision: str, js_results: dict[str, dict], request: pytest.FixtureRequest
):
    export, pairs = _case(request, kind)
    labels, scores, logits = _kdkit(export, precision, TEXTS[:-1], pairs[:-1] if pairs else None)
    assert len(set(labels)) == 2, "the model should not give one label to every text (the check could not fail)"
    got = js_results[kind][JS_DTYPES[precision]]
    assert got["version"] == "4.3.1"
    assert got["labels"] == labels
    tolerance = json.loads((export / EXPORT_MANIFEST_FILE).read_text())["parity"]["tolerance"]
    # fp32: the export's parity tolerance; int8: onnxruntime-node's integer kernels vs the Python wheel's
    bound = tolerance if precision == "fp32" else 1e-2
    assert np.abs(np.asarray(got["logits"]) - logits).max() <= bound
    assert np.abs(np.asarray(got["scores"]) - scores).max() <= bound


@pytest.mark.parametrize(("kind", "precision"), CASES)
def test_optimum_gives_the_logits_of_kdkit_predict(
    kind: str, precision: str, optimum_results: dict[str, dict], request: pytest.FixtureRequest
):
    export, pairs = _case(request, kind)
    labels, scores, logits = _kdkit(export, precision, TEXTS, pairs)  # the long text too: truncated alike
    assert len(set(labels)) == 2, "the model should not give one label to every text (the check could not fail)"
    got = optimum_results[kind][precision]
    assert got["file"] == {"fp32": "onnx/model.onnx", "int8": "onnx/model_quantized.onnx"}[precision]
    assert got["versions"]["transformers"].startswith("4.57.")
    assert got["labels"] == labels
    tolerance = json.loads((export / EXPORT_MANIFEST_FILE).read_text())["parity"]["tolerance"]
    assert np.abs(np.asarray(got["logits"]) - logits).max() <= tolerance
    assert np.abs(np.asarray(got["scores"]) - scores).max() <= tolerance


@pytest.mark.parametrize("kind", ["single", "pair"])
def test_the_model_cards_loading_instructions_run(kind: str, request: pytest.FixtureRequest):
    """The card's optimum, transformers.js and kdkit predict snippets, run as written."""
    export, pairs = _case(request, kind)
    card = (export / "README.md").read_text()
    blocks = re.findall(r"^```(\w+)\n(.*?)^```", card, flags=re.MULTILINE | re.DOTALL)
    [optimum_code] = [code for lang, code in blocks if lang == "python" and "optimum" in code]
    [js_code] = [code for lang, code in blocks if lang == "js"]
    [predict_line] = [code.strip() for lang, code in blocks if lang == "bash" and "kdkit predict" in code]
    text, pair = (
        ("your text here", None) if pairs is None else ("The cat sat on the mat.", "A cat was sitting on a mat.")
    )
    expected = OnnxClassifier(export, precision="fp32").predict([text], [pair] if pair else None)[0]["label"]
    printed = harness.run_optimum(optimum_code)
    assert f"'label': '{expected}'" in printed, printed
    result = CliRunner().invoke(app, shlex.split(predict_line)[1:])
    assert result.exit_code == 0 and expected in result.output, result.output
    if harness.node_missing() is None:
        int8 = OnnxClassifier(export, precision="int8").predict([text], [pair] if pair else None)[0]["label"]
        printed = harness.run_js(js_code)  # the card shows dtype q8
        assert int8 in printed, printed


# -- a real student ---------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_minilm_student_on_sst2_gives_kdkit_predict_labels_in_both_clients(glue_dir: Path, tmp_path: Path):
    """The issue's check at a small scale: a 2-layer copy of the embedded MiniLM (its real tokenizer and
    vocabulary; the head perturbed so the labels vary), exported with int8, 20 SST-2 dev sentences."""
    from minilm_student import save_minilm_sst2_student

    spec = importlib.util.spec_from_file_location("client_check", REPO / "benchmarks" / "client_check.py")
    assert spec is not None and spec.loader is not None
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)

    export = export_onnx(
        save_minilm_sst2_student(tmp_path, glue_dir, layers=2),
        ExportOptions(
            output=tmp_path / "export",
            data=DataConfig(data_dir=glue_dir, max_eval_samples=32),
            quantize="int8",
            fidelity=KEEP_INT8,  # an untrained head: its int8 loses 9 of 32 points (docs/deploy.md)
        ),
    ).directory
    texts, pairs = check.sentences(export, glue_dir, 20)
    result = check.compare(export, texts, pairs)
    expected = {"optimum-onnx"} | (set() if harness.node_missing() else {"transformers.js"})
    assert {row["client"] for row in result["rows"]} == expected
    assert result["truncated"] == 0
    for row in result["rows"]:
        assert row["agree"] == row["sentences"] == 20, row
        assert row["max_abs_probability_diff"] <= (1e-4 if row["precision"] == "fp32" else 1e-2), row
    labels = check.kdkit_predict(export, texts, pairs, "fp32")["predictions"]
    assert len({p["label"] for p in labels}) == 2, "all one label: the check could not fail"
