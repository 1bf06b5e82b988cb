"""Latency of an export as deployed: onnxruntime on the CPU, batch 1, pinned threads, on the task's own texts.

    from kdkit.export.inference import OnnxClassifier
    from kdkit.export.latency import measure_latency

    classifier = OnnxClassifier("runs/sst2-kd/onnx", precision="int8", threads=1)
    latency = measure_latency(classifier, dev_texts)  # Latency(p50_ms=..., p95_ms=..., ...)

Each text is tokenised once, at its real length (no padding to a fixed shape: a batch of 1 is never padded);
tokenisation is not timed. After ``warmup`` untimed calls, every text is run ``rounds`` times, one
``session.run`` each, timed with :func:`time.perf_counter`; p50 and p95 are the percentiles of those calls
(numpy's linear interpolation), in milliseconds. A round goes through the texts in a fixed shuffled order so
that a burst of background load does not fall on the longest texts alone.

Torch-free (onnxruntime, tokenizers and numpy), like :mod:`kdkit.export.inference`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kdkit.errors import DataError
from kdkit.export.inference import OnnxClassifier

#: texts timed at most (a random, seeded subset of a larger dev set): enough for a stable p95
DEFAULT_MAX_TEXTS = 400


@dataclass(frozen=True)
class Latency:
    """Per-call latency in milliseconds at batch 1: median, 95th percentile, mean; ``calls`` timed, ``threads``
    the onnxruntime intra-op threads (None: onnxruntime's default), ``precision`` fp32 or int8, ``tokens`` the
    mean input length."""

    p50_ms: float
    p95_ms: float
    mean_ms: float
    calls: int
    threads: int | None
    precision: str
    tokens: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _inputs(
    classifier: OnnxClassifier, texts: Sequence[str], pairs: Sequence[str] | None
) -> list[dict[str, np.ndarray]]:
    """One (1, L) input per text, L its own token count (truncated to the export's max length)."""
    if not texts:
        raise DataError("no texts to time", "give at least one validation text")
    return [classifier.encode([text], [pairs[i]] if pairs is not None else None)[0] for i, text in enumerate(texts)]


def measure_latency(
    classifier: OnnxClassifier,
    texts: Sequence[str],
    pairs: Sequence[str] | None = None,
    *,
    rounds: int = 3,
    warmup: int = 20,
    max_texts: int = DEFAULT_MAX_TEXTS,
    seed: int = 0,
) -> Latency:
    """p50/p95 of ``classifier.session.run`` at batch 1 over ``texts`` (and their ``pairs``), each timed
    ``rounds`` times; at most ``max_texts`` texts (a seeded random subset)."""
    rng = np.random.default_rng(seed)
    chosen = np.arange(len(texts)) if len(texts) <= max_texts else rng.choice(len(texts), max_texts, replace=False)
    inputs = _inputs(classifier, [texts[i] for i in chosen], [pairs[i] for i in chosen] if pairs else None)
    session = classifier.session
    for index in range(min(warmup, len(inputs) * rounds)):
        session.run(None, inputs[index % len(inputs)])
    order = rng.permutation(len(inputs))
    timings: list[float] = []
    for _ in range(max(1, rounds)):
        for index in order:
            start = time.perf_counter()
            session.run(None, inputs[index])
            timings.append(time.perf_counter() - start)
    milliseconds = np.asarray(timings) * 1000.0
    threads = session.get_session_options().intra_op_num_threads or None
    return Latency(
        p50_ms=float(np.percentile(milliseconds, 50)),
        p95_ms=float(np.percentile(milliseconds, 95)),
        mean_ms=float(milliseconds.mean()),
        calls=len(timings),
        threads=threads,
        precision=classifier.precision,
        tokens=float(np.mean([batch["input_ids"].shape[1] for batch in inputs])),
    )
