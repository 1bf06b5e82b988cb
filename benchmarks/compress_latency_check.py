"""An independent check of the latency `kdkit compress` reports (issue 26): the same ONNX file, timed here with
onnxruntime and tokenizers alone (none of kdkit's own code: not kdkit.export.latency nor OnnxClassifier).

    python benchmarks/compress_latency_check.py runs/sst2-compressed/student --reported-ms 3.1 \\
        --texts-from ../shared/data/glue/sst2/validation-00000-of-00001.parquet --column sentence

Each text is tokenised at its own length (batch 1, truncated to the export's max length) and run ``--rounds``
times after a warm-up, one intra-op thread; p95 over all calls. Exit status 0 when p95 is within ``--tolerance``
(default 10%) of ``--reported-ms``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def _session(model: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def independent_latency(
    export_dir: Path, texts: list[str], *, threads: int = 1, rounds: int = 3
) -> tuple[float, float]:
    """p50 and p95 latency (ms) of the export's deployed model (int8 when present, as kdkit compress deploys it: the
    manifest's ``precision``-named file) over ``texts`` at batch 1."""
    manifest = json.loads((export_dir / "kdkit_export.json").read_text())
    models = manifest["models"]
    model = export_dir / models["int8" if "int8" in models else "fp32"]["file"]
    tokenizer = Tokenizer.from_file(str(export_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(int(manifest["max_length"]))
    session = _session(model, threads)
    wanted = {i.name for i in session.get_inputs()}
    inputs = []
    for encoding in tokenizer.encode_batch(texts):
        columns = {"input_ids": encoding.ids, "attention_mask": encoding.attention_mask,
                   "token_type_ids": encoding.type_ids}  # fmt: skip
        inputs.append(
            {name: np.asarray([values], dtype=np.int64) for name, values in columns.items() if name in wanted}
        )
    for feed in inputs[:20]:
        session.run(None, feed)
    timings = []
    for _ in range(rounds):
        for feed in inputs:
            start = time.perf_counter_ns()
            session.run(None, feed)
            timings.append((time.perf_counter_ns() - start) / 1e6)
    return float(np.percentile(timings, 50)), float(np.percentile(timings, 95))


def _texts(path: Path, column: str, limit: int) -> list[str]:
    import pyarrow.parquet as pq

    return [str(t) for t in pq.read_table(path, columns=[column]).column(column).to_pylist()][:limit]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export", type=Path)
    parser.add_argument("--reported-ms", type=float, required=True)
    parser.add_argument("--texts-from", type=Path, required=True, help="a parquet file of the dev texts")
    parser.add_argument("--column", default="sentence")
    parser.add_argument("--limit", type=int, default=400, help="texts timed (kdkit times at most 400)")
    parser.add_argument("--tolerance", type=float, default=0.10)
    args = parser.parse_args(argv)
    _, p95 = independent_latency(args.export, _texts(args.texts_from, args.column, args.limit))
    ratio = p95 / args.reported_ms
    print(f"independent p95 {p95:.3f} ms, reported {args.reported_ms:.3f} ms, ratio {ratio:.3f}")
    return 0 if abs(ratio - 1) <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
