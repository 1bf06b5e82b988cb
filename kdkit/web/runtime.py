"""The JavaScript a web page runs (:mod:`kdkit.web`): transformers.js and onnxruntime-web's WebAssembly build.

By default they are copied into the page's ``vendor/`` folder from a local npm install of
``@huggingface/transformers`` (:data:`TRANSFORMERS_JS_VERSION`, the version clients/js pins and CI tests), found in
this order:

1. the ``node_modules`` folder given (``kdkit web --node-modules DIR``);
2. ``KDKIT_WEB_NODE_MODULES``;
3. ``clients/js/node_modules`` of a kdkit checkout (``npm ci --ignore-scripts`` there makes it).

Three files are copied: ``transformers.min.js`` (the browser bundle, onnxruntime-web's JavaScript included) and
the WebAssembly build of onnxruntime-web it loads, ``ort-wasm-simd-threaded.mjs`` and ``.wasm``: the plain CPU
build, the one transformers.js itself picks where WebGPU is absent (its default elsewhere is the 2x larger
asyncify build, needed only for WebGPU); plus the licences. With ``--cdn`` nothing is copied: the page loads the
same files from jsDelivr, at the same versions.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from kdkit.errors import ConfigError, KdkitWarning

#: the transformers.js release the page is written for and tested with (clients/js/package-lock.json)
TRANSFORMERS_JS_VERSION = "4.3.1"
TRANSFORMERS_JS = "@huggingface/transformers"
ONNXRUNTIME_WEB = "onnxruntime-web"
BUNDLE = "dist/transformers.min.js"
WASM_FILES = ("ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
CDN = "https://cdn.jsdelivr.net/npm"
ENV_VARIABLE = "KDKIT_WEB_NODE_MODULES"
#: where a kdkit checkout keeps its transformers.js install (clients/js, the client check's)
CHECKOUT_NODE_MODULES = Path(__file__).resolve().parents[2] / "clients" / "js" / "node_modules"
VENDOR = "vendor"
_INSTALL_HINT = (
    f"run 'npm ci --ignore-scripts' in clients/js of a kdkit checkout, or 'npm install --ignore-scripts "
    f"{TRANSFORMERS_JS}@{TRANSFORMERS_JS_VERSION}' in a folder and pass --node-modules FOLDER/node_modules "
    f"(or set {ENV_VARIABLE}); or pass --cdn to load them from jsDelivr (online use only)"
)


@dataclass
class JsRuntime:
    """Where the page's JavaScript comes from.

    Attributes:
        source: ``local`` (copied into ``vendor/``) or ``cdn``.
        transformers_version, onnxruntime_web_version: the versions (the latter None with ``--cdn``: the page
            takes the one transformers.js bundles).
        copies: ``{path in the page folder: file to copy}`` (empty with ``--cdn``).
        notice: the text of ``vendor/NOTICE.txt`` (the packages, versions and licences copied).
    """

    source: str
    transformers_version: str
    onnxruntime_web_version: str | None = None
    copies: dict[str, Path] = field(default_factory=dict)
    notice: str = ""

    def page_settings(self) -> dict[str, object]:
        """The record's ``runtime`` entry (:class:`kdkit.records.web_record.WebRuntime`)."""
        if self.source == "cdn":
            return {
                "source": "cdn",
                "transformers": f"{CDN}/{TRANSFORMERS_JS}@{self.transformers_version}/{BUNDLE}",
                "wasm_base": f"{CDN}/{ONNXRUNTIME_WEB}@{{version}}/dist/",
                "wasm_files": list(WASM_FILES),
                "transformers_version": self.transformers_version,
            }
        return {
            "source": "local",
            "transformers": f"{VENDOR}/{Path(BUNDLE).name}",
            "wasm_base": f"{VENDOR}/",
            "wasm_files": list(WASM_FILES),
            "transformers_version": self.transformers_version,
            "onnxruntime_web_version": self.onnxruntime_web_version,
        }


