"""The Typer application (``app``, also ``kdkit.cli.app``) that every command registers on with :func:`command`,
and how a command reports errors.

- :func:`handle_errors` prints a :class:`~kdkit.errors.KdkitError` raised by a command as one line
  (``error: problem: fix``) and exits with status 2; so is a missing package, with the line that installs it
  (:mod:`kdkit.extras`), and an operating-system error (a full disk, a read-only location). Ctrl-C and SIGTERM
  exit 130 and 143 with one line; any other exception is a bug: one line, exit status 1, and its traceback only
  with ``kdkit --debug`` or ``KDKIT_DEBUG=1`` (:mod:`kdkit.entry`).
- :func:`main_callback` (the options before the command) quiets the libraries and records the plugin options;
  the plugin host is made when a command first asks for it (:func:`plugin_manager`).

Nothing here imports torch.
"""

import errno
import functools
import importlib
import os
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

import kdkit
from kdkit import entry
from kdkit.cli.command import KdkitCommand, KdkitGroup
from kdkit.cli.output import err, out, print_error
from kdkit.errors import KdkitError, KdkitWarning, is_disk_full
from kdkit.extras import missing_module_error

if TYPE_CHECKING:
    from kdkit.plugins import PluginManager

F = TypeVar("F", bound=Callable[..., Any])
#: click's exceptions (typer may bundle its own click: take the module of its BadParameter)
_click = importlib.import_module(typer.BadParameter.__module__)

app = typer.Typer(
    name="kdkit",
    cls=KdkitGroup,
    help="Knowledge distillation for transformer classifiers: fine-tune, distil, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def command(**kwargs: Any) -> Callable[[F], F]:
    """Register a kdkit command (``@command()`` instead of ``@app.command()``)."""
    return app.command(cls=KdkitCommand, **kwargs)


def _show_warning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    if issubclass(category, KdkitWarning):
        err.print(f"[yellow]warning:[/] {message}", soft_wrap=True)
    else:
        _SHOW_WARNING(message, category, *args, **kwargs)


_SHOW_WARNING = warnings.showwarning


def _interrupted() -> str:
    """What Ctrl-C leaves: --resume is advised only if this command left an unfinished run directory."""
    from kdkit.runs import take_unfinished

    left = take_unfinished()
    if left:
        return f"the unfinished run is kept in {left[0]}; continue it with --resume"
    return "no run directory was written yet; run the command again"


def _fail(message: str, status: int) -> typer.Exit:
    """Print ``error: message`` (after the traceback with --debug) and return the exit to raise."""
    if entry.debug():
        traceback.print_exc()
    print_error(message)
    return typer.Exit(status)


def _os_error_message(exc: OSError) -> str:
    """One line for an operating-system error no kdkit check caught: a full disk, a location that cannot be
    written, or another I/O problem, naming the file."""
    where = f" {exc.filename}" if exc.filename else ""
    if is_disk_full(exc):
        return f"no space left on device while writing{where}: free some space and run the command again"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write{where} ({exc.strerror}): choose a writable location"
    return f"{exc.strerror or type(exc).__name__}{(':' + where) if where else ''}: check the path and try again"


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (a test runner's capture)
        pass


def _unexpected(exc: BaseException) -> str:
    """One line for an exception kdkit did not expect (a bug): its type and first line, and how to report it."""
    if is_disk_full(exc):
        return f"no space left on device ({type(exc).__name__}): free some space and run the command again"
    detail = (str(exc).strip().splitlines() or [""])[0][:200]
    return (
        f"unexpected {type(exc).__name__}{': ' + detail if detail else ''}: this is a bug in kdkit; run the "
        f"command again with --debug (or {entry.DEBUG_ENV}=1) to see the traceback, and report it"
    )


def handle_errors(fn: F) -> F:
    """Print KdkitErrors as one line and exit 2, kdkit's warnings as one line each; Ctrl-C (and SIGTERM) exit
    130 (143) and say whether there is a run to resume; any other exception is one line (exit 1) unless
    ``--debug`` asks for its traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            _interrupted()  # forget what an earlier command in this process left
            with warnings.catch_warnings():
                warnings.simplefilter("always", KdkitWarning)
                warnings.showwarning = _show_warning
                return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, _click.ClickException):  # typer's own exits and usage errors
            raise
        except KdkitError as exc:
            raise _fail(str(exc), 2) from None
        except ModuleNotFoundError as exc:
            if (exc.name or "kdkit").split(".")[0] == "kdkit":
                raise _fail(_unexpected(exc), entry.BUG_STATUS) from None  # a bug in kdkit, not a missing package
            raise _fail(str(missing_module_error(exc)), 2) from None
        except KeyboardInterrupt as exc:
            err.print(f"[yellow]{entry.interruption(exc)}:[/] {_interrupted()}", soft_wrap=True)
            raise typer.Exit(entry.interrupted_status(exc)) from None
        except BrokenPipeError:  # stdout was closed early (kdkit ... | head): nothing to say, nobody to say it to
            _silence_stdout()
            raise typer.Exit(141) from None
        except OSError as exc:
            raise _fail(_os_error_message(exc), 2) from None
        except Exception as exc:
            raise _fail(_unexpected(exc), entry.BUG_STATUS) from None

    return wrapper  # type: ignore[return-value]


#: the plugin options given before the command (--disable-plugin, --enable-plugin)
_plugin_options: dict[str, tuple[str, ...]] = {}


def plugin_manager() -> "PluginManager":
    """The process-wide plugin host, made on first use with the options given before the command: only the
    commands that need plugins import them (a broken plugin cannot stop ``kdkit evaluate`` or ``export``)."""
    from kdkit import plugins as plugin_host

    return plugin_host.get_plugin_manager(**_plugin_options)


def _version(value: bool) -> None:
    if value:
        out.print(f"kdkit {kdkit.__version__}")
        raise typer.Exit()


def _plugin_names(flag: str, help: str) -> Any:
    return typer.Option(flag, metavar="NAME", help=help)


#: commands that need neither the plugin host nor torch (the callback skips their set-up)
LIGHT_COMMANDS = frozenset({"predict", "web", "tasks"})


@app.callback()
@handle_errors
def main_callback(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    disable_plugin: Annotated[
        list[str] | None,
        _plugin_names("--disable-plugin", "Block a plugin by name (repeatable); also KDKIT_DISABLE_PLUGINS=a,b."),
    ] = None,
    enable_plugin: Annotated[
        list[str] | None,
        _plugin_names(
            "--enable-plugin",
            "Load an entry point or module even when KDKIT_DISABLE_PLUGIN_AUTOLOAD is set (repeatable).",
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help=f"Show the full traceback of an error (also {entry.DEBUG_ENV}=1).")
    ] = False,
) -> None:
    """Knowledge distillation for transformer classifiers."""
    entry.set_debug(debug)
    if ctx.invoked_subcommand in LIGHT_COMMANDS:
        return
    from kdkit import plugins as plugin_host
    from kdkit.progress import quiet_libraries

    quiet_libraries()
    plugin_host.set_plugin_manager(None)  # made on first use (plugin_manager), with these options
    _plugin_options.clear()
    _plugin_options.update(disable=tuple(disable_plugin or ()), enable=tuple(enable_plugin or ()))
