"""Experiment tracking through transformers' ``report_to``: TensorBoard, Trackio, MLflow.

``--report-to tensorboard`` (``training.report_to``) hands every Trainer log to the tracker: the total
``loss``, kdkit's loss terms (``loss_ce``, ``loss_kd``, ``loss_attr``, ... as logged by
:class:`kdkit.training.trainer.DistillationTrainer`), ``learning_rate``, ``grad_norm``, the per-term gradient norms of
the first steps, and the dev metrics of each evaluation (``eval_accuracy`` ...). transformers' own callbacks
do the writing; kdkit only chooses where:

- TensorBoard: event files in ``<run>/tensorboard/`` (unless ``TENSORBOARD_LOGGING_DIR`` is set), read with
  ``tensorboard --logdir runs/``; scalars are named ``train/loss_kd``, ``eval/accuracy``.
- Trackio: project ``kdkit``, run name = the run directory's name (local unless configured otherwise).
- MLflow: run name = the run directory's name; ``MLFLOW_TRACKING_URI`` and ``MLFLOW_EXPERIMENT_NAME`` as usual.

Each tracker is an optional extra (``pip install 'kdkit[tensorboard]'``; ``kdkit[tracking]`` for all three).
A missing one is a one-line :class:`~kdkit.errors.ConfigError` before any training starts.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from kdkit.errors import ConfigError

#: tracker -> (the module transformers imports for it, the kdkit extra that installs it)
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "trackio": ("trackio", "trackio"),
    "mlflow": ("mlflow", "mlflow"),
}
#: TensorBoard event files go here, inside the run directory
TENSORBOARD_DIR = "tensorboard"
#: Trackio's project name
PROJECT = "kdkit"


def integrations(report_to: str) -> list[str]:
    """transformers' ``report_to`` list for kdkit's choice (``all`` = the three trackers kdkit supports, not
    every integration transformers finds installed)."""
    if report_to == "none":
        return []
    if report_to == "all":
        return list(TRACKERS)
    if report_to not in TRACKERS:
        raise ConfigError(f"unknown --report-to '{report_to}'", "use none, tensorboard, trackio, mlflow or all")
    return [report_to]


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_installed(report_to: str) -> None:
    """Raise a one-line ConfigError naming the extra to install when a chosen tracker is missing."""
    missing = [name for name in integrations(report_to) if not _installed(TRACKERS[name][0])]
    if not missing:
        return
    extra = "tracking" if report_to == "all" else TRACKERS[missing[0]][1]
    raise ConfigError(
        f"--report-to {report_to} needs {', '.join(missing)}, which is not installed",
        f"pip install 'kdkit[{extra}]', or use --report-to none",
    )


def attach(trainer: Any, run_dir: Path, name: str) -> None:
    """Point the trackers of a created Trainer at the run: TensorBoard into ``<run_dir>/tensorboard`` (unless
    ``TENSORBOARD_LOGGING_DIR`` is set), the run name for Trackio and MLflow."""
    if not trainer.args.report_to:
        return
    trainer.args.run_name = name
    if os.environ.get("TENSORBOARD_LOGGING_DIR"):
        return
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = str(run_dir / TENSORBOARD_DIR)
