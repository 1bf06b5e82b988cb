"""Transfer data: unlabelled text that the teacher labels (``kdkit distill --transfer-file FILE``, repeatable).

A transfer file is CSV, TSV, JSON or JSONL with the task's text column(s) (the columns of ``--text-columns``, else
the task's own fields, else ``text`` / ``sentence`` / ``sentence1,sentence2`` / ``text_a,text_b`` as for
``--train-file``), or plain text (``.txt``, one example a line, blank lines skipped; single-text tasks only).
A label column in it is ignored, with a warning: the teacher labels every transfer example.

Each transfer example joins the training set with the label :data:`UNLABELLED` (``-100``; ``NaN`` for regression):
the supervised term skips it (:func:`kdkit.losses.formulas.labelled`), every term that needs only the teacher
(``kd``, ``adkd``, ``hidden``, ``attention``) uses it. Texts longer than ``--max-length`` are truncated, as every
input is. A file over :data:`MAX_TRANSFER_BYTES` is refused with its size (kdkit reads transfer files whole).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset, concatenate_datasets

from kdkit.config import DataConfig
from kdkit.data.labels import UNLABELLED
from kdkit.data.loading import _FORMATS, _default_text_columns, _load_file
from kdkit.data.tasks import TaskSpec
from kdkit.data.texts import check_utf8
from kdkit.errors import DataError, KdkitWarning

#: the largest transfer file kdkit reads (bytes); split or sample a larger one
MAX_TRANSFER_BYTES = 1024**3
#: plain-text transfer files: one example a line
TEXT_SUFFIXES = (".txt",)


def unlabelled_value(task: TaskSpec) -> float | int:
    """The label of an example without one: :data:`UNLABELLED` for classes, ``NaN`` for regression."""
    return math.nan if task.is_regression else UNLABELLED


def _size_text(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


def check_transfer_file(path: Path) -> None:
    """One-line errors for a transfer file that is missing, a folder, of an unknown kind, too large, empty or not
    UTF-8 (the file is only read, never changed)."""
    if path.is_dir():
        raise DataError(f"transfer file {path} is a directory", "give the .txt, CSV, TSV, JSON or JSONL file itself")
    if not path.is_file():
        raise DataError(f"transfer file {path} does not exist", "check --transfer-file")
    suffix = path.suffix.lower()
    if suffix not in _FORMATS and suffix not in TEXT_SUFFIXES:
        raise DataError(
            f"unsupported transfer file {path}", "use a .txt (one example a line), .csv, .tsv, .json or .jsonl file"
        )
    size = path.stat().st_size
    if size > MAX_TRANSFER_BYTES:
        raise DataError(
            f"transfer file {path} is {_size_text(size)}, over the {_size_text(MAX_TRANSFER_BYTES)} kdkit reads",
            f"sample it (e.g. shuf -n 1000000 {path.name} > sample{path.suffix}) or split it into smaller files",
        )
    if size == 0:
        raise DataError(f"transfer file {path} is empty", "give a file with at least one text")
    check_utf8(path)


def _plain_text(path: Path, task: TaskSpec) -> Dataset:
    if len(task.text_fields) != 1:
        raise DataError(
            f"transfer file {path} is plain text (one text a line), but task '{task.name}' takes sentence pairs",
            f"use a CSV/TSV/JSON(L) file with the columns {', '.join(task.text_fields)}",
        )
    with path.open(encoding="utf-8") as handle:
        texts = [line.rstrip("\r\n") for line in handle if line.strip()]
    if not texts:
        raise DataError(f"transfer file {path} has no text (only blank lines)", "give at least one text")
    return Dataset.from_dict({task.text_fields[0]: texts})


def _columns(path: Path, columns: Sequence[str], task: TaskSpec, data: DataConfig) -> list[str]:
    """The transfer file's text columns: ``--text-columns``, else the task's fields, else the usual names."""
    if data.text_columns:
        wanted = list(data.text_columns)
    elif all(field in columns for field in task.text_fields):
        wanted = list(task.text_fields)
    else:
        try:
            wanted = _default_text_columns(columns)
        except DataError:
            wanted = list(task.text_fields)
    missing = [column for column in wanted if column not in columns]
    if missing or len(wanted) != len(task.text_fields):
        raise DataError(
            f"transfer file {path} has no text column(s) {', '.join(task.text_fields)} for task '{task.name}' "
            f"(its columns: {', '.join(columns)})",
            "name the columns as the training data's (--text-columns), or give a .txt file of one text a line",
        )
    return wanted


def _table(path: Path, task: TaskSpec, data: DataConfig) -> Dataset:
    loaded = _load_file(path)
    wanted = _columns(path, loaded.column_names, task, data)
    label = task.label_column if not data.text_columns else data.label_column
    if label in loaded.column_names:
        warnings.warn(
            f"transfer file {path} has a label column '{label}': it is ignored (the teacher labels transfer "
            "examples; put labelled examples in the training data)",
            KdkitWarning,
            stacklevel=3,
        )
    loaded = loaded.select_columns(wanted)
    return loaded.rename_columns(dict(zip(wanted, task.text_fields, strict=True)))


def _check_texts(split: Dataset, path: Path, task: TaskSpec) -> None:
    if len(split) == 0:
        raise DataError(f"transfer file {path} holds no examples", "give a file with at least one text")
    for column in task.text_fields:
        for row, text in enumerate(split[column]):
            if not isinstance(text, str) or not text.strip():
                raise DataError(
                    f"row {row + 1} of transfer file {path} has no text in column '{column}'",
                    "fill in or remove the row",
                )


def load_transfer(paths: Sequence[Path], task: TaskSpec, data: DataConfig) -> Dataset | None:
    """The transfer files' texts as one dataset with the task's text fields as columns (``None`` when no file is
    given), checked before anything expensive runs."""
    splits: list[Dataset] = []
    for given in paths:
        path = Path(given)
        check_transfer_file(path)
        split = _plain_text(path, task) if path.suffix.lower() in TEXT_SUFFIXES else _table(path, task, data)
        _check_texts(split, path, task)
        splits.append(split.cast(splits[0].features) if splits else split)
    if not splits:
        return None
    return splits[0] if len(splits) == 1 else concatenate_datasets(splits)
