"""How fast the page of ``kdkit web`` is in headless Chromium on this machine (docs/deploy.md, "The web page").

    python benchmarks/web_latency.py runs/sst2-kd/onnx                 # int8, 5 cold loads, 20 classifications
    python benchmarks/web_latency.py runs/sst2-kd/onnx --precision fp32 --json out.json

Makes the page of the export in a temporary folder (the export is not touched), serves it with
``python -m http.server`` on 127.0.0.1 and opens it in Debian's headless Chromium (clients/browser.py), each time
in a fresh browser (a new profile: nothing cached), at ``index.html?text=SENTENCE``, which classifies the sentence
as soon as the page is ready. Reported, from the page's own clock (ms since it was opened):

- ``ready``: transformers.js, the WebAssembly runtime, the tokenizer and the model loaded;
- ``first result``: the sentence classified and its occlusion heatmap shown (the issue's target: within 5 s);
- then, in the last browser, ``--repeats`` classifications of the same sentence with their heatmap, each timed
  around ``window.kdkit.show`` (classification + occlusion + drawing; the target: within 1 s), split into the
  classification alone and the occlusion.

Also printed: the sentence's token count, the bytes a visitor downloads (page, JavaScript, WebAssembly, tokenizer
and the selected model), the folder's size, the machine, the date, the load average before and after, and the
Chromium and transformers.js versions. Nothing leaves 127.0.0.1 (checked, as in the tests).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "clients"), str(REPO / "benchmarks")]

from browser import chromium, http_server  # noqa: E402
from study_common import cpu_model  # noqa: E402

#: an SST-2-like sentence of 20 tokens for the MiniLM (WordPiece) tokenizer (22 with [CLS] and [SEP]): 20 occlusions
SENTENCE = "a gripping , funny and moving film that never lets up , with the best performances of the year ."


def _chromium_version() -> str:
    try:
        return subprocess.run(["chromium", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "?"


def _download_bytes(page: Path, record: Any, precision: str) -> int:
    """What a visitor's browser fetches: every file but the other precision's model and the licences."""
    others = {info.file for name, info in record.models.items() if name != precision}
    skipped = others | {"vendor/NOTICE.txt", "vendor/LICENSE.transformers.js.txt"}
    return (
        sum(entry.bytes for name, entry in record.files.items() if name not in skipped)
        + (page / "kdkit_web.json").stat().st_size
    )


def measure(export: Path, precision: str, loads: int, repeats: int, sentence: str) -> dict[str, Any]:
    from kdkit.export.inference import OnnxClassifier
    from kdkit.web.page import make_page

    tokens = len(OnnxClassifier(export).tokenizer.encode(sentence).ids) - 2  # without [CLS] and [SEP]
    with tempfile.TemporaryDirectory(prefix="kdkit-web-bench-") as folder:
        page = make_page(export, Path(folder) / "web")
        url_query = f"?precision={precision}&text={quote(sentence)}"
        timelines, runs, urls = [], [], []
        with http_server(page.directory) as url:
            for load in range(loads):
                with chromium() as browser:
                    timelines.append(browser.open(url + url_query, timeout=300))
                    if load == loads - 1:
                        for _ in range(repeats):
                            runs.append(browser.call(
                                "const start = performance.now(); const r = await window.kdkit.show(arguments[0]);"
                                "return {wall: performance.now() - start, ...r.milliseconds, label: r.label};",
                                sentence,
                            ))  # fmt: skip
                    urls += browser.requests()
        outside = [u for u in urls if not u.startswith(("http://127.0.0.1:", "blob:"))]
        return {
            "precision": precision,
            "sentence": sentence,
            "tokens": tokens,
            "label": runs[-1]["label"] if runs else None,
            "ready_ms": [t["ready"] for t in timelines],
            "first_result_ms": [t["first_result"] for t in timelines],
            "show_ms": [r["wall"] for r in runs],
            "classify_ms": [r["classify"] for r in runs],
            "occlusion_ms": [r["occlusion"] for r in runs],
            "download_bytes": _download_bytes(page.directory, page.record, precision),
            "folder_bytes": page.size,
            "requests_outside_localhost": outside,
            "transformers_js": page.record.runtime.transformers_version,
            "onnxruntime_web": page.record.runtime.onnxruntime_web_version,
        }


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):8.0f} {min(values):8.0f} {max(values):8.0f}"


def report(figures: dict[str, Any], export: Path, load_before: tuple[float, ...], load_after: tuple[float, ...]) -> str:
    rows = [
        ("ready (page opened -> model loaded)", figures["ready_ms"]),
        ("first result (opened -> label + heatmap)", figures["first_result_ms"]),
        (f"classify + heatmap, {figures['tokens']} tokens (warm)", figures["show_ms"]),
        ("  of which: classify", figures["classify_ms"]),
        ("  of which: occlusion", figures["occlusion_ms"]),
    ]
    lines = [
        f"kdkit web page of {export} ({figures['precision']}), headless {_chromium_version()}, "
        f"transformers.js {figures['transformers_js']}, onnxruntime-web {figures['onnxruntime_web']}",
        f"machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}; "
        f"date {datetime.now(timezone.utc).date()}; load average before {load_before[0]:.2f}, "
        f"after {load_after[0]:.2f}",
        f"downloaded by a visitor: {figures['download_bytes'] / 1e6:.1f} MB; "
        f"page folder: {figures['folder_bytes'] / 1e6:.1f} MB",
        f"sentence ({figures['tokens']} tokens + [CLS], [SEP]; predicted {figures['label']}): {figures['sentence']}",
        "",
        f"{'':48s} {'median':>8s} {'min':>8s} {'max':>8s}  (ms)",
        *(f"{name:48s} {_summary(values)}" for name, values in rows if values),
        f"({len(figures['ready_ms'])} cold loads, each in a fresh browser; {len(figures['show_ms'])} warm runs)",
        f"requests outside 127.0.0.1: {len(figures['requests_outside_localhost'])}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path, help="export folder (or a run directory exported into onnx/)")
    parser.add_argument("--precision", choices=["int8", "fp32"], default="int8")
    parser.add_argument("--loads", type=int, default=5, help="cold page loads, each in a fresh browser")
    parser.add_argument("--repeats", type=int, default=20, help="warm classifications with heatmap")
    parser.add_argument("--sentence", default=SENTENCE)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    from kdkit.records.provenance import resolve_export_dir

    export = resolve_export_dir(args.export)
    before = os.getloadavg()
    start = time.perf_counter()
    figures = measure(export, args.precision, args.loads, args.repeats, args.sentence)
    after = os.getloadavg()
    print(report(figures, export, before, after))
    print(f"(benchmark wall time {time.perf_counter() - start:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({**figures, "load_before": before, "load_after": after}, indent=2) + "\n")
    return 1 if figures["requests_outside_localhost"] else 0


if __name__ == "__main__":
    sys.exit(main())
