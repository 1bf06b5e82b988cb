"""The default teacher: fine-tuned once and cached under ``KDKIT_HOME/teachers/``.

When ``kdkit distill`` gets no ``--teacher``, it fine-tunes the base model on the task (the ``ce`` loss: the
API's own fine-tune, on the run's data) and keeps the result in ``KDKIT_HOME/teachers/<task>-<base model>-<key>``.
The teacher's training options are its own, not the student run's: a fixed seed (:data:`TEACHER_SEED`), the
default batch size and learning rate, length-grouped batches, and a budget of ``teacher_epochs`` (``auto``: by
training-set size, :mod:`kdkit.training.teacher_budget`); only the hardware (device, precision) comes from the run. So
student runs with other seeds or batch sizes share one teacher. The key hashes everything that changes that
teacher: the base model, every data option (hold-out fraction, label column, task type, sample limits, max
length, padding ...), the data itself by content (custom files, the local GLUE task folder) and those training
options; ``kdkit_teacher.json`` keeps them, so a run that finds no cached teacher says which cached ones exist
and which options differ.

A cached teacher is reused only if its ``run.json`` is valid and its ``best/`` model matches the file list
saved with it; otherwise it is fine-tuned again. Its folder is locked while it is being made or checked, so
concurrent runs wait for one fine-tune instead of starting two. A teacher whose dev score is within a few
points of the majority-class baseline gets a warning (:mod:`kdkit.data.baselines`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from kdkit.config import DataConfig, DistillConfig, FinetuneConfig, TrainingConfig, default_base_model
from kdkit.data.baselines import majority_baseline, near_baseline
from kdkit.data.loading import RawData
from kdkit.data.sources import GLUE_HUB_ID, data_files, glue_source
from kdkit.data.tasks import TaskSpec
from kdkit.errors import KdkitError, KdkitWarning, ModelError
from kdkit.models.checks import check_exists, check_same_vocabulary
from kdkit.models.loading import check_max_length, load_tokenizer, quiet_libraries
from kdkit.models.saving import read_task_file, verify_saved_model
from kdkit.records.home import home_dir, kdkit_home
from kdkit.records.locking import RunLock
from kdkit.records.manifests import TASK_FILE, TeacherRecord, digest_paths, read_json, write_json
from kdkit.records.resume import HARMLESS_ON_RESUME
from kdkit.records.run_summary import RunSummary
from kdkit.records.runs import BEST_DIR, RUN_FILE, is_main_process, resolve_model_dir
from kdkit.training import teacher_budget
from kdkit.training.job import RunResult

Say = Callable[[str], None]
TEACHERS_DIR = "teachers"
#: the default teacher's own seed (student runs with any --seed share one teacher)
TEACHER_SEED = 42
#: what a cached default teacher was made from (:class:`~kdkit.records.manifests.TeacherRecord`)
RECORD_FILE = "kdkit_teacher.json"


def teacher_data(config: DistillConfig) -> DataConfig:
    """The teacher's data options: the run's, with length-grouped batches (the teacher's own choice)."""
    return config.data.model_copy(update={"group_by_length": True})


def teacher_training(config: DistillConfig, epochs: float) -> TrainingConfig:
    """The teacher's own training options; only the hardware comes from the distillation run."""
    return TrainingConfig(
        seed=TEACHER_SEED,
        epochs=epochs,
        device=config.training.device,
        precision=config.training.precision,
        eval_batch_size=config.training.eval_batch_size,
    )


def teacher_config(config: DistillConfig, output: Path | None = None, *, epochs: float = 1.0) -> FinetuneConfig:
    """The fine-tune that makes the default teacher of a distillation run."""
    return FinetuneConfig(
        data=teacher_data(config),
        training=teacher_training(config, epochs),
        model=config.base_model,
        output=output,
        resume=output is not None and output.with_name(output.name + ".partial").is_dir(),
        quiet=config.quiet,
    )


def teacher_identity(config: DistillConfig) -> dict[str, Any]:
    """Everything that changes the default teacher (what its key hashes, and what ``kdkit_teacher.json`` keeps)."""
    data = teacher_data(config)
    training = {
        name: value
        for name, value in teacher_training(config, 1.0).model_dump(mode="json").items()
        if f"training.{name}" not in HARMLESS_ON_RESUME
    }
    training["epochs"] = config.teacher_epochs or teacher_budget.AUTO_RULE  # with the data, what auto resolves to
    source = glue_source(data) if not data.is_custom else None
    return {
        "base": _base(config),
        "data": data.model_dump(mode="json", exclude={"train_file", "validation_file", "data_dir"}),
        "source": source if source == GLUE_HUB_ID else None,
        "content": digest_paths(data_files(data)),
        "training": training,
    }


def teacher_key(identity: dict[str, Any]) -> str:
    """12 hex digits identifying a teacher."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def _base(config: DistillConfig) -> str:
    return config.base_model or default_base_model()


def _prefix(config: DistillConfig) -> str:
    """``<task>-<base model>-``: the folders of one task's default teachers."""
    slug = Path(_base(config).rstrip("/")).name.replace("/", "_") or "model"
    if slug == "model":  # the embedded package's folder is called 'model'
        slug = "all-MiniLM-L6-v2"
    return f"{config.data.task_name}-{slug}-"


def default_teacher_dir(config: DistillConfig) -> Path:
    """KDKIT_HOME/teachers/<task>-<base model>-<key of everything that changes the teacher>."""
    return kdkit_home() / TEACHERS_DIR / (_prefix(config) + teacher_key(teacher_identity(config)))


def cached_teacher(directory: Path, say: Say, *, remove: bool = True) -> Path | None:
    """The cached teacher's model folder if it is there and intact; a damaged one is reported and (with
    ``remove``) removed, so it is fine-tuned again."""
    if not directory.exists():
        return None
    try:
        read_json(directory / RUN_FILE, RunSummary, what="the cached teacher's run record", fix="")
        verify_saved_model(directory / BEST_DIR, role="cached teacher")
        if not (directory / BEST_DIR / TASK_FILE).is_file():
            raise KdkitError(f"{directory / BEST_DIR} has no {TASK_FILE}")
    except KdkitError as exc:
        if remove:
            say(f"the cached teacher {directory} cannot be used ({exc.problem}); fine-tuning it again")
            shutil.rmtree(directory, ignore_errors=True)
        return None
    return directory / BEST_DIR


# -- what differs from the cached teachers ------------------------------------------------------------------


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "content":
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differences(cached: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """``data.max_train_samples: 200 there, 4000 here`` for each option in which two teacher identities differ."""
    old, new = _flat(cached), _flat(wanted)
    lines = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) == new.get(name):
            continue
        if name == "content":
            lines.append("the data files' content")
        else:
            lines.append(f"{name}: {old.get(name)!r} there, {new.get(name)!r} here")
    return lines


def _record(folder: Path) -> TeacherRecord | None:
    try:
        return read_json(folder / RECORD_FILE, TeacherRecord, what="the cached teacher's record", fix="")
    except KdkitError:
        return None


def other_teachers(config: DistillConfig, directory: Path) -> list[str]:
    """The cached default teachers of the same task and base model, each with the options that differ."""
    wanted = teacher_identity(config)
    lines = []
    for folder in sorted(directory.parent.glob(_prefix(config) + "*")):
        if folder == directory or not folder.is_dir() or folder.name.endswith(".partial"):
            continue
        record = _record(folder)
        if record is None:
            lines.append(f"{folder.name} (made by an older kdkit: its options are not recorded)")
        else:
            lines.append(f"{folder.name} (differs in {'; '.join(differences(record.identity, wanted)) or 'nothing'})")
    return lines


# -- making and checking the default teacher ------------------------------------------------------------


#: runs the default teacher's fine-tune (:func:`kdkit.api.ensure_teacher` passes the API's own)
FineTune = Callable[[FinetuneConfig], RunResult]


def _fine_tune(config: DistillConfig, directory: Path, data: RawData, fine_tune: FineTune, console: Console) -> Path:
    """Fine-tune the default teacher into ``directory`` on the run's ``data`` (its budget said first); record
    what it was made from."""
    task, train, validation = data
    assert train is not None
    epochs = config.teacher_epochs or teacher_budget.auto_epochs(len(train))
    fine = teacher_config(config, directory, epochs=epochs)
    dev = next(iter(validation.values()))
    texts = ([list(train[name]) for name in task.text_fields], [list(dev[name]) for name in task.text_fields])
    budget = teacher_budget.plan(fine, task, *texts)
    console.print(f"the default teacher: {budget.describe()}; set it with --teacher-epochs", soft_wrap=True)
    result = fine_tune(fine)
    if is_main_process():
        baseline = majority_baseline(task, train[task.label_column], dev[task.label_column])[task.main_metric]
        identity = teacher_identity(config)
        record = TeacherRecord(
            key=teacher_key(identity), identity=identity, main_metric=task.main_metric, baseline=baseline
        )
        write_json(result.run_dir / RECORD_FILE, record)
    return result.run_dir / BEST_DIR


def check_quality(directory: Path, say: Say) -> None:
    """Warn when a default teacher's dev score is within a few points of its task's majority baseline."""
    record = _record(directory)
    if record is None or record.baseline is None:
        return
    summary = read_json(directory / RUN_FILE, RunSummary, what="the cached teacher's run record", fix="")
    task = TaskSpec.from_dict(summary.task.model_dump())
    scores = [v for k, v in summary.metrics.items() if k.split("/")[-1] == record.main_metric]
    if scores and near_baseline(task, scores[0], record.baseline):
        how = "no better" if scores[0] <= record.baseline else "barely better"
        say(
            f"the default teacher scores {100 * scores[0]:.1f} {record.main_metric} on the dev set, {how} than "
            f"always predicting the most frequent label ({100 * record.baseline:.1f}): its students will not "
            "learn much; give it more data or epochs (--teacher-epochs), or pass a better --teacher"
        )


def _announce(config: DistillConfig, directory: Path, console: Console) -> None:
    console.print(
        f"no cached teacher for task '{config.data.task_name}' with these options: fine-tuning one now "
        f"(cached at {directory}; pass --teacher to use your own)",
        soft_wrap=True,
    )
    others = other_teachers(config, directory)
    if others:
        console.print(
            f"cached teachers for '{config.data.task_name}' that differ: " + "; ".join(others), soft_wrap=True
        )


def given_teacher(teacher: str) -> str:
    """A ``--teacher`` that exists: its model folder (a run directory's ``best/``), or the hub id."""
    path = Path(teacher)
    check_exists(path, allow_hub_id=True)
    return str(resolve_model_dir(path)) if path.exists() else teacher


def ensure_teacher(config: DistillConfig, data: RawData, fine_tune: FineTune, console: Console) -> str:
    """The default teacher of a distillation run: the cached one (verified), or one fine-tuned now on ``data``
    with ``fine_tune`` and cached. The cache folder is locked meanwhile: a concurrent run waits."""
    quiet_libraries()
    directory = default_teacher_dir(config)
    home_dir(directory.parent.name)  # a KDKIT_HOME that cannot be written is one line
    main = is_main_process()  # under torchrun the ranks fine-tune together: only rank 0 locks and cleans up
    lock = RunLock(directory)
    if main:
        lock.acquire(wait=True, on_wait=lambda holder: console.print(f"waiting for {holder} to fine-tune {directory}"))
    say = lambda line: console.print(f"[yellow]warning:[/] {line}", soft_wrap=True)  # noqa: E731
    try:
        cached = cached_teacher(directory, say, remove=main)
        if cached is not None:
            console.print(f"using the cached teacher {directory}")
        else:
            _announce(config, directory, console)
            cached = _fine_tune(config, directory, data, fine_tune, console)
    finally:
        if main:
            lock.release()
    check_quality(directory, say)
    return str(cached)


def check_teacher_task(teacher: str, task: TaskSpec) -> None:
    """Warn when a given teacher was fine-tuned on another GLUE task, or with other labels, than the data's (its
    ``kdkit_task.json`` says): a head of the right size may still mean something else. (Custom tasks are compared
    by their labels: their names are only names.)"""
    path = Path(teacher)
    if not path.is_dir():
        return
    saved = read_task_file(resolve_model_dir(path))
    if saved is None:
        return
    recorded = saved[0]
    glue = recorded.hub_config is not None or task.hub_config is not None
    if glue and recorded.name != task.name:
        warnings.warn(
            f"the teacher {teacher} was fine-tuned on task '{recorded.name}', not '{task.name}' (its "
            f"{TASK_FILE} says so): its predictions may mean nothing for {task.name}; pass a teacher "
            f"fine-tuned on {task.name}",
            KdkitWarning,
            stacklevel=2,
        )
    elif recorded.label_names != task.label_names and not task.is_regression:
        warnings.warn(
            f"the teacher {teacher} was fine-tuned with the labels {', '.join(recorded.label_names or ())}, but the "
            f"data's are {', '.join(task.label_names or ())}: classes are matched by position",
            KdkitWarning,
            stacklevel=2,
        )


def check_lengths(config: DistillConfig) -> None:
    """``--max-length`` against the position limit of the default teacher's base model and of a student model,
    before any work (a given ``--teacher`` is checked once it is loaded and its head checked)."""
    max_length = config.data.max_length
    if not config.teacher:
        check_max_length(_base(config), max_length, role="base model")
    if config.student.model is not None:
        check_max_length(config.student.model, max_length, role="student")


def check_vocabulary(config: DistillConfig) -> None:
    """A student model must have the teacher's vocabulary (:func:`kdkit.models.checks.check_same_vocabulary`): checked
    before any work, so before a default teacher is fine-tuned (a tokenizer that does not load is left to the
    model's own loading to report)."""
    if config.student.model is None:
        return
    teacher = config.teacher or _base(config)
    if Path(teacher).exists():
        teacher = str(resolve_model_dir(Path(teacher)))
    try:
        teacher_tokenizer = load_tokenizer(teacher)
        student_tokenizer = load_tokenizer(config.student.model)
    except ModelError:
        return
    check_same_vocabulary(teacher_tokenizer, student_tokenizer)
