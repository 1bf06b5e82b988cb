"""A static web page that classifies and explains text with an export, in the browser (``kdkit web``).

    from kdkit.web.page import make_page
    page = make_page("runs/sst2-kd/onnx")   # runs/sst2-kd/onnx/web/: index.html, app.js, style.css, kdkit_web.json,
                                            # model/ (config, tokenizer, onnx/*.onnx), vendor/ (transformers.js, wasm)

The page (``index.html`` + ``app.js``, in :data:`ASSETS`) loads ``model/`` with transformers.js on
onnxruntime-web's WebAssembly (CPU) backend, classifies the text typed in its box (two boxes for a sentence-pair
task), shows every class's probability and a token heatmap computed in the browser by occlusion
(:mod:`kdkit.web.occlusion` defines it and computes the same in Python). The int8 model is selected first, fp32 on
request. The folder is self-contained: any static web server (``python -m http.server`` in it, or
``kdkit web --serve``) and a browser are all it needs; no request leaves the server it came from, unless it was
made with ``--cdn`` (:mod:`kdkit.web.runtime`).

The folder is written as ``<output>.partial`` and renamed when complete (:class:`kdkit.records.runs.RunDirectory`); its
record ``kdkit_web.json`` (:class:`kdkit.records.web_record.WebRecord`) lets ``--overwrite`` recognise it. This module
imports neither torch nor transformers.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from tokenizers import Tokenizer

import kdkit
from kdkit.errors import ConfigError, ModelError
from kdkit.export.manifest import ExportExample
from kdkit.records.manifests import EXPORT_MANIFEST_FILE, ExportManifest, check_files, describe_files, read_json
from kdkit.records.provenance import resolve_export_dir
from kdkit.records.runs import RunDirectory, kdkit_output_kind
from kdkit.records.safe_paths import PARTIAL_MARK, find_link
from kdkit.records.web_record import WEB_RECORD_FILE, WebRecord
from kdkit.web.occlusion import OCCLUSION_BATCH, occlusion_token, special_ids
from kdkit.web.runtime import JsRuntime, find_runtime

#: the page's own files (copied as they are: the page reads everything else from kdkit_web.json)
ASSETS = Path(__file__).with_name("assets")
PAGE_FILES = ("index.html", "app.js", "style.css")
#: where 'kdkit web EXPORT' writes the page: inside the export folder
WEB_SUBDIR = "web"
MODEL_DIR = "model"
#: the export's files transformers.js reads besides the ONNX models
MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")
#: the page's precisions, the first one selected when the page opens; their file names in transformers.js' layout
PRECISIONS = {"int8": ("q8", "onnx/model_quantized.onnx"), "fp32": ("fp32", "onnx/model.onnx")}
Precisions = Literal["all", "int8", "fp32"]


@dataclass
class WebPage:
    """What :func:`make_page` returns: the page folder, its record, and things the user should know."""

    directory: Path
    record: WebRecord
    warnings: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Bytes of every file in the folder."""
        record = (self.directory / WEB_RECORD_FILE).stat().st_size
        return record + sum(entry.bytes for entry in self.record.files.values())


def default_output(export_dir: Path) -> Path:
    """``<export>/web``."""
    return export_dir / WEB_SUBDIR


def make_page(
    export: str | Path,
    output: Path | None = None,
    *,
    precision: Precisions = "all",
    cdn: bool = False,
    node_modules: Path | None = None,
    overwrite: bool = False,
) -> WebPage:
    """Write the web page of an export folder (or of a run directory exported into ``onnx/``).

    Args:
        export: the export folder.
        output: the page folder [default: ``<export>/web``].
        precision: the models the page offers: ``all`` those the export has (int8 selected first), or one.
        cdn: load transformers.js and onnxruntime-web from jsDelivr instead of copying them (online use only).
        node_modules: the npm install to copy them from (:func:`kdkit.web.runtime.find_runtime`).
        overwrite: replace an existing page folder (only one kdkit wrote).
    """
    export_dir = resolve_export_dir(export)
    if not (export_dir / EXPORT_MANIFEST_FILE).is_file():
        raise ModelError(
            f"{export_dir} is not a kdkit ONNX export (no {EXPORT_MANIFEST_FILE})",
            "export one with 'kdkit export RUN --onnx --quantize int8'",
        )
    manifest = read_json(
        export_dir / EXPORT_MANIFEST_FILE, ExportManifest, what="the export manifest", fix="export the model again"
    )
    models = _chosen_models(export_dir, manifest, precision)
    runtime = find_runtime(node_modules, cdn=cdn)
    inputs = {"export": export_dir, "JavaScript runtime": node_modules}
    out = RunDirectory(
        output or default_output(export_dir), overwrite=overwrite, inputs=inputs, may_hold_output=["export"]
    )
    out.start_fresh()
    try:
        record = _write_page(out.work, export_dir, manifest, models, runtime)
        final = out.commit()
    except BaseException:
        out.discard()
        raise
    return WebPage(directory=final, record=record)


