"""What a run was started with (``start.json``) and what ``--resume`` accepts: the same options, the same data.

:func:`start_record` is written when a run starts; :func:`compare_with_start` refuses a ``--resume`` whose options
(except :data:`HARMLESS_ON_RESUME`) or data content differ, listing each difference. This module imports neither
torch nor transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

import kdkit
from kdkit.errors import ConfigError
from kdkit.records.manifests import RunStart, digest_paths, read_json

#: the configuration a run was started with (compared on --resume)
START_FILE = "start.json"
#: options that may differ on --resume: they change how a run is shown or stored, not what it computes
HARMLESS_ON_RESUME = frozenset(
    {
        "output",
        "overwrite",
        "resume",
        "quiet",
        "training.logging_steps",
        "training.dataloader_workers",
        "training.keep_checkpoints",
        "training.eval_batch_size",
        "training.term_grad_norm_steps",
        "training.device",
    }
)
#: data locations compared by the content of their files (a moved file is the same data)
COMPARED_BY_CONTENT = frozenset({"data.train_file", "data.validation_file", "data.data_dir"})


def start_record(command: str, config: BaseModel, data_files: dict[str, Path]) -> RunStart:
    """What :data:`START_FILE` records when a run starts: the command, its resolved options, and the content
    (SHA-256) of what it reuses: its data files and the weights of the models it starts from (``teacher/<file>``)."""
    return RunStart(
        kdkit_version=kdkit.__version__,
        command=command,
        config=config.model_dump(mode="json"),
        data_files=digest_paths(data_files),
    )


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value and key != "options":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(started: RunStart, now: RunStart) -> list[str]:
    """``name: old -> new`` for every option (and data file) that differs and would change the run."""
    old, new = _flatten(started.config), _flatten(now.config)
    changed = [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if key not in HARMLESS_ON_RESUME | COMPARED_BY_CONTENT and old.get(key) != new.get(key)
    ]
    if started.command != now.command:
        changed.insert(0, f"command: {started.command} -> {now.command}")
    for name in sorted(set(started.data_files) | set(now.data_files)):
        role, _, file = name.partition("/")
        if file and name not in started.data_files:
            continue  # a model's weights, which the kdkit that started the run did not record
        if started.data_files.get(name) != now.data_files.get(name):
            changed.append(f"the {role}'s weights {file} changed" if file else f"the content of data.{name} changed")
    return changed


def compare_with_start(work: Path, now: RunStart) -> None:
    """Refuse to resume ``work`` with options that would change the run (listing them)."""
    path = work / START_FILE
    if not path.is_file():
        raise ConfigError(
            f"cannot check that --resume continues the same run: {work} has no {START_FILE} "
            "(an older kdkit started it)",
            "delete it to start again",
        )
    started = read_json(path, RunStart, what="the run record", fix=f"delete {work} to start again", error=ConfigError)
    changed = config_differences(started, now)
    if changed:
        raise ConfigError(
            f"--resume with options that differ from the interrupted run's ({'; '.join(changed)})",
            f"resume with the options it was started with (recorded in {path}), or start a new run "
            "with another --output",
        )
