"""Task metrics, computed with scikit-learn and scipy (no metric code is downloaded at run time).

All metrics are fractions (accuracy 0.91, not 91); tables show them as percentages.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from kdkit.data.tasks import TaskSpec


def _accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(skm.accuracy_score(gold, pred))


def _f1(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(skm.f1_score(gold, pred, average="binary", zero_division=0))


def _macro_f1(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(skm.f1_score(gold, pred, average="macro", zero_division=0))


def _mcc(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(skm.matthews_corrcoef(gold, pred))


def _pearson(pred: np.ndarray, gold: np.ndarray) -> float:
    if np.std(pred) == 0 or np.std(gold) == 0:
        return 0.0
    return float(stats.pearsonr(pred, gold)[0])


def _spearman(pred: np.ndarray, gold: np.ndarray) -> float:
    if np.std(pred) == 0 or np.std(gold) == 0:
        return 0.0
    return float(stats.spearmanr(pred, gold)[0])


def _mse(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(np.mean((pred - gold) ** 2))


#: metric name -> function(predictions, gold) on class ids (classification) or values (regression)
METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": _accuracy,
    "f1": _f1,
    "macro_f1": _macro_f1,
    "mcc": _mcc,
    "pearson": _pearson,
    "spearman": _spearman,
    "mse": _mse,
}

#: metrics where lower is better (none of the selection metrics are)
LOWER_IS_BETTER = frozenset({"mse"})


def predictions_from_logits(task: TaskSpec, logits: np.ndarray) -> np.ndarray:
    """Class ids (argmax over (N, C) logits) or regression values ((N, 1) -> (N,))."""
    logits = np.asarray(logits)
    if task.is_regression:
        return logits.reshape(-1).astype(np.float64)
    return logits.argmax(axis=-1)


def compute_metrics(task: TaskSpec, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Score (N, C) logits against (N,) gold labels with the task's metrics."""
    pred = predictions_from_logits(task, logits)
    gold = np.asarray(labels).reshape(-1)
    if not task.is_regression:
        gold = gold.astype(np.int64)
    return {name: METRICS[name](pred, gold) for name in task.metrics}
