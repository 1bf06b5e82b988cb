"""Provenance: what a saved model, run or export records about its task and data, read back in one place.

(Recording: a run's data paths are made absolute when it starts, :func:`kdkit.data.sources.record_paths`, so
``run.json``/``config.yaml`` hold where the data really was.)

Reading back (``kdkit evaluate``, ``export``, ``explain``, ``predict``): :func:`of_model` / :func:`of_export`
locate what a path holds (a run directory, a model directory, an export, or a hub id) and return a
:class:`Provenance`; :meth:`Provenance.data_options` gives the validation data options: the flags given,
on top of the data source the run recorded (task, data dir, files, columns, labels), on top of the task the
model's ``kdkit_task.json`` records. So ``kdkit evaluate RUN`` needs no data flag while the recorded files
exist; a recorded file that is gone is a one-line error naming it.

This module imports neither torch nor transformers (``kdkit predict`` uses it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdkit.config import DataConfig
from kdkit.data.tasks import TaskSpec
from kdkit.errors import ConfigError, DataError, ModelError
from kdkit.records.manifests import EXPORT_MANIFEST_FILE, EXPORT_SUBDIR, TASK_FILE, TaskFile, read_json
from kdkit.records.run_summary import RunSummary
from kdkit.records.runs import BEST_DIR, LAST_DIR, RUN_FILE

#: data options that say where the data is and how to read it (what a run's source is)
SOURCE_FIELDS = (
    "task",
    "data_dir",
    "train_file",
    "validation_file",
    "text_columns",
    "label_column",
    "label_names",
    "task_type",
)


@dataclass
class Provenance:
    """What a path given to evaluate/export/explain/predict holds.

    Attributes:
        source: the path (or hub id) as given.
        model: the PyTorch model folder (a run's ``best/``) or the hub id; ``None`` for an export.
        export_dir: the ONNX export folder (``of_export`` only).
        run_dir: the run directory the model belongs to, if any.
        task: the task the model was trained for (``kdkit_task.json`` or the export manifest), if recorded.
        max_length: the training max length, if recorded.
        data: the data options the run was trained with (``run.json``), if recorded.
        data_given: those paths as the user wrote them.
    """

    source: str
    model: str | None = None
    export_dir: Path | None = None
    run_dir: Path | None = None
    task: TaskSpec | None = None
    max_length: int | None = None
    data: DataConfig | None = None
    data_given: dict[str, str] = field(default_factory=dict)

    def data_options(self, given: DataConfig | None = None, *, max_length: int | None = None) -> DataConfig:
        """The validation data options: ``given``'s flags over the recorded source over the recorded task."""
        given = given or DataConfig()
        options = {**self._recorded_source(given), **given.model_dump(exclude_unset=True)}
        options.update(self._from_task(options))
        options.pop("train_file", None)
        options.pop("holdout_fraction", None)  # evaluation is on the validation split
        if max_length is not None:
            options["max_length"] = max_length
        elif "max_length" not in given.model_fields_set and self.max_length is not None:
            options["max_length"] = self.max_length
        data = DataConfig.model_validate(options)
        self._check(data, given)
        return data

    def _recorded_source(self, given: DataConfig) -> dict[str, Any]:
        """The recorded source fields, unless the flags name other data (another task or kind of data)."""
        recorded = self.data
        if recorded is None:
            return {}
        set_ = given.model_fields_set
        other_kind = (given.is_custom and not recorded.is_custom) or (
            "task" in set_ and not given.is_custom and recorded.is_custom
        )
        other_task = "task" in set_ and given.task != recorded.task and not given.is_custom
        if other_kind or other_task:
            return {}
        return {name: value for name, value in recorded.model_dump(include=set(SOURCE_FIELDS)).items()}

    def _from_task(self, options: dict[str, Any]) -> dict[str, Any]:
        """What the model's task file adds: the task name, and for custom data its labels and text columns."""
        task = self.task
        custom = options.get("train_file") is not None or options.get("validation_file") is not None
        if task is None:
            return {}
        if not custom:
            return {} if options.get("task") else {"task": task.name} if task.hub_config else {}
        update: dict[str, Any] = {}
        if options.get("label_names") is None and task.label_names:
            update["label_names"] = list(task.label_names)
        if options.get("task_type", "auto") == "auto" and task.is_regression:
            update["task_type"] = "regression"
        if options.get("text_columns") is None:
            update["text_columns"] = list(task.text_fields)
        if options.get("task") is None:
            update["task"] = task.name
        return update

    def _check(self, data: DataConfig, given: DataConfig) -> None:
        if data.task is None and not data.is_custom:
            if self.task is not None and self.task.hub_config is None:
                raise DataError(
                    f"{self.source} was trained on custom data ('{self.task.name}') and records no validation file",
                    "pass --validation-file with that data (and --text-columns/--label-column if they differ)",
                )
            raise DataError(
                f"{self.source} does not record its task", "pass --task (and --data-dir), or your data files"
            )
        for name in ("validation_file", "data_dir"):
            path = getattr(data, name)
            if path is None or name in given.model_fields_set or Path(path).exists():
                continue
            as_given = self.data_given.get(name)
            shown = f"{path}" + (f" (given as {as_given})" if as_given and as_given != str(path) else "")
            flag = "--" + name.replace("_", "-")
            raise DataError(
                f"the {name.replace('_', ' ')} {self.source} was trained with is gone: {shown}",
                f"restore it, or pass {flag} with the data to use",
            )


def _read_task(model_dir: Path) -> tuple[TaskSpec, int] | None:
    path = model_dir / TASK_FILE
    if not path.is_file():
        return None
    record = read_json(path, TaskFile, what="the model's task file", fix="save or train the model again")
    return TaskSpec.from_dict(record.task.model_dump()), record.max_length


def _read_run(run_dir: Path) -> tuple[DataConfig | None, dict[str, str]]:
    summary = read_json(run_dir / RUN_FILE, RunSummary, what="the run record", fix="train the run again")
    data = (summary.config or {}).get("data")
    if not isinstance(data, dict):
        return None, summary.data_given
    try:
        return DataConfig.model_validate(data), summary.data_given
    except ValueError:  # a run of another kdkit version with options this one does not know
        return None, summary.data_given


def find_model_dir(path: Path) -> Path:
    """The model folder of a run directory (``best/``) or a saved model folder, or a one-line error."""
    if not path.exists():
        if path.with_name(path.name + ".partial").is_dir():
            raise ModelError(
                f"{path} is an unfinished run (only {path.name}.partial exists)", "finish it with --resume first"
            )
        raise ModelError(f"{path} does not exist", "give a run directory or a saved model directory")
    if not path.is_dir():
        raise ModelError(f"{path} is not a directory", "give a run directory or a saved model directory")
    if (path / EXPORT_MANIFEST_FILE).is_file():
        raise ModelError(f"{path} is an ONNX export, not a PyTorch model", "give the run directory it was made from")
    if (path / "config.json").is_file():
        return path
    if (path / BEST_DIR / "config.json").is_file():
        return path / BEST_DIR
    if (path / RUN_FILE).is_file() or path.name.endswith(".partial"):
        raise ModelError(
            f"run directory {path} has no student model ({BEST_DIR}/ is missing or incomplete)",
            "give a finished run directory, or a saved model directory",
        )
    raise ModelError(
        f"{path} is neither a run directory nor a saved model (no {RUN_FILE}, {BEST_DIR}/ or config.json)",
        "give a run directory written by 'kdkit distill' or a model directory with config.json",
    )


def of_model(path: str | Path, *, hub_id_ok: bool = False) -> Provenance:
    """What a run directory, a model directory or (with ``hub_id_ok``) a hub id records."""
    source = str(path)
    if not Path(path).exists() and hub_id_ok and not Path(source + ".partial").is_dir():
        return Provenance(source=source, model=source)
    model_dir = find_model_dir(Path(path))
    run_dir = model_dir.parent if model_dir.name in (BEST_DIR, LAST_DIR) else None
    if run_dir is not None and not (run_dir / RUN_FILE).is_file():
        run_dir = None
    saved = _read_task(model_dir)
    data, given = _read_run(run_dir) if run_dir is not None else (None, {})
    return Provenance(
        source=source,
        model=str(model_dir),
        run_dir=run_dir,
        task=saved[0] if saved else None,
        max_length=saved[1] if saved else None,
        data=data,
        data_given=given,
    )


def resolve_export_dir(path: str | Path) -> Path:
    """The export folder: ``path`` itself, or ``path/onnx`` for a run directory exported with the defaults."""
    directory = Path(path)
    if not directory.exists():
        raise ModelError(f"{directory} does not exist", "give the folder written by 'kdkit export ... --onnx'")
    if directory.is_file():
        raise ModelError(
            f"{directory} is a file, not an export folder",
            "give the folder that holds model.onnx and kdkit_export.json",
        )
    if (
        not (directory / EXPORT_MANIFEST_FILE).is_file()
        and (directory / EXPORT_SUBDIR / EXPORT_MANIFEST_FILE).is_file()
    ):
        return directory / EXPORT_SUBDIR
    return directory


def of_export(path: str | Path) -> Provenance:
    """What an export folder (or a run directory with ``onnx/``) records: its folder, task and max length."""
    from kdkit.records.manifests import ExportManifest

    directory = resolve_export_dir(path)
    manifest_path = directory / EXPORT_MANIFEST_FILE
    if not manifest_path.is_file():
        raise ModelError(
            f"{directory} is not a kdkit ONNX export (no {EXPORT_MANIFEST_FILE})",
            "export one with 'kdkit export RUN_DIR --onnx'",
        )
    manifest = read_json(manifest_path, ExportManifest, what="the export manifest", fix="export the model again")
    fields = manifest.task.model_dump()
    known = {name: fields[name] for name in TaskSpec.__dataclass_fields__ if name in fields}
    task = TaskSpec.from_dict(
        {
            "metrics": (),
            "main_metric": "",
            "validation_splits": ("validation",),
            **known,
            "text_fields": fields.get("text_fields") or ("text",),
        }
    )
    run_dir = directory.parent if (directory.parent / RUN_FILE).is_file() else None
    return Provenance(
        source=str(path), export_dir=directory, run_dir=run_dir, task=task, max_length=manifest.max_length
    )


def task_for(provenance: Provenance, task: TaskSpec | None) -> TaskSpec:
    """The task given (``--task``), else the recorded one, else a one-line error."""
    if task is not None:
        return task
    if provenance.task is None:
        raise ConfigError(f"{provenance.source} does not record its task", "pass --task")
    return provenance.task


def recorded_teacher(path: str | Path) -> str | None:
    """The teacher a distillation run recorded (``run.json``'s ``teacher``: its model folder or hub id) for a run
    directory or its ``best/``; None for a fine-tune, a bare model folder, or a run that records none."""
    saved = of_model(path)
    if saved.run_dir is None:
        return None
    summary = read_json(saved.run_dir / RUN_FILE, RunSummary, what="the run record", fix="train the run again")
    return summary.teacher or None
