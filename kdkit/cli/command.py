"""The click classes of kdkit's commands: readable ``--help`` placeholders, and bad option values as one line.

- Every option names its value in ``--help``: ``PATH``, ``N``, ``FLOAT``, ``[a|b]`` for a choice (a ``Literal``),
  the option's own ``metavar``, and nothing for a switch; a positional argument is shown by its upper-case name.
- Click's "Invalid value" usage error (a boxed usage message) becomes kdkit's one line with exit status 2:
  ``error: unknown views 'gold': use one of pred, all``, or for a flag made from a config field
  ``error: bad value 'sideways' for data.padding: use one of dynamic, max_length``.
"""

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from kdkit.cli.output import print_error

#: ``unknown <noun> 'value'`` for a bad choice of a hand-written option (default: the option's name)
CHOICE_NOUNS = {"quantize": "quantisation"}
#: value placeholders by type, for options that do not name their own (``metavar=``)
_TYPE_METAVARS = {int: "N", float: "FLOAT", Path: "PATH"}
#: click's "missing argument" error (typer may bundle its own click: take the class beside its BadParameter)
_MissingParameter = importlib.import_module(typer.BadParameter.__module__).MissingParameter


def value_type(annotation: Any) -> Any:
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
    return {p.name: value_type(p.annotation) for p in parameters}


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

    #: the command may use the plugin host (and so torch): the callback sets it up first
    needs_plugins: ClassVar[bool] = True

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


class LightCommand(KdkitCommand):
    """A command that needs neither the plugin host nor torch (``kdkit predict``, ``kdkit tasks``): the callback
    skips their set-up."""

    needs_plugins = False


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
