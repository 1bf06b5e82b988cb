"""Do the ecosystem's clients give kdkit predict's labels on a real export? (issue #12's final check)

    # a run made by README's first command (the teacher is fine-tuned and cached on first use):
    kdkit distill --plugin kd --task sst2 --data-dir ../shared/data/glue --max-train-samples 4000 --epochs 1 \\
        --output /tmp/eco/run
    python benchmarks/client_check.py /tmp/eco/run --data-dir ../shared/data/glue --sentences 50

Exports the run with ``kdkit export RUN --onnx --quantize int8`` (unless ``RUN/onnx`` already holds an export
in the Hugging Face layout), takes the first N sentences of the task's validation split, and classifies them
with ``kdkit predict --json`` (fp32 and int8), transformers.js in Node (fp32 and q8, clients/js) and
optimum-onnx's ORTModelForSequenceClassification (fp32 and int8, its own environment: clients/optimum), one
sentence per call everywhere (int8 quantises activations per call, so batching would move its logits).
Prints a markdown table (labels agreeing with kdkit predict, largest |Δ probability|) and writes JSON to
benchmarks/results/ (gitignored). Exit status 1 when a client disagrees on a label.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO / "benchmarks"))

from study_common import cpu_model  # noqa: E402


def load_harness() -> ModuleType:
    """clients/harness.py (not a package: it lives next to the clients it drives)."""
    spec = importlib.util.spec_from_file_location("kdkit_client_harness", REPO / "clients" / "harness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def kdkit_predict(export: Path, texts: list[str], pairs: list[str] | None, precision: str) -> dict[str, Any]:
    """``kdkit predict EXPORT --file F --json --batch-size 1 --precision P``, as a user runs it."""
    from kdkit.export.inference import OnnxClassifier

    fields = list(OnnxClassifier(export, precision="fp32").text_fields)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "texts.jsonl"
        rows = [dict(zip(fields, [t, *([pairs[i]] if pairs else [])], strict=True)) for i, t in enumerate(texts)]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        command = [sys.executable, "-m", "kdkit.cli", "predict", str(export), "--file", str(path), "--json"]
        done = subprocess.run(
            [*command, "--batch-size", "1", "--precision", precision], capture_output=True, text=True, check=True
        )
    return dict(json.loads(done.stdout))


def compare(export: Path, texts: list[str], pairs: list[str] | None = None) -> dict[str, Any]:
    """Each client's labels and probabilities against kdkit predict's, per precision."""
    harness = load_harness()
    reference = {p: kdkit_predict(export, texts, pairs, p)["predictions"] for p in ("fp32", "int8")}
    clients: dict[str, dict[str, Any]] = {"optimum-onnx": harness.optimum(export, texts, pairs)}
    reason = harness.node_missing()
    if reason is None:
        js = harness.transformers_js(export, texts, pairs)
        clients["transformers.js"] = {"fp32": js["fp32"], "int8": js["q8"]}
    rows = []
    for client, results in clients.items():
        for precision, got in results.items():
            expected = reference[precision]
            same = [g == e["label"] for g, e in zip(got["labels"], expected, strict=True)]
            delta = np.abs(np.asarray(got["scores"]) - np.asarray([e["score"] for e in expected]))
            rows.append(
                {
                    "client": client,
                    "precision": precision,
                    "agree": int(sum(same)),
                    "sentences": len(texts),
                    "max_abs_probability_diff": float(delta.max()),
                    "disagreements": [i for i, ok in enumerate(same) if not ok],
                    "versions": got.get("versions") or {"@huggingface/transformers": got.get("version")},
                }
            )
    truncated = sum(bool(r["truncated"]) for r in reference["fp32"])
    return {"rows": rows, "truncated": truncated, "skipped": {"transformers.js": reason} if reason else {}}


def ensure_export(run: Path, data_dir: Path | None) -> Path:
    """``RUN/onnx`` in the Hugging Face layout, exported now with the kdkit CLI when missing or older."""
    export = run / "onnx"
    manifest = export / "kdkit_export.json"
    existing = json.loads(manifest.read_text()) if manifest.is_file() else {}
    if "layout" in existing and "int8" in existing.get("models", {}):
        return export
    command = [sys.executable, "-m", "kdkit.cli", "export", str(run), "--onnx", "--quantize", "int8", "--overwrite"]
    subprocess.run([*command, *(["--data-dir", str(data_dir)] if data_dir else [])], check=True)
    return export


def sentences(export: Path, data_dir: Path | None, count: int) -> tuple[list[str], list[str] | None]:
    """The first ``count`` examples of the export's task's (first) validation split."""
    from kdkit.config import DataConfig
    from kdkit.data.loading import load_raw
    from kdkit.export.inference import read_manifest

    task = read_manifest(export)["task"]
    data = DataConfig(task=task["name"], data_dir=data_dir, max_eval_samples=count)
    _, _, splits = load_raw(data, need_train=False)
    split = next(iter(splits.values()))
    fields = task["text_fields"]
    return list(split[fields[0]]), (list(split[fields[1]]) if len(fields) == 2 else None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run directory (its onnx/ export is made when missing)")
    parser.add_argument("--data-dir", type=Path, default=None, help="hub-layout GLUE folder")
    parser.add_argument("--sentences", type=int, default=50, help="first N validation sentences")
    args = parser.parse_args()
    export = ensure_export(args.run, args.data_dir)
    texts, pairs = sentences(export, args.data_dir, args.sentences)
    result = compare(export, texts, pairs)
    print("| client | precision | labels as kdkit predict | max abs Δ probability |\n|---|---|---:|---:|")
    for row in result["rows"]:
        line = f"| {row['client']} | {row['precision']} | {row['agree']}/{row['sentences']} |"
        print(f"{line} {row['max_abs_probability_diff']:.2e} |")
    for client, reason in result["skipped"].items():
        print(f"{client}: skipped ({reason})")
    print(f"{result['truncated']} of {len(texts)} sentences were longer than the export's max length")
    record = {
        "date": datetime.now().isoformat(timespec="seconds"),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores ({platform.machine()})",
        "load": os.getloadavg(),
        "run": str(args.run),
        "export": str(export),
        **result,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"client_check-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {out}")
    return 0 if all(row["agree"] == row["sentences"] for row in result["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
