"""Running a plugin's code without letting it stop kdkit: what it raised, described in one phrase.

A plugin's import or hook may raise anything, call ``sys.exit()`` or ``os._exit()``, or raise ``KeyboardInterrupt``
itself; :mod:`kdkit.plugins` records each as the plugin's failure (``os._exit`` is replaced, while plugin code runs,
by a function that raises :class:`PluginExit`; only a plugin that reaches the C function another way, e.g.
``posix._exit`` or ctypes, can still end the process). A real Ctrl-C (SIGINT) or SIGTERM while plugin code
runs is the user's, and is passed on: :func:`guarded` notes the signals that arrive meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from kdkit.errors import Terminated


class PluginExit(SystemExit):
    """A plugin called ``os._exit(status)`` while kdkit ran its code (:func:`guarded`): its failure, not the end of
    the process."""


def _refuse_exit(status: int) -> None:
    raise PluginExit(status)


def describe(exc: BaseException) -> str:
    """What a plugin's code raised, in one phrase (``it called sys.exit(3) (SystemExit)``)."""
    if isinstance(exc, PluginExit):
        return f"it called os._exit({exc.code!r})"
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r}) (SystemExit)"
    if isinstance(exc, (KeyboardInterrupt, PluginInterrupt)):
        return "it raised KeyboardInterrupt"
    return repr(exc)


@contextlib.contextmanager
def guarded() -> Iterator[list[int]]:
    """Run plugin code noting real Ctrl-Cs (SIGINT): a ``KeyboardInterrupt`` with no signal seen was raised by
    the plugin itself, and is the plugin's failure, not the user's interruption; ``os._exit`` raises
    :class:`PluginExit` meanwhile."""
    real_exit = os._exit
    os._exit = _refuse_exit  # type: ignore[assignment]
    try:
        with _noting_signals() as seen:
            yield seen
    finally:
        os._exit = real_exit


@contextlib.contextmanager
def _noting_signals() -> Iterator[list[int]]:
    seen: list[int] = []
    previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if previous is None:  # not the main thread, or a handler not set from Python: no signal can be noted here
        seen.append(0)  # so every KeyboardInterrupt counts as the user's
        yield seen
        return

    def note(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


class PluginInterrupt(Exception):
    """A plugin's hook raised KeyboardInterrupt itself (no Ctrl-C): its failure."""


def call_hook(function: Any) -> Any:
    """Call a plugin's hook; a KeyboardInterrupt it raises itself becomes :class:`PluginInterrupt`."""
    with guarded() as seen:
        try:
            return function()
        except KeyboardInterrupt as exc:
            if users_interrupt(exc, seen):
                raise
            raise PluginInterrupt from None


def users_interrupt(exc: BaseException, seen: list[int]) -> bool:
    """A Ctrl-C or SIGTERM of the user's (to pass on), not a KeyboardInterrupt a plugin raised."""
    return isinstance(exc, KeyboardInterrupt) and (bool(seen) or isinstance(exc, Terminated))


def import_failure(name: str, exc: BaseException) -> str:
    """Why the module ``name`` could not be used: it does not exist, or it exists and failed to import."""
    if isinstance(exc, ModuleNotFoundError) and exc.name is not None and (name + ".").startswith(exc.name + "."):
        return f"no entry point or module named {name!r}"
    return f"module {name!r} failed to import: {describe(exc)}"
