"""Baselines: what a model that learnt nothing scores, to tell a useful model from a guess.

The majority baseline predicts one constant for every validation example: the most frequent class of the
training labels (classification), or the mean training value (regression, where the correlations are then 0).
A teacher whose main metric is within :data:`NEAR_BASELINE` of it is barely better than guessing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from kdkit.data.metrics import LOWER_IS_BETTER, compute_metrics
from kdkit.data.tasks import TaskSpec

#: a main metric within this much (a fraction: 0.05 = 5 points) of the baseline is "barely better than guessing"
NEAR_BASELINE = 0.05


def _ids(task: TaskSpec, values: Sequence[Any]) -> np.ndarray:
    """Raw labels (names or numbers) as class ids, or as floats for regression."""
    if task.label_names is None:
        return np.asarray([float(v) for v in values], dtype=np.float64)
    index = {name: i for i, name in enumerate(task.label_names)}
    return np.asarray([index[v] if isinstance(v, str) else int(v) for v in values], dtype=np.int64)


def majority_baseline(
    task: TaskSpec, train_labels: Sequence[Any], validation_labels: Sequence[Any]
) -> dict[str, float]:
    """The task's metrics on the validation labels of a constant prediction learnt from the training labels."""
    gold = _ids(task, validation_labels)
    train = _ids(task, train_labels)
    if task.label_names is None:
        logits = np.full((len(gold), 1), float(train.mean()) if len(train) else 0.0)
    else:
        majority = Counter(train.tolist()).most_common(1)[0][0] if len(train) else 0
        logits = np.zeros((len(gold), task.num_labels))
        logits[:, majority] = 1.0
    return compute_metrics(task, logits, gold)


def near_baseline(task: TaskSpec, score: float, baseline: float, margin: float = NEAR_BASELINE) -> bool:
    """Whether ``score`` of the main metric is no more than ``margin`` better than ``baseline``."""
    if task.main_metric in LOWER_IS_BETTER:
        return baseline - score < margin
    return score - baseline < margin
