"""The label column of custom data: classes or regression, decided from the labels as written.

``data.task_type`` (``--task-type``) decides it explicitly; ``auto`` (the default) reads the label column
as it is written in the file, before any parsing merges its types:

- names (``pos``, ``neg``) -> classes, sorted (unless ``--label-names`` fixes the order);
- integers only (``0``, ``2``) -> classes ``0 .. max``;
- decimals only (``0.5``, ``1.0``, ``3.25``) -> regression;
- integers and decimals mixed (``0``, ``1``, ``1.5``) -> an error: one stray decimal must not silently turn a
  classification task into regression. ``--task-type regression`` (or fixing the label) resolves it.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdkit.errors import DataError

#: the class-id label of an example that has none (a transfer or augmented example: the teacher labels it);
#: regression uses NaN (:func:`kdkit.data.transfer.unlabelled_value`)
UNLABELLED = -100

_INTEGER = re.compile(r"^[+-]?\d+$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass
class LabelKinds:
    """The first row (1-based) and value of each kind of label seen: ``integer``, ``decimal``, ``name``."""

    first: dict[str, tuple[int, str]] = field(default_factory=dict)

    def add(self, row: int, value: Any) -> None:
        kind = kind_of(value)
        if kind is not None and kind not in self.first:
            self.first[kind] = (row, str(value))

    @property
    def kinds(self) -> set[str]:
        return set(self.first)


def kind_of(value: Any) -> str | None:
    """``integer``, ``decimal`` or ``name`` for a label as written (``None`` for an empty one)."""
    if value is None or isinstance(value, bool):
        return None if value is None else "name"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "decimal"
    text = str(value).strip()
    if not text:
        return None
    if _INTEGER.match(text):
        return "integer"
    return "decimal" if _NUMBER.match(text) else "name"


def scan_file(path: Path, column: str) -> LabelKinds | None:
    """The kinds of the labels in ``column`` of a CSV/TSV/JSONL/JSON file as written (``None`` if the file
    layout is not one this reads)."""
    kinds = LabelKinds()
    suffix = path.suffix.lower()
    with path.open(encoding="utf-8", newline="") as handle:
        if suffix in (".csv", ".tsv"):
            for row, record in enumerate(csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ","), 1):
                kinds.add(row, record.get(column))
            return kinds
        try:
            if suffix == ".jsonl":
                records = [json.loads(line) for line in handle if line.strip()]
            else:
                loaded = json.load(handle)
                records = loaded if isinstance(loaded, list) else []
        except ValueError:
            return None  # datasets reports the syntax error
    for row, record in enumerate(records, 1):
        if isinstance(record, dict):
            kinds.add(row, record.get(column))
    return kinds


def decide_regression(kinds: LabelKinds, task_type: str, column: str, where: Path | str) -> bool:
    """Whether the labels make a regression task (see the module docstring); a DataError if they cannot."""
    found = kinds.kinds
    if task_type == "regression":
        if "name" in found:
            row, value = kinds.first["name"]
            raise DataError(
                f"--task-type regression, but row {row} of {where} has label {value!r}, not a number",
                "regression labels must be numbers",
            )
        return True
    if task_type == "classification" or "name" in found:
        return False
    if found == {"integer", "decimal"}:
        (int_row, int_value), (dec_row, dec_value) = kinds.first["integer"], kinds.first["decimal"]
        raise DataError(
            f"column '{column}' of {where} mixes integer labels (row {int_row}: {int_value}) with decimal "
            f"ones (row {dec_row}: {dec_value}), so it is neither clearly classes nor clearly regression",
            "pass --task-type regression for a regression task, or fix the labels that are not class ids",
        )
    return found == {"decimal"}


def is_regression(path: Path, column: str, task_type: str, values: list[Any]) -> bool:
    """Decide the task type of ``column`` of the data file ``path`` (``values``: the parsed column, used when
    the file's layout is not one :func:`scan_file` reads)."""
    kinds = scan_file(path, column)
    if kinds is None:
        kinds = LabelKinds()
        for row, value in enumerate(values, 1):
            kinds.add(row, value)
    return decide_regression(kinds, task_type, column, path)
