"""Transfer data (issue 27): unlabelled files read and checked, tokenised as unlabelled, the supervised term masked."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kdkit.config import DataConfig
from kdkit.data import transfer
from kdkit.data.labels import UNLABELLED
from kdkit.data.tasks import get_task
from kdkit.data.tokenizing import TaskData, add_unlabelled, tokenize
from kdkit.data.transfer import load_transfer
from kdkit.errors import DataError, KdkitWarning
from kdkit.losses.formulas import labelled, task_loss
from kdkit.testing import BINARY_TASK, REGRESSION_TASK, tiny_tokenizer, write_tiny_csv

PAIR_TASK = get_task("mrpc")


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


# -- the supervised term, masked ------------------------------------------------------------------------


def test_ce_is_the_mean_over_labelled_examples_only() -> None:
    torch.manual_seed(0)
    logits = torch.randn(5, 2, requires_grad=True)
    labels = torch.tensor([0, 1, UNLABELLED, 1, UNLABELLED])
    expected = F.cross_entropy(logits[[0, 1, 3]], labels[[0, 1, 3]])
    assert torch.allclose(task_loss(BINARY_TASK, logits, labels), expected)
    # the unlabelled rows' logits change nothing, whatever they are
    changed = logits.detach().clone()
    changed[[2, 4]] = torch.tensor([[50.0, -50.0], [-3.0, 9.0]])
    assert torch.allclose(task_loss(BINARY_TASK, changed, labels), expected)
    task_loss(BINARY_TASK, logits, labels).backward()
    assert logits.grad is not None and torch.all(logits.grad[[2, 4]] == 0)


def test_a_fully_labelled_batch_is_the_usual_mean() -> None:
    logits, labels = torch.randn(4, 2), torch.tensor([0, 1, 1, 0])
    assert torch.allclose(task_loss(BINARY_TASK, logits, labels), F.cross_entropy(logits, labels))


def test_a_batch_without_labels_contributes_zero_and_a_zero_gradient() -> None:
    logits = torch.randn(3, 2, requires_grad=True)
    loss = task_loss(BINARY_TASK, logits, torch.full((3,), UNLABELLED))
    loss.backward()
    assert float(loss.detach()) == 0.0 and logits.grad is not None and torch.all(logits.grad == 0)


def test_regression_masks_nan_labels() -> None:
    logits = torch.tensor([[1.0], [2.0], [3.0]], requires_grad=True)
    labels = torch.tensor([1.5, math.nan, 2.0])
    loss = task_loss(REGRESSION_TASK, logits, labels)
    assert torch.isfinite(loss) and math.isclose(float(loss), (0.25 + 1.0) / 2)
    assert labelled(REGRESSION_TASK, labels).tolist() == [True, False, True]
    loss.backward()
    assert logits.grad is not None and float(logits.grad[1]) == 0.0


# -- reading transfer files --------------------------------------------------------------------------------


def test_plain_text_csv_tsv_and_jsonl(tmp_path: Path) -> None:
    data = DataConfig(train_file=tmp_path / "t.csv", validation_file=tmp_path / "v.csv")
    txt = _write(tmp_path / "a.txt", "good film\n\n  \nbad plot\n")
    csv_file = _write(tmp_path / "b.csv", "text,other\nfine acting,1\n")
    tsv = _write(tmp_path / "c.tsv", "sentence\tx\ndull\t2\n")
    jsonl = _write(tmp_path / "d.jsonl", json.dumps({"text": "so so"}) + "\n")
    texts = load_transfer([txt, csv_file, tsv, jsonl], BINARY_TASK, data)
    assert texts is not None and texts.column_names == ["text"]
    assert texts["text"] == ["good film", "bad plot", "fine acting", "dull", "so so"]


def test_a_label_column_is_ignored_with_a_warning(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", "text,label\ngood,garbage-label\nbad,pos\n")
    with pytest.warns(KdkitWarning, match="label column 'label': it is ignored"):
        texts = load_transfer([path], BINARY_TASK, DataConfig())
    assert texts is not None and texts.column_names == ["text"]


def test_transfer_examples_are_tokenised_unlabelled_and_appended(tmp_path: Path) -> None:
    tokenizer = tiny_tokenizer(tmp_path / "tok")
    data = DataConfig(max_length=16)
    train_csv = write_tiny_csv(tmp_path / "train.csv", 6, seed=1)
    from kdkit.data.loading import _load_file

    train = tokenize(_load_file(train_csv), BINARY_TASK, tokenizer, data)
    path = _write(tmp_path / "t.csv", "text,label\ngood " + "fine " * 40 + ",pos\nbad,neg\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KdkitWarning)
        texts = load_transfer([path], BINARY_TASK, data)
    assert texts is not None
    merged = add_unlabelled(TaskData(BINARY_TASK, train, {}), texts, tokenizer, data)
    assert merged.train is not None and len(merged.train) == 8
    assert merged.train["labels"][-2:] == [UNLABELLED, UNLABELLED]  # the file's labels are not used
    assert merged.train["labels"][:6] == train["labels"]
    assert max(len(ids) for ids in merged.train["input_ids"]) == 16  # a long text is truncated, as every input


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"", "empty.txt", "is empty"),
        (b"\n\n  \n", "blank.txt", "has no text"),
        (b"caf\xe9 au lait\n", "latin.txt", "is not UTF-8"),
        (b"text\n", "header.csv", "has a header but no examples"),
        (b"words,label\nhi,pos\n", "nocol.csv", "has no text column"),
        (b'{"text": ""}\n', "blank.jsonl", "row 1 of transfer file .* has no text"),
        (b"x", "data.parquet", "unsupported transfer file"),
    ],
)
def test_bad_transfer_files_are_one_line_errors(tmp_path: Path, content: bytes, name: str, message: str) -> None:
    path = _write(tmp_path / name, content)
    with pytest.raises(DataError, match=message) as error, warnings.catch_warnings():
        warnings.simplefilter("ignore", KdkitWarning)
        load_transfer([path], BINARY_TASK, DataConfig())
    assert "\n" not in str(error.value)
    assert path.read_bytes() == content  # nothing the user gave is modified


def test_missing_file_and_plain_text_for_pairs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_transfer([tmp_path / "nope.txt"], BINARY_TASK, DataConfig())
    with pytest.raises(DataError, match="takes sentence pairs"):
        load_transfer([_write(tmp_path / "a.txt", "one\n")], PAIR_TASK, DataConfig())


def test_a_huge_file_is_refused_with_its_size(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    with path.open("wb") as handle:  # sparse: 10 GB on paper, nothing on disk
        handle.truncate(10 * 10**9)
    with pytest.raises(DataError, match=r"is 10\.0 GB, over the 1\.1 GB kdkit reads"):
        load_transfer([path], BINARY_TASK, DataConfig())
    assert transfer.MAX_TRANSFER_BYTES < 10 * 10**9
