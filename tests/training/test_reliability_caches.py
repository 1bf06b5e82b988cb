"""Issue 10, caches and artefacts: whatever kdkit wrote is verified before it is reused (docs/reliability.md)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from typer.testing import CliRunner

from kdkit import api
from kdkit.cli import app
from kdkit.config import DataConfig, DistillConfig, TrainingConfig
from kdkit.errors import CacheWarning, ModelError
from kdkit.export.inference import OnnxClassifier
from kdkit.losses.base import LossContext
from kdkit.losses.kd import VanillaKD
from kdkit.models.loading import load_classifier
from kdkit.models.saving import read_task_file, save_model
from kdkit.records.manifests import EXPORT_MANIFEST_FILE, TASK_FILE
from kdkit.testing import BINARY_TASK, save_tiny_classifier, tiny_classifier, write_tiny_csv
from kdkit.training.cache_store import BUILD_MARK
from kdkit.training.teacher_cache import add_teacher_signals, cache_dir, cache_key
from kdkit.training.teachers import default_teacher_dir

runner = CliRunner()


def _one_line_error(args: list[str], pattern: str) -> str:
    import re

    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and sum(line.startswith("error: ") for line in lines) == 1, result.stderr
    assert re.search(pattern, " ".join(result.stderr.split())), result.stderr
    return result.stderr


# -- the default teacher's key -------------------------------------------------------------------------------


def test_teacher_key_covers_every_option_that_changes_the_teacher_and_the_files_content(tmp_path: Path):
    train = write_tiny_csv(tmp_path / "train.csv", 20, seed=1)
    validation = write_tiny_csv(tmp_path / "validation.csv", 10, seed=2)
    base = DistillConfig(data=DataConfig(train_file=train, validation_file=validation), base_model="some/base")
    key = default_teacher_dir(base)
    assert default_teacher_dir(base) == key  # stable
    variants = {
        "holdout": base.model_copy(update={"data": base.data.model_copy(update={"holdout_fraction": 0.2})}),
        "label column": base.model_copy(update={"data": base.data.model_copy(update={"label_column": "gold"})}),
        "task type": base.model_copy(update={"data": base.data.model_copy(update={"task_type": "classification"})}),
        "teacher epochs": base.model_copy(update={"teacher_epochs": 2}),
        "precision": base.model_copy(update={"training": TrainingConfig(precision="fp32")}),
    }
    for what, config in variants.items():
        assert default_teacher_dir(config) != key, what
    # the same path with other content is another teacher; harmless options are not part of the key, nor are the
    # student's own training options (issue 14: student seeds share one teacher)
    quiet = base.model_copy(update={"quiet": True, "training": TrainingConfig(logging_steps=3)})
    assert default_teacher_dir(quiet) == key
    student = TrainingConfig(seed=7, batch_size=8, learning_rate=1e-3, epochs=1)
    assert default_teacher_dir(base.model_copy(update={"training": student})) == key
    train.write_text(train.read_text().replace("good", "great", 1))
    assert default_teacher_dir(base) != key


def test_a_damaged_cached_teacher_is_fine_tuned_again(tmp_path: Path, tiny_csv: tuple[Path, Path]):
    base = save_tiny_classifier(tmp_path / "base", BINARY_TASK, num_layers=1)
    config = DistillConfig(
        data=DataConfig(train_file=tiny_csv[0], validation_file=tiny_csv[1], max_length=32, max_train_samples=32),
        training=TrainingConfig(batch_size=16, eval_batch_size=16),
        base_model=str(base),
        quiet=True,
    )
    first = Path(api.ensure_teacher(config))
    weights = first / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    with pytest.raises(ModelError, match=r"damaged: model.safetensors has \d+ bytes, \d+ were written"):
        load_classifier(str(first), BINARY_TASK, role="teacher")
    again = Path(api.ensure_teacher(config))
    assert again == first and load_classifier(str(again), BINARY_TASK) is not None


def test_a_given_teacher_with_truncated_weights_says_how_to_fix_it(tmp_path: Path, tiny_teacher: Path, tiny_csv):
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_teacher, teacher)
    (teacher / "model.safetensors").write_bytes(b"\0" * 10)
    _one_line_error(
        ["distill", "--teacher", str(teacher), "--train-file", str(tiny_csv[0]), "--validation-file",
         str(tiny_csv[1]), "--max-length", "32", "--output", str(tmp_path / "run")],
        r"the teacher .*teacher is damaged: model.safetensors has 10 bytes, \d+ were written: restore it, or train it",
    )  # fmt: skip
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


# -- the teacher-signal cache ----------------------------------------------------------------------------------


def _signals_setup() -> tuple[Dataset, VanillaKD, torch.nn.Module, LossContext]:
    teacher = tiny_classifier("bert", num_labels=2)
    rows = [[2, *range(10, 10 + n), 3] for n in (5, 1, 8, 3, 12, 2)]
    dataset = Dataset.from_dict(
        {
            "input_ids": rows,
            "attention_mask": [[1] * len(r) for r in rows],
            "labels": [i % 2 for i in range(len(rows))],
            "length": [len(r) for r in rows],
        }
    )
    loss = VanillaKD(VanillaKD.Options(), BINARY_TASK)
    return dataset, loss, teacher, LossContext(BINARY_TASK, teacher, teacher)


def _signals(setup: tuple[Dataset, VanillaKD, torch.nn.Module, LossContext]) -> list[list[float]]:
    dataset, loss, teacher, ctx = setup
    with_signals = add_teacher_signals(dataset, loss, ctx, device=torch.device("cpu"), pad_token_id=0)
    return [list(map(float, row)) for row in with_signals["teacher_logits"]]


@pytest.mark.parametrize("damage", ["truncated", "emptied", "garbage", "manifest edited", "manifest deleted"])
def test_a_damaged_teacher_signal_cache_entry_is_rebuilt_with_one_warning(damage: str):
    setup = _signals_setup()
    expected = _signals(setup)
    key = cache_key(setup[2], setup[0], setup[1], setup[3])
    data, manifest = cache_dir() / f"{key}.arrow", cache_dir() / f"{key}.json"
    assert data.is_file() and json.loads(manifest.read_text())["rows"] == 6
    if damage == "truncated":
        data.write_bytes(data.read_bytes()[:100])
    elif damage == "emptied":
        data.write_bytes(b"")
    elif damage == "garbage":
        data.write_bytes(b"x" * data.stat().st_size)  # same size: only the checksum can tell
    elif damage == "manifest edited":
        manifest.write_text(manifest.read_text().replace('"rows": 6', '"rows": "six"'))
    else:
        manifest.unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _signals(setup) == expected
    notes = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(notes) == 1 and f"{key}.arrow is damaged" in notes[0] and "rebuilding it" in notes[0], notes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _signals(setup) == expected  # rebuilt and now verified
    assert not [w for w in caught if issubclass(w.category, CacheWarning)]


def test_a_killed_cache_build_leaves_nothing_behind(tmp_path: Path):
    setup = _signals_setup()
    cache_dir().mkdir(parents=True, exist_ok=True)
    stray = cache_dir() / f"deadbeef{BUILD_MARK}0001"
    stray.mkdir()
    (stray / "tmpabc").write_bytes(b"half of an arrow file")
    (cache_dir() / f"0badcafe{BUILD_MARK}0003.lock").write_text("12345\n")  # its builder died after cleaning up
    busy = cache_dir() / f"cafef00d{BUILD_MARK}0002"
    busy.mkdir()
    holder = subprocess.Popen(  # another process still building: its folder must stay
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import sys, time
                from pathlib import Path
                from kdkit.records.locking import RunLock
                RunLock(Path({str(busy)!r})).acquire()
                print("locked", flush=True)
                time.sleep(60)
            """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        _signals(setup)
        assert not stray.exists() and busy.is_dir()
        assert sorted(p.name for p in cache_dir().iterdir() if BUILD_MARK in p.name) == [busy.name, f"{busy.name}.lock"]
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()  # type: ignore[union-attr]


