"""Command-line flags made from the config models: one flag per field, its help the field's description.

A field added to :class:`~kdkit.config.DataConfig` or :class:`~kdkit.config.TrainingConfig` (or a run-level
field of ``FinetuneConfig``/``DistillConfig``) is a flag of every command that takes that model, with the
field's description as help and its default shown, and nothing else to keep in step::

    @command()
    @handle_errors
    @config_flags(DATA, TRAINING, RUN)
    def finetune(config: ConfigOpt = None, *, flags: dict[str, Any]) -> None:
        ...  # flags == {"data": {"max_length": 64}, "quiet": True}: only the flags that were given

:func:`config_flags` extends the command's ``__signature__`` with one keyword parameter per field (Typer reads
a command's options from ``inspect.signature``) and regroups the values into the nested config dict. A flag
that was not given is left out, so it does not override a ``--config`` file. Only the presentation is chosen
here: the flag names users know (:data:`FLAG_NAMES`), the panels, and placeholders for string values.

The rest of what a command line gives is read here too: ``--config FILE`` (YAML, TOML or JSON:
:func:`read_config_file`, under the flags: :func:`with_config_file`) and ``--set NAME.OPTION=VALUE``
(:func:`parse_set_options`). The library takes the resulting dicts and config models.
"""

import functools
import inspect
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import typer
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from rich.markup import escape

from kdkit.cli.command import value_type
from kdkit.config import LOSS_SEPARATOR, DataConfig, RunConfig, TrainingConfig, check_sections, deep_merge
from kdkit.data.texts import load_yaml, read_utf8
from kdkit.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

F = TypeVar("F", bound=Callable[..., Any])

DATA_PANEL = "Data"
TRAINING_PANEL = "Training"
RUN_PANEL = "Run"

#: flag names other than ``--field-name``: short options, and ``--plugin`` for the loss
FLAG_NAMES: dict[str, tuple[str, ...]] = {
    "task": ("--task", "-t"),
    "learning_rate": ("--learning-rate", "--lr"),
    "loss": ("--plugin", "-p"),
    "model": ("--model", "-m"),
    "output": ("--output", "-o"),
    "quiet": ("--quiet", "-q"),
    "transfer_files": ("--transfer-file",),
}
#: flags that may be repeated, and what joins their values into the field (``--plugin adkd --plugin hidden``
#: -> ``loss = "adkd+hidden"``, a composite loss: kdkit.losses.composite); None: the field takes the list
REPEATABLE: dict[str, str | None] = {"loss": LOSS_SEPARATOR, "transfer_files": None}
#: what the help of a repeatable flag adds to its field's description
REPEAT_HELP = {
    "loss": "Repeat it to sum the terms of several: --plugin adkd --plugin hidden.",
    "transfer_files": "Repeat it for several files.",
}
#: placeholders of string values (numbers, paths and choices get theirs from the type)
METAVARS = {
    "task": "TASK",
    "text_columns": "A[,B]",
    "label_column": "NAME",
    "label_names": "A,B,...",
    "loss": "NAME",
    "teacher": "MODEL",
    "base_model": "MODEL",
    "model": "MODEL",
    "student": "copy:N|MODEL",
    "preset": "NAME",
    "transfer_files": "FILE",
}


def _is_flaggable(info: FieldInfo) -> bool:
    """Every field is a flag but a section (``data``) and a mapping (``options``, set with ``--set``)."""
    annotation = info.annotation
    is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return not is_section and get_origin(annotation) is not dict


@dataclass(frozen=True)
class FlagSet:
    """Flags for fields of ``model``, shown under ``panel``, whose values go to ``section`` of the run config.

    Attributes:
        fields: the fields to make flags of (default: every field that can be a flag).
        section: ``data``, ``training``, or ``""`` for the top level.
        switches: bool fields are one-way switches (``--quiet``) instead of ``--x/--no-x`` pairs.
        help: help texts that replace a field's description for one command.
    """

    model: type[BaseModel]
    section: str = ""
    fields: tuple[str, ...] | None = None
    panel: str | None = None
    switches: bool = False
    help: Mapping[str, str] = field(default_factory=dict)

    def names(self) -> list[str]:
        fields = self.model.model_fields
        if self.fields is None:
            return [name for name, info in fields.items() if _is_flaggable(info)]
        unknown = [name for name in self.fields if name not in fields]
        if unknown:
            raise TypeError(f"{self.model.__name__} has no field {', '.join(unknown)}")
        return list(self.fields)


