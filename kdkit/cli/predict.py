"""``kdkit predict``: classify texts with an export (:class:`kdkit.export.inference.OnnxClassifier`), without torch.

This module imports nothing of kdkit's training side: ``kdkit predict`` runs where only onnxruntime,
tokenizers and numpy are installed besides the CLI's own needs (the callback skips the plugin host for it).
"""

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.table import Table

from kdkit.cli.base import command, handle_errors
from kdkit.cli.output import err, out
from kdkit.errors import ConfigError, DataError

if TYPE_CHECKING:
    from kdkit.export.inference import OnnxClassifier

#: kdkit.export.inference.Precision (importing that module loads onnxruntime, so the CLI names it; a test compares)
Precision = Literal["auto", "fp32", "int8"]


def _print_predictions(
    classifier: "OnnxClassifier", texts: list[str], pairs: list[str] | None, results: list[dict[str, Any]]
) -> None:
    regression = classifier.label_names is None
    table = Table(title=f"{classifier.task_name} ({classifier.precision}, {classifier.model_file.name})")
    table.add_column("#", justify="right")
    table.add_column("text", overflow="fold")
    table.add_column("value" if regression else "label")
    if not regression:
        table.add_column("score", justify="right")
    for number, (text, r) in enumerate(zip(texts, results, strict=True), start=1):
        shown = text if len(text) <= 80 else text[:77] + "..."
        if pairs:
            shown += f" | {pairs[number - 1][:40]}"
        if regression:
            table.add_row(str(number), shown, f"{r['score']:.4f}")
        else:
            table.add_row(str(number), shown, str(r["label"]), f"{r['score']:.4f}" + (" *" if r["truncated"] else ""))
    if any(r["truncated"] for r in results):
        table.caption = f"* truncated to {classifier.max_length} tokens"
    out.print(table)


@command(light=True)
@handle_errors
def predict(
    model: Annotated[
        Path, typer.Argument(help="Export folder from 'kdkit export --onnx' (or a run directory with onnx/).")
    ],
    text: Annotated[str | None, typer.Argument(help="The text to classify.")] = None,
    text_pair: Annotated[str | None, typer.Argument(help="Its second text, for sentence-pair tasks.")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Classify the texts of a CSV, TSV or JSONL file.")
    ] = None,
    text_column: Annotated[
        str | None,
        typer.Option(
            metavar="A[,B]", help="Text column(s) of --file: a or a,b \\[default: the task's text fields, else 'text']."
        ),
    ] = None,
    precision: Annotated[Precision, typer.Option(help="auto (int8 when exported, else fp32), fp32 or int8.")] = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per onnxruntime call.")] = 32,
    threads: Annotated[
        int | None, typer.Option(min=1, help="onnxruntime intra-op threads \\[default: onnxruntime's].")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the predictions as JSON.")] = False,
) -> None:
    """Classify texts with an exported model: onnxruntime and tokenizers only, no torch."""
    from kdkit.data.texts import check_text_encoding
    from kdkit.errors import TruncationWarning
    from kdkit.export.inference import OnnxClassifier, read_texts
    from kdkit.records.provenance import of_export

    if file is not None and text is not None:
        raise ConfigError("both a text and --file given", "give one or the other")
    if file is None and text is None:
        raise DataError("nothing to classify", 'give a text (kdkit predict DIR "text") or --file')
    check_text_encoding([text] if text is not None else [], [text_pair] if text_pair is not None else None)
    export = of_export(model)  # the export folder (a run directory's onnx/) and the task it records
    assert export.export_dir is not None and export.task is not None
    classifier = OnnxClassifier(export.export_dir, precision=precision, threads=threads)
    if file is not None:
        texts, pairs = read_texts(file, text_column, export.task.text_fields)
    else:
        assert text is not None
        texts, pairs = [text], ([text_pair] if text_pair is not None else None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncationWarning)
        results = classifier.predict(texts, pairs, batch_size=batch_size)
    for warning in caught:
        if issubclass(warning.category, TruncationWarning):
            err.print(f"[yellow]warning:[/] {warning.message} (max length from the export manifest)", soft_wrap=True)
    if as_json:
        rows = [
            {"text": t, **({"text_pair": pairs[i]} if pairs else {}), **r}
            for i, (t, r) in enumerate(zip(texts, results, strict=True))
        ]
        out.print_json(
            json.dumps({"model": str(classifier.model_file), "precision": classifier.precision, "predictions": rows})
        )
        return
    _print_predictions(classifier, texts, pairs, results)
