"""Batches that mix labelled and unlabelled examples in a fixed proportion (``kdkit distill --transfer-ratio R``).

Without a ratio, transfer and augmented examples are shuffled in with the labelled ones, so a batch draws them in
proportion to their numbers (a pool of 60,000 texts beside 128 labelled examples leaves the supervised term almost
no labelled example per batch). With ``R``, every batch of B examples holds ``round(R · B)`` unlabelled examples and
the rest labelled ones; each group is drawn from its own shuffled order and starts again when it runs out (the
smaller group is repeated within an epoch). An epoch still has as many examples as the training set. The order
depends on the run's seed and the epoch alone (``set_epoch``, called by the Trainer), so ``--resume`` replays it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from kdkit.data.labels import UNLABELLED


def unlabelled_rows(labels: np.ndarray) -> np.ndarray:
    """(N,) bool: the rows without a label (``UNLABELLED``, or NaN for regression)."""
    if labels.dtype.kind == "f":
        return ~np.isfinite(labels)
    return labels == UNLABELLED


class MixedBatchSampler(torch.utils.data.Sampler[int]):
    """Indices in batches of ``batch_size`` with ``round(ratio · batch_size)`` unlabelled rows each (see the module
    docstring); a group that is empty gives its share to the other."""

    def __init__(self, unlabelled: np.ndarray, batch_size: int, ratio: float, seed: int) -> None:
        self.labelled_rows = np.flatnonzero(~unlabelled)
        self.unlabelled_rows = np.flatnonzero(unlabelled)
        self.batch_size = batch_size
        share = round(ratio * batch_size)
        if not len(self.labelled_rows):
            share = batch_size
        elif not len(self.unlabelled_rows):
            share = 0
        self.per_batch = (batch_size - share, share)
        self.size = len(unlabelled)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        streams = [self._stream(rows, rng) for rows in (self.labelled_rows, self.unlabelled_rows)]
        produced = 0
        while produced < self.size:
            pairs = zip(streams, self.per_batch, strict=True)
            batch = [int(next(stream)) for stream, count in pairs for _ in range(count)]
            rng.shuffle(batch)
            yield from batch[: self.size - produced]
            produced += len(batch)

    @staticmethod
    def _stream(rows: np.ndarray, rng: np.random.Generator) -> Iterator[int]:
        while len(rows):
            yield from rng.permutation(rows)
