"""Files kdkit writes and later reads back: their pydantic models, checksums and atomic writes.

Every JSON file kdkit reads back goes through :func:`read_json` with its model below, so a truncated,
hand-edited or foreign file gives one line naming the file instead of a traceback. A file list
(:class:`FileEntry` per file: size and SHA-256) lets kdkit verify an artefact it made before reusing it:

- ``kdkit_task.json`` next to every saved model (:class:`TaskFile`): the task, max length and the model's files;
- ``kdkit_checkpoint.json`` in every finished Trainer checkpoint (:class:`CheckpointManifest`), written last;
- ``<key>.json`` next to every teacher-signal cache file (:class:`CacheManifest`);
- ``start.json`` in a run directory (:class:`RunStart`): the configuration the run was started with;
- ``run.json`` of a finished run (:class:`kdkit.records.run_summary.RunSummary`) and ``kdkit_export.json`` of an export
  (:class:`ExportManifest`; what the exporter writes: :class:`kdkit.export.manifest.ExportRecord`);
- ``kdkit_teacher.json`` of a cached default teacher (:class:`TeacherRecord`).

This module imports neither torch nor transformers (:mod:`kdkit.export.inference` uses it).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kdkit.errors import KdkitError, ModelError

ModelT = TypeVar("ModelT", bound=BaseModel)
_CHUNK = 1 << 20

#: written next to every saved model: the task it was trained for (:class:`TaskFile`)
TASK_FILE = "kdkit_task.json"
#: an export's description (:class:`ExportManifest`), written by :mod:`kdkit.export.stage`
EXPORT_MANIFEST_FILE = "kdkit_export.json"
#: the version of its layout (a reader refuses newer ones)
EXPORT_MANIFEST_FORMAT = 1
#: the folder 'kdkit export RUN_DIR --onnx' writes inside a run directory by default
EXPORT_SUBDIR = "onnx"


class _Record(BaseModel):
    """A file kdkit wrote: unknown keys are kept (newer writers may add some), known ones are checked."""

    model_config = ConfigDict(extra="allow")


class FileEntry(BaseModel):
    """One file of an artefact: its size in bytes and SHA-256 (hex)."""

    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class TaskFields(_Record):
    """The task a model was trained for (:class:`kdkit.data.tasks.TaskSpec`)."""

    name: str = Field(min_length=1)
    text_fields: list[str] = Field(min_length=1, max_length=2)
    label_names: list[str] | None = Field(None, min_length=1)
    metrics: list[str] = Field(min_length=1)
    main_metric: str
    validation_splits: list[str] = Field(["validation"], min_length=1)
    hub_config: str | None = None
    label_column: str = "label"
    description: str = ""


class TaskFile(_Record):
    """``kdkit_task.json``: written by :func:`kdkit.models.saving.save_model` after the weights and tokenizer."""

    task: TaskFields
    max_length: int = Field(128, ge=1)
    files: dict[str, FileEntry] | None = None
    #: the tokenizer's files (not checksummed: they may be edited, but must be there)
    tokenizer_files: list[str] | None = None


class CheckpointManifest(_Record):
    """``kdkit_checkpoint.json``: the last file of a complete checkpoint."""

    global_step: int = Field(ge=0)
    files: dict[str, FileEntry]


class CacheManifest(_Record):
    """``<key>.json`` next to a teacher-signal cache file ``<key>.arrow``."""

    key: str
    rows: int = Field(ge=0)
    columns: list[str]
    file: FileEntry


class RunStart(_Record):
    """``start.json``: what a run was started with, compared with the new options on ``--resume``."""

    kdkit_version: str
    command: str
    config: dict[str, Any]
    data_files: dict[str, str] = Field(default_factory=dict)


class TeacherRecord(_Record):
    """``kdkit_teacher.json`` in a cached default teacher's folder: what it was made from (compared with the
    options of a run that finds no cached teacher) and the majority baseline of its task."""

    key: str
    identity: dict[str, Any]
    main_metric: str
    baseline: float | None = None


def _plain_file_name(value: str) -> str:
    """A file name inside the folder (no path: a manifest cannot point kdkit elsewhere)."""
    if not value or Path(value).name != value or value in (".", ".."):
        raise ValueError("must be a file name inside the export folder")
    return value


def _relative_file(value: str) -> str:
    """A file inside the export folder, possibly in a subfolder (``onnx/model.onnx``): no absolute path and no
    ``..``, so a manifest cannot point kdkit elsewhere."""
    parts = Path(value).parts if value else ()
    if not parts or Path(value).is_absolute() or any(part in (".", "..") for part in parts) or "\\" in value:
        raise ValueError("must be a file inside the export folder")
    return value


class ExportModelFile(_Record):
    file: str
    bytes: int | None = None

    _inside = field_validator("file")(_relative_file)


class ExportTask(_Record):
    name: str = "task"
    text_fields: list[str] | None = Field(None, min_length=1, max_length=2)
    label_names: list[str] | None = Field(None, min_length=1)


class ExportTokenizer(_Record):
    file: str = "tokenizer.json"
    pad_id: int = Field(0, ge=0)
    pad_token: str = "[PAD]"

    _plain_name = field_validator("file")(_plain_file_name)


class ExportExample(_Record):
    """One example input of the task, taken from its validation data: ``text`` and, for pair tasks, ``pair``."""

    text: str = Field(min_length=1)
    pair: str | None = None


class ExportManifest(_Record):
    """``kdkit_export.json`` (the fields :class:`kdkit.export.inference.OnnxClassifier` needs)."""

    format: int = 1
    task: ExportTask
    max_length: int = Field(ge=1)
    input_names: list[str] = Field(min_length=1)
    models: dict[str, ExportModelFile]
    tokenizer: ExportTokenizer = Field(default_factory=ExportTokenizer)

    @field_validator("input_names")
    @classmethod
    def _known_inputs(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in ("input_ids", "attention_mask", "token_type_ids")]
        if unknown or "input_ids" not in value:
            raise ValueError("must hold input_ids and only input_ids, attention_mask, token_type_ids")
        return value


# -- reading and writing ----------------------------------------------------------------------------


def problem_of(exc: ValidationError) -> str:
    """The first problem of a validation error, as ``field.path: message``."""
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"]) or "top level"
    return f"{location}: {error['msg']}"


def read_json(
    path: Path, model: type[ModelT], *, fix: str, error: type[KdkitError] = ModelError, what: str = ""
) -> ModelT:
    """Read ``path`` into ``model``; anything wrong (unreadable, not JSON, wrong fields) is one ``error`` line
    naming the file (``what`` describes it) and ending with ``fix``."""
    label = f"{what} {path}" if what else str(path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise error(f"cannot read {label} ({exc.strerror or exc})", fix) from None
    except (UnicodeDecodeError, ValueError) as exc:
        first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise error(f"{label} is damaged: not valid JSON ({first})", fix) from None
    if not isinstance(data, dict):
        raise error(f"{label} is damaged: expected a JSON object, found {type(data).__name__}", fix)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(f"{label} is damaged or was edited: {problem_of(exc)}", fix) from None


def write_json(path: Path, data: dict[str, Any] | BaseModel) -> None:
    """Write JSON atomically: a temporary file in the same folder, flushed to disk, then renamed over ``path``
    (so a reader sees the old file or the new one, never half of one)."""
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically (see :func:`write_json`); a link at ``path`` is replaced, never written
    through."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0o022)
        os.umask(umask)
        os.fchmod(handle, 0o666 & ~umask)  # as a plain write would (mkstemp makes it private)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# -- checksums --------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def describe_file(path: Path) -> FileEntry:
    return FileEntry(bytes=path.stat().st_size, sha256=file_sha256(path))


def describe_files(directory: Path, exclude: tuple[str, ...] = ()) -> dict[str, FileEntry]:
    """Every regular file under ``directory`` (relative POSIX paths) with its size and SHA-256."""
    entries: dict[str, FileEntry] = {}
    for path in sorted(directory.rglob("*")):
        name = path.relative_to(directory).as_posix()
        if path.is_file() and not path.is_symlink() and name not in exclude:
            entries[name] = describe_file(path)
    return entries


def digest_paths(paths: dict[str, Path]) -> dict[str, str]:
    """``{name: SHA-256}`` of files, or of every file (names and bytes) under a folder: content, not paths."""
    digests: dict[str, str] = {}
    for name, path in paths.items():
        if path.is_file():
            digests[name] = file_sha256(path)
        elif path.is_dir():
            digest = hashlib.sha256()
            for member in sorted(p for p in path.rglob("*") if p.is_file()):
                digest.update(member.relative_to(path).as_posix().encode() + b"\0")
                digest.update(file_sha256(member).encode())
            digests[name] = digest.hexdigest()
    return digests


class FileProblem(BaseModel):
    """Why a file list does not match a folder: ``missing`` (an unfinished write) or changed afterwards."""

    message: str
    missing: bool


def check_files(directory: Path, files: dict[str, FileEntry], *, checksums: bool = True) -> FileProblem | None:
    """The first file of ``files`` that is missing or differs (size, then SHA-256) under ``directory``."""
    for name, entry in files.items():
        path = directory / name
        if not path.is_file():
            return FileProblem(message=f"{name} is missing", missing=True)
        size = path.stat().st_size
        if size != entry.bytes:
            return FileProblem(message=f"{name} has {size} bytes, {entry.bytes} were written", missing=False)
        if checksums and file_sha256(path) != entry.sha256:
            return FileProblem(message=f"{name} changed after it was written (SHA-256 differs)", missing=False)
    return None
