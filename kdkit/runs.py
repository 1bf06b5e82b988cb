"""Run directories: written under ``<output>.partial`` and renamed to ``<output>`` only on success.

So a directory named ``<output>`` is always a finished run; a crashed or interrupted run leaves
``<output>.partial`` (with its checkpoints), which ``--resume`` continues.

A finished run directory holds::

    best/        the student (or teacher) at its best validation score: safetensors, config, tokenizer
    last/        the model after the last step
    run.json     resolved config, metrics, history, wall time, versions
    config.yaml  the resolved config alone (re-runnable with --config)
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import yaml

from kdkit.errors import ConfigError

RUN_FILE = "run.json"
BEST_DIR = "best"
LAST_DIR = "last"
CHECKPOINT_DIR = "checkpoints"


def is_main_process() -> bool:
    """True on the process that writes run files (rank 0 under torchrun, always otherwise)."""
    return int(os.environ.get("RANK", "0")) == 0


class RunDirectory:
    """The working and final locations of one run.

    Args:
        final: where the finished run goes.
        overwrite: replace an existing finished run at ``final``.
        resume: continue from ``<final>.partial``.
    """

    def __init__(self, final: Path, *, overwrite: bool = False, resume: bool = False) -> None:
        self.final = final.expanduser().absolute()
        self.work = self.final.with_name(self.final.name + ".partial")
        self.overwrite = overwrite
        self.resume = resume

    def check(self) -> None:
        """Fail early (before any expensive work) if the run could not be written where asked."""
        if self.final.exists() and not self.overwrite:
            raise ConfigError(
                f"output {self.final} already exists", "pass --overwrite to replace it, or choose another --output"
            )
        if self.work.exists() and not self.resume and is_main_process():
            raise ConfigError(
                f"an unfinished run exists at {self.work}",
                "pass --resume to continue it, or delete it to start again",
            )
        ancestor = self.final.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
            raise ConfigError(f"output location {self.final.parent} is not writable", "choose a writable --output")

    def prepare(self) -> None:
        """Check the locations and create the working directory (main process only)."""
        if self.final.exists() and not self.overwrite:
            raise ConfigError(
                f"output {self.final} already exists", "pass --overwrite to replace it, or choose another --output"
            )
        if self.resume and not self.work.is_dir():
            raise ConfigError(
                f"nothing to resume: {self.work} does not exist", "run without --resume to start a new run"
            )
        if not is_main_process():
            return
        if self.work.exists() and not self.resume:
            raise ConfigError(
                f"an unfinished run exists at {self.work}",
                "pass --resume to continue it, or delete it to start again",
            )
        parent = self.final.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            probe = parent / f".kdkit-write-test-{uuid.uuid4().hex}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(
                f"output location {parent} is not writable ({exc.strerror or exc})",
                "choose a writable --output",
            ) from None
        self.work.mkdir(exist_ok=True)

    @property
    def checkpoints(self) -> Path:
        return self.work / CHECKPOINT_DIR

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        (self.work / name).write_text(json.dumps(data, indent=2, default=str) + "\n")

    def write_yaml(self, name: str, data: dict[str, Any]) -> None:
        (self.work / name).write_text(yaml.safe_dump(data, sort_keys=False))

    def commit(self, *, keep_checkpoints: bool = False) -> Path:
        """Rename the working directory to its final name; returns the final path."""
        if not keep_checkpoints and self.checkpoints.exists():
            shutil.rmtree(self.checkpoints)
        if self.final.exists():
            trash = self.final.with_name(self.final.name + f".old-{uuid.uuid4().hex[:8]}")
            self.final.rename(trash)
            self.work.rename(self.final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            self.work.rename(self.final)
        return self.final


def resolve_model_dir(path: Path) -> Path:
    """A model directory from a run directory (its ``best/``) or a model directory itself."""
    if (path / RUN_FILE).is_file() and (path / BEST_DIR).is_dir():
        return path / BEST_DIR
    return path
