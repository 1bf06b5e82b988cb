"""Batching: :class:`DistillationCollator` pads a list of tokenised examples (and their teacher signals) into a
batch; without per-example Python, a training split held as numpy columns is gathered and padded per batch.

A :class:`datasets.Dataset` hands the DataLoader one Python dict per example (each value a list), and a
collator then pads them one by one: at batch 128 that is most of a GPU step's host time. A
:class:`ColumnarDataset` reads the split once into numpy arrays (about the size of the tokenised data):

- ragged columns (model inputs, per-token teacher signals such as AD-KD's maps): every row's values one after
  another, row i a block of shape ``lead + (lengths[i],)`` starting at ``starts[i]`` (``lead`` is ``()`` for
  token ids, ``(V,)`` for V maps per example);
- dense columns (labels, teacher logits, ``length``): one (N, ...) array each.

Its ``__getitems__`` (what ``torch.utils.data.DataLoader`` calls with a batch's indices) returns a
:class:`RowBlock`, and :func:`pad_rows` builds the batch with a handful of vectorised numpy operations:
the same tensors, dtypes and padding as :class:`DistillationCollator` builds from a list of dicts.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Dataset

#: model inputs a batch may carry, in this order (kdkit.data re-exports it)
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: prefix of teacher-signal columns (``teacher_logits``, ``teacher_attr_map`` ...)
TEACHER_PREFIX = "teacher_"


@dataclass(frozen=True)
class RaggedColumn:
    """Rows whose last axis is the sequence: row i is ``values[starts[i]:...]`` viewed as ``lead + (lengths[i],)``."""

    values: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    lead: tuple[int, ...]

    def gather(self, rows: np.ndarray, length: int, fill: float, dtype: Any) -> np.ndarray:
        """(B, *lead, length): the rows, each padded with ``fill`` (or cut) to ``length`` tokens."""
        lead_size = math.prod(self.lead)
        tokens = np.arange(length)
        row_lengths = self.lengths[rows][:, None, None]
        source = self.starts[rows][:, None, None] + np.arange(lead_size)[None, :, None] * row_lengths + tokens
        valid = np.broadcast_to(tokens < row_lengths, source.shape)
        out = np.full(source.shape, fill, dtype=dtype)
        out[valid] = self.values[source[valid]]
        return out.reshape(len(rows), *self.lead, length)

    def row(self, index: int) -> Any:
        block = self.values[self.starts[index] : self.starts[index] + math.prod(self.lead) * self.lengths[index]]
        return block.reshape(*self.lead, int(self.lengths[index])).tolist()


def _list_levels(array: pa.Array) -> tuple[pa.Array, list[np.ndarray]]:
    """The innermost values of nested lists and the lengths at each list level (level k has one entry per
    element of level k-1)."""
    levels: list[np.ndarray] = []
    while pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        if array.null_count:
            raise ValueError("null rows")
        levels.append(np.asarray(pc.list_value_length(array), dtype=np.int64))
        array = array.flatten()
    return array, levels


def ragged_column(array: pa.Array) -> RaggedColumn:
    """A list column (``list<x>`` or ``list<list<x>>``...) whose innermost lists are the sequence axis."""
    values, levels = _list_levels(array)
    if not levels:
        raise ValueError("not a list column")
    rows = len(array)
    lead: list[int] = []
    for level in levels[:-1]:
        if level.size and np.any(level != level[0]):
            raise ValueError("leading dimensions differ between rows")
        lead.append(int(level[0]) if level.size else 0)
    lead_size = math.prod(lead)
    inner = levels[-1].reshape(rows, lead_size) if lead_size else np.zeros((rows, 0), dtype=np.int64)
    if lead_size and np.any(inner != inner[:, :1]):
        raise ValueError("a row's sequences differ in length")
    lengths = inner[:, 0] if lead_size else np.zeros(rows, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths * lead_size)[:-1]]).astype(np.int64)
    return RaggedColumn(np.asarray(values.to_numpy(zero_copy_only=False)), starts, lengths, tuple(lead))


def dense_column(array: pa.Array) -> np.ndarray:
    """A column of scalars or of equal-shape nested lists, as one (N, ...) array."""
    values, levels = _list_levels(array)
    shape = [len(array)]
    for level in levels:
        if level.size and np.any(level != level[0]):
            raise ValueError("rows differ in shape")
        shape.append(int(level[0]) if level.size else 0)
    return np.asarray(values.to_numpy(zero_copy_only=False)).reshape(shape)


@dataclass(frozen=True)
class RowBlock:
    """A batch's rows of a :class:`ColumnarDataset`, before padding (what the DataLoader hands the collator)."""

    source: ColumnarDataset
    rows: np.ndarray


