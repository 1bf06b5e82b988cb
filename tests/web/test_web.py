"""``kdkit web`` without a browser: the page folder, its record, the JavaScript it copies, --overwrite, errors, the
export's example inputs, the Python occlusion reference and --serve. The page itself runs in Chromium in
tests/web/test_web_browser.py."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from typer.testing import CliRunner

from kdkit.cli import app
from kdkit.cli.web import Precisions as CliPrecisions
from kdkit.errors import ConfigError, ModelError
from kdkit.export.inference import OnnxClassifier
from kdkit.records.manifests import ExportManifest, file_sha256
from kdkit.records.runs import RunDirectory, check_replaceable
from kdkit.records.safe_paths import FILES_RECORD
from kdkit.records.web_record import WEB_RECORD_FILE
from kdkit.web.occlusion import OCCLUSION_BATCH, occlude, occlusion_token, special_ids
from kdkit.web.page import ASSETS, PAGE_FILES, Precisions, make_page, make_server, read_page
from kdkit.web.runtime import BUNDLE, CDN, TRANSFORMERS_JS_VERSION, WASM_FILES

REPO = Path(__file__).resolve().parents[2]


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kdkit_client_harness", REPO / "clients" / "harness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """clients/js/node_modules (npm ci --ignore-scripts on first use; .ci/run makes it up front)."""
    harness = _harness()
    reason = harness.node_missing()
    if reason:
        pytest.skip(reason)
    return Path(harness.ensure_node_modules()) / "node_modules"


@pytest.fixture(scope="module")
def page(tiny_export: Path, node_modules: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    export = tmp_path_factory.mktemp("web-export") / "onnx"
    shutil.copytree(tiny_export, export)
    return make_page(export, node_modules=node_modules).directory


# -- the export's examples ----------------------------------------------------------------------------------


def test_an_export_records_a_few_example_inputs_of_its_validation_data(tiny_export: Path, tiny_csv):
    manifest = json.loads((tiny_export / "kdkit_export.json").read_text())
    with tiny_csv[1].open(newline="") as handle:
        first_rows = [row["text"] for row in csv.DictReader(handle)][:4]
    assert manifest["examples"] == [{"text": text} for text in first_rows]  # no "pair" key for single texts
    del manifest["examples"]  # an export made before: still a valid manifest
    assert ExportManifest.model_validate(manifest).task.name == "tiny"


# -- the folder ------------------------------------------------------------------------------------------------


def test_the_page_folder_holds_the_page_the_model_and_the_javascript(page: Path, tiny_export: Path):
    files = sorted(p.relative_to(page).as_posix() for p in page.rglob("*") if p.is_file())
    assert files == sorted([
        *PAGE_FILES, WEB_RECORD_FILE, FILES_RECORD,
        "model/config.json", "model/tokenizer.json", "model/tokenizer_config.json",
        "model/onnx/model_quantized.onnx", "model/onnx/model.onnx",
        "vendor/transformers.min.js", *(f"vendor/{name}" for name in WASM_FILES),
        "vendor/LICENSE.transformers.js.txt", "vendor/NOTICE.txt",
    ])  # fmt: skip
    for name in ("onnx/model_quantized.onnx", "onnx/model.onnx", "tokenizer.json", "config.json"):
        assert (page / "model" / name).read_bytes() == (tiny_export / name).read_bytes()
    modes = {(page / name).stat().st_mode & 0o777 for name in (*PAGE_FILES, WEB_RECORD_FILE, "model/onnx/model.onnx")}
    assert len(modes) == 1  # the record too is as readable as the rest (a web server reads it as another user)
    for name in PAGE_FILES:  # the page's own files name no other host: offline by construction
        text = (page / name).read_text()
        assert (ASSETS / name).read_text() == text and not re.search(r"https?://(?!localhost:8000/)", text)


def test_the_record_describes_the_task_models_occlusion_and_runtime(page: Path):
    record = read_page(page)
    assert record.task.name == "tiny" and record.task.label_names == ["neg", "pos"]
    assert list(record.models) == ["int8", "fp32"] and record.default_precision == "int8"
    assert record.models["int8"].dtype == "q8" and record.models["int8"].file == "model/onnx/model_quantized.onnx"
    assert record.occlusion.token == "[MASK]" and record.occlusion.batch_size == OCCLUSION_BATCH
    tokenizer = OnnxClassifier(page.parent).tokenizer
    assert record.occlusion.id == tokenizer.token_to_id("[MASK]")
    assert set(record.occlusion.special_ids) == {
        tokenizer.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    }
    assert len(record.examples) == 4
    runtime = record.runtime
    assert runtime.source == "local" and runtime.transformers == "vendor/transformers.min.js"
    assert runtime.transformers_version == TRANSFORMERS_JS_VERSION and runtime.onnxruntime_web_version
    assert record.files["vendor/ort-wasm-simd-threaded.wasm"].sha256 == file_sha256(
        page / "vendor/ort-wasm-simd-threaded.wasm"
    )
    notice = (page / "vendor" / "NOTICE.txt").read_text()
    assert f"@huggingface/transformers {TRANSFORMERS_JS_VERSION} (Apache-2.0)" in notice and "onnxruntime-web" in notice


def test_the_pinned_transformers_js_is_the_one_clients_js_installs():
    lock = json.loads((REPO / "clients" / "js" / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/@huggingface/transformers"]["version"] == TRANSFORMERS_JS_VERSION
    assert CliPrecisions.__args__ == Precisions.__args__  # type: ignore[attr-defined]


def test_a_cdn_page_copies_no_javascript_and_pins_the_versions(tiny_export: Path, tmp_path: Path):
    record = make_page(tiny_export, tmp_path / "cdn", cdn=True, precision="int8").record
    assert not (tmp_path / "cdn" / "vendor").exists() and list(record.models) == ["int8"]
    assert record.runtime.transformers == f"{CDN}/@huggingface/transformers@{TRANSFORMERS_JS_VERSION}/{BUNDLE}"
    assert record.runtime.wasm_base == f"{CDN}/onnxruntime-web@{{version}}/dist/"


def test_an_fp32_only_page(tiny_export: Path, node_modules: Path, tmp_path: Path):
    record = make_page(tiny_export, tmp_path / "p", precision="fp32", node_modules=node_modules).record
    assert list(record.models) == ["fp32"] and record.default_precision == "fp32"
    assert not (tmp_path / "p" / "model" / "onnx" / "model_quantized.onnx").exists()


# -- --overwrite and errors ------------------------------------------------------------------------------------


def test_overwrite_replaces_only_a_page_kdkit_wrote(page: Path, tiny_export: Path, node_modules: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="already exists: pass --overwrite"):
        make_page(page.parent, node_modules=node_modules)
    copy = tmp_path / "page"
    shutil.copytree(page, copy)
    check_replaceable(copy)  # a page kdkit wrote
    make_page(tiny_export, copy, node_modules=node_modules, overwrite=True)
    (copy / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"also holds notes.txt \(not written by kdkit\)"):
        make_page(tiny_export, copy, node_modules=node_modules, overwrite=True)
    assert (copy / "notes.txt").read_text() == "mine"
    mine = tmp_path / "site"
    mine.mkdir()
    (mine / "index.html").write_text("my site")
    with pytest.raises(ConfigError, match="not a kdkit run or export"):
        make_page(tiny_export, mine, node_modules=node_modules, overwrite=True)
    assert (mine / "index.html").read_text() == "my site"


def test_an_export_holding_its_page_is_still_replaceable_but_not_with_a_foreign_web_folder(page: Path, tmp_path: Path):
    export = tmp_path / "export"
    shutil.copytree(page.parent, export)
    (export / "training_curves.svg").write_text("<svg/>")  # an export of a run has its curves
    check_replaceable(export)
    shutil.rmtree(export / "web")
    (export / "web").mkdir()
    (export / "web" / "index.html").write_text("my page")
    with pytest.raises(ConfigError, match=r"also holds web \(not written by kdkit\)"):
        RunDirectory(export, overwrite=True).start_fresh()
    with pytest.raises(ConfigError, match="would replace the export "):
        make_page(export, export, overwrite=True, cdn=True)


def test_bad_exports_and_missing_javascript_are_one_line_errors(tiny_export: Path, tmp_path: Path, monkeypatch):
    with pytest.raises(ModelError, match="does not exist"):
        make_page(tmp_path / "nothing")
    with pytest.raises(ModelError, match="is not a kdkit ONNX export"):
        make_page(tmp_path)
    old = tmp_path / "old"
    shutil.copytree(tiny_export, old)
    (old / "config.json").unlink()
    with pytest.raises(ModelError, match="has no config.json, which transformers.js needs.*export the run again"):
        make_page(old, cdn=True)
    monkeypatch.setenv("KDKIT_WEB_NODE_MODULES", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="holds no @huggingface/transformers.*npm ci --ignore-scripts.*--cdn"):
        make_page(tiny_export, tmp_path / "p")
    assert not (tmp_path / "p").exists() and not (tmp_path / "p.partial").exists()
    broken = tmp_path / "nm" / "@huggingface" / "transformers"
    broken.mkdir(parents=True)
    (broken / "package.json").write_text(json.dumps({"version": TRANSFORMERS_JS_VERSION}))
    with pytest.raises(ConfigError, match="holds @huggingface/transformers but not onnxruntime-web"):
        make_page(tiny_export, tmp_path / "p", node_modules=tmp_path / "nm")


def test_the_command_runs_without_torch(tiny_export: Path, tmp_path: Path):
    """Like kdkit predict: where torch, transformers and datasets are not installed (their imports fail)."""
    block = (
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers', 'datasets'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, _Block())\n"
        "from kdkit.entry import main\n"
        f"sys.argv = ['kdkit', 'web', {str(tiny_export)!r}, '-o', {str(tmp_path / 'page')!r}, '--cdn']\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "assert not any(m.split('.')[0] in ('torch', 'transformers', 'datasets') for m in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", block], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "page" / WEB_RECORD_FILE).is_file()


def test_the_command(tiny_export: Path, node_modules: Path, tmp_path: Path):
    export = tmp_path / "onnx"
    shutil.copytree(tiny_export, export)
    result = CliRunner().invoke(app, ["web", str(export), "--node-modules", str(node_modules)])
    assert result.exit_code == 0, result.output
    assert f"web page written to {export / 'web'}" in result.output and "int8 " in result.output
    result = CliRunner().invoke(app, ["web", str(export), "--node-modules", str(node_modules)])
    assert result.exit_code == 2 and result.output.startswith("error: output ") and len(result.output.splitlines()) == 1
    result = CliRunner().invoke(app, ["web", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in result.output


# -- the occlusion reference and --serve -----------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_occlusion_follows_its_definition(tiny_export: Path, precision: str):
    classifier = OnnxClassifier(tiny_export, precision=precision)  # type: ignore[arg-type]
    text = "the movie was good but the plot was bad"
    result = occlude(classifier, text)
    token, mask_id = occlusion_token(tiny_export, classifier.tokenizer)
    assert token == "[MASK]" and result.tokens[0] == "[CLS]" and result.tokens[-1] == "[SEP]"
    special = set(special_ids(classifier.tokenizer))
    assert result.occluded == [i not in special for i in result.ids] and result.scores[0] == result.scores[-1] == 0
    logits = classifier.logits([text], batch_size=1, warn=False)[0][0]
    assert result.label == classifier.label_names[int(logits.argmax())] and result.logits == logits.tolist()
    # one occluded position recomputed alone: fp32 gives the batch's value; int8 quantises per call, so close
    inputs, _ = classifier.encode([text])
    inputs["input_ids"][0, 3] = mask_id
    alone = classifier.session.run(None, inputs)[0][0].astype(np.float64)
    p = np.exp(alone - alone.max()) / np.exp(alone - alone.max()).sum()
    expected = result.value - p[classifier.label_names.index(result.label)]
    assert abs(result.scores[3] - expected) <= (1e-6 if precision == "fp32" else 2e-2)


def test_serve_serves_the_page_and_refuses_other_folders(page: Path, tmp_path: Path):
    with make_server(page, port=0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        with urllib.request.urlopen(url + "kdkit_web.json", timeout=10) as response:
            assert json.loads(response.read())["task"]["name"] == "tiny"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert b'<script type="module" src="app.js">' in response.read()
        server.shutdown()
    with pytest.raises(ModelError, match="is not a page folder written by 'kdkit web'"):
        make_server(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(page, broken)
    (broken / "model" / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match="is incomplete: model/tokenizer.json is missing"):
        read_page(broken)


def test_the_command_serves_the_page_until_ctrl_c(page: Path):
    """``kdkit web EXPORT --serve`` serves the page it finds as it is; Ctrl-C stops it, exit status 0."""
    command = [sys.executable, "-m", "kdkit.cli", "web", str(page.parent), "--serve", "--port", "0"]
    server = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        # Ctrl-C as in a terminal, even when the tests run in the background (``cmd &`` ignores SIGINT, and the
        # server would inherit that and never stop)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert server.stderr is not None
        line = server.stderr.readline()
        url = re.search(r"at (http://127\.0\.0\.1:\d+/) \(Ctrl-C stops\)", line)
        assert url, line
        with urllib.request.urlopen(url.group(1) + "app.js", timeout=10) as response:
            assert response.read() == (ASSETS / "app.js").read_bytes()
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=20) == 0 and "stopped" in server.stderr.read()
    finally:
        server.kill()


def test_the_checkouts_npm_install_is_looked_for_in_clients_js():
    """Without --node-modules, kdkit web copies the runtime from the checkout's clients/js (the npm install the
    client tests make); the path must follow the module wherever the package puts it."""
    from kdkit.web.runtime import CHECKOUT_NODE_MODULES

    assert CHECKOUT_NODE_MODULES == REPO / "clients" / "js" / "node_modules"
    assert (CHECKOUT_NODE_MODULES.parent / "package.json").is_file()


# -- issue 29: the server serves the page's own files only ----------------------------------------------------------


def _get(port: int, path: str, host: str | None = None) -> int:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers={"Host": host} if host else {})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


def test_the_server_serves_only_the_pages_files_and_logs_each_request(page: Path, tmp_path: Path):
    copy = Path(shutil.copytree(page, tmp_path / "web"))
    (copy / "notes.txt").write_text("not the page's")
    lines: list[str] = []
    with make_server(copy, port=0, log=lines.append) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        (copy / "style.css").unlink()
        (copy / "style.css").symlink_to("/etc/passwd")  # a link put in the page folder while it is served
        port = server.server_address[1]
        assert _get(port, "/") == 200 and _get(port, "/app.js?x=1") == 200
        assert _get(port, "/model/") == 404 and _get(port, "/vendor") == 404  # no listing
        assert _get(port, "/style.css") == 404 and _get(port, "/notes.txt") == 404  # no link, no other file
        assert _get(port, "/../../etc/passwd") == 404
        assert _get(port, "/", host="evil.example:8000") == 421  # DNS rebinding
        assert _get(port, "/", host=f"localhost:{port}") == 200
        server.shutdown()
    assert lines[:3] == ["GET / 200", "GET /app.js?x=1 200", "GET /model/ 404"]
    assert len(lines) == 9
    with pytest.raises(ModelError, match=r"web/style.css, which is a link \(to /etc/passwd\)"):
        make_server(copy)  # a page with a link in it is not served at all


def test_a_client_that_disconnects_during_a_download_is_no_traceback(page: Path, capfd: pytest.CaptureFixture[str]):
    import socket
    import struct

    with make_server(page, port=0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        for _ in range(5):
            client = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10)
            client.sendall(b"GET /model/onnx/model.onnx HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            client.recv(64)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, not close
            client.close()
        assert _get(server.server_address[1], "/") == 200
        server.shutdown()
    assert "Traceback" not in capfd.readouterr().err


def test_a_port_out_of_range_is_one_line(page: Path):
    result = CliRunner().invoke(app, ["web", str(page.parent), "--serve", "--port", "80000"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--port 80000 is not a port number" in result.output


def test_the_page_holds_copies_not_hard_links_of_the_export(page: Path):
    export = page.parent
    for name in ("onnx/model.onnx", "tokenizer.json", "config.json"):
        copied, original = (page / "model" / name).stat(), (export / name).stat()
        assert copied.st_ino != original.st_ino and copied.st_nlink == 1