def find_runtime(node_modules: Path | None = None, *, cdn: bool = False) -> JsRuntime:
    """The page's JavaScript: from jsDelivr (``cdn``), else from the first npm install found (module docstring).
    None found, or an incomplete one, is a one-line :class:`ConfigError` that says how to install it."""
    if cdn:
        return JsRuntime(source="cdn", transformers_version=TRANSFORMERS_JS_VERSION)
    folder = _node_modules(node_modules)
    package = folder / TRANSFORMERS_JS
    version, dependencies, licence = _package_info(package)
    if version != TRANSFORMERS_JS_VERSION:
        warnings.warn(
            f"{package} is transformers.js {version}; the page is tested with {TRANSFORMERS_JS_VERSION}",
            KdkitWarning,
            stacklevel=2,
        )
    ort = _onnxruntime_web(folder, package)
    ort_version, _, ort_licence = _package_info(ort)
    wanted = dependencies.get(ONNXRUNTIME_WEB, "")
    if re.fullmatch(r"\d+\.\d+\.\d+(-[\w.-]+)?", wanted) and ort_version != wanted:
        raise ConfigError(
            f"{ort} is onnxruntime-web {ort_version}, but transformers.js {version} bundles {wanted}",
            f"reinstall it ({_INSTALL_HINT})",
        )
    copies = {f"{VENDOR}/{Path(BUNDLE).name}": package / BUNDLE}
    copies.update({f"{VENDOR}/{name}": ort / "dist" / name for name in WASM_FILES})
    if (package / "LICENSE").is_file():
        copies[f"{VENDOR}/LICENSE.transformers.js.txt"] = package / "LICENSE"
    missing = [str(path) for path in copies.values() if not path.is_file()]
    if missing:
        raise ConfigError(f"the npm install in {folder} is incomplete ({missing[0]} is missing)", _INSTALL_HINT)
    notice = (
        "Files copied by kdkit web from an npm install:\n"
        f"- transformers.min.js: {TRANSFORMERS_JS} {version} ({licence}), https://github.com/huggingface/transformers.js\n"
        f"- {', '.join(WASM_FILES)}: {ONNXRUNTIME_WEB} {ort_version} ({ort_licence}, Copyright (c) Microsoft "
        "Corporation), https://github.com/microsoft/onnxruntime\n"
    )
    return JsRuntime("local", version, ort_version, copies, notice)


def _node_modules(given: Path | None) -> Path:
    """The folder named by --node-modules, else by KDKIT_WEB_NODE_MODULES (a named one must hold transformers.js),
    else the checkout's clients/js/node_modules."""
    named = given if given is not None else (Path(os.environ[ENV_VARIABLE]) if os.environ.get(ENV_VARIABLE) else None)
    folder = named if named is not None else CHECKOUT_NODE_MODULES
    if (folder / TRANSFORMERS_JS / "package.json").is_file():
        return folder
    if named is not None:
        where = "--node-modules" if given is not None else ENV_VARIABLE
        raise ConfigError(f"{where} {folder} holds no {TRANSFORMERS_JS} (no package.json for it)", _INSTALL_HINT)
    raise ConfigError("transformers.js is not installed here (no npm install of it found)", _INSTALL_HINT)


def _onnxruntime_web(folder: Path, package: Path) -> Path:
    """onnxruntime-web as npm placed it: nested under transformers.js when versions conflict, else beside it."""
    for candidate in (package / "node_modules" / ONNXRUNTIME_WEB, folder / ONNXRUNTIME_WEB):
        if (candidate / "package.json").is_file():
            return candidate
    raise ConfigError(f"{folder} holds {TRANSFORMERS_JS} but not {ONNXRUNTIME_WEB}", _INSTALL_HINT)


def _package_info(package: Path) -> tuple[str, dict[str, str], str]:
    """(version, dependencies, licence) from a package's package.json."""
    try:
        data = json.loads((package / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {package / 'package.json'} ({type(exc).__name__})", _INSTALL_HINT) from None
    dependencies = data.get("dependencies") if isinstance(data.get("dependencies"), dict) else {}
    pins = {str(name): str(version) for name, version in dependencies.items()}
    return str(data.get("version", "?")), pins, str(data.get("license", "?"))
