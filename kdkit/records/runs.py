"""Run directories: written under ``<output>.partial`` and renamed to ``<output>`` only on success.

So a directory named ``<output>`` is always a finished run; a crashed or interrupted run leaves
``<output>.partial`` (with its checkpoints), which ``--resume`` continues.

A finished run directory holds::

    best/        the student (or teacher) at its best validation score: safetensors, config, tokenizer
    last/        the model after the last step
    run.json     resolved config, metrics, history, wall time, versions
    config.yaml  the resolved config alone (re-runnable with --config)
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from kdkit.errors import ConfigError, KdkitError, NonFiniteLossError, StorageError, is_disk_full
from kdkit.records.fidelity import FIDELITY_FILE
from kdkit.records.home import make_writable_dir
from kdkit.records.locking import RunLock
from kdkit.records.manifests import EXPORT_MANIFEST_FILE, read_json, write_json, write_text
from kdkit.records.resume import START_FILE, compare_with_start, start_record
from kdkit.records.safe_paths import (
    FILES_RECORD,
    PARTIAL_MARK,
    check_no_links,
    check_not_an_input,
    check_stale_partial,
    listed_files,
    mark_partial,
    unlisted_files,
    write_files_record,
)


class Command(str, Enum):
    """The command that made a run (``start.json`` and ``run.json`` record its value)."""

    FINETUNE = "finetune"
    DISTILL = "distill"

    def __str__(self) -> str:
        return self.value


RUN_FILE = "run.json"
BEST_DIR = "best"
LAST_DIR = "last"
CHECKPOINT_DIR = "checkpoints"
#: what kdkit writes in a run folder (an export made into the run, ``onnx/``, is recognised by its own record)
RUN_ENTRIES = frozenset(
    {BEST_DIR, LAST_DIR, RUN_FILE, "config.yaml", CHECKPOINT_DIR, START_FILE, "tensorboard", FILES_RECORD}
)
#: what kdkit writes in an export folder besides the tokenizer's files
EXPORT_ENTRIES = frozenset(
    {EXPORT_MANIFEST_FILE, FIDELITY_FILE, "README.md", "training_curves.svg", "config.json", "onnx", FILES_RECORD}
)
#: the web page folder 'kdkit web' writes inside an export (recognised by its own record, kdkit_web.json)
EXPORT_WEB_DIR = "web"
TOKENIZER_PREFIXES = ("tokenizer", "vocab", "merges", "special_tokens_map", "added_tokens", "spm", "sentencepiece")
#: working directories a Ctrl-C interrupted, innermost first (read by the CLI's message)
_UNFINISHED: list[Path] = []


def is_main_process() -> bool:
    """True on the process that writes run files (rank 0 under torchrun, always otherwise)."""
    return int(os.environ.get("RANK", "0")) == 0


def take_unfinished() -> list[Path]:
    """The unfinished run directories a Ctrl-C left since the last call (outermost first); forgets them."""
    left = [path for path in reversed(_UNFINISHED) if path.is_dir()]
    _UNFINISHED.clear()
    return left


class RunDirectory:
    """The working and final locations of one run.

    Every check of :mod:`kdkit.records.safe_paths` is made here: the output is none of ``inputs``, no link is
    written through, and only what kdkit wrote is replaced.

    Args:
        final: where the finished run goes.
        overwrite: replace an existing finished run at ``final``.
        resume: continue from ``<final>.partial``.
        inputs: ``{role: path}`` of what the command reads (the teacher, the model, the data): never written over.
        may_hold_output: the roles of ``inputs`` whose folder may hold the output (an export inside its run).
    """

    def __init__(
        self,
        final: Path,
        *,
        overwrite: bool = False,
        resume: bool = False,
        inputs: Mapping[str, str | Path | None] | None = None,
        may_hold_output: Collection[str] = (),
    ) -> None:
        self.final = final.expanduser().absolute()
        self.work = self.final.with_name(self.final.name + ".partial")
        self.overwrite = overwrite
        self.resume = resume
        self.inputs = dict(inputs or {})
        self.may_hold_output = frozenset(may_hold_output)
        #: set by the training code once training proper starts: from then on a failed run is kept
        self.training_started = False
        self._opened = False
        self._lock: RunLock | None = None  # a one-go output's (start_fresh), released by commit or discard

    def check(self) -> None:
        """Fail early (before any expensive work) if the run could not be written where asked."""
        self.check_output()
        if is_main_process() and self.resume and self.work.is_symlink():
            check_no_links(self.work)
        if is_main_process() and (self.work.exists() or self.work.is_symlink()) and not self.resume:
            raise ConfigError(
                f"an unfinished run exists at {self.work}",
                "pass --resume to continue it, or delete it to start again",
            )
        if is_main_process() and self.resume and not self.work.is_dir():
            raise ConfigError(
                f"nothing to resume: {self.work} does not exist", "run without --resume to start a new run"
            )
        ancestor = self.final.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
            raise ConfigError(f"output location {self.final.parent} is not writable", "choose a writable --output")

    @contextmanager
    def open(self, command: Command, config: BaseModel, data_files: dict[str, Path] | None = None) -> Iterator[None]:
        """Lock the run, check it, then create ``<output>.partial`` with :data:`START_FILE` (or, resuming,
        compare the new options with it). On an error before training started, what this call created is
        removed (Ctrl-C keeps it, for ``--resume``); the lock is released on exit. Under torchrun only the main
        process locks and writes."""
        main = is_main_process()
        lock = RunLock(self.final) if main else None
        if lock is not None:
            self._make_parent()
            lock.acquire()  # first: a run in progress is reported as such, not as an unfinished run
        created = False
        try:
            self.check()
            if main:
                record = start_record(command.value, config, data_files or {})
                if self.resume:
                    check_no_links(self.work, fix=f"remove the link, or delete {self.work} to start again")
                    compare_with_start(self.work, record)
                else:
                    self.work.mkdir()
                    created = True
                    write_json(self.work / START_FILE, record)
            self._opened = True
            yield
        except KeyboardInterrupt:
            _UNFINISHED.append(self.work)  # for the CLI's message; outer runs are added last
            raise
        except BaseException as exc:
            kept = not (created and not self.training_started)
            if not kept:
                shutil.rmtree(self.work, ignore_errors=True)
            if (kept and isinstance(exc, StorageError)) or (is_disk_full(exc) and not isinstance(exc, StorageError)):
                raise self._disk_full(exc, kept=kept) from None
            if kept and isinstance(exc, NonFiniteLossError) and main:
                how = f"delete {self.work} first (--resume would repeat the same steps), or pass another --output"
                raise NonFiniteLossError(exc.problem, f"{exc.fix}, and start again: {how}") from None
            raise  # a StorageError of a nested run (the default teacher's) already says what it kept
        finally:
            if lock is not None:
                lock.release()

    def _disk_full(self, exc: BaseException, *, kept: bool) -> StorageError:
        """The disk filled up during the run: say what was kept (the unfinished run, a finished one untouched)."""
        problem = exc.problem if isinstance(exc, StorageError) else f"no space left on device ({type(exc).__name__})"
        untouched = f"; {self.final} is untouched" if self.final.exists() else ""
        if kept:
            return StorageError(
                problem,
                f"free some space, then continue with --resume: the unfinished run is kept in {self.work}{untouched}",
            )
        return StorageError(problem, f"free some space and run the command again (nothing was kept{untouched})")

    def _make_parent(self) -> None:
        parent = self.final.parent
        try:
            make_writable_dir(parent)
        except OSError as exc:
            raise ConfigError(
                f"output location {parent} is not writable ({exc.strerror or exc})",
                "choose a writable --output",
            ) from None

    def prepare(self) -> None:
        """Create the working directory (main process only); without :meth:`open`, check the locations first."""
        if not self._opened:
            self.check()
        if not is_main_process():
            return
        self._make_parent()
        self.work.mkdir(exist_ok=True)

    def check_output(self) -> None:
        """The output is none of the command's inputs, and an existing one may be replaced."""
        check_not_an_input(self.final, self.inputs, may_hold_output=self.may_hold_output)
        self._check_final()

    def _check_final(self) -> None:
        """An existing output is replaced only with ``--overwrite``, and only if kdkit wrote it."""
        if not (self.final.exists() or self.final.is_symlink()):
            return
        if not self.overwrite:
            raise ConfigError(
                f"output {self.final} already exists", "pass --overwrite to replace it, or choose another --output"
            )
        check_replaceable(self.final)

    def start_fresh(self) -> None:
        """For an output written in one go (an export, a page; not resumable): take the output's lock (the one
        training takes), check the final location, remove a stale ``<output>.partial`` (only one kdkit marked: a
        failed earlier attempt of ours) and create it, marked. :meth:`commit` or :meth:`discard` release the lock."""
        self.check_output()
        self._make_parent()
        self._lock = RunLock(self.final)
        self._lock.acquire()
        try:
            self._check_final()
            check_stale_partial(self.work)
            if self.work.exists():
                shutil.rmtree(self.work)
            self.work.mkdir()
            mark_partial(self.work)
        except OSError as exc:
            self._release()
            raise ConfigError(
                f"output location {self.final.parent} is not writable ({exc.strerror or exc})",
                "choose a writable --output",
            ) from None
        except BaseException:
            self._release()
            raise
        self._opened = True

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def discard(self) -> None:
        """Remove the working directory (a failed one-go output leaves nothing behind); release its lock."""
        try:
            if not self.work.is_symlink():
                shutil.rmtree(self.work, ignore_errors=True)
        finally:
            self._release()

    @property
    def checkpoints(self) -> Path:
        return self.work / CHECKPOINT_DIR

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        write_json(self.work / name, data)  # atomic: a link there is replaced, not written through

    def write_yaml(self, name: str, data: dict[str, Any]) -> None:
        write_text(self.work / name, yaml.safe_dump(data, sort_keys=False))

    def commit(self, *, keep_checkpoints: bool = False) -> Path:
        """List the working directory's files (:data:`~kdkit.records.safe_paths.FILES_RECORD`) and rename it to
        its final name; returns the final path. A link in it (put there while the run trained) is refused."""
        try:
            check_no_links(self.work, fix=f"remove the link; the unfinished run is kept in {self.work}")
            if not keep_checkpoints and self.checkpoints.exists():
                shutil.rmtree(self.checkpoints)
            (self.work / PARTIAL_MARK).unlink(missing_ok=True)
            write_files_record(self.work)
            self._check_final()  # again: files may have appeared there while the run trained (the work is kept)
            if self.final.exists():
                trash = self.final.with_name(self.final.name + f".old-{uuid.uuid4().hex[:8]}")
                self.final.rename(trash)
                self.work.rename(self.final)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                self.work.rename(self.final)
        finally:
            self._release()
        return self.final


