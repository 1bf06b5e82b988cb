"""Raw data: GLUE (a local hub-layout copy or the hub) and custom CSV/TSV/JSON(L) files, loaded and validated
(text columns, labels, classes) before anything expensive runs. Tokenisation: :mod:`kdkit.data.tokenizing`.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import datasets
import numpy as np
from datasets import Dataset, DatasetDict

from kdkit.config import DataConfig
from kdkit.data.checks import check_classes, check_source
from kdkit.data.labels import is_regression
from kdkit.data.sources import GLUE_HUB_ID, glue_source
from kdkit.data.tasks import TaskSpec, get_task
from kdkit.data.texts import check_utf8
from kdkit.errors import CacheWarning, ConfigError, DataError

_FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}


# -- raw data ------------------------------------------------------------------------------------


def _load_glue(task: TaskSpec, data: DataConfig, splits: Sequence[str]) -> dict[str, Dataset]:
    source = glue_source(data)
    if source != GLUE_HUB_ID and not Path(source).is_dir():
        raise DataError(f"GLUE data directory {source} does not exist", "fix --data-dir or KDKIT_GLUE_DIR")
    try:
        loaded = datasets.load_dataset(source, task.hub_config)
    except Exception as exc:
        where = "the hub" if source == GLUE_HUB_ID else source
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"cannot load GLUE task '{task.name}' from {where} ({first[:200]})",
            "pass --data-dir with a hub-layout GLUE copy that has this task (or set KDKIT_GLUE_DIR), or go online",
        ) from None
    assert isinstance(loaded, DatasetDict)
    missing = [split for split in splits if split not in loaded]
    if missing:
        raise DataError(
            f"GLUE task '{task.name}' in {source} has no split(s) {', '.join(missing)}",
            f"add them; it has {', '.join(loaded)}",
        )
    return {split: loaded[split] for split in splits}


def _check_csv(path: Path) -> None:
    """Fail on the first row whose field count differs from the header's (pandas' message is obscure)."""
    delimiter = "\t" if path.suffix == ".tsv" else ","
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path} is empty", "give a file with a header row and at least one example")
        if delimiter == "," and len(header) == 1 and "\t" in header[0]:
            raise DataError(
                f"{path} looks tab-separated (its header is {header[0]!r}), but a .csv is read as comma-separated",
                "rename it to .tsv",
            )
        rows = 0
        for row in reader:
            if row and len(row) != len(header):
                raise DataError(
                    f"malformed row at line {reader.line_num} of {path}: {len(row)} fields, header has {len(header)}",
                    "quote fields that contain the delimiter, or fix the row",
                )
            rows += bool(row)
    if rows == 0:
        raise DataError(f"{path} has a header but no examples", "add at least one example row")


def _load_file(path: Path) -> Dataset:
    if path.is_dir():
        raise DataError(f"data file {path} is a directory", "give the CSV, TSV, JSON or JSONL file itself")
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"unsupported data file {path}", "use a .csv, .tsv, .json or .jsonl file")
    if path.exists() and not path.is_file():
        raise DataError(f"data file {path} is not a regular file (a device, pipe or socket)", "give the file itself")
    if not path.is_file():
        raise DataError(f"data file {path} does not exist", "check --train-file / --validation-file")
    check_utf8(path)
    if path.stat().st_size == 0 or not path.read_text(encoding="utf-8").strip():
        raise DataError(f"{path} is empty", "give a file with at least one example")
    if fmt == "csv":
        _check_csv(path)
    kwargs: dict[str, Any] = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
    if fmt == "csv":
        kwargs["keep_default_na"] = False
    try:
        loaded = datasets.load_dataset(fmt, data_files={"data": str(path)}, split="data", **kwargs)
    except Exception as exc:
        try:  # datasets' own cache of the file may be damaged (a killed write): rebuild it once
            loaded = datasets.load_dataset(
                fmt, data_files={"data": str(path)}, split="data", download_mode="force_redownload", **kwargs
            )
        except Exception:
            cause = exc.__cause__ or exc
            first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
            raise DataError(f"cannot read {path}: {first[:200]}", "check that the file is valid") from None
        warnings.warn(f"the datasets cache of {path} was damaged and has been rebuilt", CacheWarning, stacklevel=2)
    assert isinstance(loaded, Dataset)
    return loaded


def _default_text_columns(columns: Sequence[str]) -> list[str]:
    for candidate in (["text"], ["sentence"], ["sentence1", "sentence2"], ["text_a", "text_b"]):
        if all(column in columns for column in candidate):
            return candidate
    raise DataError(
        f"no text column found among {', '.join(columns)}",
        "name the text column(s) with --text-columns a[,b]",
    )


def _is_integral(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) or (isinstance(value, float) and float(value).is_integer())


def custom_task(data: DataConfig, train: Dataset | None, validation: Dataset | None) -> TaskSpec:
    """Build the task of a user's data set from its columns and labels.

    Labels given as names become classes (sorted, unless ``label_names`` fixes the order); integer labels
    are class ids 0..max; decimal labels make it a regression task; a mix of integers and decimals is an
    error unless ``task_type`` says which (:mod:`kdkit.data.labels`).
    """
    reference = train if train is not None else validation
    assert reference is not None
    columns = reference.column_names
    text_columns = data.text_columns or _default_text_columns(columns)
    if not 1 <= len(text_columns) <= 2:
        raise DataError(f"{len(text_columns)} text columns given", "give one or two with --text-columns")
    for column in [*text_columns, data.label_column]:
        if column not in columns:
            raise DataError(
                f"column '{column}' not found in the data (columns: {', '.join(columns)})",
                "name the right columns with --text-columns / --label-column",
            )
    values = reference[data.label_column]
    non_null = [v for v in values if v is not None and v != ""]
    path = data.train_file if reference is train else data.validation_file
    assert path is not None
    regression = is_regression(path, data.label_column, data.task_type, values)
    if data.label_names:
        if regression:
            raise DataError("--label-names given for a regression task", "drop --label-names or --task-type regression")
        label_names: tuple[str, ...] | None = tuple(data.label_names)
    elif regression:
        label_names = None
    elif non_null and all(isinstance(v, str) for v in non_null):
        label_names = tuple(sorted({str(v) for v in non_null}))
    elif non_null and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in non_null):
        class_ids = [int(v) for v in non_null if _is_integral(v)]  # other numbers fail the split's validation
        label_names = tuple(str(i) for i in range(max(class_ids, default=-1) + 1))
        if not label_names:
            raise DataError(f"no integer class ids in column '{data.label_column}'", "pass --task-type regression")
    else:
        raise DataError(
            f"cannot tell the labels of column '{data.label_column}' (mixed, decimal or empty values)",
            "give --label-names a,b,c, make the labels all names or all integers, or pass --task-type",
        )
    regression = label_names is None
    return TaskSpec(
        name=data.task_name,
        text_fields=tuple(text_columns),
        label_names=label_names,
        metrics=("pearson", "spearman", "mse") if regression else ("accuracy", "macro_f1"),
        main_metric="pearson" if regression else "accuracy",
        label_column=data.label_column,
        description=f"custom data ({'regression' if regression else f'{len(label_names or ())} classes'})",
    )


class RawData(NamedTuple):
    """A task's raw splits, loaded and validated once per run and passed on (to the default teacher's fine-tune,
    to tokenisation): ``task, train, validation = raw`` reads it too."""

    task: TaskSpec
    #: the training split (``None`` when only evaluating)
    train: Dataset | None
    #: the evaluation splits by name (``validation``, MNLI's matched and mismatched, or ``holdout``)
    validation: dict[str, Dataset]


def load_raw(data: DataConfig, *, need_train: bool = True) -> RawData:
    """Load and validate the raw splits: (task, train or None, {validation split: dataset})."""
    check_source(data)
    if data.is_custom:
        if need_train and data.train_file is None:
            raise DataError("no training file given", "pass --train-file (and --validation-file)")
        if data.validation_file is None:
            raise DataError("no validation file given", "pass --validation-file")
        train = _load_file(data.train_file) if need_train and data.train_file is not None else None
        validation = _load_file(data.validation_file)
        task = custom_task(data, train, validation)
        validation_splits = {"validation": validation}
    else:
        if data.task is None:
            raise DataError("no task given", "pass --task (see 'kdkit tasks') or --train-file/--validation-file")
        task = get_task(data.task)
        if data.task_type != "auto" and (data.task_type == "regression") != task.is_regression:
            kind = "regression" if task.is_regression else "classification"
            raise ConfigError(f"--task-type {data.task_type} given, but '{task.name}' is {kind}", "drop --task-type")
        wanted = [*(["train"] if need_train else []), *task.validation_splits]
        loaded = _load_glue(task, data, wanted)
        train = loaded.get("train")
        validation_splits = {split: loaded[split] for split in task.validation_splits}
    if data.holdout_fraction is not None:
        if train is None:
            raise DataError("--holdout-fraction needs the training set", "evaluate on the validation split instead")
        train, validation_splits = _hold_out(train, data.holdout_fraction)
    if train is not None:
        train = _limit(train, data.max_train_samples)
        _validate_split(train, task, "training set")
        if data.is_custom:
            check_classes(train, task, data)
    validation_splits = {name: _limit(split, data.max_eval_samples) for name, split in validation_splits.items()}
    for name, split in validation_splits.items():
        _validate_split(split, task, f"{name} set")
    return RawData(task, train, validation_splits)


#: fixed seed of the held-out split, so every run of a study holds out the same examples
HOLDOUT_SEED = 20231


def _hold_out(train: Dataset, fraction: float) -> tuple[Dataset, dict[str, Dataset]]:
    """(the rest of train, {"holdout": a random ``fraction`` of train}); the split depends on no run's seed."""
    parts = train.train_test_split(test_size=fraction, seed=HOLDOUT_SEED, shuffle=True)
    return parts["train"], {"holdout": parts["test"]}


