"""The Typer application (``app``, also ``kdkit.cli.app``) that every command registers on with :func:`command`,
and how a command reports errors.

- :func:`handle_errors` prints a :class:`~kdkit.errors.KdkitError` raised by a command as one line
  (``error: problem: fix``) and exits with status 2; so is a missing package, with the line that installs it
  (:mod:`kdkit.extras`).
- :func:`main_callback` (the options before the command) sets up the plugin host, except for torch-free commands.

Nothing here imports torch.
"""

import functools
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

import kdkit
from kdkit.cli.command import KdkitCommand, KdkitGroup
from kdkit.cli.output import err, out, print_error
from kdkit.errors import KdkitError, KdkitWarning
from kdkit.extras import missing_module_error

if TYPE_CHECKING:
    from kdkit.plugins import PluginManager

F = TypeVar("F", bound=Callable[..., Any])

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


def handle_errors(fn: F) -> F:
    """Print KdkitErrors as one line and exit 2, kdkit's warnings as one line each; Ctrl-C exits 130 and says
    whether there is a run to resume."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _interrupted()  # forget what an earlier command in this process left
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", KdkitWarning)
                warnings.showwarning = _show_warning
                return fn(*args, **kwargs)
        except KdkitError as exc:
            print_error(str(exc))
            raise typer.Exit(2) from None
        except ModuleNotFoundError as exc:
            if (exc.name or "kdkit").split(".")[0] == "kdkit":
                raise  # a bug in kdkit itself, not a missing package
            print_error(str(missing_module_error(exc)))
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print(f"[yellow]interrupted:[/] {_interrupted()}", soft_wrap=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def plugin_manager() -> "PluginManager":
    """The process-wide plugin host that :func:`main_callback` set up."""
    from kdkit import plugins as plugin_host

    return plugin_host.get_plugin_manager()


def _version(value: bool) -> None:
    if value:
        out.print(f"kdkit {kdkit.__version__}")
        raise typer.Exit()


def _plugin_names(flag: str, help: str) -> Any:
    return typer.Option(flag, metavar="NAME", help=help)


#: commands that need neither the plugin host nor torch (the callback skips their set-up)
LIGHT_COMMANDS = frozenset({"predict", "web", "tasks"})


@app.callback()
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
) -> None:
    """Knowledge distillation for transformer classifiers."""
    if ctx.invoked_subcommand in LIGHT_COMMANDS:
        return
    from kdkit import plugins as plugin_host
    from kdkit.progress import quiet_libraries

    quiet_libraries()
    plugin_host.set_plugin_manager(plugin_host.PluginManager(disable=disable_plugin or (), enable=enable_plugin or ()))
