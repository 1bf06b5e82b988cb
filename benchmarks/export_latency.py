"""CPU latency and accuracy of an exported student: PyTorch eager vs onnxruntime fp32 / int8 (issue #4).

    # a real student first (a few minutes on 2 cores; the teacher is fine-tuned and cached on first use):
    KDKIT_HOME=/tmp/exp/home kdkit distill --plugin kd --task sst2 --data-dir ../shared/data/glue \\
        --max-train-samples 4000 --epochs 1 --output /tmp/exp/run --quiet
    python benchmarks/export_latency.py --model /tmp/exp/run --data-dir ../shared/data/glue

The student is exported with kdkit's own path (``kdkit.export.stage.export_onnx``, dynamo, int8), unless
``--export-dir`` names an existing export. Every engine runs on the same token ids (SST-2 dev sentences,
tokenised once; tokenisation is not timed, except in the ``kdkit predict path`` row), with the same thread
count. Repetitions are interleaved in rounds (each round runs every engine a few times, in turn), so background
load on a shared machine hits every engine alike: compare the engines as ratios within one run. The figures are
medians.

Engines: PyTorch eager (fp32, and under bf16 autocast); onnxruntime fp32 at graph optimisation level basic and
all (kdkit's default); fp32 after onnxruntime.transformers' BERT fusions; fp32 after onnxscript's onnxruntime
fusions (Attention, SkipLayerNormalization, BiasGelu) and its int8; int8 (kdkit's dynamic quantisation,
per-tensor) and int8 per-channel; and kdkit.export.inference.OnnxClassifier with int8 including tokenisation.

Prints a markdown table and writes JSON to benchmarks/results/ (gitignored).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Idle threads sleep instead of spinning (set before torch loads OpenMP; OMP_WAIT_POLICY=ACTIVE to override, and
# --ort-spinning 1 for onnxruntime). On a machine whose cores are shared, a spinning OpenMP barrier waits for a
# thread that is not scheduled: PyTorch at batch 1 went from ~10 ms to ~120-280 ms here, which says nothing about
# PyTorch. On a dedicated machine the spinning defaults are a little faster for both engines.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import onnxruntime as ort
import torch
from export_latency_report import (
    FP32_NAME,
    INT8_NAME,
    PREDICT_NAME,
    TORCH_NAME,
    Graphs,
    Measured,
    Student,
    print_report,
    results,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

Runner = Callable[[dict[str, np.ndarray]], np.ndarray]


def _session(path: Path, threads: int, level: ort.GraphOptimizationLevel, spinning: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", str(spinning))
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = level
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _ort_runner(session: ort.InferenceSession) -> Runner:
    names = [i.name for i in session.get_inputs()]
    return lambda batch: session.run(None, {n: batch[n] for n in names})[0]


def _torch_runner(model: Any, bf16: bool = False) -> Runner:
    """PyTorch eager in fp32, or under bf16 autocast (what ``--precision auto`` evaluates in on AMX CPUs)."""

    def run(batch: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.float().numpy()

    return run


def _batches(
    tokenizer: Any, sentences: list[str], size: int, max_length: int, names: list[str]
) -> list[dict[str, np.ndarray]]:
    """Consecutive dev sentences, ``size`` per batch, padded to the batch's longest (dynamic padding)."""
    result = []
    for start in range(0, len(sentences) - size + 1, size):
        encoded = tokenizer(
            sentences[start : start + size],
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="np",
        )
        result.append({n: encoded[n].astype(np.int64) for n in names})
    return result


def _transformer_optimised(fp32: Path, target: Path, config: Any) -> dict[str, int]:
    """onnxruntime.transformers' BERT fusions (opt_level 0: its Python fusions; the session adds the rest)."""
    from onnxruntime.transformers.optimizer import optimize_model

    logging.disable(logging.WARNING)
    try:
        optimised = optimize_model(
            str(fp32),
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
            opt_level=0,
        )
        optimised.save_model_to_file(str(target))
        return {k: v for k, v in optimised.get_fused_operator_statistics().items() if v}
    finally:
        logging.disable(logging.NOTSET)


def main(argv: list[str] | None = None) -> int:
    work = Path(tempfile.mkdtemp(prefix="kdkit-bench-"))
    try:
        return _main(argv, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="a distilled run directory (or its best/ model)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("KDKIT_GLUE_DIR", REPO.parent / "shared" / "data" / "glue")),
    )
    parser.add_argument("--export-dir", type=Path, help="an existing 'kdkit export --onnx --quantize int8' folder")
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--repeats", type=int, default=60, help="timed repetitions per engine at batch 1")
    parser.add_argument("--repeats-batch", type=int, default=15, help="timed repetitions per engine at batch 32")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per engine first")
    parser.add_argument("--block", type=int, default=5, help="timed calls per engine in a row, per round")
    parser.add_argument(
        "--ort-spinning",
        type=int,
        choices=(0, 1),
        default=0,
        help="onnxruntime intra-op threads spin while idle (1, onnxruntime's default) or sleep (0, as PyTorch's here)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-eval-samples", type=int, help="accuracy on the first N dev sentences only (smoke runs)")
    parser.add_argument(
        "--output", type=Path, help="JSON results [default: benchmarks/results/export_latency-<time>.json]"
    )
    return parser


