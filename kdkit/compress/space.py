"""The search space of ``kdkit compress``: what each trial's student is made of and how it is trained.

Dimensions (each listed in ``kdkit compress --help`` and in the report):

=====================  ====================================================================================
``depth``              the student's layers, ``copy:N`` of the teacher (every N below the teacher's depth)
``loss``               ``kd`` by default; ``adkd`` and ``kd+hidden`` when asked for (``--losses``)
``temperature``        T of the KD term, 1 to 8 (log scale)
``alpha``              α: the KD term's weight, the task loss gets 1 − α (0.1 to 0.95)
``learning_rate``      peak learning rate, 2e-5 to 5e-4 (log scale)
``epochs``             1 to ``--max-epochs``
``length_percentile``  the maximum sequence length, cut at this percentile of the task's token lengths
                       (train + dev, with the teacher's tokenizer): 90, 95, 99 or 100
``precision``          the deployed ONNX model: fp32, or int8 (onnxruntime dynamic quantisation)
``vocab``              ``full``, or ``pruned`` to the tokens the task's data uses (:mod:`kdkit.models.vocab`)
=====================  ====================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kdkit.errors import ConfigError

#: the losses a trial may use, and the options key that takes T and α
LOSS_OPTIONS = {"kd": "kd", "adkd": "adkd", "kd+hidden": "kd"}
PERCENTILES = (90, 95, 99, 100)
#: the shortest max length kdkit accepts (DataConfig.max_length)
SHORTEST = 8


@dataclass(frozen=True)
class Plan:
    """One trial's choices (Optuna's parameters, with the max length resolved from the percentile)."""

    depth: int
    loss: str
    temperature: float
    alpha: float
    learning_rate: float
    epochs: int
    length_percentile: int
    max_length: int
    precision: str
    vocab: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def student(self) -> str:
        return f"copy:{self.depth}"

    def loss_options(self) -> dict[str, dict[str, Any]]:
        """``--set`` options of the loss: T and α on the term that takes them."""
        return {LOSS_OPTIONS[self.loss]: {"temperature": self.temperature, "alpha": self.alpha}}


@dataclass(frozen=True)
class SearchSpace:
    """What Optuna may choose; ``lengths`` maps each percentile to its cut in tokens (:func:`length_cuts`)."""

    depths: tuple[int, ...]
    lengths: dict[int, int]
    losses: tuple[str, ...] = ("kd",)
    max_epochs: int = 3
    precisions: tuple[str, ...] = ("fp32", "int8")
    vocabs: tuple[str, ...] = ("full", "pruned")
    temperature: tuple[float, float] = (1.0, 8.0)
    alpha: tuple[float, float] = (0.1, 0.95)
    learning_rate: tuple[float, float] = (2e-5, 5e-4)
    extra: dict[str, Any] = field(default_factory=dict)

    def suggest(self, trial: Any) -> Plan:
        """The plan of an Optuna ``trial`` (``trial.suggest_*`` for every dimension)."""
        percentile = int(trial.suggest_categorical("length_percentile", sorted(self.lengths)))
        return Plan(
            depth=int(trial.suggest_categorical("depth", list(self.depths))),
            loss=str(trial.suggest_categorical("loss", list(self.losses))),
            temperature=float(trial.suggest_float("temperature", *self.temperature, log=True)),
            alpha=float(trial.suggest_float("alpha", *self.alpha)),
            learning_rate=float(trial.suggest_float("learning_rate", *self.learning_rate, log=True)),
            epochs=int(trial.suggest_int("epochs", 1, self.max_epochs)),
            length_percentile=percentile,
            max_length=self.lengths[percentile],
            precision=str(trial.suggest_categorical("precision", list(self.precisions))),
            vocab=str(trial.suggest_categorical("vocab", list(self.vocabs))),
        )

    def describe(self) -> list[tuple[str, str]]:
        """(dimension, its values) for the help and the report."""
        cuts = ", ".join(f"p{p}: {n}" for p, n in sorted(self.lengths.items()))
        return [
            ("depth (copy:N)", ", ".join(map(str, self.depths))),
            ("loss", ", ".join(self.losses)),
            ("temperature", f"{self.temperature[0]:g} to {self.temperature[1]:g} (log)"),
            ("alpha", f"{self.alpha[0]:g} to {self.alpha[1]:g}"),
            ("learning rate", f"{self.learning_rate[0]:g} to {self.learning_rate[1]:g} (log)"),
            ("epochs", f"1 to {self.max_epochs}"),
            ("max length (percentile of token lengths: tokens)", cuts),
            ("precision", ", ".join(self.precisions)),
            ("vocabulary", ", ".join(self.vocabs)),
        ]


def student_depths(teacher_depth: int, given: Sequence[int] | None = None) -> tuple[int, ...]:
    """Every N < the teacher's depth, or the ``given`` ones (each checked against it)."""
    if teacher_depth < 2 and not given:
        raise ConfigError(
            f"the teacher has {teacher_depth} layer(s): no copy:N student is smaller", "use a deeper teacher"
        )
    depths = tuple(sorted(set(given))) if given else tuple(range(1, teacher_depth))
    bad = [n for n in depths if not 1 <= n <= teacher_depth]
    if bad:
        raise ConfigError(
            f"--depths {', '.join(map(str, bad))}: the teacher has {teacher_depth} layers",
            f"give depths from 1 to {teacher_depth}",
        )
    return depths


def check_losses(losses: Sequence[str]) -> tuple[str, ...]:
    """The ``--losses`` asked for, each one the search knows."""
    unknown = [name for name in losses if name not in LOSS_OPTIONS]
    if unknown or not losses:
        raise ConfigError(
            f"unknown loss for the search: {', '.join(unknown) or '(none)'}", f"use {', '.join(LOSS_OPTIONS)}"
        )
    return tuple(dict.fromkeys(losses))


def length_cuts(lengths: Sequence[int], limit: int, percentiles: Sequence[int] = PERCENTILES) -> dict[int, int]:
    """Each percentile of the token ``lengths`` (rounded up), at least :data:`SHORTEST` and at most ``limit``
    (the teacher's max length); percentiles giving the same cut are kept once (the lowest)."""
    if len(lengths) == 0:
        raise ConfigError("no texts to measure token lengths on", "give training or validation data")
    values = np.asarray(lengths, dtype=np.float64)
    cuts: dict[int, int] = {}
    for percentile in percentiles:
        tokens = min(limit, max(SHORTEST, math.ceil(float(np.percentile(values, percentile)))))
        if tokens not in cuts.values():
            cuts[percentile] = tokens
    return cuts
