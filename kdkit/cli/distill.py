"""``kdkit distill``: distil a teacher into a student with a loss plugin (:func:`kdkit.api.distill`)."""

from typing import Annotated, Any

import typer

from kdkit.cli.base import command, handle_errors, plugin_manager
from kdkit.cli.flags import (
    DATA,
    RUN,
    TRAINING,
    ConfigOpt,
    command_flags,
    config_flags,
    parse_set_options,
    with_config_file,
)
from kdkit.cli.output import err, out, print_metrics
from kdkit.config import DistillConfig, deep_merge

SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="NAME.OPTION=VALUE",
        help="Set an option of the loss or of a provider it uses (repeatable), e.g. kd.temperature=2; "
        "'kdkit plugins' lists them.",
        rich_help_panel="Plugin options",
    ),
]


@command()
@handle_errors
@config_flags(command_flags(DistillConfig), DATA, TRAINING, RUN)
def distill(set_: SetOpt = None, config: ConfigOpt = None, *, flags: dict[str, Any]) -> None:
    """Distil a teacher into a smaller student with a loss plugin."""
    from kdkit import api

    options = parse_set_options(set_ or [])
    raw = with_config_file(config, flags)
    if options:
        raw = deep_merge(raw, {"options": options})
    manager = plugin_manager()
    cfg = api.resolve_distill_config(raw, manager)
    result = api.distill(cfg, plugins=manager, console=err)
    print_metrics(f"{result.summary['task']['name']} validation, student (best checkpoint)", result.metrics)
    out.print(f"student saved to {result.run_dir}")
