"""Issue 14: the default teacher's budget is said before it starts and can be set; student runs share one
teacher; a run that finds no cached teacher says which cached ones exist and how they differ; a teacher barely
better than the majority baseline is reported."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import pytest
from rich.console import Console

from kdkit import api
from kdkit.config import DataConfig, DistillConfig, StudentSpec, TrainingConfig
from kdkit.data.baselines import majority_baseline, near_baseline
from kdkit.data.tasks import get_task
from kdkit.testing import BINARY_TASK, save_tiny_classifier
from kdkit.training.teacher_budget import Budget, auto_epochs


def test_the_auto_budget_fits_the_size_of_the_training_set():
    assert auto_epochs(4000) == 3.0  # README's first command
    assert auto_epochs(67349) == 1.0  # all of SST-2
    assert auto_epochs(200) == 3.0 and auto_epochs(3000) == 3.0  # small sets: at most 3 passes
    assert auto_epochs(6000) == 2.0 and auto_epochs(8000) == 2.0 and auto_epochs(20000) == 1.0
    budget = Budget(epochs=2.0, examples=4000, batch_size=32, seconds=84.0, device="cpu")
    assert budget.steps == 250
    assert budget.describe() == "2 epochs over 4000 examples (250 steps of 32), about 84 s on cpu"
    assert Budget(1.0, 67349, 32, seconds=1800.0).describe().endswith("(2105 steps of 32), about 30.0 min on cpu")


def test_the_majority_baseline():
    sst2 = get_task("sst2")
    assert majority_baseline(sst2, [1, 1, 0], [1, 0, 0, 0])["accuracy"] == pytest.approx(0.25)
    assert majority_baseline(BINARY_TASK, ["neg", "pos", "neg"], ["neg", "neg", "pos"])["accuracy"] == pytest.approx(
        2 / 3
    )
    assert majority_baseline(get_task("cola"), [1, 1, 0], [1, 0])["mcc"] == 0.0
    assert majority_baseline(get_task("stsb"), [1.0, 4.0], [2.0, 3.5])["pearson"] == 0.0
    assert near_baseline(sst2, 0.55, 0.509) and not near_baseline(sst2, 0.62, 0.509)


def _write(path: Path, rows: int, seed: int, *, noise: bool = False) -> Path:
    """Tiny sentences whose label is a word in them (learnable), or one sentence for every row, 70% 'pos'
    (``noise``: nothing to learn, no model beats always saying 'pos')."""
    rng = random.Random(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for row in range(rows):
            label = ("pos" if row % 10 < 7 else "neg") if noise else rng.choice(["pos", "neg"])
            word = "so-so" if noise else {"pos": "good", "neg": "bad"}[label]
            writer.writerow([f"the movie was {word} and long", label])
    return path


def _config(tmp_path: Path, base: Path, samples: int, *, noise: bool = False, seed: int = 42) -> DistillConfig:
    return DistillConfig(
        data=DataConfig(
            train_file=_write(tmp_path / "train.csv", 40, 1, noise=noise),
            validation_file=_write(tmp_path / "dev.csv", 40, 2, noise=noise),
            max_length=16,
            max_train_samples=samples,
        ),
        training=TrainingConfig(seed=seed, batch_size=8),
        base_model=str(base),
        teacher_epochs=1,
        quiet=True,
    )


def _ensure(config: DistillConfig) -> str:
    buffer = io.StringIO()
    api.ensure_teacher(config, console=Console(file=buffer, width=400, color_system=None))
    return buffer.getvalue()


def test_budget_first_then_shared_teachers_and_what_differs(tmp_path: Path):
    base = save_tiny_classifier(tmp_path / "base", BINARY_TASK, num_layers=1)
    first = _ensure(_config(tmp_path, base, 32))
    assert "no cached teacher for task 'custom' with these options: fine-tuning one now" in first
    budget = first.index("the default teacher: 1 epoch over 32 examples (1 step of 32), about ")
    assert budget < first.index("finetune custom: 1 step of 32 examples")  # said before it starts, its own batch
    assert "cached teachers" not in first
    # a student with another seed and batch size shares the teacher
    assert "using the cached teacher" in _ensure(_config(tmp_path, base, 32, seed=7))
    other = _ensure(_config(tmp_path, base, 24))
    assert "cached teachers for 'custom' that differ: custom-base-" in other
    assert "(differs in data.max_train_samples: 32 there, 24 here)" in other


def test_a_teacher_barely_better_than_guessing_is_reported(tmp_path: Path):
    base = save_tiny_classifier(tmp_path / "base", BINARY_TASK, num_layers=1)
    output = _ensure(_config(tmp_path, base, 40, noise=True))
    assert "warning: the default teacher scores" in output
    assert "better than always predicting the most frequent label" in output
    again = _ensure(_config(tmp_path, base, 40, noise=True))  # reused from the cache: still said
    assert "using the cached teacher" in again and "better than always predicting" in again


def test_a_distill_run_loads_its_data_once_the_default_teachers_fine_tune_included(tmp_path: Path, monkeypatch):
    """The raw data is read and validated once per run and handed to the default teacher's fine-tune and to
    tokenisation (issue 19: it was read up to four times)."""
    from kdkit.data import loading

    read: list[Path] = []
    load_file = loading._load_file

    def counting(path: Path) -> object:
        read.append(path)
        return load_file(path)

    monkeypatch.setattr(loading, "_load_file", counting)
    base = save_tiny_classifier(tmp_path / "base", BINARY_TASK, num_layers=1)
    config = _config(tmp_path, base, 32)
    training = TrainingConfig(batch_size=8, max_steps=1)
    config = config.model_copy(
        update={"output": tmp_path / "run", "student": StudentSpec(layers=1), "training": training}
    )
    result = api.distill(config, console=Console(file=io.StringIO()))
    assert (result.run_dir / "run.json").is_file()
    assert sorted(path.name for path in read) == ["dev.csv", "train.csv"]  # each file once
