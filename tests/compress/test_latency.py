"""The latency of an export at batch 1 on real texts (kdkit.export.latency)."""

from __future__ import annotations

import pytest

from kdkit.compress.trial import dev_set
from kdkit.errors import DataError
from kdkit.export.inference import OnnxClassifier
from kdkit.export.latency import measure_latency


def test_latency_is_measured_per_text_at_its_own_length(tiny_export, tiny_inputs):
    dev = dev_set(tiny_inputs[1])
    classifier = OnnxClassifier(tiny_export, precision="int8", threads=1)
    latency = measure_latency(classifier, dev.texts, rounds=2, warmup=2)
    assert latency.calls == 2 * len(dev.texts) and latency.threads == 1 and latency.precision == "int8"
    assert 0 < latency.p50_ms <= latency.p95_ms
    lengths = [len(classifier.encode([text])[0]["input_ids"][0]) for text in dev.texts]
    assert latency.tokens == pytest.approx(sum(lengths) / len(lengths))  # no padding to a fixed shape
    capped = measure_latency(classifier, dev.texts, rounds=1, warmup=0, max_texts=5)
    assert capped.calls == 5


def test_no_texts_is_one_line(tiny_export):
    with pytest.raises(DataError):
        measure_latency(OnnxClassifier(tiny_export, threads=1), [])
