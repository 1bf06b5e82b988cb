"""``run.json``: the record of a finished training run (:class:`RunSummary`), written by :mod:`kdkit.training.stage`.

Readers (:mod:`kdkit.records.provenance`, :mod:`kdkit.training.teachers`, the model card, benchmarks) read it back
through :func:`kdkit.records.manifests.read_json` with this model. Only the fields every kdkit wrote are required,
so a run of an older kdkit still reads; unknown keys are kept. The file holds exactly the fields that were set
(:meth:`RunSummary.to_json_dict`): a fine-tune has ``base_model``, a distillation ``teacher`` and ``student``,
a composite loss ``losses``.

This module imports neither torch nor transformers.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from kdkit.records.manifests import TaskFields, _Record


class TrainStats(_Record):
    """``train``: how long training took and how much it saw."""

    wall_time_s: float = Field(ge=0)
    steps: int = Field(ge=0)
    #: the step a ``--resume`` continued from (0: from the start)
    resumed_from_step: int = Field(0, ge=0)
    epochs: float | None = None
    examples: int = Field(ge=0)
    #: throughput of this process's own steps (a resumed run trained only those in its wall time)
    examples_per_second: float | None = None
    final_loss: float | None = None


class TeacherCacheUse(_Record):
    """``teacher_cache``: whether the teacher's signals were precomputed, and how long that took."""

    used: bool
    seconds: float = Field(ge=0)


class Environment(_Record):
    """``environment``: where the run trained (optional fields: older kdkits recorded fewer)."""

    device: str | None = None
    precision: str | None = None
    #: why this precision (``auto: the CPU has amx_bf16 and avx512_bf16``, ``asked for``)
    precision_reason: str | None = None
    #: the CPU's bf16 matrix units (``amx_bf16``, ``avx512_bf16``) that ``--precision auto`` looks for
    cpu_bf16_features: list[str] | None = None
    world_size: int | None = Field(None, ge=1)
    torch: str | None = None
    transformers: str | None = None
    python: str | None = None
    torch_threads: int | None = None


class RunSummary(_Record):
    """``run.json`` of a finished run: what was trained, with which options, its metrics and its history."""

    kdkit_version: str
    command: str
    task: TaskFields
    loss: str | None = None
    #: the parts of a composite loss (:mod:`kdkit.losses.composite`), only for one
    losses: list[str] | None = None
    #: each component's resolved options (``{"kd": {"temperature": 2.0, ...}}``)
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: the resolved configuration (data paths absolute: see :mod:`kdkit.records.provenance`)
    config: dict[str, Any] = Field(default_factory=dict)
    #: the best model's validation metrics (fractions; MNLI keys are prefixed by split)
    metrics: dict[str, float]
    main_metric: str | None = None
    best_checkpoint: str | None = None
    #: the Trainer's evaluation log entries (``eval_*`` keys) and training log entries (``loss`` key)
    history: list[dict[str, Any]] = Field(default_factory=list)
    train_log: list[dict[str, Any]] = Field(default_factory=list)
    #: per-term gradient norms of the first ``--term-grad-norm-steps`` steps
    term_grad_norms: list[dict[str, Any]] = Field(default_factory=list)
    train: TrainStats | None = None
    teacher_cache: TeacherCacheUse | None = None
    student_parameters: int | None = None
    environment: Environment | None = None
    finished_at: str | None = None
    #: a fine-tune: the model it started from
    base_model: str | None = None
    #: a distillation: the teacher's path, the student spec and the teacher's size
    teacher: str | None = None
    student: str | None = None
    teacher_parameters: int | None = None
    #: the data paths as the user gave them (``{"train_file": "train.csv"}``)
    data_given: dict[str, str] = Field(default_factory=dict)
    #: a distillation: its training examples by source (``{"labelled": 64, "transfer": 5000, "augmented": 0}``:
    #: transfer and augmented examples are labelled by the teacher)
    examples: dict[str, int] | None = None
    #: a distillation whose teacher was a file of soft labels: ``{"file": ..., "sha256": ...}``
    soft_labels: dict[str, str] | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """The content of ``run.json``: the fields that were set, as JSON values."""
        return self.model_dump(mode="json", exclude_unset=True)
