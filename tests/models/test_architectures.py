"""Every supported model family end to end on tiny random models: ``kd``, ``adkd``, ``kd+hidden`` and
``kd+attention`` distillation, ONNX export (kdkit's parity validation) and ``kdkit predict`` agreeing with PyTorch.

The families (docs/architecture.md, "Model families"): BERT, RoBERTa (positions after the padding id, no token
types), DeBERTa-v2 (relative attention only), DistilBERT (no token types, its own layer naming), ELECTRA (an
embedding projection 16 -> 32), ModernBERT (rotary positions, alternating global and sliding-window attention,
no attention norm in its first layer) and ALBERT (shared layers: a teacher, with a BERT student of its
vocabulary). The data is a sentence-pair task, so token types matter; a ``copy:1`` student of a 2-layer teacher
copies layer 1, not layer 0 (ModernBERT's special case).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from kdkit.cli import app
from kdkit.losses.attention import attention_dropout_off
from kdkit.models.loading import load_classifier, load_tokenizer
from kdkit.models.saving import save_model
from kdkit.testing import BINARY_TASK, save_tiny_classifier, tiny_classifier, tiny_tokenizer, write_tiny_csv

pytestmark = pytest.mark.slow  # seven model families trained, exported and served

runner = CliRunner()

FAMILIES = ("bert", "roberta", "deberta-v2", "distilbert", "electra", "modernbert", "albert")
#: configuration fields beyond tiny_config's family defaults: ELECTRA with its embedding projection
OVERRIDES: dict[str, dict[str, object]] = {"electra": {"embedding_size": 16}}
#: each loss and the terms its run must log
LOSSES = {
    "kd": {"ce", "kd"},
    "adkd": {"ce", "kd", "attr"},
    "kd+hidden": {"ce", "kd", "hidden"},
    "kd+attention": {"ce", "kd", "attention"},
}
MAX_LENGTH = 32
PAIR_COLUMNS = "text,text2"


def invoke(*args: object) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.stderr or "") + (result.stdout or "")
    return result.stdout


def refused(*args: object) -> str:
    """The one-line error of a command kdkit refuses (exit 2)."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, (result.stderr or "") + (result.stdout or "")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and sum(line.startswith("error: ") for line in lines) == 1, result.stderr
    return " ".join(result.stderr.split())