# -- JSON files kdkit reads back -------------------------------------------------------------------------------


def test_a_truncated_task_file_is_a_one_line_error_naming_it(tmp_path: Path, tiny_teacher: Path, tiny_csv):
    model = tmp_path / "model"
    shutil.copytree(tiny_teacher, model)
    task_file = model / TASK_FILE
    task_file.write_text(task_file.read_text()[:40])
    pattern = r"the model's task file .*kdkit_task.json is damaged: not valid JSON .*: save or train the model again"
    with pytest.raises(ModelError, match=pattern):
        read_task_file(model)
    _one_line_error(["evaluate", str(model), "--validation-file", str(tiny_csv[1])], pattern)
    _one_line_error(["explain", str(model), "a good film"], pattern)
    _one_line_error(["export", str(model), "--onnx", "--validation-file", str(tiny_csv[1])], pattern)
    task_file.write_text(json.dumps({"task": {"name": "x", "text_fields": []}, "max_length": 64}))
    _one_line_error(["evaluate", str(model), "--validation-file", str(tiny_csv[1])], r"damaged or was edited: task")


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda m: m.update(max_length="long"), "max_length"),
        (lambda m: m.update(input_names=["pixels"]), "input_names"),
        (lambda m: m["models"]["fp32"].update(file="../../elsewhere.onnx"), "models.fp32.file"),
        (lambda m: m.pop("task"), "task"),
        (lambda m: m.update(tokenizer={"pad_id": -3}), "tokenizer.pad_id"),
    ],
)
def test_a_hand_edited_export_manifest_is_a_one_line_error(tiny_export: Path, tmp_path: Path, edit, problem):
    folder = tmp_path / "export"
    shutil.copytree(tiny_export, folder)
    manifest = json.loads((folder / EXPORT_MANIFEST_FILE).read_text())
    edit(manifest)
    (folder / EXPORT_MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=rf"export manifest .*kdkit_export.json is damaged or was edited: {problem}"):
        OnnxClassifier(folder)
    _one_line_error(["predict", str(folder), "a good film"], rf"kdkit_export.json is damaged or was edited: {problem}")
    (folder / EXPORT_MANIFEST_FILE).write_text("{not json")
    _one_line_error(["predict", str(folder), "a good film"], r"kdkit_export.json is damaged: not valid JSON")


def test_a_saved_model_lists_its_weights_and_loading_checks_them(tmp_path: Path):
    from kdkit.testing import tiny_tokenizer

    tokenizer = tiny_tokenizer(tmp_path / "tok")
    save_model(tiny_classifier("bert", vocab_size=len(tokenizer)), tokenizer, BINARY_TASK, tmp_path / "m", 32)
    record = json.loads((tmp_path / "m" / TASK_FILE).read_text())
    assert set(record["files"]) == {"model.safetensors"} and len(record["files"]["model.safetensors"]["sha256"]) == 64
    config = tmp_path / "m" / "config.json"
    config.write_text(config.read_text().replace('"hidden_dropout_prob": 0.1', '"hidden_dropout_prob": 0.0'))
    assert load_classifier(str(tmp_path / "m"), BINARY_TASK).config.hidden_dropout_prob == 0.0  # editing is fine
    weights = tmp_path / "m" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in a weight: same size, other content
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"the model .*/m is damaged: model.safetensors changed after it was written"):
        load_classifier(str(tmp_path / "m"), BINARY_TASK)
