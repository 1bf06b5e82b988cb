"""Test configuration: offline, an isolated KDKIT_HOME, tiny models and the shared data sets."""

from __future__ import annotations

import os

# Before anything imports transformers/datasets: a missed download must fail loudly, not hang.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from kdkit.data.tasks import TaskSpec
from kdkit.plugins.manager import PluginManager, set_plugin_manager

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test session gets its own KDKIT_HOME; each test a fresh plugin manager."""
    monkeypatch.setenv("KDKIT_HOME", str(tmp_path_factory.getbasetemp() / "kdkit-home"))
    set_plugin_manager(None)
    yield
    set_plugin_manager(None)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: the tests read the shared data sets from ../shared")
    return SHARED


@pytest.fixture(scope="session")
def glue_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "glue"


@pytest.fixture(scope="session")
def agnews_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "agnews"


@pytest.fixture
def plugin_manager() -> PluginManager:
    """A plugin manager with only the built-in plugin (no entry points)."""
    return PluginManager(autoload=False)


BINARY_TASK = TaskSpec(
    name="tiny",
    text_fields=("text",),
    label_names=("neg", "pos"),
    metrics=("accuracy", "macro_f1"),
    main_metric="accuracy",
)


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(train.csv, validation.csv) with text,label columns and labels pos/neg."""
    from kdkit.testing import write_tiny_csv

    directory = tmp_path_factory.mktemp("tiny-data")
    return (
        write_tiny_csv(directory / "train.csv", 96, seed=1),
        write_tiny_csv(directory / "validation.csv", 32, seed=2),
    )


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny 2-layer BERT teacher (random weights) for the tiny binary task (labels neg, pos)."""
    from kdkit.testing import save_tiny_classifier

    return save_tiny_classifier(tmp_path_factory.mktemp("tiny-teacher") / "teacher", BINARY_TASK, num_layers=2)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory, tiny_teacher: Path, tiny_csv: tuple[Path, Path]) -> Path:
    """The tiny teacher exported with the default (dynamo) exporter and int8, validated on the tiny CSV."""
    from kdkit.config import DataConfig
    from kdkit.export.stage import ExportOptions, export_onnx

    output = tmp_path_factory.mktemp("tiny-export") / "onnx"
    export_onnx(
        tiny_teacher, ExportOptions(output=output, data=DataConfig(validation_file=tiny_csv[1]), quantize="int8")
    )
    return output


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_teacher: Path, tiny_csv: tuple[Path, Path]) -> Path:
    """A finished tiny distillation run (kd, copy:1, 2 epochs, loss logged every 2 steps) that also reported to
    TensorBoard: run.json, best/README.md, best/training_curves.svg, tensorboard/."""
    from kdkit import api
    from kdkit.config import DataConfig, DistillConfig, TrainingConfig

    output = tmp_path_factory.mktemp("tiny-run") / "sst-tiny-kd"
    config = DistillConfig(
        loss="kd",
        teacher=str(tiny_teacher),
        student="copy:1",
        data=DataConfig(train_file=tiny_csv[0], validation_file=tiny_csv[1], max_length=32),
        training=TrainingConfig(epochs=2, batch_size=16, logging_steps=2, learning_rate=1e-3, report_to="tensorboard"),
        output=output,
        quiet=True,
    )
    api.distill(config, plugins=PluginManager(autoload=False))
    return output
