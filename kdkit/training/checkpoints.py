"""Checkpoints that say when they are complete, and resuming from the last complete one.

Trainer writes a checkpoint as ``checkpoints/checkpoint-<step>/`` (weights, optimizer, scheduler, RNG
states, ``trainer_state.json``), then calls ``on_save``. :class:`CompleteCheckpointCallback` then writes
``kdkit_checkpoint.json`` (atomically) listing every file of the checkpoint with its size and SHA-256, so:

- a checkpoint without that file was interrupted while being written (``kill -9``, power loss): it is
  ignored and removed on ``--resume``, which continues from the newest complete one;
- a checkpoint whose files no longer match their list was changed afterwards: ``--resume`` stops with a
  one-line error instead of loading it;
- a file that is not plain tensors is never unpickled (Trainer loads with ``weights_only=True``), and the
  refusal is a one-line error, not an ``UnpicklingError`` traceback.
"""

from __future__ import annotations

import pickle
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from kdkit.errors import TrainingError
from kdkit.records.manifests import CheckpointManifest, check_files, describe_files, read_json, write_json

MANIFEST_FILE = "kdkit_checkpoint.json"
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


class CompleteCheckpointCallback(TrainerCallback):
    """Marks each checkpoint complete once Trainer has written all of it (``on_save`` runs after the save)."""

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if distributed:
            torch.distributed.barrier()  # every rank has written its RNG state
        folder = Path(str(args.output_dir)) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            files = describe_files(folder, exclude=(MANIFEST_FILE,))
            write_json(folder / MANIFEST_FILE, CheckpointManifest(global_step=state.global_step, files=files))
        return control


def _step(folder: Path) -> int:
    match = _CHECKPOINT.match(folder.name)
    return int(match.group(1)) if match else -1


def last_complete_checkpoint(
    directory: Path, *, say: Callable[[str], None], remove_incomplete: bool = True
) -> tuple[Path | None, int]:
    """The newest complete checkpoint under ``directory`` and its step (``(None, 0)`` if there is none).

    Newer incomplete checkpoints are reported with ``say`` and removed (so Trainer never rotates or resumes
    into them); a complete one whose files changed is a :class:`TrainingError`.
    """
    if not directory.is_dir():
        return None, 0
    folders = sorted((p for p in directory.iterdir() if p.is_dir() and _step(p) >= 0), key=_step, reverse=True)
    for folder in folders:
        fix = f"delete {folder} to resume from the checkpoint before it, or the whole run folder to start again"
        manifest_path = folder / MANIFEST_FILE
        manifest = (
            read_json(manifest_path, CheckpointManifest, what="checkpoint record", fix=fix, error=TrainingError)
            if manifest_path.is_file()
            else None
        )
        problem = check_files(folder, manifest.files) if manifest is not None else None
        if manifest is not None and problem is None:
            return folder, manifest.global_step
        if problem is not None and not problem.missing:
            raise TrainingError(f"checkpoint {folder} was changed after it was written ({problem.message})", fix)
        say(f"ignoring the incomplete checkpoint {folder.name} (interrupted while it was written)")
        if remove_incomplete:
            shutil.rmtree(folder, ignore_errors=True)
    return None, 0


def train_from(trainer: Trainer, checkpoint: Path | None) -> Any:
    """``trainer.train``, resuming from ``checkpoint``; a checkpoint file that is not plain tensors (refused by
    ``torch.load(weights_only=True)``) is a one-line :class:`TrainingError`."""
    try:
        return trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
    except pickle.UnpicklingError as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TrainingError(
            f"cannot resume from {checkpoint}: a file there holds Python objects, not plain tensors, and "
            f"is not loaded ({detail[:160]})",
            f"delete {checkpoint} (or the whole run folder) if you did not put that file there yourself",
        ) from None
