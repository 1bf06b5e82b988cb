"""``kdkit_web.json``: the record of a web page folder (``kdkit web``, :mod:`kdkit.web.page`), read by the page itself.

It is the page's configuration (the task, the model files per precision, the occlusion token, the examples,
where transformers.js and onnxruntime-web's WebAssembly come from) and kdkit's proof that it wrote the folder:
``--overwrite`` replaces a folder only when this record is there and readable
(:func:`kdkit.records.runs.check_replaceable`).
``files`` lists every other file kdkit wrote there, with its size and SHA-256.

This module imports neither torch nor transformers.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kdkit.records.manifests import ExportExample, ExportTask, FileEntry, _Record
from kdkit.records.safe_paths import FILES_RECORD

WEB_RECORD_FILE = "kdkit_web.json"
#: layout version of the record
WEB_FORMAT = 1
#: what kdkit writes in a page folder
WEB_ENTRIES = frozenset({WEB_RECORD_FILE, "index.html", "app.js", "style.css", "model", "vendor", FILES_RECORD})


class WebModel(_Record):
    """One model the page offers: its file (relative to the page folder), transformers.js dtype and size."""

    file: str
    dtype: Literal["fp32", "q8"]
    bytes: int = Field(ge=0)


class WebOcclusion(_Record):
    """How the page occludes tokens (:mod:`kdkit.web.occlusion`): the token put in their place, the special token ids
    that are never occluded, and how many occluded copies go into one model call."""

    token: str
    id: int = Field(ge=0)
    special_ids: list[int]
    batch_size: int = Field(ge=1)


class WebRuntime(_Record):
    """Where the page gets transformers.js and onnxruntime-web's WebAssembly files.

    ``local``: copied into ``vendor/`` (paths relative to the page); ``cdn``: URLs (``--cdn``). ``wasm_base`` is a
    folder or URL prefix; ``{version}`` in it is replaced by the onnxruntime-web version transformers.js bundles."""

    source: Literal["local", "cdn"]
    transformers: str
    wasm_base: str
    wasm_files: list[str]
    transformers_version: str
    onnxruntime_web_version: str | None = None


class WebRecord(_Record):
    """``kdkit_web.json``."""

    format: int = WEB_FORMAT
    kdkit_version: str
    created_at: str
    #: the export folder the page was made from (absolute) and that export's creation time
    export: str
    export_created_at: str | None = None
    task: ExportTask
    max_length: int = Field(ge=1)
    #: the folder (relative to the page) that transformers.js loads: config.json, tokenizer files, onnx/
    model_folder: str = "model"
    models: dict[str, WebModel] = Field(min_length=1)
    default_precision: str
    occlusion: WebOcclusion
    examples: list[ExportExample] = Field(default_factory=list)
    runtime: WebRuntime
    files: dict[str, FileEntry] = Field(default_factory=dict)
