"""The page of ``kdkit web`` against Python on real dev sentences (docs/deploy.md, "The web page").

    python benchmarks/web_parity.py runs/sst2-kd/onnx --data-dir ../shared/data/glue --sentences 20

Makes the page of the export in a temporary folder, opens it in headless Chromium (clients/browser.py) and, per
precision (fp32, int8), classifies the first N validation examples of the export's task in it. Compared with:

- the labels and probabilities of ``kdkit predict --batch-size 1 --precision P --json`` (benchmarks/client_check.py);
- the occlusion scores of :func:`kdkit.web.occlusion.occlude` on the same ONNX file (onnxruntime's Python wheel):
  largest |Δ|, median |Δ|, the share of tokens within 1e-3, the correlation, and whether the highest-scoring token
  is the same;
- for scale, the same statistics between two graph optimisation levels of the Python wheel alone
  (``ORT_ENABLE_ALL``, kdkit's, and ``ORT_DISABLE_ALL``): how much an int8 model moves when only the floating-point
  order of operations changes.

Exit status 1 if a label differs from kdkit predict's.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "clients"))

from browser import chromium, http_server  # noqa: E402


def _client_check() -> Any:
    spec = importlib.util.spec_from_file_location("client_check", REPO / "benchmarks" / "client_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stats(page: list[float], python: list[float]) -> dict[str, float]:
    a, b = np.asarray(page), np.asarray(python)
    difference = np.abs(a - b)
    return {
        "max_abs_diff": float(difference.max()),
        "median_abs_diff": float(np.median(difference)),
        "share_within_1e-3": float((difference <= 1e-3).mean()),
        "correlation": float(np.corrcoef(a, b)[0, 1]),
    }


def _unoptimised(export: Path, precision: str) -> Any:
    import onnxruntime as ort

    from kdkit.export.inference import OnnxClassifier

    classifier = OnnxClassifier(export, precision=precision)  # type: ignore[arg-type]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    classifier.session = ort.InferenceSession(str(classifier.model_file), options, providers=["CPUExecutionProvider"])
    return classifier


def compare(export: Path, texts: list[str], pairs: list[str] | None) -> dict[str, Any]:
    from kdkit.export.inference import OnnxClassifier
    from kdkit.web.occlusion import occlude
    from kdkit.web.page import make_page

    check = _client_check()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="kdkit-web-parity-") as folder:
        page = make_page(export, Path(folder) / "web").directory
        with http_server(page) as url, chromium() as browser:
            for precision in ("fp32", "int8"):
                predicted = check.kdkit_predict(export, texts, pairs, precision)["predictions"]
                classifier = OnnxClassifier(export, precision=precision)
                other = _unoptimised(export, precision)
                browser.open(f"{url}?precision={precision}", timeout=300)
                agree, top, probability_diff = 0, 0, 0.0
                in_page: list[float] = []
                in_python: list[float] = []
                in_other: list[float] = []
                for i, text in enumerate(texts):
                    pair = pairs[i] if pairs else None
                    got = browser.classify(text, pair)
                    reference, unoptimised = occlude(classifier, text, pair), occlude(other, text, pair)
                    agree += got["label"] == predicted[i]["label"]
                    label = predicted[i]["label"]
                    probability_diff = max(
                        probability_diff, abs(got["probabilities"][label] - predicted[i]["scores"][label])
                    )
                    hidden = np.asarray(got["occluded"])
                    in_page += list(np.asarray(got["scores"])[hidden])
                    in_python += list(np.asarray(reference.scores)[hidden])
                    in_other += list(np.asarray(unoptimised.scores)[hidden])
                    top += int(np.argmax(got["scores"]) == np.argmax(reference.scores))
                results[precision] = {
                    "labels_as_kdkit_predict": agree,
                    "sentences": len(texts),
                    "max_abs_probability_diff": probability_diff,
                    "tokens": len(in_page),
                    "occlusion_page_vs_python": _stats(in_page, in_python),
                    "same_top_token": top,
                    "occlusion_python_unoptimised_vs_python": _stats(in_other, in_python),
                }
            assert not [u for u in browser.requests() if not u.startswith(("http://127.0.0.1:", "blob:"))]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path, help="export folder (or a run directory exported into onnx/)")
    parser.add_argument("--data-dir", type=Path, default=None, help="hub-layout GLUE folder")
    parser.add_argument("--sentences", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    from kdkit.records.provenance import resolve_export_dir

    export = resolve_export_dir(args.export)
    texts, pairs = _client_check().sentences(export, args.data_dir, args.sentences)
    results = compare(export, texts, pairs)
    print(
        f"kdkit web page of {export} vs Python, {len(texts)} validation examples, {datetime.now(timezone.utc).date()}"
    )
    for precision, row in results.items():
        page, own = row["occlusion_page_vs_python"], row["occlusion_python_unoptimised_vs_python"]
        print(
            f"{precision}: labels {row['labels_as_kdkit_predict']}/{row['sentences']} as kdkit predict, "
            f"max |Δp| {row['max_abs_probability_diff']:.1e}; occlusion over {row['tokens']} tokens: "
            f"max |Δ| {page['max_abs_diff']:.1e}, median {page['median_abs_diff']:.1e}, "
            f"{100 * page['share_within_1e-3']:.1f}% within 1e-3, r {page['correlation']:.4f}, "
            f"top token same {row['same_top_token']}/{row['sentences']}; Python unoptimised vs Python: "
            f"max |Δ| {own['max_abs_diff']:.1e}, {100 * own['share_within_1e-3']:.1f}% within 1e-3"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["labels_as_kdkit_predict"] == r["sentences"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