class ColumnarDataset(torch.utils.data.Dataset):
    """A tokenised split (``input_ids``..., ``labels``, ``length``, ``teacher_*``) as numpy columns.

    Args:
        ragged: the per-token columns (model inputs and per-token teacher signals).
        dense: the other columns kept (``labels``, ``length``, per-example teacher signals).
        order: the columns' order in the source (batches list teacher signals in it).
    """

    def __init__(
        self, ragged: dict[str, RaggedColumn], dense: dict[str, np.ndarray], order: Sequence[str] = ()
    ) -> None:
        self.ragged = ragged
        self.dense = dense
        self.teacher_columns = [name for name in (order or [*ragged, *dense]) if name.startswith(TEACHER_PREFIX)]
        self.size = len(next(iter(dense.values()))) if dense else len(next(iter(ragged.values())).lengths)

    @classmethod
    def from_dataset(cls, dataset: Dataset, token_columns: Collection[str]) -> ColumnarDataset:
        """Read ``dataset`` (its model inputs, ``labels``, ``length`` and ``teacher_*`` columns) into memory.

        ``token_columns``: the ``teacher_*`` columns whose last axis is the sequence. Raises ``ValueError``
        when a column does not have the layout it should (the caller then keeps the dataset as it is).
        """
        wanted = [
            name
            for name in dataset.column_names
            if name in MODEL_INPUTS or name in ("labels", "length") or name.startswith(TEACHER_PREFIX)
        ]
        if "input_ids" not in wanted or "labels" not in wanted:
            raise ValueError("a training split needs input_ids and labels")
        table = dataset.select_columns(wanted).with_format("arrow")[:]
        ragged: dict[str, RaggedColumn] = {}
        dense: dict[str, np.ndarray] = {}
        for name in wanted:  # teacher columns keep the dataset's order (so do the batches' keys)
            column = table.column(name).combine_chunks()
            if name in MODEL_INPUTS or name in token_columns:
                ragged[name] = ragged_column(column)
            else:
                dense[name] = dense_column(column)
        return cls(ragged, dense, wanted)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One example as ``datasets`` gives it (lists and Python numbers)."""
        row = {name: column.row(index) for name, column in self.ragged.items()}
        row.update({name: values[index].tolist() for name, values in self.dense.items()})
        return row

    def __getitems__(self, indices: Sequence[int]) -> RowBlock:
        return RowBlock(self, np.asarray(indices, dtype=np.int64))

    def lengths(self) -> list[int]:
        """Tokens per example: the ``length`` column (real tokens), else the rows' input length."""
        values = self.dense["length"] if "length" in self.dense else self.ragged["input_ids"].lengths
        return [int(v) for v in values]


