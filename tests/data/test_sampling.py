"""Mixed batches (--transfer-ratio, issue 27): each batch holds the asked share of unlabelled examples."""

from __future__ import annotations

import math

import numpy as np

from kdkit.data.labels import UNLABELLED
from kdkit.data.sampling import MixedBatchSampler, unlabelled_rows


def _batches(sampler: MixedBatchSampler, size: int) -> list[list[int]]:
    order = list(sampler)
    return [order[i : i + size] for i in range(0, len(order), size)]


def test_each_batch_holds_the_ratio_and_an_epoch_the_set_size() -> None:
    labels = np.array([0, 1] * 4 + [UNLABELLED] * 92)  # 8 labelled, 92 unlabelled
    unlabelled = unlabelled_rows(labels)
    sampler = MixedBatchSampler(unlabelled, batch_size=10, ratio=0.3, seed=1)
    batches = _batches(sampler, 10)
    assert len(sampler) == 100 and sum(len(b) for b in batches) == 100
    assert all(sum(bool(unlabelled[i]) for i in batch) == 3 for batch in batches)
    labelled_seen = [i for batch in batches for i in batch if not unlabelled[i]]
    assert set(labelled_seen) == set(range(8))  # the small group is cycled: every labelled example, several times


def test_the_order_depends_on_the_seed_and_the_epoch_alone() -> None:
    unlabelled = unlabelled_rows(np.array([0, 1, 0, UNLABELLED, UNLABELLED, UNLABELLED]))
    first = list(MixedBatchSampler(unlabelled, 2, 0.5, seed=3))
    assert first == list(MixedBatchSampler(unlabelled, 2, 0.5, seed=3))
    other_epoch = MixedBatchSampler(unlabelled, 2, 0.5, seed=3)
    other_epoch.set_epoch(1)
    assert list(other_epoch) != first or list(MixedBatchSampler(unlabelled, 2, 0.5, seed=4)) != first


def test_regression_nan_labels_and_an_empty_group() -> None:
    unlabelled = unlabelled_rows(np.array([0.5, math.nan, 1.0], dtype=np.float32))
    assert unlabelled.tolist() == [False, True, False]
    only_labelled = MixedBatchSampler(np.zeros(5, dtype=bool), 2, 0.5, seed=0)
    assert sorted(only_labelled) == [0, 1, 2, 3, 4]
