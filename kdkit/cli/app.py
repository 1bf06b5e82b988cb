"""The Typer application every command registers on, its consoles, and how the CLI reports errors.

- :class:`KdkitCommand` (every command's click class) names each option's value in ``--help`` (``PATH``, ``N``,
  ``FLOAT``, ``[a|b]`` for choices, nothing for switches) and turns click's "Invalid value" usage error into
  kdkit's one line (``error: unknown views 'gold': use one of pred, all``), exit status 2.
- :func:`handle_errors` prints a :class:`~kdkit.errors.KdkitError` raised by a command as that one line.
- :func:`main_callback` (the options before the command) sets up the plugin host, except for torch-free commands.

Nothing here imports torch.
"""

import functools
import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperArgument, TyperGroup, TyperOption

import kdkit
from kdkit.errors import KdkitError

if TYPE_CHECKING:
    from kdkit.plugins import PluginManager

F = TypeVar("F", bound=Callable[..., Any])

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

#: ``unknown <noun> 'value'`` for a bad choice of a hand-written option (default: the option's name)
CHOICE_NOUNS = {"quantize": "quantisation"}
#: value placeholders by type, for options that do not name their own (``metavar=``)
_TYPE_METAVARS = {int: "N", float: "FLOAT", Path: "PATH"}
#: click's "missing argument" error (typer may bundle its own click: take the class beside its BadParameter)
_MissingParameter = importlib.import_module(typer.BadParameter.__module__).MissingParameter


def _value_type(annotation: Any) -> Any:
    """What one value of a parameter is: ``Annotated[int | None, ...]`` -> ``int``, ``list[str]`` -> ``str``."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        annotation = args[0] if len(args) == 1 else annotation
    if get_origin(annotation) is list:
        annotation = get_args(annotation)[0]
    return annotation


def choices_of(kind: Any) -> tuple[Any, ...] | None:
    """The values of a ``Literal`` choice (None for any other type)."""
    return get_args(kind) if get_origin(kind) is Literal else None


def _metavar(param: TyperOption, kind: Any) -> str:
    """What ``--help`` shows after an option: nothing for a switch, the choices, or a placeholder."""
    if param.is_flag:
        return ""
    choices = choices_of(kind)
    if choices is not None:
        return "[" + "|".join(map(str, choices)) + "]"
    return _TYPE_METAVARS.get(kind) or (param.name or "value").upper()


class _NamedArgument(TyperArgument):
    """A positional argument whose upper-case name (``MODEL``) is its placeholder: no ``<str>`` after it."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _name_values(params: list[Any], kinds: dict[str, Any]) -> None:
    """Give every option and argument a readable placeholder in ``--help`` (``kinds``: name -> value type)."""
    for param in params:
        if isinstance(param, TyperArgument):
            param.metavar = param.metavar or (param.name or "value").upper()
            param.__class__ = _NamedArgument
        elif isinstance(param, TyperOption) and param.metavar is None:
            param.metavar = _metavar(param, kinds.get(param.name or ""))


def _value_types(callback: Callable[..., Any] | None) -> dict[str, Any]:
    """Each parameter's value type, from the command function's signature (config flags included)."""
    if callback is None:
        return {}
    parameters = inspect.signature(callback, eval_str=True).parameters.values()
    return {p.name: _value_type(p.annotation) for p in parameters}


def bad_value_message(param: Any, value: Any, reason: str, command: Any) -> str:
    """One line for click's "Invalid value" error: the value, the option (or config field), the valid values."""
    name = param.name or ""
    fields = config_fields(command)
    choices = choices_of(_value_types(command.callback).get(name))
    if choices is not None:
        reason = f"use one of {', '.join(map(str, choices))}"
    if name in fields:
        return f"bad value {value!r} for {fields[name]}: {reason}"
    if choices is not None:
        return f"unknown {CHOICE_NOUNS.get(name, name.replace('_', ' '))} {value!r}: {reason}"
    return f"bad value {value!r} for {'/'.join(getattr(param, 'opts', [])) or name}: {reason}"


def _switch(option: Any) -> Any:
    if option is not None:
        option.metavar = ""  # --help takes no value
    return option


class KdkitCommand(typer.core.TyperCommand):
    """A kdkit command: readable value placeholders in ``--help``, and bad option values as one line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _name_values(self.params, _value_types(self.callback))

    def get_help_option(self, ctx: Any) -> Any:
        return _switch(super().get_help_option(ctx))

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        given = list(args)  # click consumes the list
        try:
            return super().parse_args(ctx, args)
        except typer.BadParameter as exc:
            if isinstance(exc, _MissingParameter) or exc.param is None:
                raise
            raw, _, _ = self.make_parser(ctx).parse_args(args=given)
            print_error(bad_value_message(exc.param, raw.get(exc.param.name), exc.message, self))
            raise typer.Exit(2) from None


class KdkitGroup(TyperGroup):
    """The ``kdkit`` group: the options before the command get readable placeholders too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _name_values(self.params, _value_types(self.callback))

    def get_help_option(self, ctx: Any) -> Any:
        return _switch(super().get_help_option(ctx))


def config_fields(command: Any) -> dict[str, str]:
    """``{parameter: "data.padding"}`` for the flags :func:`kdkit.cli.flags.config_flags` made from config fields."""
    return dict(getattr(command.callback, "config_fields", {}))


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


def print_error(message: str) -> None:
    """``error: MESSAGE`` on stderr, on one line (the message is not read as rich markup)."""
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def handle_errors(fn: F) -> F:
    """Print KdkitErrors as one line and exit 2; Ctrl-C exits 130 and says the run can be resumed."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KdkitError as exc:
            print_error(str(exc))
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted:[/] the unfinished run is kept; continue it with --resume")
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


#: commands that need neither the plugin host nor torch (the callback skips their set-up)
LIGHT_COMMANDS = frozenset({"predict"})


@app.callback()
def main_callback(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    disable_plugin: Annotated[
        list[str] | None,
        typer.Option(
            "--disable-plugin",
            metavar="NAME",
            help="Block a plugin by name (repeatable); also KDKIT_DISABLE_PLUGINS=a,b.",
        ),
    ] = None,
    enable_plugin: Annotated[
        list[str] | None,
        typer.Option(
            "--enable-plugin",
            metavar="NAME",
            help="Load an entry point or module even when KDKIT_DISABLE_PLUGIN_AUTOLOAD is set (repeatable).",
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