#: every data option, every training option, and the run options (--output, --overwrite, --resume, --quiet)
DATA = FlagSet(DataConfig, "data", panel=DATA_PANEL)
TRAINING = FlagSet(TrainingConfig, "training", panel=TRAINING_PANEL)
RUN = FlagSet(RunConfig, panel=RUN_PANEL, switches=True)


#: the data options that select and read validation data (for the commands that do not train)
VALIDATION_DATA_FIELDS = (
    "task",
    "data_dir",
    "validation_file",
    "text_columns",
    "label_column",
    "label_names",
    "task_type",
    "max_eval_samples",
)


def command_flags(model: type[RunConfig]) -> FlagSet:
    """The fields a command's config adds to :class:`RunConfig` (``--model``; ``--plugin``, ``--teacher`` ...)."""
    own = [name for name, info in model.model_fields.items() if name not in RunConfig.model_fields]
    return FlagSet(model, fields=tuple(name for name in own if _is_flaggable(model.model_fields[name])))


def _cli_type(annotation: Any) -> Any:
    """The type a flag parses to: the field's, less ``None``; a list or a parsed spec is read as a string."""
    lists = [arg for arg in (annotation, *get_args(annotation)) if get_origin(arg) is list]
    if any(get_args(arg) != (str,) for arg in lists):
        raise TypeError(f"no flag for a field of type {annotation}: only lists of strings (a,b) are read")
    kind = value_type(annotation)  # list[str] -> str: "a,b", which the model splits
    if get_origin(kind) is Literal or kind in (bool, int, float, str, Path):
        return kind
    if isinstance(kind, type) and callable(getattr(kind, "parse", None)):
        return str  # a spec the model parses (StudentSpec)
    raise TypeError(f"no flag for a field of type {annotation}: teach kdkit/cli/flags.py to read it")


def _default_text(value: Any) -> str | None:
    """A default as ``--help`` shows it (None: nothing shown)."""
    if value is None or value == []:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _help(text: str, default: str | None) -> str:
    """The field's description as a sentence, then its default (escaped: Typer reads help as rich markup)."""
    text = text.strip()
    first_word = text.split(" ", 1)[0]
    if ":" not in first_word.rstrip(":"):  # keep a literal such as copy:N as written
        text = text[:1].upper() + text[1:]
    text += "" if text.endswith(".") else "."
    return escape(text + (f" [default: {default}]" if default is not None else ""))


def _parameter(name: str, info: FieldInfo, flags: FlagSet) -> inspect.Parameter:
    """The keyword parameter Typer turns into the flag of field ``name``."""
    if not info.description:
        raise TypeError(f"{flags.model.__name__}.{name} has no description: it is the help of its flag")
    kind = _cli_type(info.annotation)
    dash = name.replace("_", "-")
    decls = FLAG_NAMES.get(name, (f"--{dash}",))
    shown = _default_text(info.get_default(call_default_factory=True))
    default: Any = None
    if kind is bool and flags.switches:
        default, shown = False, None
    elif kind is bool:
        decls = FLAG_NAMES.get(name, (f"--{dash}/--no-{dash}",))
    text = _help(flags.help.get(name) or info.description, shown)
    if name in REPEATABLE:
        kind = list[kind]  # type: ignore[valid-type]
        text += " " + escape(REPEAT_HELP[name])
    option = typer.Option(
        *decls,
        help=text,
        show_default=False,
        rich_help_panel=flags.panel,
        metavar=METAVARS.get(name),
    )
    annotation = kind if default is False else kind | None
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[annotation, option]
    )


def _is_argument(parameter: inspect.Parameter) -> bool:
    return any(
        isinstance(meta, typer.models.ArgumentInfo) for meta in getattr(parameter.annotation, "__metadata__", ())
    )