# -- what --overwrite may replace ----------------------------------------------------------------------


def check_replaceable(path: Path) -> None:
    """``--overwrite`` replaces only what kdkit wrote: an empty folder, a finished run (``run.json``), an export
    (``kdkit_export.json``) or a web page (``kdkit_web.json``) that holds nothing else, at any depth (the folder's
    :data:`~kdkit.records.safe_paths.FILES_RECORD` lists what kdkit wrote) and no link. Anything else (a file, the
    current folder or one above it, a folder of other files) is a one-line :class:`ConfigError` naming what is
    there; nothing is touched."""
    keep = "--overwrite replaces only what kdkit wrote: choose another --output"
    if path.is_symlink() or not path.is_dir():
        raise ConfigError(f"--overwrite would replace {path}, a file that kdkit did not write", keep)
    here = Path.cwd().resolve()
    if path.resolve() == here or path.resolve() in here.parents:
        raise ConfigError(
            f"--overwrite would replace {path}, which holds the current folder", "choose another --output"
        )
    entries = sorted(entry.name for entry in path.iterdir())
    if not entries:
        return
    kind = kdkit_output_kind(path)
    if kind is None:
        raise ConfigError(
            f"--overwrite would replace {path}, which is not a kdkit run or export (it holds {_listing(entries)})",
            keep + ", or move those files away",
        )
    foreign = _foreign_files(path, kind)
    if foreign:
        raise ConfigError(
            f"--overwrite would replace the kdkit {kind} {path}, which also holds {_listing(foreign)} "
            "(not written by kdkit)",
            "move them out of it, or choose another --output",
        )


