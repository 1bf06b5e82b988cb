"""``kdkit web``: a static web page that classifies and explains text with an export, offline in the browser
(:func:`kdkit.web.page.make_page`); ``--serve`` serves it on localhost (:func:`kdkit.web.page.serve`). No torch."""

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from kdkit.cli.base import command, handle_errors
from kdkit.cli.output import err, out

#: kdkit.web.page.Precisions (the CLI names them without importing kdkit.web; a test compares)
Precisions = Literal["all", "int8", "fp32"]


@command(light=True)
@handle_errors
def web(
    export: Annotated[
        Path, typer.Argument(help="Export folder of 'kdkit export --onnx' (or a run directory with onnx/).")
    ],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Page folder \\[default: EXPORT/web].")] = None,
    precision: Annotated[
        Precisions, typer.Option(help="Models the page offers: all (int8 selected first) or one of them.")
    ] = "all",
    cdn: Annotated[
        bool, typer.Option("--cdn", help="Load transformers.js and onnxruntime-web from jsDelivr (online use only).")
    ] = False,
    node_modules: Annotated[
        Path | None,
        typer.Option(help="npm install to copy transformers.js from \\[default: KDKIT_WEB_NODE_MODULES, clients/js]."),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing page folder.")] = False,
    serve: Annotated[
        bool, typer.Option("--serve", help="Then serve the page on localhost until Ctrl-C (made first if missing).")
    ] = False,
    port: Annotated[int, typer.Option(help="Port of --serve (0: any free one).")] = 8000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the page's record as JSON.")] = False,
) -> None:
    """Make a web page that classifies and explains text with an export, in the browser, offline."""
    from kdkit.records.provenance import resolve_export_dir
    from kdkit.web.page import check_port, default_output, make_page, read_page
    from kdkit.web.page import serve as serve_page

    if serve:
        check_port(port)  # before the page is made
    folder = output or default_output(resolve_export_dir(export))
    if serve and folder.exists() and not overwrite:
        read_page(folder)  # an existing page is served as it is
    else:
        page = make_page(export, output, precision=precision, cdn=cdn, node_modules=node_modules, overwrite=overwrite)
        folder = page.directory
        if as_json:
            out.print_json(json.dumps({"directory": str(folder), **page.record.model_dump(mode="json")}))
        else:
            models = ", ".join(f"{name} {info.bytes / 1e6:.1f} MB" for name, info in page.record.models.items())
            runtime = page.record.runtime
            out.print(
                f"web page written to {folder} ({page.size / 1e6:.1f} MB; models: {models}; "
                f"transformers.js {runtime.transformers_version}, {runtime.source})"
            )
            if not serve:
                out.print(f"try: kdkit web {export} --serve   (or: cd {folder} && python -m http.server 8000)")
    if serve:
        try:
            serve_page(
                folder,
                port,
                ready=lambda url: err.print(f"serving {folder} at {url} (Ctrl-C stops)"),
                log=lambda line: err.print(line, highlight=False, markup=False),
            )
        except KeyboardInterrupt:  # how a server is stopped: not an interrupted command
            err.print("stopped")
