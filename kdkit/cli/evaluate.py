"""``kdkit evaluate``: a saved model on a task's validation split(s) (:func:`kdkit.api.evaluate`)."""

import json
from typing import Annotated, Any

import typer

from kdkit.cli.base import command, handle_errors
from kdkit.cli.flags import DATA_PANEL, TRAINING_PANEL, VALIDATION_DATA_FIELDS, FlagSet, config_flags
from kdkit.cli.output import out, print_metrics
from kdkit.config import DataConfig, TrainingConfig, build_config

#: the data options of evaluate: the validation data, and how long its inputs may be
EVALUATE_DATA_FIELDS = (*VALIDATION_DATA_FIELDS, "max_length")


@command()
@handle_errors
@config_flags(
    FlagSet(DataConfig, "data", fields=EVALUATE_DATA_FIELDS, panel=DATA_PANEL),
    FlagSet(TrainingConfig, "training", fields=("device", "precision"), panel=TRAINING_PANEL),
)
def evaluate(
    model: Annotated[str, typer.Argument(help="Run directory (uses its best/ model), model directory or hub id.")],
    batch_size: Annotated[int, typer.Option(min=1, help="Evaluation batch size.")] = 64,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    *,
    flags: dict[str, Any],
) -> None:
    """Evaluate a model on a task's validation set(s)."""
    from kdkit import api

    data = build_config(DataConfig, flags.get("data", {}))
    training = flags.get("training", {})
    task_spec, metrics = api.evaluate(
        model,
        data,
        device=training.get("device", "auto"),
        precision=training.get("precision", "auto"),
        batch_size=batch_size,
    )
    if as_json:
        out.print_json(json.dumps({"task": task_spec.name, "metrics": metrics}))
    else:
        print_metrics(f"{task_spec.name}: {model}", metrics)
