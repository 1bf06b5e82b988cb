"""The default teacher: fine-tuned once and cached under ``KDKIT_HOME/teachers/``.

When ``kdkit distill`` gets no ``--teacher``, it fine-tunes the base model on the task (the ``ce`` loss) and
keeps the result in ``KDKIT_HOME/teachers/<task>-<base model>-<key>``. The key hashes everything that changes
that teacher: the base model, every data option (hold-out fraction, label column, task type, sample limits,
max length, padding ...), the data itself by content (custom files, the local GLUE task folder) and the
teacher's training options (seed, batch size, precision, and the defaults of the rest). A cached teacher is
reused only if its ``run.json`` is valid and its ``best/`` model matches the file list saved with it;
otherwise it is fine-tuned again. Its folder is locked while it is being made or checked, so concurrent runs
wait for one fine-tune instead of starting two.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from kdkit import models
from kdkit.config import DistillConfig, FinetuneConfig, TrainingConfig, kdkit_home
from kdkit.data import GLUE_HUB_ID, data_files, glue_source
from kdkit.errors import KdkitError
from kdkit.locking import RunLock
from kdkit.manifests import RunSummary, digest_paths, read_json
from kdkit.runs import BEST_DIR, HARMLESS_ON_RESUME, RUN_FILE, check_exists, is_main_process, resolve_model_dir

Say = Callable[[str], None]
TEACHERS_DIR = "teachers"


def teacher_config(config: DistillConfig, output: Path | None = None) -> FinetuneConfig:
    """The fine-tune that makes the default teacher of a distillation run."""
    return FinetuneConfig(
        data=config.data,
        training=TrainingConfig(
            seed=config.training.seed,
            device=config.training.device,
            precision=config.training.precision,
            batch_size=config.training.batch_size,
            eval_batch_size=config.training.eval_batch_size,
        ),
        model=config.base_model,
        output=output,
        resume=output is not None and output.with_name(output.name + ".partial").is_dir(),
        quiet=config.quiet,
    )


def teacher_key(teacher: FinetuneConfig, base: str) -> str:
    """12 hex digits identifying a teacher: base model, data options and content, training options."""
    data = teacher.data
    training = {
        name: value
        for name, value in teacher.training.model_dump(mode="json").items()
        if f"training.{name}" not in HARMLESS_ON_RESUME
    }
    source = glue_source(data) if not data.is_custom else None
    identity: dict[str, Any] = {
        "base": base,
        "data": data.model_dump(mode="json", exclude={"train_file", "validation_file", "data_dir"}),
        "source": source if source == GLUE_HUB_ID else None,
        "content": digest_paths(data_files(data)),
        "training": training,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def default_teacher_dir(config: DistillConfig) -> Path:
    """KDKIT_HOME/teachers/<task>-<base model>-<key of everything that changes the teacher>."""
    base = config.base_model or models.default_base_model()
    task = config.data.task or Path(config.data.train_file or "custom").stem
    slug = Path(base.rstrip("/")).name.replace("/", "_") or "model"
    if slug == "model":  # the embedded package's folder is called 'model'
        slug = "all-MiniLM-L6-v2"
    return kdkit_home() / TEACHERS_DIR / f"{task}-{slug}-{teacher_key(teacher_config(config), base)}"


def cached_teacher(directory: Path, say: Say, *, remove: bool = True) -> Path | None:
    """The cached teacher's model folder if it is there and intact; a damaged one is reported and (with
    ``remove``) removed, so it is fine-tuned again."""
    if not directory.exists():
        return None
    try:
        read_json(directory / RUN_FILE, RunSummary, what="the cached teacher's run record", fix="")
        models.verify_saved_model(directory / BEST_DIR, role="cached teacher")
        if not (directory / BEST_DIR / models.TASK_FILE).is_file():
            raise KdkitError(f"{directory / BEST_DIR} has no {models.TASK_FILE}")
    except KdkitError as exc:
        if remove:
            say(f"the cached teacher {directory} cannot be used ({exc.problem}); fine-tuning it again")
            shutil.rmtree(directory, ignore_errors=True)
        return None
    return directory / BEST_DIR


def ensure_teacher(config: DistillConfig, *, plugins: Any = None, console: Console | None = None) -> str:
    """The teacher to distil from: ``config.teacher``, the cached default teacher (verified), or one fine-tuned
    now (:func:`kdkit.api.finetune`) and cached. The cache folder is locked meanwhile: a concurrent run waits."""
    if config.teacher:
        path = Path(config.teacher)
        check_exists(path, allow_hub_id=True)
        return str(resolve_model_dir(path)) if path.exists() else config.teacher
    from kdkit.api import finetune

    console = console or Console(stderr=True)
    directory = default_teacher_dir(config)
    directory.parent.mkdir(parents=True, exist_ok=True)
    main = is_main_process()  # under torchrun the ranks fine-tune together: only rank 0 locks and cleans up
    lock = RunLock(directory)
    if main:
        lock.acquire(wait=True, on_wait=lambda holder: console.print(f"waiting for {holder} to fine-tune {directory}"))
    try:
        say = lambda line: console.print(f"[yellow]warning:[/] {line}", soft_wrap=True)  # noqa: E731
        cached = cached_teacher(directory, say, remove=main)
        if cached is not None:
            console.print(f"using the cached teacher {directory}")
            return str(cached)
        console.print(
            f"no cached teacher for task '{config.data.task or 'custom'}': fine-tuning one now "
            f"(cached at {directory}; pass --teacher to use your own)"
        )
        result = finetune(teacher_config(config, directory), plugins=plugins, console=console)
    finally:
        if main:
            lock.release()
    return str(result.run_dir / BEST_DIR)


def check_lengths(config: DistillConfig) -> None:
    """``--max-length`` against the position limit of the default teacher's base model and of a student model,
    before any work (a given ``--teacher`` is checked once it is loaded and its head checked)."""
    max_length = config.data.max_length
    if not config.teacher:
        models.check_max_length(config.base_model or models.default_base_model(), max_length, role="base model")
    if config.student.model is not None:
        models.check_max_length(config.student.model, max_length, role="student")
