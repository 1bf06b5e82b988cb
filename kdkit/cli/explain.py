"""``kdkit explain``: a token heatmap of an attribution provider's map for one input
(:mod:`kdkit.attribution.explain`)."""

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Literal

import typer

from kdkit.cli.base import command, handle_errors, plugin_manager
from kdkit.cli.flags import options_of
from kdkit.cli.output import err, out

#: kdkit.attribution.explain.Views (that module imports torch, so the CLI names it; a test compares)
Views = Literal["pred", "all"]


@command()
@handle_errors
def explain(
    model: Annotated[str, typer.Argument(help="Run directory (its best/ model) or model directory.")],
    text: Annotated[str, typer.Argument(help="The text to explain.")],
    text_pair: Annotated[str | None, typer.Argument(help="Its second text, for sentence-pair tasks.")] = None,
    task: Annotated[
        str | None,
        typer.Option("--task", "-t", metavar="TASK", help="Task of the model \\[default: the one it records]."),
    ] = None,
    provider: Annotated[str, typer.Option(metavar="NAME", help="Attribution provider (see 'kdkit plugins').")] = "ig",
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            metavar="NAME.OPTION=VALUE",
            help="Provider option (repeatable), e.g. ig.steps=32.",
        ),
    ] = None,
    views: Annotated[Views, typer.Option(help="pred (the predicted class) or all (one map per class).")] = "pred",
    html: Annotated[Path | None, typer.Option("--html", help="Also write the heatmap as an HTML page.")] = None,
    svg: Annotated[Path | None, typer.Option("--svg", help="Also write the heatmap as an SVG image.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print tokens and maps as JSON.")] = False,
) -> None:
    """Show which tokens a prediction rests on: a token heatmap of attributions at the embedding output."""
    from kdkit.attribution.explain import explain_text, load_for_explain
    from kdkit.attribution.heatmaps import check_output_file, render_terminal, write_html, write_svg
    from kdkit.data.tasks import get_task
    from kdkit.data.texts import check_text_encoding
    from kdkit.plugins.options import build_provider
    from kdkit.records.safe_paths import check_not_an_input

    check_text_encoding([text], [text_pair] if text_pair is not None else None)
    for path, flag in ((html, "--html"), (svg, "--svg")):
        if path is not None:
            check_output_file(path, flag)
            check_not_an_input(path, {"model": model}, may_hold_output=["model"], flag=flag)
    attribution = build_provider(plugin_manager(), provider, options_of(provider, set_ or []))
    classifier, tokenizer, task_spec, max_length = load_for_explain(model, get_task(task) if task else None)
    result = explain_text(
        classifier, tokenizer, task_spec, attribution, text, text_pair, views=views, max_length=max_length
    )
    if as_json:
        out.print_json(json.dumps({"model": model, "task": task_spec.name, **asdict(result)}))
    else:
        render_terminal(result, out, title=task_spec.name)
    heading = text if text_pair is None else f"{text} | {text_pair}"
    for path, write in ((html, write_html), (svg, write_svg)):
        if path is not None:
            write(path, [(heading, [(model, result)])])
            err.print(f"heatmap written to {path}")
