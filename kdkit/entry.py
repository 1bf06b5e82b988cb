"""The ``kdkit`` console script: signals, ``--debug``, and the CLI imported inside a guard.

:func:`main` imports only the standard library before it imports the CLI, so a Ctrl-C while kdkit is still
importing (torch, transformers: seconds) is one line, ``interrupted: ...``, with exit status 130, never a
traceback. It also makes SIGTERM behave like Ctrl-C (:class:`Terminated` is a ``KeyboardInterrupt``: the run
lock is released, an unfinished run is kept for ``--resume``, one line is printed; exit status 143).

``kdkit --debug COMMAND ...`` or ``KDKIT_DEBUG=1`` shows the full traceback of any error, for bug reports;
without it no traceback reaches the user (:func:`kdkit.cli.base.handle_errors`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from types import FrameType

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


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def handle_sigterm() -> None:
    """Make SIGTERM raise :class:`Terminated` in the main thread (a no-op elsewhere: signals need it)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def _say(kind: str, message: str) -> None:
    print(f"{kind}: {message}", file=sys.stderr, flush=True)


def main() -> None:
    """The ``kdkit`` command (console script ``kdkit.entry:main``; also ``kdkit.cli:main``)."""
    handle_sigterm()
    if "--debug" in sys.argv[1:]:
        set_debug(True)  # before the CLI parses it, so that a failing import shows its traceback too
    try:
        from kdkit.cli import app
    except KeyboardInterrupt as exc:
        _say(interruption(exc), "kdkit was still starting; nothing was written")
        sys.exit(interrupted_status(exc))
    except Exception as exc:
        if debug():
            traceback.print_exc()
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        _say(
            "error",
            f"kdkit failed to start ({type(exc).__name__}: {detail}): reinstall kdkit; "
            f"run it with --debug (or {DEBUG_ENV}=1) to see the traceback",
        )
        sys.exit(BUG_STATUS)
    run(app)


def run(app: object) -> None:
    """Run the Typer ``app``; a Ctrl-C that reaches here (outside any command) is still one line."""
    try:
        app(prog_name="kdkit")  # type: ignore[operator]
    except KeyboardInterrupt as exc:
        _say(interruption(exc), "nothing was written")
        sys.exit(interrupted_status(exc))
