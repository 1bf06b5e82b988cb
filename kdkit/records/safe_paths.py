"""The one rule every writer of kdkit follows: nothing is written through a link, over an input of the command
that writes, or over a file kdkit did not write.

- **Links.** A folder kdkit owns (a run, its ``<output>.partial``, an export, a web page) holds no symbolic link, at
  any depth: :func:`check_no_links` refuses one before kdkit writes there (on ``--resume``, before a folder is renamed
  into place, before ``--overwrite`` replaces it). A lock file is created exclusively and opened without following
  a link (:func:`open_lock_file`), so a link named ``<output>.lock`` never makes kdkit write a PID into its target.
- **Inputs.** :func:`check_not_an_input`: the output (and its ``.partial``) is not one of the command's inputs (the
  teacher, the base model, the model exported, the data), does not hold one, and is not inside one (except where
  the command's own default puts it: an export inside its run, a page inside its export).
- **Ownership.** A folder is replaced (``--overwrite``, a stale ``.partial``) only when kdkit wrote every file in it,
  at every depth: a finished folder lists its files in :data:`FILES_RECORD` (written by :func:`write_files_record`
  just before it is renamed into place; :func:`unlisted_files` compares), and a one-go ``.partial`` (an export, a
  page) carries :data:`PARTIAL_MARK` from its first moment (:func:`mark_partial`).

:class:`kdkit.records.runs.RunDirectory` calls these for every run, export and page; :mod:`kdkit.records.locking` for
every lock. This module imports neither torch nor transformers.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

from pydantic import Field

import kdkit
from kdkit.errors import ConfigError
from kdkit.records.manifests import _Record, read_json, write_json

#: the list of every file of a finished run, export or page (relative paths), written last
FILES_RECORD = "kdkit_files.json"
#: the first file of a one-go ``<output>.partial`` (an export, a page): kdkit made the folder
PARTIAL_MARK = "kdkit_partial.json"
_NO_LINK = "remove the link (kdkit never writes through one), or choose another --output"


class FilesRecord(_Record):
    """``kdkit_files.json``: every file kdkit wrote in a folder, as relative POSIX paths."""

    kdkit_version: str
    files: list[str] = Field(default_factory=list)


# -- links ---------------------------------------------------------------------------------------------------


def find_link(folder: Path) -> Path | None:
    """The first symbolic link at ``folder`` or anywhere under it (links are not followed), else None."""
    if folder.is_symlink():
        return folder
    if not folder.is_dir():
        return None
    for root, dirs, files in os.walk(folder):
        for name in sorted(dirs + files):
            if (Path(root) / name).is_symlink():
                return Path(root) / name
    return None


def check_no_links(folder: Path, fix: str = _NO_LINK) -> None:
    """A one-line :class:`ConfigError` naming the first link at or under ``folder`` (and where it points)."""
    link = find_link(folder)
    if link is not None:
        raise ConfigError(f"{link} is a link (to {os.readlink(link)}): kdkit does not write through links", fix)


def open_lock_file(path: Path) -> int:
    """A read-write descriptor of the lock file ``path``: created exclusively if missing, else opened without
    following a link; it must be a plain file with no other name (not a link, not a hard link to another file)."""
    flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):  # the file may come and go between the two opens (another holder releasing it)
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            pass
        try:
            fd = os.open(path, flags)  # a lock file left by a holder that was killed: the flock is the lock
            break
        except FileNotFoundError:
            continue
        except OSError:
            if path.is_symlink():  # O_NOFOLLOW refused it (ELOOP)
                raise ConfigError(f"the lock file {path} is a link (to {os.readlink(path)})", _lock_fix(path)) from None
            raise
    else:  # pragma: no cover - a file created and removed a hundred times in a row
        raise ConfigError(f"cannot create the lock file {path}", "try again")
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        what = "not a plain file" if not stat.S_ISREG(info.st_mode) else "a second name of another file (a hard link)"
        raise ConfigError(f"the lock file {path} is {what}", _lock_fix(path))
    return fd


def _lock_fix(path: Path) -> str:
    return f"remove {path} (kdkit makes its own lock file there), or choose another --output"


# -- inputs --------------------------------------------------------------------------------------------------


def check_not_an_input(
    output: Path,
    inputs: Mapping[str, str | Path | None],
    *,
    may_hold_output: Collection[str] = (),
    flag: str = "--output",
) -> None:
    """Refuse an ``output`` that is an input of the command, holds one, or lies inside one (one line naming it).

    Args:
        output: the folder the command writes (its ``<output>.partial`` is checked too).
        inputs: ``{role: path}`` of what the command reads (``teacher``, ``base model``, ``training data``, ...);
            ``None`` and paths that do not exist (a hub id) are skipped. Links are resolved.
        may_hold_output: roles whose folder may hold the output (an export inside the run it exports).
        flag: the option that named the output (in the message).
    """
    final = output.expanduser().resolve()
    work = final.with_name(final.name + ".partial")
    for role, given in inputs.items():
        if given is None or not os.path.lexists(Path(given).expanduser()):
            continue
        source = Path(given).expanduser().resolve()
        if any(target == source or target in source.parents for target in (final, work)):
            raise ConfigError(
                f"{flag} {output} would replace the {role} {given}, an input of this command",
                f"choose another {flag}",
            )
        if source in final.parents and final.is_file():  # a file of the input (its weights, its config.json)
            raise ConfigError(
                f"{flag} {output} would replace a file of the {role} {given}, an input of this command",
                f"choose another {flag}",
            )
        if source in final.parents and role not in may_hold_output:
            raise ConfigError(
                f"{flag} {output} is inside the {role} {given}, an input of this command",
                f"choose a {flag} outside it",
            )


# -- what kdkit wrote ----------------------------------------------------------------------------------------


def walk_files(folder: Path, prefix: str = "") -> Iterator[str]:
    """Relative POSIX paths (under ``prefix``) of every file and link at or under ``folder`` (links not followed)."""
    for root, dirs, files in os.walk(folder):
        base = Path(root).relative_to(folder)
        names = files + [name for name in dirs if (Path(root) / name).is_symlink()]
        for name in sorted(names):
            yield (Path(prefix) / base / name).as_posix()


def write_files_record(folder: Path) -> None:
    """List every file of ``folder`` (at every depth) in :data:`FILES_RECORD`: what ``--overwrite`` may replace."""
    names = [name for name in walk_files(folder) if name != FILES_RECORD]
    write_json(folder / FILES_RECORD, FilesRecord(kdkit_version=kdkit.__version__, files=names))


def listed_files(folder: Path) -> set[str] | None:
    """The files :data:`FILES_RECORD` lists in ``folder``; None when there is none (a folder of an older kdkit)."""
    path = folder / FILES_RECORD
    if not path.is_file():
        return None
    fix = f"move {folder} away yourself if you are sure it holds nothing of yours"
    return set(read_json(path, FilesRecord, what="the file list", fix=fix, error=ConfigError).files)


def unlisted_files(folder: Path, entry: str, listed: set[str]) -> list[str]:
    """The files (and links) under ``folder / entry`` that ``listed`` does not name."""
    path = folder / entry
    if path.is_symlink() or not path.is_dir():
        return [] if entry in listed and not path.is_symlink() else [entry]
    return [name for name in walk_files(path, entry) if name not in listed or (folder / name).is_symlink()]


def mark_partial(work: Path) -> None:
    """Mark a new one-go ``<output>.partial`` as kdkit's (:data:`PARTIAL_MARK`, its first file)."""
    write_json(work / PARTIAL_MARK, {"kdkit_version": kdkit.__version__, "pid": os.getpid()})


def check_stale_partial(work: Path) -> None:
    """A leftover ``<output>.partial`` may be removed only when empty or marked by kdkit; else one line naming
    what it holds (a folder of the user's files that happens to end in ``.partial``)."""
    if work.is_symlink() or (work.exists() and not work.is_dir()):
        raise ConfigError(f"{work} is in the way (a link or a file kdkit did not write)", "move it away")
    if not work.is_dir() or not any(work.iterdir()) or (work / PARTIAL_MARK).is_file():
        return
    held = sorted(entry.name for entry in work.iterdir())
    shown = ", ".join(held[:4]) + (f" and {len(held) - 4} more" if len(held) > 4 else "")
    raise ConfigError(
        f"{work} exists and kdkit did not write it (it holds {shown})", "move it away, or choose another --output"
    )
