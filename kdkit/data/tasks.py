"""Tasks: what a data set's text fields and labels are, and how predictions are scored.

The nine GLUE tasks are built in (:data:`GLUE_TASKS`); a user's own CSV/TSV/JSON data becomes a
:class:`TaskSpec` too (see :func:`kdkit.data.loading.custom_task`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from kdkit.errors import ConfigError


@dataclass(frozen=True)
class TaskSpec:
    """A sequence classification (or regression) task.

    Attributes:
        name: task name (``sst2``, or the custom task's name).
        text_fields: one field (single sentence) or two (sentence pair).
        label_names: class names in label-id order; ``None`` for regression (one real-valued output).
        metrics: metric names reported on evaluation (see :mod:`kdkit.data.metrics`).
        main_metric: the metric that selects the best checkpoint (higher is better).
        validation_splits: the evaluation splits (MNLI has matched and mismatched).
        hub_config: the GLUE configuration name when the data is GLUE, else ``None``.
        label_column: the column holding labels in the raw data.
    """

    name: str
    text_fields: tuple[str, ...]
    label_names: tuple[str, ...] | None
    metrics: tuple[str, ...]
    main_metric: str
    validation_splits: tuple[str, ...] = ("validation",)
    hub_config: str | None = None
    label_column: str = "label"
    description: str = field(default="", compare=False)

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        """Number of model outputs: the class count, or 1 for regression."""
        return 1 if self.label_names is None else len(self.label_names)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        data = dict(data)
        for key in ("text_fields", "metrics", "validation_splits"):
            data[key] = tuple(data[key])
        if data.get("label_names") is not None:
            data["label_names"] = tuple(data["label_names"])
        return cls(**data)


def _glue(
    name: str,
    fields: tuple[str, ...],
    labels: tuple[str, ...] | None,
    metrics: tuple[str, ...],
    description: str,
    splits: tuple[str, ...] = ("validation",),
) -> TaskSpec:
    return TaskSpec(
        name=name,
        text_fields=fields,
        label_names=labels,
        metrics=metrics,
        main_metric=metrics[0],
        validation_splits=splits,
        hub_config=name,
        description=description,
    )


GLUE_TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        _glue("cola", ("sentence",), ("unacceptable", "acceptable"), ("mcc", "accuracy"), "grammatical acceptability"),
        _glue("sst2", ("sentence",), ("negative", "positive"), ("accuracy",), "sentiment of movie-review phrases"),
        _glue(
            "mrpc",
            ("sentence1", "sentence2"),
            ("not_equivalent", "equivalent"),
            ("f1", "accuracy"),
            "paraphrase detection (news)",
        ),
        _glue(
            "qqp",
            ("question1", "question2"),
            ("not_duplicate", "duplicate"),
            ("f1", "accuracy"),
            "duplicate Quora questions",
        ),
        _glue("stsb", ("sentence1", "sentence2"), None, ("spearman", "pearson"), "semantic similarity, 0-5"),
        _glue(
            "mnli",
            ("premise", "hypothesis"),
            ("entailment", "neutral", "contradiction"),
            ("accuracy",),
            "natural language inference",
            splits=("validation_matched", "validation_mismatched"),
        ),
        _glue("qnli", ("question", "sentence"), ("entailment", "not_entailment"), ("accuracy",), "QA inference"),
        _glue("rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"), ("accuracy",), "entailment"),
        _glue("wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment"), ("accuracy",), "Winograd NLI"),
    )
}


def get_task(name: str) -> TaskSpec:
    """Return the built-in task ``name`` or raise a :class:`ConfigError` listing the known ones."""
    try:
        return GLUE_TASKS[name.lower()]
    except KeyError:
        known = ", ".join(GLUE_TASKS)
        raise ConfigError(
            f"unknown task '{name}'",
            f"use one of {known}, or pass --train-file/--validation-file for your own data",
        ) from None
