"""Saving a model as kdkit does, and checking it before it is used again.

A saved model folder holds the weights (safetensors), the configuration and the tokenizer, then
``kdkit_task.json`` (:class:`~kdkit.records.manifests.TaskFile`), written last: the task, the max length, and
the weight files' sizes and SHA-256, which every later load checks first.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from kdkit.data.tasks import TaskSpec
from kdkit.errors import ModelError, disk_full_error, is_disk_full
from kdkit.models.checks import check_tokenizer_files
from kdkit.records.manifests import TASK_FILE, TaskFile, check_files, describe_file, read_json, write_json


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the model's class, parameter names, shapes and values: identifies a teacher."""
    digest = hashlib.sha256(type(model).__name__.encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: TaskSpec, directory: Path, max_length: int
) -> None:
    """Save weights (safetensors), config, tokenizer, then the task description with the weight files' sizes and
    SHA-256, written last: a folder with a valid ``kdkit_task.json`` is complete. (``config.json`` and the
    tokenizer files are not checksummed: editing them, e.g. to turn dropout off, is allowed.)"""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / TASK_FILE).unlink(missing_ok=True)
    try:
        model.save_pretrained(directory, safe_serialization=True)
        saved = tokenizer.save_pretrained(directory)
    except Exception as exc:
        if is_disk_full(exc):
            raise disk_full_error(
                exc, f"the model to {directory}", "free some space and run the command again"
            ) from None
        raise
    weights = sorted(directory.glob("*.safetensors")) + sorted(directory.glob("*.safetensors.index.json"))
    files = {path.name: describe_file(path) for path in weights}
    tokenizer_files = sorted({Path(name).name for name in saved if (directory / Path(name).name).is_file()})
    record = TaskFile.model_validate(
        {"task": task.to_dict(), "max_length": max_length, "files": files, "tokenizer_files": tokenizer_files}
    )
    write_json(directory / TASK_FILE, record)


def read_task_file(directory: Path) -> tuple[TaskSpec, int] | None:
    """The task (and max length) a kdkit-saved model was trained for, if recorded (validated: a damaged or
    edited file is a one-line :class:`ModelError` naming it)."""
    record = _task_record(directory)
    if record is None:
        return None
    return TaskSpec.from_dict(record.task.model_dump()), record.max_length


def _task_record(directory: Path) -> TaskFile | None:
    path = directory / TASK_FILE
    if not path.is_file():
        return None
    return read_json(path, TaskFile, what="the model's task file", fix="save or train the model again")


def verify_saved_model(directory: Path, *, role: str = "model") -> None:
    """Check a kdkit-saved model folder against the file list in its ``kdkit_task.json`` (nothing to check
    for other folders)."""
    record = _task_record(directory)
    if record is None:
        return
    check_tokenizer_files(directory, record, role)
    if record.files is None:
        return
    problem = check_files(directory, record.files)
    if problem is not None:
        raise ModelError(
            f"the {role} {directory} is damaged: {problem.message}",
            "restore it, or train it again (kdkit finetune/distill ... --overwrite)",
        )
