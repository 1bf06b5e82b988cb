"""``kdkit tasks``: the built-in GLUE tasks (:data:`kdkit.data.tasks.GLUE_TASKS`)."""

import json
from typing import Annotated

import typer
from rich.table import Table

from kdkit.cli.base import command, handle_errors
from kdkit.cli.output import out


@command(light=True)
@handle_errors
def tasks(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the built-in tasks: text fields, labels and metrics."""
    from kdkit.data.tasks import GLUE_TASKS

    if as_json:
        out.print_json(json.dumps({name: spec.to_dict() for name, spec in GLUE_TASKS.items()}))
        return
    table = Table(title="GLUE tasks (custom data: --train-file/--validation-file)")
    for column in ("task", "text fields", "labels", "metrics", "description"):
        table.add_column(column)
    for spec in GLUE_TASKS.values():
        labels = ", ".join(spec.label_names) if spec.label_names else "regression (1 output)"
        table.add_row(spec.name, ", ".join(spec.text_fields), labels, ", ".join(spec.metrics), spec.description)
    out.print(table)
