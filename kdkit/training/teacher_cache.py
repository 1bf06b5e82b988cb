"""The teacher-signal cache.

The teacher is frozen and in eval mode, so what it contributes to a loss for a training example (its
logits, attribution maps, ...) never changes. :func:`add_teacher_signals` computes the loss's
``teacher_signals`` once per example, stores them as ``teacher_<name>`` columns with ``datasets.map``,
and keeps the result on disk under ``KDKIT_HOME/teacher-signals/<key>.arrow``, where the key hashes the
teacher's weights, the tokenised data, the loss's ``teacher_signal_key()`` and the ``cache_key()`` of
each attribution provider the loss uses. Every later epoch and run
with the same key reads the file instead of running the teacher. The file is verified before every reuse
and rebuilt when it is damaged (:mod:`kdkit.training.cache_store`).

Examples are processed in order of length (so batches carry little padding) and put back in their order.
Per-token signals are stored unpadded (trimmed to each example's length).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset
from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled
from rich.console import Console
from torch import nn

from kdkit.data.batching import MODEL_INPUTS, TEACHER_PREFIX, DistillationCollator
from kdkit.errors import CacheWarning
from kdkit.losses.base import Batch, DistillationLoss, LossContext
from kdkit.models.saving import model_fingerprint
from kdkit.records.home import kdkit_home
from kdkit.training.cache_store import build_entry, load_verified
from kdkit.training.precision import teacher_precision
from kdkit.training.progress import LoopProgress

#: bump when the cache layout changes (2: a manifest per entry)
CACHE_VERSION = "2"
_ROW = "__kdkit_row"


def data_fingerprint(dataset: Dataset) -> str:
    """SHA-256 over the tokenised model inputs and labels (content, not file names)."""
    digest = hashlib.sha256()
    table = dataset.flatten_indices().data.table if dataset._indices is not None else dataset.data.table
    for column in (*MODEL_INPUTS, "labels"):
        if column not in table.column_names:
            continue
        array = table.column(column).combine_chunks()
        digest.update(column.encode())
        if column == "labels":
            digest.update(np.asarray(array).tobytes())
        else:
            digest.update(np.asarray(pc.list_value_length(array)).tobytes())
            digest.update(np.asarray(array.flatten()).tobytes())
    return digest.hexdigest()[:16]


def cache_key(
    teacher: nn.Module,
    dataset: Dataset,
    loss: DistillationLoss,
    ctx: LossContext | None = None,
    precision: str = "fp32",
) -> str:
    """Identity of a cache file: teacher weights, data content, the loss's signal options, with ``ctx`` the
    options of the attribution providers the loss uses (``loss.providers_used()``), and the precision the
    signals are computed in (fp32 keys are those of earlier kdkits)."""
    parts = [CACHE_VERSION, model_fingerprint(teacher), data_fingerprint(dataset), loss.teacher_signal_key()]
    if ctx is not None and ctx.provider_factory is not None:
        parts += [ctx.provider(name).cache_key() for name in loss.providers_used()]
    if precision != "fp32":
        parts.append(f"precision={precision}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _sorted_by(dataset: Dataset, column: str) -> Dataset:
    """Rows in the (stable) order of ``column``, the order kept in memory: no unverified index file on disk."""
    order = np.argsort(np.asarray(dataset[column]), kind="stable")
    return dataset.select(order, keep_in_memory=True)


def cache_dir() -> Path:
    return kdkit_home() / "teacher-signals"


def compute_signals(
    loss: DistillationLoss,
    teacher: nn.Module,
    features: list[dict[str, Any]],
    ctx: LossContext,
    device: torch.device,
    collator: DistillationCollator,
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> dict[str, list[np.ndarray]]:
    """The loss's teacher signals for a list of examples, one unpadded array per example."""
    batch_tensors = collator(features)
    batch = Batch(
        inputs={k: v.to(device) for k, v in batch_tensors.items() if k in MODEL_INPUTS},
        labels=batch_tensors["labels"].to(device),
    )
    with torch.no_grad(), autocast():
        signals = loss.teacher_signals(teacher, batch, ctx)
    lengths = [len(f["input_ids"]) for f in features]
    out: dict[str, list[np.ndarray]] = {}
    for name, tensor in signals.items():
        values = tensor.detach().float().cpu().numpy()
        if name in loss.token_signals_used():
            out[TEACHER_PREFIX + name] = [values[i, ..., : lengths[i]] for i in range(len(features))]
        else:
            out[TEACHER_PREFIX + name] = [values[i] for i in range(len(features))]
    return out


def _warning_on(console: Console | None) -> Callable[[str], None]:
    """How a damaged cache entry is reported: a ``warning:`` line on ``console``, else a :class:`CacheWarning`."""
    if console is None:
        return lambda line: warnings.warn(line, CacheWarning, stacklevel=3)
    return lambda line: console.print(f"[yellow]warning:[/] {line}", soft_wrap=True)


def add_teacher_signals(
    dataset: Dataset,
    loss: DistillationLoss,
    ctx: LossContext,
    *,
    device: torch.device,
    pad_token_id: int,
    batch_size: int = 64,
    precision: str = "fp32",
    console: Console | None = None,
) -> Dataset:
    """``dataset`` plus ``teacher_<name>`` columns of ``ctx.teacher``, read from the verified cache or computed (and
    cached) in ``precision`` (the run's: autocast in bf16). A damaged cache entry is a ``warning:`` line on
    ``console`` (without one: a :class:`CacheWarning`); the pass over the data shows its progress there (a bar on
    a terminal, plain lines in a log; default: stderr)."""
    teacher = ctx.teacher
    if teacher is None:
        raise ValueError("add_teacher_signals needs the teacher in ctx.teacher")
    collator = DistillationCollator(pad_token_id)
    key = cache_key(teacher, dataset, loss, ctx, precision)
    say = _warning_on(console)
    ordered = _sorted_by(dataset.add_column(_ROW, list(range(len(dataset)))), "length")
    # attribution maps (providers) differentiate the teacher
    in_precision = partial(teacher_precision, teacher, precision, device, differentiated=bool(loss.providers_used()))

    def build(cache_file: str | None) -> Dataset:
        bars_were_enabled = is_progress_bar_enabled()
        disable_progress_bar()  # kdkit's own progress instead of datasets' carriage-return bar
        with LoopProgress(console, "teacher signals (computed once, then cached)", len(ordered)) as progress:

            def fn(examples: dict[str, list[Any]]) -> dict[str, Any]:
                count = len(examples["input_ids"])
                features = [{k: examples[k][i] for k in examples} for i in range(count)]
                signals = compute_signals(loss, teacher, features, ctx, device, collator, in_precision)
                progress.advance(count)
                return signals

            try:
                return ordered.map(
                    fn,
                    batched=True,
                    batch_size=batch_size,
                    cache_file_name=cache_file,
                    load_from_cache_file=False,
                    new_fingerprint=key,
                )
            finally:
                if bars_were_enabled:
                    enable_progress_bar()

    columns = [*ordered.column_names, *(TEACHER_PREFIX + name for name in sorted(loss.token_signals_used()))]
    with_signals = load_verified(cache_dir(), key, rows=len(ordered), columns=columns, say=say)
    if with_signals is None:
        with_signals = build_entry(cache_dir(), key, build)
    return _sorted_by(with_signals, _ROW).remove_columns(_ROW)
