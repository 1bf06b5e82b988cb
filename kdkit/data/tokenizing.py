"""Tokenisation: a task's raw splits become model inputs.

Every split becomes a :class:`datasets.Dataset` with the columns ``input_ids``, ``attention_mask``
(``token_type_ids`` for BERT-like tokenisers), ``labels`` and ``length``; tokenisation runs through
``datasets.map`` and is cached on disk. Batches are built from them by
:class:`kdkit.data.batching.DistillationCollator`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import datasets
import pyarrow
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from kdkit.config import DataConfig
from kdkit.data.batching import MODEL_INPUTS
from kdkit.data.loading import RawData, load_raw
from kdkit.data.tasks import TaskSpec
from kdkit.data.transfer import unlabelled_value
from kdkit.errors import CacheWarning


@dataclass
class TaskData:
    """A task's tokenised splits.

    Attributes:
        task: the task.
        train: the training split (``None`` when only evaluating).
        validation: evaluation splits by name (``validation``, or MNLI's matched/mismatched).
    """

    task: TaskSpec
    train: Dataset | None
    validation: dict[str, Dataset]


class _Tokenize:
    """``datasets.map`` function: texts -> model inputs, labels -> ids (hashable, so the map is cached)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, task: TaskSpec, max_length: int, pad_to_max: bool) -> None:
        self.tokenizer = tokenizer
        self.text_fields = task.text_fields
        self.label_column = task.label_column
        self.task = task
        self.label_ids = None if task.label_names is None else {n: i for i, n in enumerate(task.label_names)}
        self.max_length = max_length
        self.pad_to_max = pad_to_max

    def __call__(self, examples: dict[str, list[Any]]) -> dict[str, list[Any]]:
        texts = [examples[field] for field in self.text_fields]
        encoded = self.tokenizer(
            *texts,
            truncation=True,
            max_length=self.max_length,
            padding="max_length" if self.pad_to_max else False,
        )
        out: dict[str, list[Any]] = {key: encoded[key] for key in MODEL_INPUTS if key in encoded}
        raw = examples.get(self.label_column)
        if raw is None:  # transfer or augmented texts: the teacher labels them (kdkit.data.transfer)
            out["labels"] = [unlabelled_value(self.task)] * len(texts[0])
        elif self.label_ids is None:
            out["labels"] = [float(v) for v in raw]
        else:
            out["labels"] = [self.label_ids[v] if isinstance(v, str) else int(v) for v in raw]
        out["length"] = [int(sum(mask)) for mask in encoded["attention_mask"]]
        return out


def tokenize(split: Dataset, task: TaskSpec, tokenizer: PreTrainedTokenizerBase, data: DataConfig) -> Dataset:
    """Tokenise one split (cached by ``datasets``); drop every raw column."""
    function = _Tokenize(tokenizer, task, data.max_length, data.padding == "max_length")

    def run(reuse: bool) -> Dataset:
        tokenized = split.map(
            function,
            batched=True,
            remove_columns=split.column_names,
            load_from_cache_file=reuse,
            desc=f"tokenising {task.name}",
        )
        features = tokenized.features.copy()
        features["labels"] = datasets.Value("float32" if task.is_regression else "int64")
        return tokenized.cast(features, load_from_cache_file=reuse)

    try:
        return run(True)
    except (pyarrow.ArrowException, OSError):  # datasets' cached result is damaged: compute it again
        warnings.warn(f"the tokenisation cache of {task.name} was damaged and is rebuilt", CacheWarning, stacklevel=2)
        return run(False)


def tokenize_data(raw: RawData, tokenizer: PreTrainedTokenizerBase, data: DataConfig) -> TaskData:
    """Tokenise a task's raw splits (:func:`kdkit.data.loading.load_raw`) with ``data``'s max length and padding."""
    task, train, validation = raw
    return TaskData(
        task=task,
        train=tokenize(train, task, tokenizer, data) if train is not None else None,
        validation={name: tokenize(split, task, tokenizer, data) for name, split in validation.items()},
    )


def add_unlabelled(
    task_data: TaskData, texts: Dataset, tokenizer: PreTrainedTokenizerBase, data: DataConfig
) -> TaskData:
    """``task_data`` with ``texts`` (the task's text fields, no labels: transfer or augmented examples) tokenised and
    appended to its training split, labelled :func:`~kdkit.data.transfer.unlabelled_value` (the teacher labels
    them)."""
    assert task_data.train is not None
    tokenized = tokenize(texts, task_data.task, tokenizer, data).cast(task_data.train.features)
    train = datasets.concatenate_datasets([task_data.train, tokenized])
    return TaskData(task=task_data.task, train=train, validation=task_data.validation)


def load_task_data(data: DataConfig, tokenizer: PreTrainedTokenizerBase, *, need_train: bool = True) -> TaskData:
    """Load, validate and tokenise a task's splits."""
    return tokenize_data(load_raw(data, need_train=need_train), tokenizer, data)
