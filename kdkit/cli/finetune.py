"""``kdkit finetune``: train a teacher with the task loss (:func:`kdkit.api.finetune`)."""

from typing import Any

from kdkit.cli.base import command, handle_errors, plugin_manager
from kdkit.cli.flags import DATA, RUN, TRAINING, ConfigOpt, command_flags, config_flags, with_config_file
from kdkit.cli.output import err, out, print_metrics
from kdkit.config import FinetuneConfig, build_config


@command()
@handle_errors
@config_flags(command_flags(FinetuneConfig), DATA, TRAINING, RUN)
def finetune(config: ConfigOpt = None, *, flags: dict[str, Any]) -> None:
    """Fine-tune a teacher on a task (the task loss alone)."""
    from kdkit import api

    cfg = build_config(FinetuneConfig, with_config_file(config, flags))
    result = api.finetune(cfg, plugins=plugin_manager(), console=err)
    print_metrics(f"{result.summary['task']['name']} validation (best checkpoint)", result.metrics)
    out.print(f"teacher saved to {result.run_dir}")
