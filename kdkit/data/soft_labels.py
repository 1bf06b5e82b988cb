"""A teacher given as a file: ``kdkit distill --soft-labels FILE.jsonl``, the class probabilities of each training
example (an LLM behind an API, a teacher run elsewhere). No teacher model is loaded; the student learns the file's
distribution through the loss's KD term.

One JSON object a line, for each training example (the labelled ones, then the transfer files' in order):

- its key: ``"text"`` (the example's text; a sentence-pair task adds ``"text_pair"``), or ``"id"`` (its 0-based
  position in the training set);
- its distribution: ``"probs"``, a mapping of the task's label names to probabilities that sum to 1 (within
  :data:`TOLERANCE`; labels left out are 0), or ``"logprobs"``, the top-k log-probabilities of some labels (the
  rest of the mass is shared equally by the labels left out; with every label given, they must sum to 1).

Checked whole before training, each problem a one-line error naming the first bad row (its line number): not JSON,
no key or no distribution, unknown label names, numbers given as strings, NaN or infinities, probabilities outside
[0, 1] or not summing to 1, a key given twice, a text that is not in the data, an id out of range; then the first
training example that no row covers. The teacher's "logits" kdkit trains with are ``log p`` (p floored at
:data:`FLOOR`), so softmax gives the file's probabilities back.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdkit.data.tasks import TaskSpec
from kdkit.data.texts import check_utf8
from kdkit.errors import DataError

#: how far a row's probabilities may sum from 1
TOLERANCE = 1e-3
#: the smallest probability kept (log 0 would be -inf)
FLOOR = 1e-8
_FIX = "fix the row (see docs/configuration.md, 'Soft labels')"


@dataclass(frozen=True)
class SoftLabels:
    """The file's distributions in training-set order.

    Attributes:
        path: the file (absolute).
        sha256: its checksum (the model card names the file and it as the teacher).
        logits: (N, C) float32 ``log p``, one row per training example.
    """

    path: Path
    sha256: str
    logits: np.ndarray

    def record(self) -> dict[str, str]:
        """What ``run.json`` keeps: ``{"file": ..., "sha256": ...}``."""
        return {"file": str(self.path), "sha256": self.sha256}


def _number(value: Any, where: str, label: str) -> float:
    if isinstance(value, str):
        raise DataError(f"{where}: the value of '{label}' is the string {value!r}, not a number", _FIX)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{where}: the value of '{label}' is {value!r}, not a number", _FIX)
    if not math.isfinite(value):
        raise DataError(f"{where}: the value of '{label}' is {value!r}, not a finite number", _FIX)
    return float(value)


def _distribution(row: dict[str, Any], labels: Sequence[str], where: str) -> np.ndarray:
    """The row's probabilities over ``labels`` (see the module docstring)."""
    kinds = [kind for kind in ("probs", "logprobs") if kind in row]
    if len(kinds) != 1:
        raise DataError(f"{where} has {' and '.join(kinds) or 'neither probs nor logprobs'}", "give one of the two")
    kind = kinds[0]
    given = row[kind]
    if not isinstance(given, Mapping) or not given:
        raise DataError(f"{where}: '{kind}' must map label names to numbers, not {given!r}", _FIX)
    unknown = [name for name in given if name not in labels]
    if unknown:
        raise DataError(
            f"{where} names label {unknown[0]!r}, not one of the task's labels ({', '.join(labels)})",
            "use the task's label names (kdkit tasks, or the training data's labels)",
        )
    values = {name: _number(value, where, name) for name, value in given.items()}
    if kind == "logprobs":
        if any(value > 1e-6 for value in values.values()):
            raise DataError(f"{where}: a log-probability is above 0", _FIX)
        values = {name: math.exp(value) for name, value in values.items()}
    elif any(not 0.0 <= value <= 1.0 for value in values.values()):
        raise DataError(f"{where}: a probability is outside [0, 1]", _FIX)
    probs = np.array([values.get(name, 0.0) for name in labels], dtype=np.float64)
    total = float(probs.sum())
    missing = [i for i, name in enumerate(labels) if name not in values]
    if kind == "logprobs" and missing and total <= 1.0 + TOLERANCE:
        probs[missing] = max(1.0 - total, 0.0) / len(missing)
        total = float(probs.sum())
    if abs(total - 1.0) > TOLERANCE:
        raise DataError(f"{where}: the probabilities sum to {total:.6g}, not 1 (tolerance {TOLERANCE:g})", _FIX)
    return probs / total


def _key(row: dict[str, Any], pair: bool, where: str) -> tuple[str, Any]:
    if "id" in row:
        identifier = row["id"]
        if isinstance(identifier, bool) or not isinstance(identifier, int):
            raise DataError(f"{where}: its id {identifier!r} is not a whole number", "ids are 0-based positions")
        return "id", identifier
    if "text" in row:
        text = (row["text"], row.get("text_pair")) if pair else row["text"]
        if not isinstance(row["text"], str) or (pair and not isinstance(row.get("text_pair"), str)):
            raise DataError(f"{where}: 'text'{' and text_pair' if pair else ''} must be strings", _FIX)
        return "text", text
    raise DataError(f"{where} has neither 'text' nor 'id'", "key each row by the example's text or its 0-based id")


def _rows(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"row {number} of {path}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where} is not JSON ({exc.msg})", "write one JSON object a line") from None
            if not isinstance(row, dict):
                raise DataError(f"{where} is not a JSON object", "write one JSON object a line")
            yield where, row


def read_soft_labels(path: Path, task: TaskSpec, texts: Sequence[Any]) -> SoftLabels:
    """The file's distributions for the training examples ``texts`` (a string each, or a (text, pair) tuple for a
    sentence-pair task), checked as the module docstring says."""
    if task.label_names is None:
        raise DataError("--soft-labels given for a regression task", "soft labels are class probabilities")
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        raise DataError(f"soft-label file {path} is not an existing .jsonl file", "give the JSONL file itself")
    check_utf8(path)
    positions: dict[Any, list[int]] = {}
    for position, text in enumerate(texts):
        positions.setdefault(text, []).append(position)
    labels, pair = task.label_names, len(task.text_fields) == 2
    found = np.full((len(texts), len(labels)), np.nan)
    seen: dict[tuple[str, Any], str] = {}
    for where, row in _rows(path):
        key = _key(row, pair, where)
        if key in seen:
            raise DataError(f"{where} repeats the {key[0]} of {seen[key]}", "give each example once")
        seen[key] = where.split(" of ")[0]
        if key[0] == "id":
            if not 0 <= key[1] < len(texts):
                raise DataError(f"{where}: id {key[1]} is not a training example (0 to {len(texts) - 1})", _FIX)
            rows = [key[1]]
        else:
            rows = positions.get(key[1], [])
            if not rows:
                raise DataError(f"{where}: its text {str(key[1])[:60]!r} is not in the training data", _FIX)
        found[rows] = _distribution(row, labels, where)
    if not seen:
        raise DataError(f"soft-label file {path} is empty", "give one row per training example")
    uncovered = np.flatnonzero(np.isnan(found[:, 0]))
    if uncovered.size:
        first = int(uncovered[0])
        raise DataError(
            f"{uncovered.size} training example(s) have no row in {path}, the first id {first} "
            f"({str(texts[first])[:60]!r})",
            "give a row (by text or id) for every training example, labelled and transfer",
        )
    logits = np.log(np.maximum(found, FLOOR)).astype(np.float32)
    return SoftLabels(path=path.absolute(), sha256=file_sha256(path), logits=logits)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
