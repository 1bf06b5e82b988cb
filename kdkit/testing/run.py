"""A few real distillation steps in-process, with your plugin: see it train before you publish it.

    from kdkit.testing import run_distillation_steps
    import my_plugin

    result = run_distillation_steps(my_plugin, loss="my_loss", options={"my_loss": {"weight": 0.5}})
    print(result.summary["train_log"])        # the loss terms of each step

Everything runs on a tiny random teacher and tiny CSV data in a temporary folder (no download; a few
seconds on a CPU), through :func:`kdkit.api.distill`: the same code path as ``kdkit distill``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdkit.testing.models import BINARY_TASK, save_tiny_classifier, write_tiny_csv

if TYPE_CHECKING:
    from kdkit.plugins.manager import PluginManager
    from kdkit.training.job import RunResult


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _plugin_name(plugin: Any) -> str:
    return str(getattr(plugin, "__name__", None) or type(plugin).__name__)


@dataclass(frozen=True)
class TinyRun:
    """The size of a :func:`run_distillation_steps` run.

    Attributes:
        batch_size: training batch size (evaluation batches hold at least 16).
        train_rows, validation_rows: rows of the tiny CSV data sets.
        max_length: the longest input in tokens.
        seed: the seed of the teacher's weights, the data and the run.
        teacher_cache: compute teacher signals once before training (``--teacher-cache``), or every step.
        isolated_home: point ``KDKIT_HOME`` at ``directory/kdkit-home`` during the run, so the teacher-signal
            cache starts empty and your own cache is left alone.
    """

    batch_size: int = 8
    train_rows: int = 32
    validation_rows: int = 16
    max_length: int = 32
    seed: int = 0
    teacher_cache: bool = True
    isolated_home: bool = True


def run_distillation_steps(
    *plugins: Any,
    loss: str = "kd",
    options: Mapping[str, Mapping[str, Any]] | None = None,
    steps: int = 3,
    enable: Sequence[str] = (),
    manager: PluginManager | None = None,
    directory: Path | None = None,
    size: TinyRun = TinyRun(),
) -> RunResult:
    """Run ``steps`` optimiser steps of ``kdkit distill`` with ``loss`` on tiny models and data.

    The teacher is a saved tiny 2-layer BERT (random weights) for a two-class task, the student its
    ``copy:1``, the data :func:`~kdkit.testing.write_tiny_csv` rows; evaluation runs once at the end.

    Args:
        *plugins: modules (or objects) with ``@hookimpl`` functions, registered in-process under
            their ``__name__``; the built-in plugin is always there.
        loss: the loss to distil with (``--plugin``).
        options: component options, ``{"name": {"option": value}}`` (``--set name.option=value``).
        steps: optimiser steps (``--max-steps``).
        enable: installed entry-point plugins to load as well, e.g. ``["adkd"]`` (other entry points are
            not loaded, so the result does not depend on what else is installed).
        manager: a ready plugin manager instead (``plugins`` and ``enable`` are then ignored).
        directory: where to write the teacher, data and run (default: a new temporary folder, kept).
        size: the size of the run, its seed and its teacher cache (:class:`TinyRun`).

    Returns:
        The :class:`kdkit.training.job.RunResult`: ``run_dir`` (``best/``, ``last/``, ``run.json``), ``metrics`` and
        ``summary`` (the content of ``run.json``: ``train_log`` has each logged step's loss terms as
        ``loss_<term>``, ``options`` the resolved options of the loss and of its attribution providers).
    """
    from kdkit.plugins.manager import PluginManager

    root = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="kdkit-steps-"))
    if manager is None:
        extra = {_plugin_name(plugin): plugin for plugin in plugins}
        manager = PluginManager(autoload=False, enable=list(enable), extra_plugins=extra)
    raw: dict[str, Any] = {
        "loss": loss,
        **_write_inputs(root, size),
        "training": _training_options(steps, size.batch_size, size.seed),
        "options": {name: dict(values) for name, values in (options or {}).items()},
        "output": str(root / "run"),
        "overwrite": True,
        "quiet": True,
        "teacher_cache": size.teacher_cache,
    }
    return _distill(raw, manager, {"KDKIT_HOME": str(root / "kdkit-home")} if size.isolated_home else {})


def _distill(raw: dict[str, Any], manager: PluginManager, environment: Mapping[str, str]) -> RunResult:
    """``kdkit distill`` in-process with ``raw`` options, quietly, with ``environment`` set meanwhile."""
    from rich.console import Console

    from kdkit import api

    with _environment(environment):
        config = api.resolve_distill_config(raw, manager)
        return api.distill(config, plugins=manager, console=Console(stderr=True, quiet=True))


def _write_inputs(root: Path, size: TinyRun) -> dict[str, Any]:
    """The tiny teacher (kept if ``root`` has one) and the training and validation CSVs under ``root``, as the
    ``teacher``, ``student`` and ``data`` options of a run."""
    root.mkdir(parents=True, exist_ok=True)
    teacher = root / "teacher"
    if not (teacher / "config.json").is_file():
        save_tiny_classifier(teacher, BINARY_TASK, num_layers=2, seed=size.seed)
    train = write_tiny_csv(root / "train.csv", size.train_rows, seed=size.seed + 1)
    validation = write_tiny_csv(root / "validation.csv", size.validation_rows, seed=size.seed + 2)
    data = {"train_file": str(train), "validation_file": str(validation), "max_length": size.max_length}
    return {"teacher": str(teacher), "student": "copy:1", "data": data}


def _training_options(steps: int, batch_size: int, seed: int) -> dict[str, Any]:
    """``steps`` steps on the CPU in fp32, every step logged, the first two steps' term gradient norms."""
    return {
        "max_steps": steps,
        "batch_size": batch_size,
        "eval_batch_size": max(batch_size, 16),
        "logging_steps": 1,
        "learning_rate": 1e-3,
        "warmup_ratio": 0.0,
        "term_grad_norm_steps": min(steps, 2),
        "seed": seed,
        "device": "cpu",
        "precision": "fp32",
    }