def _chosen_models(export_dir: Path, manifest: ExportManifest, precision: Precisions) -> dict[str, Path]:
    """``{precision: ONNX file}`` of the models the page offers, int8 first; the files transformers.js needs must
    be there (exports older than the Hugging Face layout lack config.json)."""
    for name in MODEL_FILES:
        if not (export_dir / name).is_file():
            raise ModelError(
                f"{export_dir} has no {name}, which transformers.js needs (an export made before kdkit wrote the "
                "Hugging Face layout, or an incomplete one)",
                "export the run again with 'kdkit export RUN --onnx --quantize int8'",
            )
    wanted = list(PRECISIONS) if precision == "all" else [precision]
    chosen = {name: export_dir / manifest.models[name].file for name in wanted if name in manifest.models}
    if not chosen:
        raise ModelError(
            f"{export_dir} has no {precision} model", "export with --quantize int8, or pass --precision fp32"
        )
    for name, path in chosen.items():
        if not path.is_file():
            raise ModelError(f"{path} ({name}) is missing", "export the model again (the folder is incomplete)")
    return chosen


def _write_page(
    work: Path, export_dir: Path, manifest: ExportManifest, models: dict[str, Path], runtime: JsRuntime
) -> WebRecord:
    """Copy the page, the model files and the JavaScript runtime into ``work``; write the record last."""
    for name in PAGE_FILES:
        shutil.copyfile(ASSETS / name, work / name)
    for name in MODEL_FILES:
        _place(export_dir / name, work / MODEL_DIR / name)
    for name, source in models.items():
        _place(source, work / MODEL_DIR / PRECISIONS[name][1])
    for target, source in runtime.copies.items():
        _place(source, work / target)
    if runtime.notice:
        (work / "vendor" / "NOTICE.txt").write_text(runtime.notice)
    tokenizer = Tokenizer.from_file(str(export_dir / "tokenizer.json"))
    token, token_id = occlusion_token(export_dir, tokenizer)
    extra = manifest.model_dump(mode="json")  # the fields an ExportRecord adds, as far as the export has them
    examples = extra.get("examples") or []
    record = WebRecord.model_validate(
        {
            "kdkit_version": kdkit.__version__,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "export": str(export_dir.absolute()),
            "export_created_at": extra.get("created_at"),
            "task": manifest.task.model_dump(mode="json"),
            "max_length": manifest.max_length,
            "model_folder": MODEL_DIR,
            "models": {
                name: {"file": f"{MODEL_DIR}/{PRECISIONS[name][1]}", "dtype": PRECISIONS[name][0], "bytes": size}
                for name, size in ((name, source.stat().st_size) for name, source in models.items())
            },
            "default_precision": next(iter(models)),
            "occlusion": {
                "token": token,
                "id": token_id,
                "special_ids": special_ids(tokenizer),
                "batch_size": OCCLUSION_BATCH,
            },
            "examples": [ExportExample.model_validate(e).model_dump(exclude_none=True) for e in examples],
            "runtime": runtime.page_settings(),
            "files": describe_files(work, exclude=(PARTIAL_MARK,)),
        }
    )
    # a plain write (the folder is renamed into place only when complete): its permissions follow the umask like
    # every other file of the page, which a web server running as another user must be able to read
    text = json.dumps(record.model_dump(mode="json", exclude_none=True), indent=2) + "\n"
    (work / WEB_RECORD_FILE).write_text(text, encoding="utf-8")
    return record


