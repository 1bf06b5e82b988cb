"""The default teacher's budget: how long it trains, and how long that should take, said before it starts.

The default teacher (:mod:`kdkit.training.teachers`) trains on the run's training set for ``teacher_epochs`` epochs;
``auto`` (the default) fits the size of the data: a small set is seen several times, a large one once,

    epochs = clamp(round(TARGET_EXAMPLES / n), 1, MAX_AUTO_EPOCHS)      (n = training examples)

so 4,000 SST-2 sentences give 3 epochs, 8,000 two and the full 67k one (the teacher keeps its best epoch by
the dev metric, as every run does). Before it starts, kdkit prints the budget
(epochs, examples, steps) and a time estimate from two timed training steps of the base model on a batch of
the data's mean length (batches are grouped by length, so that is what a step costs), plus one evaluation of
the dev set per epoch (a forward pass costs about a third of a training step of as many tokens).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from kdkit.config import FinetuneConfig, default_base_model
from kdkit.data.tasks import TaskSpec
from kdkit.errors import KdkitError

#: ``auto``: about this many training examples seen in all (in whole epochs' worth of the data)
TARGET_EXAMPLES = 12000
#: ``auto`` never trains more than this many epochs
MAX_AUTO_EPOCHS = 3.0
#: ``auto`` as the default teacher's key records it: a change of the rule is a new teacher
AUTO_RULE = f"auto: round({TARGET_EXAMPLES} / examples) in [1, {MAX_AUTO_EPOCHS:g}]"
#: how many texts the time estimate tokenises to find the mean length
_SAMPLE = 2000


def auto_epochs(examples: int) -> float:
    """Epochs of the default teacher for ``examples`` training examples (see the module docstring)."""
    return float(min(MAX_AUTO_EPOCHS, max(1.0, round(TARGET_EXAMPLES / max(examples, 1)))))


@dataclass(frozen=True)
class Budget:
    """What the default teacher's fine-tune will do.

    Attributes:
        epochs: passes over the training set.
        examples: training examples.
        batch_size: examples per step.
        seconds: estimated training time (``None`` when not estimated).
        device: where it trains.
    """

    epochs: float
    examples: int
    batch_size: int
    seconds: float | None = None
    device: str = "cpu"

    @property
    def steps(self) -> int:
        return math.ceil(self.examples / self.batch_size) * math.ceil(self.epochs)

    def describe(self) -> str:
        """``3 epochs over 4000 examples (375 steps of 32), about 2.1 min on cpu``."""
        epochs = f"{self.epochs:g} epoch{'s' if self.epochs != 1 else ''}"
        steps = f"{self.steps} step{'s' if self.steps != 1 else ''}"
        line = f"{epochs} over {self.examples} examples ({steps} of {self.batch_size})"
        if self.seconds is not None:
            line += f", about {_duration(self.seconds)} on {self.device}"
        return line


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def mean_length(tokenizer: object, texts: Sequence[Sequence[str]], max_length: int) -> float:
    """Mean token count of (up to :data:`_SAMPLE`) training texts (one list per text field)."""
    sample = [list(field[:_SAMPLE]) for field in texts]
    encoded = tokenizer(*sample, truncation=True, max_length=max_length)  # type: ignore[operator]
    lengths = [len(ids) for ids in encoded["input_ids"]]
    return sum(lengths) / max(len(lengths), 1)


def seconds_per_step(base: str, task: TaskSpec, batch_size: int, length: float, device: str) -> float:
    """The time of one training step (forward, backward, AdamW) of ``base`` on a ``batch_size`` x ``length``
    batch: the mean of two timed steps after one warm-up step."""
    from kdkit.models.loading import load_base_for_task

    model = load_base_for_task(base, task)
    model.to(torch.device(device)).train()  # type: ignore[arg-type]
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-5)
    tokens = max(round(length), 2)
    token_id = min(1000, int(model.config.vocab_size) - 1)
    inputs = {
        "input_ids": torch.full((batch_size, tokens), token_id, dtype=torch.long, device=device),
        "attention_mask": torch.ones(batch_size, tokens, dtype=torch.long, device=device),
    }
    labels = torch.zeros(batch_size, dtype=torch.float32 if task.is_regression else torch.long, device=device)
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        model(**inputs, labels=labels).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        if device == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - start)
    return sum(timings[1:]) / 2


def plan(fine: FinetuneConfig, task: TaskSpec, train: Sequence[Sequence[str]], dev: Sequence[Sequence[str]]) -> Budget:
    """The default teacher's budget for the fine-tune ``fine``, with a time estimate (none if the timed steps
    cannot run). ``train``/``dev``: the texts, one list per text field."""
    from kdkit.models.loading import load_tokenizer
    from kdkit.training.arguments import resolve_device

    training = fine.training
    device = resolve_device(training)
    examples = len(train[0])
    budget = Budget(training.epochs, examples, training.batch_size, device=device)
    base = fine.model or default_base_model()
    try:
        tokenizer = load_tokenizer(base)
        train_length = mean_length(tokenizer, train, fine.data.max_length)
        dev_length = mean_length(tokenizer, dev, fine.data.max_length)
        step = seconds_per_step(base, task, training.batch_size, train_length, device)
    except (KdkitError, RuntimeError, ValueError):
        return budget
    train_tokens = training.batch_size * train_length
    evaluation = math.ceil(len(dev[0]) * dev_length / train_tokens) * step / 3  # forward only, same tokens per step
    seconds = budget.steps * step + math.ceil(training.epochs) * evaluation
    return Budget(budget.epochs, examples, budget.batch_size, seconds=seconds, device=device)
