"""``kdkit compress``: the most accurate student within a latency, size or accuracy budget
(:func:`kdkit.compress.compress`)."""

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from kdkit.cli.base import command, handle_errors, plugin_manager
from kdkit.cli.flags import DATA, FlagSet, config_flags
from kdkit.cli.output import err, out
from kdkit.config import DataConfig, TrainingConfig, build_config

BUDGET_PANEL = "Budget"
SEARCH_PANEL = "Search"
TRAINING_PANEL = "Training (every trial)"
SPACE_HELP = (
    "Search for the most accurate student that meets a budget. Each trial distils a copy:N student, exports it "
    "to ONNX and measures it as deployed. Search space: depth (copy:N, every N below the teacher's), loss (kd; "
    "--losses kd,adkd,kd+hidden), temperature, alpha, learning rate, epochs (1 to --max-epochs), max length "
    "(a percentile of the data's token lengths: 90, 95, 99, 100), fp32 or int8, full or pruned vocabulary."
)


def _opt(*decls: str, help: str, panel: str = SEARCH_PANEL) -> Any:
    return typer.Option(*decls, help=help, rich_help_panel=panel)


def _numbers(text: str | None) -> tuple[int, ...] | None:
    from kdkit.errors import ConfigError

    if not text:
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--depths {text}: not a list of numbers", "give e.g. --depths 1,2,3") from None


@command(help=SPACE_HELP)
@handle_errors
@config_flags(DATA, FlagSet(TrainingConfig, "training", fields=("batch_size", "seed", "device"), panel=TRAINING_PANEL))
def compress(
    teacher: Annotated[Path, _opt("--teacher", help="The fine-tuned teacher (a model folder).")],
    output: Annotated[Path, _opt("--output", "-o", help="Output folder: study, trials, report.md, student/.")],
    max_latency_ms: Annotated[
        float | None, _opt(help="Largest p95 latency, ms (onnxruntime, batch 1, dev texts).", panel=BUDGET_PANEL)
    ] = None,
    max_size_mb: Annotated[float | None, _opt(help="Largest ONNX model file, MB.", panel=BUDGET_PANEL)] = None,
    max_drop: Annotated[
        float | None, _opt(help="Largest drop of the main metric below the teacher, points.", panel=BUDGET_PANEL)
    ] = None,
    trials: Annotated[int, _opt(help="Finished trials the study should hold (a rerun continues it).")] = 20,
    threads: Annotated[int, _opt(help="onnxruntime threads of the latency measurement.")] = 1,
    storage: Annotated[
        str | None,
        _opt(help="Optuna storage URL (sqlite:///F, postgresql://..., journal:F) [default: OUTPUT/study.db]."),
    ] = None,
    study_name: Annotated[str, _opt(help="The study's name in the storage.")] = "kdkit-compress",
    losses: Annotated[str, _opt(help="Losses to search, comma-separated: kd, adkd, kd+hidden.")] = "kd",
    depths: Annotated[str | None, _opt(help="copy:N depths to search, e.g. 1,2,3 [default: every N].")] = None,
    max_epochs: Annotated[int, _opt(help="Most epochs a trial trains.")] = 3,
    int8: Annotated[bool, _opt("--int8/--no-int8", help="Let the search deploy int8.")] = True,
    vocab_pruning: Annotated[
        bool, _opt("--vocab-pruning/--no-vocab-pruning", help="Let the search prune the vocabulary.")
    ] = True,
    exporter: Annotated[Literal["dynamo", "torchscript"], _opt(help="ONNX exporter.")] = "dynamo",
    sampler_seed: Annotated[int | None, _opt(help="Seed of the Optuna sampler.")] = None,
    *,
    flags: dict[str, Any],
) -> None:
    from kdkit.compress import Budget, CompressOptions
    from kdkit.compress import compress as run

    options = CompressOptions(
        teacher=teacher, data=build_config(DataConfig, flags.get("data", {})), output=output,
        budget=Budget(max_latency_ms, max_size_mb, max_drop), trials=trials,
        losses=tuple(name.strip() for name in losses.split(",") if name.strip()), depths=_numbers(depths),
        max_epochs=max_epochs, int8=int8, vocab_pruning=vocab_pruning, threads=threads, storage=storage,
        study_name=study_name, exporter=exporter, training=flags.get("training", {}), seed=sampler_seed,
    )  # fmt: skip
    result = run(options, plugins=plugin_manager(), console=err)
    chosen = result.chosen
    assert chosen is not None  # compress raises BudgetUnmet otherwise
    measured = chosen["measured"]
    out.print(
        f"chosen: trial #{chosen['number']} ({chosen['params'].get('student')}, {measured['precision']}): "
        f"score {100 * measured['score']:.2f} (teacher {100 * result.teacher['score']:.2f}), "
        f"p95 {measured['p95_ms']:.2f} ms (teacher {result.teacher['p95_ms']:.2f} ms), "
        f"{measured['size_bytes'] / 1e6:.1f} MB; exported to {result.output / 'student'}; report {result.report}"
    )
