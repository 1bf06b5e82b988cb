"""Checks of the data options and of custom data that :mod:`kdkit.data` makes before any work: options that
would be ignored for this kind of data, a custom task named like a GLUE task, a training set of one class."""

from __future__ import annotations

from typing import Any

from kdkit.config import DataConfig
from kdkit.data.tasks import GLUE_TASKS, TaskSpec
from kdkit.errors import ConfigError, DataError


def check_source(data: DataConfig) -> None:
    """Options that would be ignored for this kind of data are errors: custom-data options (columns, labels)
    with a GLUE task, and a GLUE folder (``--data-dir``) with custom data files."""
    if data.is_custom:
        if data.data_dir is not None:
            raise ConfigError(
                "--data-dir (a GLUE folder) given with --train-file/--validation-file: the data would come from "
                "the files alone",
                "drop --data-dir to train on your files, or drop the files to use the GLUE task",
            )
        return
    custom = [
        flag
        for flag, given in (
            ("--text-columns", data.text_columns),
            ("--label-column", data.label_column != "label"),
            ("--label-names", data.label_names),
        )
        if given
    ]
    if custom and data.task is not None:
        raise ConfigError(
            f"{', '.join(custom)} given with the GLUE task '{data.task}', whose columns and labels are fixed",
            "drop them: they describe custom data (--train-file/--validation-file)",
        )


def glue_name_warning(data: DataConfig) -> str | None:
    """What to say when custom data is given a GLUE task's name (``--task sst2 --train-file ...``): a custom task
    of that name is trained on the files, not the GLUE task."""
    if not data.is_custom or data.task is None:
        return None
    if data.task.lower() not in GLUE_TASKS:
        return None
    return (
        f"--task {data.task} names a GLUE task, but the data comes from --train-file/--validation-file: a custom "
        f"task named '{data.task}' is trained on those files, with the labels and columns found there"
    )


def check_classes(train: Any, task: TaskSpec, data: DataConfig) -> None:
    """Custom classification data must hold at least two classes in its training set."""
    if task.label_names is None:
        return
    seen = {str(value) for value in train[task.label_column]}
    if len(seen) < 2:
        only = next(iter(seen), "?")
        raise DataError(
            f"every one of the {len(train)} training examples has the label '{only}' (column "
            f"'{task.label_column}' of {data.train_file}): a classifier needs at least two classes",
            "check --label-column, or add examples of the other classes",
        )
