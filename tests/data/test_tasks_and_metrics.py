"""Task table and metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kdkit.data.metrics import compute_metrics
from kdkit.data.tasks import GLUE_TASKS, TaskSpec, get_task
from kdkit.errors import ConfigError


def test_all_nine_glue_tasks_with_the_papers_metrics():
    assert set(GLUE_TASKS) == {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
    assert get_task("cola").main_metric == "mcc"
    assert get_task("mrpc").metrics == ("f1", "accuracy")
    assert get_task("qqp").metrics == ("f1", "accuracy")
    assert get_task("stsb").metrics[:2] == ("spearman", "pearson")
    assert get_task("stsb").is_regression and get_task("stsb").num_labels == 1
    assert get_task("mnli").validation_splits == ("validation_matched", "validation_mismatched")
    assert get_task("mnli").num_labels == 3
    assert get_task("SST2").name == "sst2"


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown task 'sst3'.*cola, sst2"):
        get_task("sst3")


def test_task_round_trips_through_a_dict():
    for task in GLUE_TASKS.values():
        assert TaskSpec.from_dict(task.to_dict()) == task


def test_classification_metrics_match_hand_computation():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0], [5.0, 0.0]])
    labels = np.array([0, 1, 1, 1, 0])  # predictions: 0 1 0 1 0 -> 4 of 5 right
    mrpc = compute_metrics(get_task("mrpc"), logits, labels)
    assert mrpc["accuracy"] == pytest.approx(0.8)
    # positives: TP=2, FP=0, FN=1 -> precision 1, recall 2/3, F1 0.8
    assert mrpc["f1"] == pytest.approx(0.8)
    cola = compute_metrics(get_task("cola"), logits, labels)
    tp, tn, fp, fn = 2, 2, 0, 1
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert cola["mcc"] == pytest.approx(mcc)


def test_regression_metrics():
    predictions = np.array([[1.0], [2.0], [3.0], [4.0]])
    gold = np.array([1.5, 1.9, 3.5, 3.9])
    metrics = compute_metrics(get_task("stsb"), predictions, gold)
    assert metrics["spearman"] == pytest.approx(1.0)
    assert metrics["pearson"] == pytest.approx(np.corrcoef(predictions[:, 0], gold)[0, 1])


def test_constant_predictions_give_zero_correlation_not_nan():
    metrics = compute_metrics(get_task("stsb"), np.ones((4, 1)), np.array([1.0, 2.0, 3.0, 4.0]))
    assert metrics == {"spearman": 0.0, "pearson": 0.0}
