"""AD-KD through the API and the CLI on tiny models: training, the teacher-signal cache, attention kernels."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from adkd_helpers import THREE_CLASSES, frozen, make_model, provider_factory
from datasets import Dataset
from kdkit_adkd.loss import ADKDLoss, ADKDOptions
from typer.testing import CliRunner

from kdkit import api
from kdkit.cli import app
from kdkit.config import DataConfig, DistillConfig, TrainingConfig
from kdkit.data.batching import MODEL_INPUTS, DistillationCollator
from kdkit.errors import CacheWarning
from kdkit.losses.base import Batch, LossContext
from kdkit.training.job import RunResult, TrainingJob
from kdkit.training.teacher_cache import add_teacher_signals


def _config(tiny_csv: tuple[Path, Path], teacher: Path, output: Path, **overrides: Any) -> DistillConfig:
    train, validation = tiny_csv
    values: dict[str, Any] = {
        "loss": "adkd",
        "teacher": str(teacher),
        "student": "copy:1",
        "data": DataConfig(train_file=train, validation_file=validation, max_length=32),
        "training": TrainingConfig(
            epochs=1, batch_size=16, logging_steps=2, learning_rate=1e-3, term_grad_norm_steps=3
        ),
        "options": {"adkd": {"beta": 10.0}},
        "output": output,
        "quiet": True,
    }
    values.update(overrides)
    return DistillConfig(**values)


def test_adkd_trains_logs_its_terms_and_their_gradient_norms(tiny_csv, tiny_teacher, tmp_path, adkd_manager):
    result = api.distill(_config(tiny_csv, tiny_teacher, tmp_path / "run"), plugins=adkd_manager)
    summary = result.summary
    assert summary["loss"] == "adkd" and summary["teacher_cache"]["used"] is True
    assert summary["options"]["ig"] == {"steps": 1, "baseline": "zero", "batch_size": 256, "layer": "embeddings"}
    steps = [entry for entry in summary["train_log"] if "loss" in entry]
    assert steps and all({"loss_ce", "loss_kd", "loss_attr"} <= set(entry) for entry in steps)
    norms = summary["term_grad_norms"]
    assert [record["step"] for record in norms] == [0.0, 1.0, 2.0]
    assert all(record["attr"] > 0 and record["kd"] >= 0 and record["ce"] > 0 for record in norms)
    assert (result.run_dir / "best" / "model.safetensors").is_file()


def test_teacher_signals_are_computed_once_then_reused(tiny_csv, tiny_teacher, tmp_path, adkd_manager, monkeypatch):
    monkeypatch.setenv("KDKIT_HOME", str(tmp_path / "home"))  # an empty teacher-signal cache
    calls: list[int] = []
    original = ADKDLoss.teacher_signals

    def counting(self: ADKDLoss, teacher: Any, batch: Batch, ctx: LossContext) -> Any:
        calls.append(batch.size)
        return original(self, teacher, batch, ctx)

    monkeypatch.setattr(ADKDLoss, "teacher_signals", counting)
    short = TrainingConfig(max_steps=2, batch_size=16, eval_batch_size=32)
    api.distill(_config(tiny_csv, tiny_teacher, tmp_path / "a", training=short), plugins=adkd_manager)
    assert sum(calls) == 96  # every training example once, in batches of eval_batch_size
    calls.clear()
    api.distill(
        _config(tiny_csv, tiny_teacher, tmp_path / "b", training=short.model_copy(update={"seed": 3})),
        plugins=adkd_manager,
    )
    assert calls == []  # a later run with the same teacher, data and map options reads the cache
    api.distill(
        _config(tiny_csv, tiny_teacher, tmp_path / "c", training=short, options={"ig": {"steps": 2}}),
        plugins=adkd_manager,
    )
    assert sum(calls) == 96  # another provider option: another cache entry
    calls.clear()
    live = api.distill(
        _config(tiny_csv, tiny_teacher, tmp_path / "d", training=short, teacher_cache=False), plugins=adkd_manager
    )
    assert live.summary["teacher_cache"]["used"] is False
    assert calls == [16, 16]  # on the fly: inside each training step


def _tokenised(lengths: tuple[int, ...] = (5, 1, 8, 3, 12, 2, 7, 4, 9, 6)) -> Dataset:
    rows = [[2, *range(10, 10 + n), 3] for n in lengths]
    return Dataset.from_dict(
        {
            "input_ids": rows,
            "attention_mask": [[1] * len(r) for r in rows],
            "token_type_ids": [[0] * len(r) for r in rows],
            "labels": [i % 3 for i in range(len(rows))],
            "length": [len(r) for r in rows],
        }
    )


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_the_teacher_signal_cache_is_reused_with_and_without_the_attribution_term(beta: float) -> None:
    """β = 0 (vanilla KD through adkd) caches logits only: the entry is reused, not reported damaged and rebuilt
    in every run (it was, while the cache expected an ``attr_map`` column the loss never returns)."""
    teacher = frozen(make_model("bert", eager=False))
    loss = ADKDLoss(ADKDOptions(beta=beta), THREE_CLASSES)
    ctx = LossContext(THREE_CLASSES, teacher, teacher, provider_factory=provider_factory(steps=1))
    assert loss.token_signals_used() == ({"attr_map"} if beta else set())

    def cached() -> Dataset:
        return add_teacher_signals(_tokenised(), loss, ctx, device=torch.device("cpu"), pad_token_id=0)

    first = cached()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        again = cached()  # no "damaged ... rebuilding it"
    assert again["teacher_logits"] == first["teacher_logits"]
    assert ("teacher_attr_map" in again.column_names) == bool(beta)


def test_cached_and_on_the_fly_losses_agree() -> None:
    teacher = frozen(make_model("bert", eager=False))
    student = make_model("bert", seed=1, num_layers=1)
    dataset = _tokenised()
    loss = ADKDLoss(ADKDOptions(top_k=20, distance="smooth_l1"), THREE_CLASSES)
    ctx = LossContext(THREE_CLASSES, student, teacher, provider_factory=provider_factory(steps=2, baseline="pad"))
    # cached: computed in length-sorted batches of 4 (other padding than the training batch)
    cached = add_teacher_signals(dataset, loss, ctx, device=torch.device("cpu"), pad_token_id=0, batch_size=4)
    collated = DistillationCollator(0, token_signals=["attr_map"])([cached[i] for i in (7, 2, 9, 0, 4)])
    batch = Batch({k: collated[k] for k in MODEL_INPUTS if k in collated}, collated["labels"])
    from_cache = {"logits": collated["teacher_logits"], "attr_map": collated["teacher_attr_map"]}
    with torch.no_grad():
        on_the_fly = loss.teacher_signals(teacher, batch, ctx)
    from adkd_helpers import student_context

    ctx, logits = student_context(THREE_CLASSES, student, teacher, batch, steps=2, baseline="pad")
    cached_terms = loss(batch, logits, from_cache, ctx)
    live_terms = loss(batch, logits, on_the_fly, ctx)
    assert set(cached_terms) == {"ce", "kd", "attr"}
    for name in cached_terms:
        assert abs(float(cached_terms[name].detach()) - float(live_terms[name].detach())) <= 1e-5, name
    assert float(live_terms["attr"].detach()) > 1e-4  # a non-trivial comparison


def _capture_models(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def fake_train(job: TrainingJob) -> Any:
        seen.update(student=job.student, teacher=job.teacher)
        return RunResult(run_dir=Path("."), metrics={})

    monkeypatch.setattr(api, "train", fake_train)
    return seen


def test_student_runs_eager_attention_and_the_teacher_keeps_sdpa(
    tiny_csv, tiny_teacher, tmp_path, adkd_manager, monkeypatch
):
    from kdkit.data.tasks import TaskSpec
    from kdkit.testing import save_tiny_classifier

    seen = _capture_models(monkeypatch)
    api.distill(_config(tiny_csv, tiny_teacher, tmp_path / "run"), plugins=adkd_manager)
    assert seen["student"].config._attn_implementation == "eager"
    assert seen["teacher"].config._attn_implementation == "sdpa"
    # a student given as a saved model directory
    task = TaskSpec(
        name="tiny", text_fields=("text",), label_names=("neg", "pos"), metrics=("accuracy",), main_metric="accuracy"
    )
    student_dir = save_tiny_classifier(tmp_path / "student", task, num_layers=1, seed=3)
    api.distill(_config(tiny_csv, tiny_teacher, tmp_path / "run2", student=str(student_dir)), plugins=adkd_manager)
    assert seen["student"].config._attn_implementation == "eager"
    assert seen["teacher"].config._attn_implementation == "sdpa"
    # vanilla KD keeps the default (faster) kernel for its student
    api.distill(_config(tiny_csv, tiny_teacher, tmp_path / "run3", loss="kd", options={}), plugins=adkd_manager)
    assert seen["student"].config._attn_implementation == "sdpa"


def test_cli_distill_with_adkd_and_plugins_listing(tiny_csv, tiny_teacher, tmp_path):
    train, validation = tiny_csv
    runner = CliRunner()
    listing = runner.invoke(app, ["plugins", "--json"])
    assert listing.exit_code == 0, listing.output
    components = {c["name"]: c for c in json.loads(listing.output)["components"]}
    assert components["adkd"]["kind"] == "loss" and components["adkd"]["presets"] == ["paper"]
    assert components["adkd"]["options"]["views"] == {
        "type": "'all' | 'gold' | 'pred'",
        "default": "all",
        "description": components["adkd"]["options"]["views"]["description"],
    }
    assert components["adkd"]["options"]["top_k"]["type"] == "int | None"
    assert components["ig"]["differentiable"] is True
    assert {"steps", "baseline", "batch_size", "layer"} == set(components["ig"]["options"])
    assert components["ig"]["options"]["layer"]["type"] == "'embeddings' | int"
    result = runner.invoke(
        app,
        [
            "distill",
            "--plugin",
            "adkd",
            "--teacher",
            str(tiny_teacher),
            "--student",
            "copy:1",
            "--train-file",
            str(train),
            "--validation-file",
            str(validation),
            "--max-length",
            "32",
            "--max-steps",
            "2",
            "--batch-size",
            "16",
            "--logging-steps",
            "1",
            "--quiet",
            "--output",
            str(tmp_path / "cli"),
            "--set",
            "adkd.ablation=no_kd",
            "--set",
            "adkd.beta=10",
            "--set",
            "ig.steps=2",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "cli" / "run.json").read_text())
    assert summary["options"]["adkd"]["ablation"] == "no_kd" and summary["options"]["ig"]["steps"] == 2
    assert "loss_kd" not in summary["train_log"][0] and "loss_attr" in summary["train_log"][0]
    bad = runner.invoke(
        app,
        [
            "distill",
            "--plugin",
            "adkd",
            "--teacher",
            str(tiny_teacher),
            "--train-file",
            str(train),
            "--task",
            "tiny",
            "--validation-file",
            str(validation),
            "--preset",
            "paper",
            "--output",
            str(tmp_path / "bad"),
        ],
    )
    assert bad.exit_code == 2 and "no hyper-parameters for task" in bad.output
