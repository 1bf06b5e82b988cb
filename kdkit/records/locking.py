"""Exclusive locks on run directories, so two processes never write the same run.

``RunLock(path)`` holds an advisory ``flock`` on ``<path>.lock`` (created next to ``path``) and writes the
holder's PID into it. The kernel releases the lock when the holder exits, however it exits (``kill -9``
included), so a lock never goes stale; the file is removed on release. A second process asking for the lock
gets a :class:`~kdkit.errors.ConfigError` naming the holder's PID, or waits for it with ``wait=True``.
The lock file is created exclusively and never opened through a link
(:func:`kdkit.records.safe_paths.open_lock_file`). Locks are re-entrant within a process (the default teacher's
folder is locked by ``ensure_teacher`` and again by the fine-tune it starts). Where ``fcntl`` is missing (Windows),
locking is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from kdkit.errors import ConfigError
from kdkit.records.safe_paths import open_lock_file

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_SUFFIX = ".lock"
#: lock file -> (file descriptor, how many times this process holds it)
_HELD: dict[Path, tuple[int, int]] = {}


def lock_path(target: Path) -> Path:
    target = target.expanduser().absolute()
    return target.with_name(target.name + LOCK_SUFFIX)


def _holder(path: Path) -> str:
    try:
        pid = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return "another process"
    return f"PID {pid}" if pid.isdigit() else "another process"


class RunLock:
    """An exclusive, re-entrant lock on ``target`` (a run directory, finished or not).

    Args:
        target: the directory to protect (it need not exist; its parent must).
        fix: the hint of the error a second process gets.
    """

    def __init__(self, target: Path, *, fix: str = "wait for it to finish, or choose another --output") -> None:
        self.target = target.expanduser().absolute()
        self.path = lock_path(self.target)
        self.fix = fix

    def acquire(self, *, wait: bool = False, on_wait: Callable[[str], None] | None = None) -> None:
        """Take the lock; if another process holds it, raise (or, with ``wait``, block until it is free)."""
        if fcntl is None:
            return
        if self.path in _HELD:
            fd, count = _HELD[self.path]
            _HELD[self.path] = (fd, count + 1)
            return
        while True:
            fd = open_lock_file(self.path)  # never through a link, never another file's second name
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(self.path)
                if not wait:
                    os.close(fd)
                    raise ConfigError(f"{self.target} is in use by {holder} (another kdkit run)", self.fix) from None
                if on_wait is not None:
                    on_wait(holder)
                fcntl.flock(fd, fcntl.LOCK_EX)
            if self._still_linked(fd):
                break
            os.close(fd)  # the holder removed the file as we waited: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _HELD[self.path] = (fd, 1)

    def _still_linked(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        """Give the lock back (the file goes once the outermost holder in this process lets go)."""
        if fcntl is None or self.path not in _HELD:
            return
        fd, count = _HELD[self.path]
        if count > 1:
            _HELD[self.path] = (fd, count - 1)
            return
        del _HELD[self.path]
        self.path.unlink(missing_ok=True)
        os.close(fd)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()
