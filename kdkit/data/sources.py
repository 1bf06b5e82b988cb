"""Where a run's data comes from: the GLUE location (``--data-dir``, else ``KDKIT_GLUE_DIR``, else the hub), the
local files a run reads (what is hashed to key a cached teacher or to check a ``--resume``), and the data paths
recorded absolute when a run starts (:func:`record_paths`; :func:`given_paths` keeps them as the user wrote them,
``run.json``'s ``data_given``).

This module is the one place that reads ``KDKIT_GLUE_DIR``. It imports neither torch nor ``datasets``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kdkit.config import DataConfig

#: the hub dataset of GLUE, read when no local copy is given
GLUE_HUB_ID = "nyu-mll/glue"
#: a local hub-layout GLUE folder, used when ``--data-dir`` is not given
ENV_GLUE_DIR = "KDKIT_GLUE_DIR"
#: data options that are paths
PATH_FIELDS = ("data_dir", "train_file", "validation_file")


def glue_dir_from_env() -> str | None:
    """The folder ``KDKIT_GLUE_DIR`` names, as written (``None`` when it is not set or empty)."""
    return os.environ.get(ENV_GLUE_DIR) or None


def glue_source(data: DataConfig) -> str:
    """The GLUE location: ``--data-dir``, else ``KDKIT_GLUE_DIR``, else the hub dataset ``nyu-mll/glue``."""
    if data.data_dir is not None:
        return str(data.data_dir)
    return glue_dir_from_env() or GLUE_HUB_ID


def data_files(data: DataConfig) -> dict[str, Path]:
    """The local files (or GLUE task folder) the data comes from, by option name: what is hashed to key a
    cached teacher or to check that ``--resume`` continues on the same data."""
    files = {name: path for name in ("train_file", "validation_file") if (path := getattr(data, name)) is not None}
    source = glue_source(data)
    if not data.is_custom and data.task and source != GLUE_HUB_ID:
        files["data_dir"] = Path(source) / data.task.lower()
    return files


def data_inputs(data: DataConfig) -> dict[str, Path]:
    """The local data files as inputs a command must not write over: ``{"training data": path, ...}``."""
    roles = {"train_file": "training data", "validation_file": "validation data", "data_dir": "data folder"}
    return {roles[name]: path for name, path in data_files(data).items()}


def transfer_data_files(paths: list[str]) -> dict[str, Path]:
    """The transfer files of a distillation by name (``transfer_file_1`` ...), hashed with the data files."""
    return {f"transfer_file_{number}": Path(path) for number, path in enumerate(paths, start=1)}


def given_paths(data: DataConfig) -> dict[str, str]:
    """The data paths as the user gave them: ``{"train_file": "train.csv", ...}``."""
    return {name: str(value) for name in PATH_FIELDS if (value := getattr(data, name)) is not None}


def record_paths(data: DataConfig) -> DataConfig:
    """``data`` with absolute paths; GLUE read from ``KDKIT_GLUE_DIR`` records that folder as ``data_dir``."""
    update: dict[str, Any] = {
        name: Path(value).expanduser().absolute() for name in PATH_FIELDS if (value := getattr(data, name)) is not None
    }
    from_env = glue_dir_from_env()
    if not data.is_custom and data.data_dir is None and from_env is not None:
        update["data_dir"] = Path(from_env).expanduser().absolute()
    return data.model_copy(update=update) if update else data