def _nest(values: dict[str, Any], sets: dict[str, FlagSet]) -> dict[str, Any]:
    """The flags that were given, as a nested config dict (paths as strings)."""
    result: dict[str, Any] = {}
    for name, value in values.items():
        flags = sets[name]
        if value is None or (value is False and flags.switches):
            continue
        target = result.setdefault(flags.section, {}) if flags.section else result
        separator = REPEATABLE.get(name)
        if separator is not None and isinstance(value, list):
            value = separator.join(value)
        target[name] = str(value) if isinstance(value, Path) else value
    return result


def config_flags(*flag_sets: FlagSet) -> Callable[[F], F]:
    """Give a command one flag per field of ``flag_sets``; it receives the given ones as ``flags`` (nested)."""

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn, eval_str=True)
        own = [p.replace(kind=p.KEYWORD_ONLY) for p in signature.parameters.values() if p.name != "flags"]
        sets: dict[str, FlagSet] = {}
        made: list[inspect.Parameter] = []
        for flags in flag_sets:
            for name in flags.names():
                if name in sets or any(p.name == name for p in own):
                    raise TypeError(f"{fn.__name__} has two parameters named {name}")
                sets[name] = flags
                made.append(_parameter(name, flags.model.model_fields[name], flags))

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in sets}
            return fn(**kwargs, flags=_nest(given, sets))

        arguments = [p for p in own if _is_argument(p)]
        parameters = [*arguments, *made, *(p for p in own if not _is_argument(p))]
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": signature.return_annotation}
        wrapper.config_fields = {  # type: ignore[attr-defined]
            name: f"{flags.section}.{name}" if flags.section else name for name, flags in sets.items()
        }
        return wrapper  # type: ignore[return-value]

    return decorate


# -- hand-written options shared by several commands -------------------------------------------------

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML, TOML or JSON config; flags override it.", rich_help_panel=RUN_PANEL),
]


def with_config_file(config_file: Path | None, flags: dict[str, Any]) -> dict[str, Any]:
    """The run config as a dict: ``--config FILE`` (if given) with the flags that were given on top."""
    return deep_merge(read_config_file(config_file) if config_file else {}, flags)


# -- --config FILE and --set NAME.OPTION=VALUE --------------------------------------------------------


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML, TOML or JSON config file into a dict."""
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory", "give the YAML, TOML or JSON file itself to --config")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist", "check the path given to --config")
    text = read_utf8(path, error=ConfigError)
    try:
        if path.suffix in (".yaml", ".yml"):
            data = load_yaml(text, f"config file {path}") or {}
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {path} has an unknown format", "use .yaml, .yml, .toml or .json")
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        first_line = str(exc).splitlines()[0]
        raise ConfigError(f"cannot parse config file {path}: {first_line}", "fix its syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at top level", "see docs/configuration.md")
    check_sections(data, f"config file {path}")
    return data


def parse_set_options(assignments: list[str]) -> dict[str, dict[str, Any]]:
    """Parse ``["kd.temperature=2", "adkd.views=all"]`` into ``{"kd": {"temperature": 2}, ...}``.

    Values are read as YAML scalars (``2`` is an int, ``0.5`` a float, ``true`` a bool, else a string).
    """
    options: dict[str, dict[str, Any]] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        component, dot, option = key.strip().partition(".")
        if not sep or not dot or not component or not option:
            raise ConfigError(f"cannot read --set {item!r}", "write --set COMPONENT.OPTION=VALUE, e.g. kd.alpha=0.5")
        try:
            value = load_yaml(raw, f"--set {key.strip()}") if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        options.setdefault(component, {})[option] = value
    return options


def options_of(component: str, assignments: list[str]) -> dict[str, Any]:
    """The options of ``component`` in ``--set NAME.OPTION=VALUE`` assignments, all of which must name it (a
    command of one component: ``kdkit explain --provider ig --set ig.steps=32``)."""
    options = parse_set_options(assignments)
    unknown = [name for name in options if name != component]
    if unknown:
        raise ConfigError(
            f"--set {unknown[0]}.* does not name the provider '{component}'", f"use --set {component}.OPTION=V"
        )
    return options.get(component, {})