def kdkit_output_kind(path: Path) -> str | None:
    """``"run"``, ``"export"`` or ``"web"`` (a page of 'kdkit web') when ``path`` holds a readable kdkit record of
    that kind, else None."""
    from kdkit.records.manifests import ExportManifest
    from kdkit.records.run_summary import RunSummary
    from kdkit.records.web_record import WEB_RECORD_FILE, WebRecord

    records: tuple[tuple[str, str, type[BaseModel]], ...] = (
        ("run", RUN_FILE, RunSummary),
        ("export", EXPORT_MANIFEST_FILE, ExportManifest),
        ("web", WEB_RECORD_FILE, WebRecord),
    )
    for kind, name, model in records:
        if (path / name).is_file():
            try:
                read_json(path / name, model, fix="")
            except KdkitError:  # unreadable or not ours: not a record
                continue
            return kind
    return None


def _foreign_files(folder: Path, kind: str) -> list[str]:
    """What the kdkit output ``folder`` of ``kind`` holds that kdkit did not write: a link anywhere; at the top
    level, a name kdkit never writes there; deeper, a file its file list does not name (a folder of an older kdkit
    has no list: only its top level is known). A kdkit output inside it (an export in a run, a page in an export)
    is checked against its own list."""
    listed = listed_files(folder)
    foreign: list[str] = []
    for entry in sorted(folder.iterdir()):
        name = entry.name
        if entry.is_symlink() or not _written_by_kdkit(folder, kind, name):
            foreign.append(name)
        elif entry.is_dir() and name in ("onnx", EXPORT_WEB_DIR) and (inner := kdkit_output_kind(entry)):
            foreign += [f"{name}/{file}" for file in _foreign_files(entry, inner)]
        elif listed is not None and entry.is_dir():
            foreign += unlisted_files(folder, name, listed)
    return foreign


def _written_by_kdkit(folder: Path, kind: str, name: str) -> bool:
    if kind == "run":
        return name in RUN_ENTRIES or (name == "onnx" and kdkit_output_kind(folder / name) == "export")
    if kind == "web":
        from kdkit.records.web_record import WEB_ENTRIES

        return name in WEB_ENTRIES
    return (
        name in EXPORT_ENTRIES
        or name.startswith(TOKENIZER_PREFIXES)
        or (name == EXPORT_WEB_DIR and kdkit_output_kind(folder / name) == "web")
    )


def _listing(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")



def resolve_model_dir(path: Path) -> Path:
    """A model directory from a run directory (its ``best/``) or a model directory itself."""
    if (path / RUN_FILE).is_file() and (path / BEST_DIR).is_dir():
        return path / BEST_DIR
    return path