def _limit(split: Dataset, limit: int | None) -> Dataset:
    return split.select(range(min(limit, len(split)))) if limit is not None else split


def _validate_split(split: Dataset, task: TaskSpec, what: str) -> None:
    if len(split) == 0:
        raise DataError(f"the {what} is empty", "give a data file with at least one example")
    for column in task.text_fields:
        if column not in split.column_names:
            raise DataError(
                f"the {what} has no column '{column}' (columns: {', '.join(split.column_names)})",
                "name the text column(s) with --text-columns",
            )
        for row, text in enumerate(split[column]):
            if not isinstance(text, str) or not text.strip():
                raise DataError(
                    f"row {row + 1} of the {what} has no text in column '{column}'",
                    "fill in or remove the row",
                )
    labels = split[task.label_column]
    if task.is_regression:
        for row, value in enumerate(labels):
            if not isinstance(value, (int, float, np.number)) or not math.isfinite(float(value)):
                raise DataError(
                    f"row {row + 1} of the {what} has label {value!r}, not a number",
                    "regression labels must be numbers",
                )
        return
    assert task.label_names is not None
    names = {name: i for i, name in enumerate(task.label_names)}
    for row, value in enumerate(labels):
        ok = (isinstance(value, str) and value in names) or (
            _is_integral(value) and not isinstance(value, bool) and 0 <= int(value) < len(names)
        )
        if not ok:
            raise DataError(
                f"row {row + 1} of the {what} has label {value!r}, not one of the task's labels "
                f"({', '.join(task.label_names)})",
                "fix the row, or pass --label-names with the full label list",
            )