def _place(source: Path, target: Path) -> None:
    """``target`` as a copy of ``source`` (never a hard link: editing the page's copy must not edit the export)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


# -- serving ------------------------------------------------------------------------------------------------


def read_page(directory: Path) -> WebRecord:
    """The record of a page folder kdkit wrote, its files checked (sizes): a one-line :class:`ModelError` if the
    folder is not a page, or a file is missing or changed."""
    if kdkit_output_kind(directory) != "web":
        raise ModelError(f"{directory} is not a page folder written by 'kdkit web'", "make one with 'kdkit web EXPORT'")
    record = read_json(directory / WEB_RECORD_FILE, WebRecord, what="the page record", fix="make the page again")
    link = find_link(directory)
    if link is not None:
        raise ModelError(f"the page in {directory} holds {link}, which is a link (to {os.readlink(link)})",
                         "remove it (kdkit serves no link), or make the page again with --overwrite")  # fmt: skip
    problem = check_files(directory, record.files, checksums=False)
    if problem is not None:
        raise ModelError(f"the page in {directory} is incomplete: {problem.message}", "make it again with --overwrite")
    return record


#: the names a browser may use for a server bound to the loopback address (any other Host header is refused:
#: a page of another site whose name resolves here, DNS rebinding, gets nothing)
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


class _PageHandler(SimpleHTTPRequestHandler):
    """Serves the files the page's record lists (``/`` is ``index.html``) and nothing else: no listing, no link
    followed, no other Host; one line per request to ``log``; a client that goes away ends its request quietly."""

    files: frozenset[str] = frozenset()
    hosts: frozenset[str] = frozenset()
    log: Callable[[str], None] = staticmethod(lambda _line: None)

    def send_head(self) -> Any:
        name = unquote(urlsplit(self.path).path).lstrip("/") or "index.html"
        host = (self.headers.get("Host") or "").strip().lower()
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if host and hostname not in self.hosts:
            self.send_error(HTTPStatus.MISDIRECTED_REQUEST, "unknown Host")
            return None
        if name not in self.files or _through_link(Path(self.directory), name):
            self.send_error(HTTPStatus.NOT_FOUND)
            return None
        return super().send_head()

    def list_directory(self, path: Any) -> Any:
        self.send_error(HTTPStatus.NOT_FOUND)
        return None

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.log(f"{self.command} {self.path} {int(code) if str(code).isdigit() else code}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _through_link(root: Path, name: str) -> bool:
    """Whether ``root / name`` is a link or lies below one (inside the page folder)."""
    path = root
    for part in Path(name).parts:
        path = path / part
        if path.is_symlink():
            return True
    return False


class _PageServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that went away is no error
            super().handle_error(request, client_address)


def check_port(port: int) -> None:
    """A port number (0: any free one), else one line."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a port number", "pass a port from 1 to 65535 (0: any free one)")


def make_server(
    directory: Path, port: int = 8000, host: str = "127.0.0.1", log: Callable[[str], None] | None = None
) -> ThreadingHTTPServer:
    """An HTTP server for a page folder, not yet serving; port 0 picks a free one (``server.server_address``);
    ``log`` gets one line per request (method, path, status)."""
    record = read_page(directory)
    check_port(port)
    attributes = {
        "files": frozenset([*record.files, WEB_RECORD_FILE]),
        "hosts": LOOPBACK_NAMES | {host.lower()} if host in LOOPBACK_NAMES else frozenset({host.lower()}),
        "log": staticmethod(log or (lambda _line: None)),
    }
    handler = functools.partial(type("PageHandler", (_PageHandler,), attributes), directory=str(directory))
    try:
        return _PageServer((host, port), handler)
    except OSError as exc:
        raise ConfigError(f"cannot serve on {host}:{port} ({exc.strerror or exc})", "pass another --port") from None


def serve(
    directory: Path,
    port: int = 8000,
    host: str = "127.0.0.1",
    ready: Callable[[str], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> None:
    """Serve a page folder until interrupted; ``ready`` is called with the page's address once it listens, ``log``
    with one line per request."""
    with make_server(directory, port, host, log) as server:
        if ready is not None:
            ready(f"http://{host}:{server.server_address[1]}/")
        server.serve_forever()
