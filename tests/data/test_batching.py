"""Column-wise batching (kdkit.data.batching): the same batches as the per-example collator, and the same training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset

from kdkit.data.batching import ColumnarDataset, DistillationCollator, RowBlock, padded_length
from kdkit.testing import run_distillation_steps


def _split(rows: int, *, regression: bool = False, views: int = 2, seed: int = 0) -> Dataset:
    """A tokenised split with ragged model inputs, per-token teacher maps (V, L_i) and teacher logits."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 20, size=rows)
    labels = rng.normal(size=rows).astype(np.float32).tolist() if regression else rng.integers(0, 3, rows).tolist()
    data = {
        "input_ids": [rng.integers(5, 100, size=n).tolist() for n in lengths],
        "attention_mask": [[1] * n for n in lengths],
        "token_type_ids": [rng.integers(0, 2, size=n).tolist() for n in lengths],
        "labels": labels,
        "length": lengths.tolist(),
        "teacher_logits": rng.normal(size=(rows, 3)).astype(np.float32).tolist(),
        "teacher_attr_map": [rng.random((views, n)).astype(np.float32).tolist() for n in lengths],
        "idx": list(range(rows)),
    }
    dataset = Dataset.from_dict(data)
    if regression:
        from datasets import Value

        features = dataset.features.copy()
        features["labels"] = Value("float32")
        dataset = dataset.cast(features)
    return dataset.sort("length")  # an indices mapping, as the teacher cache leaves it


def _assert_same(fast: dict[str, torch.Tensor], slow: dict[str, torch.Tensor]) -> None:
    assert list(fast) == list(slow)
    for key in slow:
        assert fast[key].dtype == slow[key].dtype, key
        assert fast[key].shape == slow[key].shape, key
        assert torch.equal(fast[key], slow[key]), key


@pytest.mark.parametrize(
    ("regression", "pad_to", "multiple", "views"),
    [(False, None, None, 2), (True, None, None, 1), (False, 24, None, 3), (False, None, 8, 2), (False, 30, 16, 1)],
)
def test_row_blocks_give_the_per_example_collators_batches(regression, pad_to, multiple, views):
    dataset = _split(57, regression=regression, views=views)
    collator = DistillationCollator(7, pad_to=pad_to, token_signals=["attr_map"], pad_to_multiple_of=multiple)
    columns = ColumnarDataset.from_dataset(dataset, collator.token_signals)
    rng = np.random.default_rng(1)
    for size in (1, 5, 16, 57):
        indices = rng.choice(len(dataset), size=size, replace=False).tolist()
        block = columns.__getitems__(indices)
        assert isinstance(block, RowBlock)
        _assert_same(collator(block), collator([dataset[i] for i in indices]))


def test_columnar_rows_and_lengths_match_the_dataset():
    dataset = _split(23)
    columns = ColumnarDataset.from_dataset(dataset, {"teacher_attr_map"})
    assert len(columns) == len(dataset)
    assert columns.lengths() == list(dataset["length"])
    for index in (0, 7, 22):
        row = dataset[index]
        assert columns[index] == {key: row[key] for key in columns[index]}
        assert set(columns[index]) == set(row) - {"idx"}  # columns a batch never carries are not read


def test_a_column_with_an_unexpected_layout_is_refused():
    dataset = _split(9)
    with pytest.raises(ValueError, match="differ"):  # per-token maps taken for per-example signals
        ColumnarDataset.from_dataset(dataset, token_columns=set())
    with pytest.raises(ValueError, match="input_ids and labels"):
        ColumnarDataset.from_dataset(dataset.remove_columns("labels"), token_columns={"teacher_attr_map"})


def test_padded_length():
    assert padded_length(13) == 13
    assert padded_length(13, pad_to=20) == 20
    assert padded_length(13, pad_to_multiple_of=8) == 16
    assert padded_length(16, pad_to_multiple_of=8) == 16
    assert padded_length(13, pad_to=17, pad_to_multiple_of=8) == 24


@pytest.mark.parametrize("loss", ["kd", "adkd"])
def test_training_through_columns_logs_the_same_losses(tmp_path, monkeypatch, loss):
    """The same run with the per-example path (the collator refusing row blocks) and the column path."""
    runs = {}
    for fast in (False, True):
        monkeypatch.setattr(DistillationCollator, "accepts_row_blocks", fast)
        result = run_distillation_steps(loss=loss, enable=["adkd"], steps=4, directory=tmp_path / str(fast))
        runs[fast] = [{k: v for k, v in entry.items() if k.startswith("loss")} for entry in result.summary["train_log"]]
    assert runs[True] == runs[False]
    assert len(runs[True]) == 4 and all(entry for entry in runs[True])