def _main(argv: list[str] | None, work: Path) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from kdkit.export.inference import OnnxClassifier

    student = _student(args, parser)
    graphs = _graphs(args, student, work)
    engines = _engines(args, student, graphs)
    classifier = OnnxClassifier(graphs.export_dir, precision="int8", threads=args.threads)
    classifier.session = _session(
        graphs.int8, args.threads, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, args.ort_spinning
    )
    accuracy = _accuracy(student, engines, classifier)
    load_before = os.getloadavg()
    latency = _latency(args, student, engines, classifier)
    load_after = os.getloadavg()
    sizes = {
        name: (path.stat().st_size if path is not None and path.is_file() else None)
        for name, (_, path) in engines.items()
    }
    sizes[PREDICT_NAME] = graphs.int8.stat().st_size
    measured = Measured(accuracy, latency, sizes, load_before, load_after)
    targets = print_report(measured, graphs, args.batch_size)
    record = results(args, student, graphs, measured, targets)
    output = args.output or RESULTS / f"export_latency-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nresults written to {output}", file=sys.stderr)
    return 0


def _student(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Student:
    """The SST-2 model of ``--model`` (else a parser error), its tokenizer and the dev sentences."""
    from kdkit.config import DataConfig
    from kdkit.data.batching import MODEL_INPUTS
    from kdkit.data.loading import load_raw
    from kdkit.models.loading import load_classifier, load_tokenizer, quiet_libraries
    from kdkit.models.saving import read_task_file
    from kdkit.records.provenance import find_model_dir

    quiet_libraries()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    model_dir = find_model_dir(args.model)
    saved = read_task_file(model_dir)
    if saved is None or saved[0].name != "sst2":
        parser.error(f"{model_dir} is not an SST-2 model saved by kdkit")
    tokenizer = load_tokenizer(str(model_dir))
    model = load_classifier(str(model_dir)).eval()
    names = [n for n in MODEL_INPUTS if n in tokenizer.model_input_names]
    task, _, splits = load_raw(DataConfig(task="sst2", data_dir=args.data_dir), need_train=False)
    dev = splits["validation"]
    if args.max_eval_samples:
        dev = dev.select(range(min(args.max_eval_samples, len(dev))))
    sentences, labels = list(dev["sentence"]), np.asarray(dev["label"])
    return Student(model_dir, saved[1], tokenizer, model, names, task, sentences, labels)


def _graphs(args: argparse.Namespace, student: Student, work: Path) -> Graphs:
    """kdkit's export (unless ``--export-dir``) and the variants made from its fp32 graph, under ``work``."""
    from kdkit.config import DataConfig
    from kdkit.export.hf_layout import FP32_FILE, INT8_FILE
    from kdkit.export.onnx import fuse_for_onnxruntime, quantize_int8
    from kdkit.export.stage import ExportOptions, export_onnx

    export_dir = args.export_dir
    if export_dir is None:
        print(f"exporting {student.directory} (dynamo, int8) ...", file=sys.stderr)
        export_dir = export_onnx(
            student.directory,
            ExportOptions(output=work / "onnx", data=DataConfig(task="sst2", data_dir=args.data_dir), quantize="int8"),
        ).directory
    fp32, int8 = export_dir / FP32_FILE, export_dir / INT8_FILE
    int8_channel = work / "model.int8.per-channel.onnx"
    quantize_int8(fp32, int8_channel, per_channel=True)
    bert_fused = work / "model.bert-fusions.onnx"
    fusions = _transformer_optimised(fp32, bert_fused, student.model.config)
    ort_fused = work / "model.ort-fusions.onnx"
    ort_fusions = fuse_for_onnxruntime(fp32, ort_fused)
    ort_fused_int8 = work / "model.ort-fusions.int8.onnx"
    quantize_int8(ort_fused, ort_fused_int8)
    return Graphs(export_dir, fp32, int8, int8_channel, bert_fused, ort_fused, ort_fused_int8, fusions, ort_fusions)


def _engines(args: argparse.Namespace, student: Student, graphs: Graphs) -> dict[str, tuple[Runner, Path | None]]:
    """Every engine but the predict path: a runner and the file it loads, in the table's order."""
    level = ort.GraphOptimizationLevel
    onnx = [
        ("ORT fp32, basic graph opts", graphs.fp32, level.ORT_ENABLE_BASIC),
        (FP32_NAME, graphs.fp32, level.ORT_ENABLE_ALL),
        ("ORT fp32 + transformers BERT fusions", graphs.bert_fused, level.ORT_ENABLE_ALL),
        ("ORT fp32 + onnxscript ORT fusions", graphs.ort_fused, level.ORT_ENABLE_ALL),
        (INT8_NAME, graphs.int8, level.ORT_ENABLE_ALL),
        ("ORT int8 per-channel", graphs.int8_channel, level.ORT_ENABLE_ALL),
        ("ORT int8 of the onnxscript-fused graph", graphs.ort_fused_int8, level.ORT_ENABLE_ALL),
    ]
    weights = student.directory / "model.safetensors"
    engines: dict[str, tuple[Runner, Path | None]] = {
        TORCH_NAME: (_torch_runner(student.model), weights),
        "PyTorch eager, bf16 autocast": (_torch_runner(student.model, bf16=True), weights),
    }
    for name, path, optimisation in onnx:
        engines[name] = (_ort_runner(_session(path, args.threads, optimisation, args.ort_spinning)), path)
    return engines


def _accuracy(student: Student, engines: dict[str, tuple[Runner, Path | None]], classifier: Any) -> dict[str, float]:
    """Accuracy on the whole dev set (the same ids for every engine), and the predict path's on the texts."""
    from kdkit.data.metrics import compute_metrics

    sentences = student.sentences
    padded = sentences + [sentences[-1]] * (-len(sentences) % 32)
    eval_batches = _batches(student.tokenizer, padded, 32, student.max_length, student.names)
    accuracy: dict[str, float] = {}
    for name, (run, _) in engines.items():
        logits = np.concatenate([run(b) for b in eval_batches])[: len(sentences)]
        accuracy[name] = compute_metrics(student.task, logits, student.labels)["accuracy"]
    predicted = classifier.predict(sentences, batch_size=32)
    label_ids = {n: i for i, n in enumerate(student.task.label_names or ())}
    accuracy[PREDICT_NAME] = float(
        np.mean([label_ids[p["label"]] == g for p, g in zip(predicted, student.labels, strict=True)])
    )
    return accuracy


def _caller(
    engines: dict[str, tuple[Runner, Path | None]],
    classifier: Any,
    batches: list[dict[str, np.ndarray]],
    texts: list[list[str]],
) -> Callable[[str, int], None]:
    """One call of an engine on batch ``index`` (the predict path tokenises the texts itself)."""

    def call(name: str, index: int) -> None:
        if name in engines:
            engines[name][0](batches[index])
        else:
            classifier.logits(texts[index], batch_size=len(texts[index]), warn=False)

    return call


def _latency(
    args: argparse.Namespace, student: Student, engines: dict[str, tuple[Runner, Path | None]], classifier: Any
) -> dict[str, dict[int, float]]:
    """Median ms per call: batch 1 walks through dev sentences, batch ``--batch-size`` through dev batches."""
    latency: dict[str, dict[int, float]] = {name: {} for name in [*engines, PREDICT_NAME]}
    sentences = student.sentences
    for size, repeats in ((1, args.repeats), (args.batch_size, args.repeats_batch)):
        batches = _batches(student.tokenizer, sentences, size, student.max_length, student.names)
        texts = [sentences[i * size : (i + 1) * size] for i in range(len(batches))]
        times = _interleaved(args, _caller(engines, classifier, batches, texts), list(latency), len(batches), repeats)
        for name in latency:
            latency[name][size] = 1000 * statistics.median(times[name])
        print(f"batch {size}: done", file=sys.stderr)
    return latency


def _interleaved(
    args: argparse.Namespace, call: Callable[[str, int], None], names: list[str], count: int, repeats: int
) -> dict[str, list[float]]:
    """Seconds of ``repeats`` timed calls per engine, after ``--warmup`` untimed ones, in rounds of blocks: each
    engine runs ``--block`` timed calls in turn (after one untimed call, so that another engine's spinning threads
    have calmed down), round after round."""
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up
        for index in range(args.warmup):
            call(name, index % count)
    for round_start in range(0, repeats, args.block):
        for name in names:
            indices = [(round_start + i) % count for i in range(min(args.block, repeats - round_start))]
            call(name, indices[0])
            for index in indices:
                start = time.perf_counter()
                call(name, index)
                times[name].append(time.perf_counter() - start)
    return times


if __name__ == "__main__":
    sys.exit(main())
