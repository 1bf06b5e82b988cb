"""The ``kdkit`` console script: signals, ``--debug``, and the CLI imported inside a guard.

:func:`main` imports only the standard library before it imports the CLI, so a Ctrl-C while kdkit is still
importing (torch, transformers: seconds) is one line, ``interrupted: ...``, with exit status 130, never a
traceback. It also makes SIGTERM behave like Ctrl-C (:class:`Terminated` is a ``KeyboardInterrupt``: the run
lock is released, an unfinished run is kept for ``--resume``, one line is printed; exit status 143).

``kdkit --debug COMMAND ...`` or ``KDKIT_DEBUG=1`` shows the full traceback of any error, for bug reports;
without it no traceback reaches the user (:func:`kdkit.cli.base.handle_errors`). The exit statuses, the
``--debug`` switch and :class:`~kdkit.errors.Terminated` are :mod:`kdkit.errors`'; this module is the console
script alone, the top of kdkit: nothing imports it but ``python -m kdkit.cli``.
"""

from __future__ import annotations

import signal
import sys
import threading
import traceback
from types import FrameType

from kdkit.errors import BUG_STATUS, DEBUG_ENV, Terminated, debug, interrupted_status, interruption, set_debug


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def handle_sigterm() -> None:
    """Make SIGTERM raise :class:`Terminated` in the main thread (a no-op elsewhere: signals need it)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def _say(kind: str, message: str) -> None:
    print(f"{kind}: {message}", file=sys.stderr, flush=True)


def main() -> None:
    """The ``kdkit`` command (console script ``kdkit.entry:main``; ``python -m kdkit.cli``)."""
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