@pytest.fixture(scope="module")
def pair_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(train.csv, validation.csv) of a sentence-pair task (columns text, text2, label)."""
    directory = tmp_path_factory.mktemp("pairs")
    return (
        write_tiny_csv(directory / "train.csv", 16, seed=1, pairs=True),
        write_tiny_csv(directory / "validation.csv", 16, seed=2, pairs=True),
    )


@pytest.fixture(scope="module")
def family_run(tmp_path_factory: pytest.TempPathFactory, pair_data: tuple[Path, Path]) -> Callable[[str, str], Path]:
    """``family_run(family, loss)``: the run directory of 2 ``kdkit distill`` steps of a tiny 2-layer teacher of
    ``family`` (made once per family) into its ``copy:1`` (ALBERT: a 1-layer BERT of its vocabulary)."""
    root = tmp_path_factory.mktemp("families")
    runs: dict[tuple[str, str], Path] = {}

    def run(family: str, loss: str) -> Path:
        if (family, loss) in runs:
            return runs[family, loss]
        teacher = root / family / "teacher"
        if not teacher.exists():
            save_tiny_classifier(teacher, BINARY_TASK, architecture=family, **OVERRIDES.get(family, {}))
        student = "copy:1"
        if family == "albert":
            student = str(save_tiny_classifier(root / family / "student", BINARY_TASK, num_layers=1, seed=1))
        output = root / family / loss
        invoke(
            "distill", *[arg for name in loss.split("+") for arg in ("--plugin", name)],
            "--teacher", teacher, "--student", student, "--train-file", pair_data[0], "--validation-file",
            pair_data[1], "--text-columns", PAIR_COLUMNS, "--max-length", MAX_LENGTH, "--max-steps", 2,
            "--batch-size", 8, "--logging-steps", 1, "--device", "cpu", "--set", "ig.steps=2", "--quiet",
            "--output", output,
        )  # fmt: skip
        runs[family, loss] = output
        return output

    return run


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_distils_with_each_loss(family: str, loss: str, family_run: Callable[[str, str], Path]):
    summary = json.loads((family_run(family, loss) / "run.json").read_text())
    logged = [entry for entry in summary["train_log"] if "loss" in entry]
    assert len(logged) == 2
    for entry in logged:
        terms = {key.removeprefix("loss_") for key in entry if key.startswith("loss_")}
        assert terms == LOSSES[loss], entry
        assert all(math.isfinite(entry[f"loss_{term}"]) for term in terms)
    if loss == "adkd":  # the attribution term reaches the student (double backward through its attention)
        assert all(record["attr"] > 0 for record in summary["term_grad_norms"])
    assert 0.0 <= summary["metrics"]["accuracy"] <= 1.0


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_exports_and_predicts_as_pytorch(
    family: str, family_run: Callable[[str, str], Path], pair_data: tuple[Path, Path]
):
    run = family_run(family, "kd")
    invoke("export", run, "--onnx", "--validation-file", pair_data[1], "--text-columns", PAIR_COLUMNS)
    manifest = json.loads((run / "onnx" / "kdkit_export.json").read_text())
    assert manifest["parity"]["validation_max_abs_diff"] <= manifest["parity"]["tolerance"]
    assert manifest["max_length"] == MAX_LENGTH
    predictions = json.loads(invoke("predict", run, "--file", pair_data[1], "--json"))["predictions"]
    logits, label_names = _pytorch_logits(run / "best", pair_data[1])
    assert len(predictions) == len(logits)
    for prediction, row in zip(predictions, logits, strict=True):
        top = row.topk(2).values
        if float(top[0] - top[1]) > 1e-4:  # not a tie within the parity tolerance
            assert prediction["label"] == label_names[int(row.argmax())]


def _pytorch_logits(model_dir: Path, data: Path) -> tuple[torch.Tensor, list[str]]:
    """The saved student's logits on the validation pairs (truncated to MAX_LENGTH, as predict does)."""
    import csv

    with data.open() as handle:
        rows = list(csv.DictReader(handle))
    tokenizer = load_tokenizer(str(model_dir))
    model = load_classifier(str(model_dir)).eval()
    encoded = tokenizer(
        [r["text"] for r in rows], [r["text2"] for r in rows], truncation=True, max_length=MAX_LENGTH,
        padding=True, return_tensors="pt",
    )  # fmt: skip
    with torch.no_grad():
        logits = model(**encoded).logits
    return logits, [model.config.id2label[i] for i in range(model.config.num_labels)]


#: the configuration field of each family's attention-probability dropout
_ATTENTION_DROPOUT = {"distilbert": "attention_dropout", "modernbert": "attention_dropout"}


