"""User-facing errors, and how kdkit ends.

Every error a user can fix is a :class:`KdkitError`: the CLI prints its one-line message (the problem, then
the fix) and exits with status 2, without a traceback. Ctrl-C exits 130, SIGTERM (:class:`Terminated`, a
``KeyboardInterrupt``) 143, a bug 1 with its traceback only under ``--debug`` / ``KDKIT_DEBUG=1``.
"""

from __future__ import annotations

import errno
import os


class KdkitError(Exception):
    """A problem the user can fix. ``str(err)`` is one line: what is wrong, then how to fix it."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem.rstrip(". ")
        self.fix = fix
        super().__init__(self.problem + (f": {fix}" if fix else ""))


class ConfigError(KdkitError):
    """An unknown, missing or ill-typed option."""


class DataError(KdkitError):
    """Missing, malformed or inconsistent data."""


class ModelError(KdkitError):
    """A model that cannot be loaded or does not fit the task."""


class PluginError(KdkitError):
    """A plugin or plugin component that is unknown, failed to load, or misbehaves."""


class TrainingError(KdkitError):
    """Training went wrong (for example, the loss became NaN)."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite: resuming would repeat the same steps, so the advice is to start again."""


class ExportError(KdkitError):
    """An export that cannot be made, or that fails its validation against PyTorch."""


class KdkitWarning(UserWarning):
    """Something the user should know that does not stop the command; the CLI prints it as one line."""


class TruncationWarning(KdkitWarning):
    """Some texts were longer than the model's max length and were truncated."""


class CacheWarning(KdkitWarning):
    """A cache entry could not be used (damaged) and is being rebuilt."""


class StorageError(KdkitError):
    """The disk is full, or a location kdkit must write to cannot be written."""


#: errno values of a full disk (``ENOSPC``) or an exhausted quota (``EDQUOT``)
_DISK_FULL_ERRNOS = frozenset(code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None)
#: how libraries that do their own I/O (safetensors' Rust writer, torch.save) say the disk is full
_DISK_FULL_WORDS = ("No space left on device", "StorageFull", "Disk quota exceeded")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (an ``OSError``, or a library's own error such as safetensors' ``SafetensorError``) says
    that the disk is full."""
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
        return True
    return any(words in str(exc) for words in _DISK_FULL_WORDS)


def disk_full_error(exc: BaseException, writing: str, fix: str) -> StorageError:
    """The one-line error for a full disk while ``writing`` (what was being written, and where)."""
    return StorageError(f"no space left on device while writing {writing} ({type(exc).__name__})", fix)


# -- how kdkit ends: exit statuses, SIGTERM, --debug ----------------------------------------------------

DEBUG_ENV = "KDKIT_DEBUG"
#: exit status after Ctrl-C (128 + SIGINT) and after SIGTERM (128 + SIGTERM)
INTERRUPTED_STATUS = 130
TERMINATED_STATUS = 143
#: exit status of an unexpected error (a bug in kdkit, not something the user can fix: those exit 2)
BUG_STATUS = 1

_debug = False


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises ``KeyboardInterrupt``: the same clean-up and message."""


def set_debug(on: bool) -> None:
    """Show tracebacks (``--debug``)."""
    global _debug
    _debug = on


def debug() -> bool:
    """Whether tracebacks are shown: ``--debug``, or ``KDKIT_DEBUG`` set to anything but 0/false/no."""
    return _debug or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def interrupted_status(exc: BaseException) -> int:
    """130 for Ctrl-C, 143 for SIGTERM."""
    return TERMINATED_STATUS if isinstance(exc, Terminated) else INTERRUPTED_STATUS


def interruption(exc: BaseException) -> str:
    """``interrupted`` or ``terminated (SIGTERM)``: how the one line starts."""
    return "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
