"""A teacher given as a file of soft labels (issue 27): read, matched to the training examples, checked row by row."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kdkit.data.soft_labels import read_soft_labels
from kdkit.data.tasks import get_task
from kdkit.errors import DataError
from kdkit.testing import BINARY_TASK, REGRESSION_TASK, THREE_CLASS_TASK

TEXTS = ["good film", "bad plot", "fine acting"]


def _file(tmp_path: Path, rows: list[Any], name: str = "soft.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def test_rows_by_text_and_id_in_training_order(tmp_path: Path) -> None:
    rows = [
        {"id": 2, "probs": {"neg": 0.25, "pos": 0.75}},
        {"text": "good film", "probs": {"pos": 1.0}},
        {"text": "bad plot", "logprobs": {"neg": math.log(0.9)}},  # top-1: the rest goes to the labels left out
    ]
    soft = read_soft_labels(_file(tmp_path, rows), BINARY_TASK, TEXTS)
    assert soft.logits.shape == (3, 2) and soft.logits.dtype == np.float32
    assert np.allclose(_softmax(soft.logits), [[0.0, 1.0], [0.9, 0.1], [0.25, 0.75]], atol=1e-6)
    assert len(soft.sha256) == 64 and soft.record()["file"].endswith("soft.jsonl")


def test_duplicate_texts_in_the_data_share_one_row(tmp_path: Path) -> None:
    rows = [{"text": "a", "probs": {"neg": 0.5, "pos": 0.5}}, {"text": "b", "probs": {"neg": 1.0}}]
    soft = read_soft_labels(_file(tmp_path, rows), BINARY_TASK, ["a", "b", "a"])
    assert np.allclose(_softmax(soft.logits)[2], [0.5, 0.5])


def test_sentence_pairs_are_keyed_by_text_and_text_pair(tmp_path: Path) -> None:
    task = get_task("mrpc")
    rows = [{"text": "x", "text_pair": "y", "probs": {"equivalent": 0.6, "not_equivalent": 0.4}}]
    soft = read_soft_labels(_file(tmp_path, rows), task, [("x", "y")])
    assert np.allclose(_softmax(soft.logits), [[0.4, 0.6]], atol=1e-6)


GOOD = {"probs": {"neg": 0.5, "pos": 0.5}}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"text": "bad plot", "probs": {"neg": 0.5, "positive": 0.5}}, "names label 'positive', not one of"),
        ({"text": "bad plot", "probs": {"neg": 0.5, "pos": 0.6}}, "sum to 1.1, not 1"),
        ({"text": "bad plot", "probs": {"neg": "0.5", "pos": 0.5}}, "is the string '0.5', not a number"),
        ('{"text": "bad plot", "probs": {"neg": NaN, "pos": 0.5}}', "nan, not a finite number"),
        ('{"text": "bad plot", "probs": {"neg": Infinity, "pos": 0.5}}', "inf, not a finite number"),
        ({"text": "bad plot", "probs": {"neg": -0.5, "pos": 1.5}}, "outside \\[0, 1\\]"),
        ({"text": "good film", **GOOD}, "repeats the text of row 1"),
        ({"text": "not in the data", **GOOD}, "its text 'not in the data' is not in the training data"),
        ({"id": 7, **GOOD}, "id 7 is not a training example"),
        ({"id": "1", **GOOD}, "id '1' is not a whole number"),
        ({"probs": GOOD["probs"]}, "has neither 'text' nor 'id'"),
        ({"text": "bad plot"}, "neither probs nor logprobs"),
        ({"text": "bad plot", "probs": [0.5, 0.5]}, "must map label names to numbers"),
        ({"text": "bad plot", "logprobs": {"neg": 0.5}}, "a log-probability is above 0"),
        ("{not json", "is not JSON"),
        ("[1, 2]", "is not a JSON object"),
    ],
)
def test_a_bad_row_is_a_one_line_error_naming_it(tmp_path: Path, bad: Any, message: str) -> None:
    path = _file(tmp_path, [{"text": "good film", **GOOD}, bad, {"text": "fine acting", **GOOD}])
    with pytest.raises(DataError, match=message) as error:
        read_soft_labels(path, BINARY_TASK, TEXTS)
    assert f"row 2 of {path}" in str(error.value) and "\n" not in str(error.value)


def test_every_training_example_needs_a_row(tmp_path: Path) -> None:
    path = _file(tmp_path, [{"text": "good film", **GOOD}, {"id": 2, **GOOD}])
    with pytest.raises(DataError, match="1 training example\\(s\\) have no row .* the first id 1 \\('bad plot'\\)"):
        read_soft_labels(path, BINARY_TASK, TEXTS)


def test_files_and_tasks_that_cannot_hold_soft_labels(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is empty"):
        read_soft_labels(_file(tmp_path, []), BINARY_TASK, TEXTS)
    with pytest.raises(DataError, match="not an existing .jsonl file"):
        read_soft_labels(tmp_path / "missing.jsonl", BINARY_TASK, TEXTS)
    with pytest.raises(DataError, match="regression task"):
        read_soft_labels(_file(tmp_path, [{"id": 0, **GOOD}]), REGRESSION_TASK, TEXTS)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"text": "caf\xe9", "probs": {"neg": 1.0}}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        read_soft_labels(latin, BINARY_TASK, ["café"])
    three = [{"id": 0, "logprobs": {"a": math.log(0.5), "b": math.log(0.2)}}]  # c gets 0.3
    soft = read_soft_labels(_file(tmp_path, three, "three.jsonl"), THREE_CLASS_TASK, ["x"])
    assert np.allclose(_softmax(soft.logits), [[0.5, 0.2, 0.3]], atol=1e-6)