def pad_rows(
    block: RowBlock,
    pad_token_id: int,
    pad_to: int | None = None,
    pad_to_multiple_of: int | None = None,
) -> dict[str, torch.Tensor]:
    """The batch of ``block``: model inputs (B, L) long, padded with ``pad_token_id`` (input_ids) or 0;
    ``labels`` (B,) float32 (regression) or long; per-token teacher signals (B, ..., L) float32 zero-padded;
    other teacher signals (B, ...) float32. L is the longest row, at least ``pad_to``, rounded up to a
    multiple of ``pad_to_multiple_of``."""
    source, rows = block.source, block.rows
    length = padded_length(int(source.ragged["input_ids"].lengths[rows].max()), pad_to, pad_to_multiple_of)
    batch: dict[str, torch.Tensor] = {}
    for key in MODEL_INPUTS:
        if key in source.ragged:
            fill = pad_token_id if key == "input_ids" else 0
            batch[key] = torch.from_numpy(source.ragged[key].gather(rows, length, fill, np.int64))
    labels = source.dense["labels"][rows]
    batch["labels"] = torch.from_numpy(labels.astype(np.float32 if labels.dtype.kind == "f" else np.int64))
    for key in source.teacher_columns:
        if key in source.ragged:
            batch[key] = torch.from_numpy(source.ragged[key].gather(rows, length, 0.0, np.float32))
        else:
            batch[key] = torch.from_numpy(np.ascontiguousarray(source.dense[key][rows], dtype=np.float32))
    return batch


def padded_length(longest: int, pad_to: int | None = None, pad_to_multiple_of: int | None = None) -> int:
    """The batch length: the longest example, at least ``pad_to``, rounded up to a multiple."""
    length = max(longest, pad_to or 0)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    return length


# -- the collator ------------------------------------------------------------------------------------


class DistillationCollator:
    """Pads a batch of tokenised examples.

    Model inputs are padded to the longest example (at least ``pad_to``, rounded up to a multiple of
    ``pad_to_multiple_of``); teacher signals named in ``token_signals`` (last dimension = sequence) are
    zero-padded to the same length; other teacher signals are stacked. Output: ``input_ids``/
    ``attention_mask``/``token_type_ids`` (B, L), ``labels`` (B,), ``teacher_*`` tensors.

    Takes a list of examples (dicts, as ``datasets`` gives them) or a :class:`~kdkit.data.batching.RowBlock`
    of a :class:`~kdkit.data.batching.ColumnarDataset` (the trainer's fast path: same batch, no per-example
    Python).
    """

    #: the trainer may hand this collator :class:`~kdkit.data.batching.RowBlock` batches
    accepts_row_blocks = True

    def __init__(
        self,
        pad_token_id: int,
        pad_to: int | None = None,
        token_signals: Sequence[str] = (),
        pad_to_multiple_of: int | None = None,
    ) -> None:
        self.pad_token_id = pad_token_id
        self.pad_to = pad_to
        self.pad_to_multiple_of = pad_to_multiple_of
        self.token_signals = {f"{TEACHER_PREFIX}{name}" for name in token_signals}

    def __call__(self, features: list[dict[str, Any]] | RowBlock) -> dict[str, torch.Tensor]:
        if isinstance(features, RowBlock):
            return pad_rows(features, self.pad_token_id, self.pad_to, self.pad_to_multiple_of)
        longest = max(len(f["input_ids"]) for f in features)
        length = padded_length(longest, self.pad_to, self.pad_to_multiple_of)
        batch: dict[str, torch.Tensor] = {}
        for key in MODEL_INPUTS:
            if key not in features[0]:
                continue
            pad = self.pad_token_id if key == "input_ids" else 0
            rows = [list(f[key]) + [pad] * (length - len(f[key])) for f in features]
            batch[key] = torch.tensor(rows, dtype=torch.long)
        labels = [f["labels"] for f in features]
        batch["labels"] = torch.tensor(labels, dtype=torch.float32 if isinstance(labels[0], float) else torch.long)
        for key in features[0]:
            if not key.startswith(TEACHER_PREFIX):
                continue
            values = [torch.as_tensor(np.asarray(f[key], dtype=np.float32)) for f in features]
            if key in self.token_signals:
                values = [torch.nn.functional.pad(v, (0, length - v.shape[-1])) for v in values]
            batch[key] = torch.stack(values)
        return batch
