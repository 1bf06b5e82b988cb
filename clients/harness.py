"""Run a kdkit export through the ecosystem's own clients: transformers.js in Node, optimum-onnx in Python.

Used by tests/test_clients.py and benchmarks/client_check.py:

    from harness import optimum, transformers_js
    transformers_js(export_dir, ["a fine film"], None)   # {"fp32": {"labels": [...], "logits": ...}, "q8": {...}}
    optimum(export_dir, ["a fine film"], None)           # {"fp32": {...}, "int8": {...}}

- transformers.js: ``clients/js`` holds package.json and package-lock.json (@huggingface/transformers, pinned);
  :func:`ensure_node_modules` runs ``npm ci --ignore-scripts`` there once (onnxruntime-node ships its CPU
  binaries in the package; its install script only fetches optional GPU binaries).
- optimum-onnx pins transformers < 4.58, so it cannot share kdkit's environment: :func:`optimum_python`
  builds a virtual environment from ``clients/optimum/requirements.txt`` once, under the cache folder
  (``KDKIT_CLIENTS_CACHE``, else ``~/.cache/kdkit-clients``), keyed by the hash of that file and the Python
  version, so repeated runs reuse it and a change of the requirements builds a new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

CLIENTS = Path(__file__).resolve().parent
JS_DIR = CLIENTS / "js"
OPTIMUM_DIR = CLIENTS / "optimum"
READY = ".kdkit-ready"


class ClientError(RuntimeError):
    """A client could not be installed or run (the message holds the tail of its output)."""


def _clean_env() -> dict[str, str]:
    """The environment for a client process: offline, nothing of kdkit's virtual environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


def _run(command: Sequence[str], *, cwd: Path | None = None, timeout: float = 900) -> str:
    try:
        done = subprocess.run(
            list(command), cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise ClientError(f"{' '.join(command[:3])} ... took longer than {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-2000:]
        raise ClientError(f"{' '.join(command[:3])} ... failed with status {done.returncode}:\n{tail}")
    return done.stdout


def node_missing() -> str | None:
    """Why transformers.js cannot run here (node or npm absent), or None."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not installed (transformers.js runs in Node)" if missing else None


def ensure_node_modules() -> Path:
    """``npm ci --ignore-scripts`` in clients/js unless its node_modules already match the lock file."""
    marker = JS_DIR / "node_modules" / ".kdkit-lock-hash"
    wanted = hashlib.sha256((JS_DIR / "package-lock.json").read_bytes()).hexdigest()
    if marker.is_file() and marker.read_text() == wanted:
        return JS_DIR
    with _locked(JS_DIR / ".npm-install.lock"):
        if not (marker.is_file() and marker.read_text() == wanted):
            _run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=JS_DIR, timeout=900)
            marker.write_text(wanted)
    return JS_DIR


@contextlib.contextmanager
def _request(payload: dict[str, Any]) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="kdkit-client-") as folder:
        path = Path(folder) / "request.json"
        path.write_text(json.dumps(payload))
        yield path


def transformers_js(
    export: Path, texts: list[str], pairs: list[str] | None, dtypes: Sequence[str] = ("fp32", "q8")
) -> dict[str, Any]:
    """Labels, scores and logits from transformers.js per dtype (fp32: onnx/model.onnx, q8: the int8 model)."""
    ensure_node_modules()
    payload = {"model": str(Path(export).resolve()), "dtypes": list(dtypes), "texts": texts, "pairs": pairs}
    with _request(payload) as request:
        output = _run(["node", str(JS_DIR / "classify.mjs"), str(request)], cwd=JS_DIR, timeout=600)
    return dict(json.loads(output.strip().splitlines()[-1]))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cache_dir() -> Path:
    """Where client environments are kept: ``KDKIT_CLIENTS_CACHE``, else ``~/.cache/kdkit-clients``."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kdkit-clients"
    return Path(os.environ.get("KDKIT_CLIENTS_CACHE", default)).expanduser()


def optimum_python() -> Path:
    """The Python of the optimum-onnx environment, built on first use (about a minute with cached wheels)."""
    requirements = OPTIMUM_DIR / "requirements.txt"
    key = hashlib.sha256(requirements.read_bytes() + sys.version.encode()).hexdigest()[:12]
    venv = cache_dir() / f"optimum-{key}"
    python = venv / "bin" / "python"
    if (venv / READY).is_file():
        return python
    with _locked(cache_dir() / f"optimum-{key}.lock"):
        if (venv / READY).is_file():
            return python
        shutil.rmtree(venv, ignore_errors=True)  # a half-built one from an interrupted run
        _run([sys.executable, "-m", "venv", str(venv)], timeout=300)
        _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(requirements)])
        (venv / READY).write_text(requirements.read_text())
    return python


def optimum(
    export: Path, texts: list[str], pairs: list[str] | None, precisions: Sequence[str] = ("fp32", "int8")
) -> dict[str, Any]:
    """Labels, scores and logits from ORTModelForSequenceClassification per precision (fp32, int8)."""
    python = optimum_python()
    payload = {"model": str(Path(export).resolve()), "precisions": list(precisions), "texts": texts, "pairs": pairs}
    with _request(payload) as request:
        output = _run([str(python), str(OPTIMUM_DIR / "classify.py"), str(request)], timeout=600)
    return dict(json.loads(output.strip().splitlines()[-1]))


def run_js(code: str) -> str:
    """Run an ES module (e.g. a model card's snippet) with Node and transformers.js; returns its stdout."""
    ensure_node_modules()
    with tempfile.TemporaryDirectory(prefix="kdkit-js-") as folder:
        (Path(folder) / "node_modules").symlink_to(JS_DIR / "node_modules")
        (Path(folder) / "snippet.mjs").write_text(code)
        return _run(["node", "snippet.mjs"], cwd=Path(folder), timeout=600)


def run_optimum(code: str) -> str:
    """Run Python code (e.g. a model card's snippet) in the optimum-onnx environment; returns its stdout."""
    python = optimum_python()
    with tempfile.TemporaryDirectory(prefix="kdkit-optimum-") as folder:
        (Path(folder) / "snippet.py").write_text(code)
        return _run([str(python), "snippet.py"], cwd=Path(folder), timeout=600)


def main(argv: Sequence[str]) -> int:
    """``python clients/harness.py install``: install both clients up front (.ci/run does, before the tests)."""
    if list(argv) != ["install"]:
        print("usage: python clients/harness.py install", file=sys.stderr)
        return 2
    reason = node_missing()
    if reason:
        print(f"transformers.js: skipped, {reason}")
    else:
        print(f"transformers.js: {ensure_node_modules() / 'node_modules'}")
    print(f"optimum-onnx: {optimum_python()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
