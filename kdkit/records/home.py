"""``KDKIT_HOME`` (default ``~/.cache/kdkit``): where kdkit keeps its cached default teachers and teacher signals.

:func:`home_dir` makes a folder there; a ``KDKIT_HOME`` that cannot be written (a read-only file system) is one
line, checked before any work.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from kdkit.errors import StorageError


def kdkit_home() -> Path:
    """KDKIT_HOME (default ~/.cache/kdkit): cached teachers and teacher signals."""
    return Path(os.environ.get("KDKIT_HOME", Path.home() / ".cache" / "kdkit")).expanduser()


def make_writable_dir(path: Path) -> None:
    """Make the folder ``path`` (and its parents) and check that a file can be written in it; ``OSError`` if not
    (a read-only file system, no permission, a file in the way)."""
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".kdkit-write-test-{uuid.uuid4().hex}"
    probe.write_text("")
    probe.unlink()


def home_dir(*parts: str) -> Path:
    """The folder ``KDKIT_HOME/<parts>``, made if missing; one line if ``KDKIT_HOME`` cannot be written."""
    path = kdkit_home().joinpath(*parts)
    try:
        make_writable_dir(path)
    except OSError as exc:
        raise StorageError(
            f"KDKIT_HOME {kdkit_home()} cannot be written ({exc.strerror or exc})",
            "set KDKIT_HOME to a writable folder (kdkit keeps its cached teachers and teacher signals there), "
            "or pass --teacher and --no-teacher-cache",
        ) from None
    return path
