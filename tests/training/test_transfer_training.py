"""Transfer data in training (issue 27): the teacher-signal cache covers transfer examples and its key follows them,
the teacher-only terms train on them, and a tiny distillation with a transfer file runs through the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from typer.testing import CliRunner

from kdkit.cli import app
from kdkit.data.labels import UNLABELLED
from kdkit.losses.base import Batch, LossContext
from kdkit.losses.composite import build_loss
from kdkit.losses.formulas import supervised_term
from kdkit.models.loading import set_attention
from kdkit.plugins.manager import PluginManager
from kdkit.plugins.options import provider_factory
from kdkit.testing import BINARY_TASK, tiny_classifier
from kdkit.training.step import step_teacher_signals, student_step_forward
from kdkit.training.teacher_cache import add_teacher_signals, cache_key

runner = CliRunner()


def _rows(lengths: tuple[int, ...], labels: list[int]) -> Dataset:
    rows = [[2, *range(10, 10 + n), 3] for n in lengths]
    return Dataset.from_dict(
        {
            "input_ids": rows,
            "attention_mask": [[1] * len(r) for r in rows],
            "labels": labels,
            "length": [len(r) for r in rows],
        }
    )


def test_the_teacher_signal_cache_covers_transfer_examples_and_its_key_follows_them() -> None:
    manager = PluginManager(autoload=False)
    teacher = tiny_classifier("bert", num_labels=2)
    loss = build_loss(manager.loss("kd"), {}, BINARY_TASK)
    ctx = LossContext(BINARY_TASK, teacher, teacher)
    labelled_only = _rows((5, 1, 8), [0, 1, 0])
    with_transfer = _rows((5, 1, 8, 4, 9), [0, 1, 0, UNLABELLED, UNLABELLED])
    other_transfer = _rows((5, 1, 8, 4, 7), [0, 1, 0, UNLABELLED, UNLABELLED])
    keys = {cache_key(teacher, d, loss, ctx) for d in (labelled_only, with_transfer, other_transfer)}
    assert len(keys) == 3
    signals = add_teacher_signals(with_transfer, loss, ctx, device=torch.device("cpu"), pad_token_id=0)
    assert len(signals["teacher_logits"]) == 5
    for row in (3, 4):  # the transfer rows carry the teacher's logits of their own text
        ids = torch.tensor([with_transfer["input_ids"][row]])
        with torch.no_grad():
            expected = teacher(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0]
        assert torch.allclose(torch.tensor(signals["teacher_logits"][row]), expected, atol=1e-5)


@pytest.mark.parametrize("loss_name", ["kd", "kd+hidden", "kd+attention", "adkd"])
def test_teacher_only_terms_train_on_a_batch_without_labels(loss_name: str) -> None:
    manager = PluginManager(autoload=False, enable=["adkd"])
    loss_cls = manager.loss(loss_name)
    teacher, student = tiny_classifier("bert", num_labels=2, seed=1), tiny_classifier("bert", num_labels=2, seed=2)
    for model in (teacher, student):
        set_attention(model, "eager")
    student.train()
    loss = build_loss(loss_cls, {}, BINARY_TASK)
    ctx = LossContext(BINARY_TASK, student, teacher, provider_factory=provider_factory(manager.provider, {}))
    loss.prepare(ctx)
    ids = torch.tensor([[2, 10, 11, 12, 3], [2, 13, 14, 3, 0]])
    batch = Batch({"input_ids": ids, "attention_mask": (ids != 0).long()}, torch.full((2,), UNLABELLED))
    signals = step_teacher_signals(loss, teacher, batch, {}, ctx)
    outputs = student_step_forward(student, batch, loss, ctx)
    terms = loss(batch, outputs.logits, signals, ctx)
    assert float(terms[supervised_term(BINARY_TASK)].detach()) == 0.0
    teacher_terms = {name: value for name, value in terms.items() if name != supervised_term(BINARY_TASK)}
    assert teacher_terms and all(torch.isfinite(value).all() for value in teacher_terms.values())
    total = sum(teacher_terms.values())
    assert isinstance(total, torch.Tensor)
    grads = torch.autograd.grad(total, [p for p in student.parameters() if p.requires_grad], allow_unused=True)
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads)


def test_a_tiny_distillation_with_a_transfer_file_through_the_cli(
    tmp_path: Path, tiny_teacher: Path, tiny_csv: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kdkit.training import trainer

    samplers: list[trainer.MixedBatchSampler] = []

    class Recorded(trainer.MixedBatchSampler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            samplers.append(self)

    monkeypatch.setattr(trainer, "MixedBatchSampler", Recorded)
    pool = tmp_path / "pool.txt"
    pool.write_text("\n".join(f"good film number {i}" for i in range(40)) + "\n", encoding="utf-8")
    before = pool.read_bytes()
    output = tmp_path / "run"
    args = ["distill", "--teacher", str(tiny_teacher), "--train-file", str(tiny_csv[0])]
    args += ["--validation-file", str(tiny_csv[1]), "--transfer-file", str(pool), "--max-length", "32"]
    args += ["--student", "copy:1", "--max-steps", "3", "--batch-size", "16", "--quiet", "--output", str(output)]
    result = runner.invoke(app, [*args, "--transfer-ratio", "0.25"])
    assert result.exit_code == 0, result.output
    summary = json.loads((output / "run.json").read_text())
    assert summary["examples"] == {"labelled": 96, "transfer": 40, "augmented": 0}
    assert summary["config"]["transfer_ratio"] == 0.25
    assert [s.per_batch for s in samplers] == [(12, 4)] and len(samplers[0].unlabelled_rows) == 40
    assert summary["train"]["examples"] == 136
    assert summary["config"]["transfer_files"] == [str(pool)]
    assert "96 labelled, 40 transfer, 0 augmented" in (output / "best" / "README.md").read_text()
    assert pool.read_bytes() == before


def test_a_transfer_ratio_without_unlabelled_examples_is_refused(tmp_path: Path, tiny_teacher: Path, tiny_csv) -> None:
    args = ["distill", "--teacher", str(tiny_teacher), "--train-file", str(tiny_csv[0]), "--transfer-ratio", "0.5"]
    result = runner.invoke(app, [*args, "--validation-file", str(tiny_csv[1]), "--output", str(tmp_path / "r")])
    assert result.exit_code == 2 and "--transfer-ratio given without unlabelled examples" in result.stderr
    result = runner.invoke(app, [*args, "--validation-file", str(tiny_csv[1]), "--transfer-ratio", "1.5"])
    assert result.exit_code == 2 and "transfer_ratio" in result.stderr


def test_transfer_files_with_the_ce_loss_are_refused(tmp_path: Path, tiny_teacher: Path, tiny_csv) -> None:
    pool = tmp_path / "pool.txt"
    pool.write_text("good\n", encoding="utf-8")
    args = ["distill", "--plugin", "ce", "--teacher", str(tiny_teacher), "--train-file", str(tiny_csv[0])]
    args += ["--validation-file", str(tiny_csv[1]), "--transfer-file", str(pool), "--output", str(tmp_path / "r")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "uses no teacher" in result.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()


# -- a teacher given as a file -----------------------------------------------------------------------------------


def _soft_label_file(path: Path, rows: int) -> Path:
    lines = [json.dumps({"id": i, "probs": {"neg": 0.8, "pos": 0.2} if i % 2 else {"pos": 1.0}}) for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_tiny_distillation_from_soft_labels_through_the_cli(
    tmp_path: Path, tiny_teacher: Path, tiny_csv: tuple[Path, Path]
) -> None:
    pool = tmp_path / "pool.txt"
    pool.write_text("\n".join(f"good film number {i}" for i in range(20)) + "\n", encoding="utf-8")
    soft = _soft_label_file(tmp_path / "soft.jsonl", 96 + 20)
    output = tmp_path / "run"
    args = ["distill", "--soft-labels", str(soft), "--base-model", str(tiny_teacher), "--train-file", str(tiny_csv[0])]
    args += ["--validation-file", str(tiny_csv[1]), "--transfer-file", str(pool), "--max-length", "32"]
    args += ["--student", "copy:1", "--max-steps", "3", "--batch-size", "16", "--quiet", "--output", str(output)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((output / "run.json").read_text())
    assert summary["soft_labels"]["file"] == str(soft) and len(summary["soft_labels"]["sha256"]) == 64
    assert summary["teacher"] is None and summary["teacher_cache"]["used"] is False
    assert summary["examples"] == {"labelled": 96, "transfer": 20, "augmented": 0}
    card = (output / "best" / "README.md").read_text()
    assert f"soft labels from the file `soft.jsonl` (sha256 `{summary['soft_labels']['sha256']}`)" in card


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--plugin", "adkd"], "the 'adkd' loss needs the teacher's model \\(attr_map\\)"),
        (["--plugin", "kd", "--plugin", "hidden"], "needs the teacher's model \\(hidden_states\\)"),
        (["--plugin", "ce"], "which uses no teacher"),
        (["--teacher", "some/teacher"], "--soft-labels and --teacher both given"),
    ],
)
def test_soft_labels_refuse_what_needs_the_teachers_model(
    tmp_path: Path, tiny_csv: tuple[Path, Path], extra: list[str], message: str
) -> None:
    soft = _soft_label_file(tmp_path / "soft.jsonl", 96)
    args = ["distill", "--soft-labels", str(soft), "--train-file", str(tiny_csv[0]), "--validation-file"]
    args += [str(tiny_csv[1]), "--output", str(tmp_path / "r"), *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and re.search(message, " ".join(result.stderr.split())), result.stderr
    assert not (tmp_path / "r.partial").exists()


def test_a_config_file_gives_transfer_files_and_augmentation(
    tmp_path: Path, tiny_teacher: Path, tiny_csv: tuple[Path, Path]
) -> None:
    pool = tmp_path / "pool.csv"
    pool.write_text("text\nfine acting\ndull plot\n", encoding="utf-8")
    config = tmp_path / "run.yaml"
    config.write_text(
        f"teacher: {tiny_teacher}\nstudent: copy:1\ntransfer_files: {pool}\naugment: swap\naugment_copies: 1\n"
        f"data: {{train_file: {tiny_csv[0]}, validation_file: {tiny_csv[1]}, max_length: 32}}\n"
        "training: {max_steps: 2, batch_size: 32}\nquiet: true\n",
        encoding="utf-8",
    )
    output = tmp_path / "run"
    result = runner.invoke(app, ["distill", "--config", str(config), "--output", str(output)])
    assert result.exit_code == 0, result.output
    summary = json.loads((output / "run.json").read_text())
    assert summary["examples"] == {"labelled": 96, "transfer": 2, "augmented": 96}
    assert summary["config"]["transfer_files"] == [str(pool)] and summary["config"]["augment"] == "swap"


def test_regression_transfer_examples_are_unlabelled_nan(tmp_path: Path) -> None:
    import math

    from kdkit.config import DataConfig
    from kdkit.data.tokenizing import tokenize
    from kdkit.testing import REGRESSION_TASK, tiny_tokenizer

    texts = Dataset.from_dict({"text": ["good film", "bad"]})
    tokenized = tokenize(texts, REGRESSION_TASK, tiny_tokenizer(tmp_path), DataConfig(max_length=16))
    assert all(math.isnan(value) for value in tokenized["labels"])


def test_adkd_gold_views_explain_the_teachers_prediction_where_there_is_no_label() -> None:
    manager = PluginManager(autoload=False, enable=["adkd"])
    loss_cls = manager.loss("adkd")
    loss = loss_cls(loss_cls.Options(views="gold"), BINARY_TASK)
    labels = torch.tensor([1, UNLABELLED, 0, UNLABELLED])
    teacher_logits = torch.tensor([[0.0, 1.0], [2.0, -1.0], [0.0, 3.0], [-1.0, 1.0]])
    targets, weights = loss.views(teacher_logits, labels, teacher_logits, None)  # type: ignore[arg-type]
    assert targets.view(-1).tolist() == [1, 0, 0, 1] and weights.tolist() == [1.0]