@pytest.mark.parametrize("family", FAMILIES)
def test_attention_dropout_is_turned_off_in_each_family(family: str):
    """The attention loss needs distributions: with dropout on the attention probabilities rows do not sum to 1,
    after attention_dropout_off they do (in training mode, hidden-state dropout still on)."""
    field = _ATTENTION_DROPOUT.get(family, "attention_probs_dropout_prob")
    model = tiny_classifier(family, attn_implementation="eager", **{field: 0.5}).train()
    ids = torch.randint(5, 100, (2, 9))
    mask = torch.ones_like(ids)

    def worst() -> float:
        torch.manual_seed(0)
        with torch.no_grad():
            attentions = model(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
        return max(float((a.sum(dim=-1) - 1).abs().max()) for a in attentions)

    assert worst() > 0.1
    assert attention_dropout_off(model) > 0
    assert worst() < 1e-5


def test_roberta_max_length_is_checked_against_its_positions_in_training_export_and_predict(tmp_path: Path):
    """34 position embeddings, padding id 1: positions 2..33, so 32 tokens at most. Longer --max-length is refused
    before training, at export and by predict (an export whose manifest says more); 32 trains, exports and
    predicts on texts longer than that (truncated) without an index error in PyTorch or onnxruntime."""
    teacher = save_tiny_classifier(
        tmp_path / "teacher", BINARY_TASK, architecture="roberta", max_positions=34, max_length=32
    )
    data = write_tiny_csv(tmp_path / "long.csv", 16, seed=3, pairs=True, words=(12, 30))
    common = ["--train-file", data, "--validation-file", data, "--text-columns", PAIR_COLUMNS, "--max-steps", 1,
              "--batch-size", 8, "--device", "cpu", "--quiet"]  # fmt: skip
    limit = r"--max-length 33 is longer than the (teacher|model)'s 32 positions \(max_position_embeddings 34 less 2"
    assert re.search(
        limit, refused("distill", "--teacher", teacher, *common, "--max-length", 33, "--output", tmp_path / "x")
    )
    assert not (tmp_path / "x").exists()
    run = tmp_path / "run"
    invoke("distill", "--teacher", teacher, "--student", "copy:1", *common, "--max-length", 32, "--output", run)
    export = ["export", run, "--onnx", "--validation-file", data, "--text-columns", PAIR_COLUMNS]
    assert re.search(limit, refused(*export, "--max-length", 33))
    invoke(*export)
    long_text = " ".join(["the good film"] * 20)
    (result,) = json.loads(invoke("predict", run, long_text, long_text, "--json"))["predictions"]
    assert result["truncated"] is True
    manifest = run / "onnx" / "kdkit_export.json"
    manifest.write_text(manifest.read_text().replace('"max_length": 32', '"max_length": 33'))
    message = refused("predict", run, long_text, long_text)
    assert (
        "truncates texts to 33 tokens, but its model takes at most 32: export it again with --max-length 32" in message
    )


def test_a_student_of_another_vocabulary_is_refused_before_any_work(tmp_path: Path, pair_data: tuple[Path, Path]):
    """Checked before the default teacher is fine-tuned; the fix names what works."""
    base = save_tiny_classifier(tmp_path / "bert", BINARY_TASK)
    student = save_tiny_classifier(tmp_path / "roberta", BINARY_TASK, architecture="roberta")  # [PAD], [UNK] swap
    data = [
        "--train-file",
        pair_data[0],
        "--validation-file",
        pair_data[1],
        "--text-columns",
        PAIR_COLUMNS,
        "--max-length",
        32,
    ]
    for teacher in (["--teacher", str(base)], ["--base-model", str(base)]):
        message = refused("distill", *teacher, "--student", student, *data, "--output", tmp_path / "run")
        assert re.search(
            r"error: the student's tokenizer \(140 tokens\) differs from the teacher's \(140 tokens; 2 of the "
            r"student's .*: use a student with the teacher's tokenizer and vocabulary .* --student copy:N\)",
            message,
        )
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()
    assert not list(Path(os.environ["KDKIT_HOME"]).glob("teachers/*"))  # no default teacher was fine-tuned


def test_pairs_given_a_token_type_the_model_lacks_are_refused_before_training(
    tmp_path: Path, pair_data: tuple[Path, Path]
):
    """A RoBERTa saved with a BERT tokenizer (token type 1 on second texts) would fail with an IndexError."""
    tokenizer = tiny_tokenizer(tmp_path / "tokenizer")  # BERT's: gives token_type_ids
    model = tiny_classifier("roberta", vocab_size=len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    save_model(model, tokenizer, BINARY_TASK, tmp_path / "roberta", max_length=MAX_LENGTH)
    data = ["--train-file", pair_data[0], "--validation-file", pair_data[1], "--text-columns", PAIR_COLUMNS,
            "--max-length", MAX_LENGTH, "--max-steps", 1, "--device", "cpu", "--quiet"]  # fmt: skip
    pattern = r"has a single token type, but its tokenizer gives the second text of each pair \(text2\) token type 1"
    for command in (["finetune", "--model"], ["distill", "--student", "copy:1", "--teacher"]):
        message = refused(*command, tmp_path / "roberta", *data, "--output", tmp_path / "run")
        assert re.search(pattern, message), message
    assert not (tmp_path / "run").exists()
