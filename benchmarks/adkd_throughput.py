"""AD-KD throughput, memory and cache-build cost against vanilla KD (issue #3; figures in docs/benchmarks.md).

    python benchmarks/adkd_throughput.py steps   --teacher RUN_OR_MODEL_DIR [--steps 30]
    python benchmarks/adkd_throughput.py memory  --teacher RUN_OR_MODEL_DIR
    python benchmarks/adkd_throughput.py cache   --teacher RUN_OR_MODEL_DIR

``steps``: training-step time of several variants in one process on the same random SST-2 batches (batch
32, dynamic padding), step = forward, loss, backward, gradient clipping, AdamW step, exactly as kdkit's
trainer does it (``DistillationTrainer.compute_loss``). The variants run round-robin, one step each per
batch, so background load hits all of them alike; after a warm-up the median step time is reported, and the
median of the per-batch ratios to vanilla KD. Variants:

- ``kd``        vanilla KD (kdkit's ``kd``), teacher logits from the cache (kdkit's default)
- ``kd-live``   vanilla KD with a teacher forward in every step (what most KD code does)
- ``adkd``      AD-KD, m = 1, teacher logits and maps from the cache
- ``adkd-live`` AD-KD, m = 1, teacher logits and maps computed in every step (--no-teacher-cache)
- ``adkd-2v``   AD-KD with both views of the binary task (binary_single_view=false)
- ``adkd-m4``   AD-KD, m = 4 path points (cached teacher; the student runs 3 extra path points as one batch)
- ``reference`` a re-creation of the reference code's setting for the same loss: static padding to 128,
                teacher attribution recomputed every step with eager attention, path points one after another

``memory``: peak resident memory (VmHWM, reset before training) of ``kd`` and ``adkd`` in child processes; the
teacher-signal cache of a cached variant is built by an earlier child, so the measured one reads it from disk.
``cache``: wall time of building AD-KD's teacher-signal cache (logits + maps) for the full SST-2 training set.

Results go to benchmarks/results/ (ignored by git) as JSON; docs/benchmarks.md records them.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep: the cores are shared
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from datasets import Dataset
from step_timing import train_step  # beside this script: the step the throughput benchmarks time

from kdkit.config import DataConfig, TrainingConfig
from kdkit.data.batching import DistillationCollator
from kdkit.data.tokenizing import load_task_data
from kdkit.losses.base import DistillationLoss, LossContext
from kdkit.models.loading import freeze, load_classifier, load_tokenizer, set_attention
from kdkit.models.students import build_student
from kdkit.plugins.manager import PluginManager
from kdkit.plugins.options import provider_factory
from kdkit.records.runs import resolve_model_dir
from kdkit.training.arguments import training_arguments
from kdkit.training.teacher_cache import add_teacher_signals
from kdkit.training.trainer import DistillationTrainer

RESULTS = Path(__file__).resolve().parent / "results"
GLUE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue"


@dataclass(frozen=True)
class Variant:
    """One benchmarked training setup."""

    loss: str
    loss_options: dict[str, Any] = field(default_factory=dict)
    ig_options: dict[str, Any] = field(default_factory=dict)
    cached: bool = True  # teacher signals from the cache (else computed in every step)
    pad_to: int | None = None  # static padding (else each batch to its longest example)
    eager_teacher: bool = False  # the teacher with eager attention (the reference code's transformers 3)
    grouped: bool = False  # batches of similar length (kdkit's --group-by-length)


KD = {"alpha": 0.8, "temperature": 2.0}
VARIANTS: dict[str, Variant] = {
    "kd": Variant("kd", KD),
    "kd-live": Variant("kd", KD, cached=False),
    "adkd": Variant("adkd"),
    "adkd-live": Variant("adkd", cached=False),
    "adkd-2v": Variant("adkd", {"binary_single_view": False}),
    "adkd-m4": Variant("adkd", ig_options={"steps": 4}),
    "kd-grouped": Variant("kd", KD, grouped=True),
    "adkd-grouped": Variant("adkd", grouped=True),
    "reference": Variant("adkd", ig_options={"batch_size": 32}, cached=False, pad_to=128, eager_teacher=True),
}
ADKD_DEFAULTS = {"alpha": 0.8, "beta": 1.0, "temperature": 2.0}  # the paper's SST-2 values


def machine() -> dict[str, Any]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
        "date": date.today().isoformat(),
    }


class Setup:
    """Teacher, tokenizer and the SST-2 examples of the benchmark batches."""

    def __init__(
        self, teacher: str, data_dir: Path, batch_size: int, batches: int, seed: int, max_train: int | None = None
    ):
        self.teacher_path = str(resolve_model_dir(Path(teacher)))
        self.tokenizer = load_tokenizer(self.teacher_path)
        data = DataConfig(task="sst2", data_dir=data_dir, max_train_samples=max_train)
        self.task_data = load_task_data(data, self.tokenizer)
        self.task = self.task_data.task
        assert self.task_data.train is not None
        self.train = self.task_data.train
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self.train), generator=generator)[: batch_size * batches].tolist()
        self.subset: Dataset = self.train.select(order)  # the benchmark's examples, in batch order
        self.batch_size = batch_size
        self.batches = batches
        self.pad = int(self.tokenizer.pad_token_id or 0)

    def teacher(self, eager: bool = False) -> Any:
        teacher = load_classifier(self.teacher_path, self.task, attn_implementation="eager" if eager else None)
        return freeze(teacher)


def build_variant(
    setup: Setup, name: str, plugins: PluginManager, home: Path, teacher: Any, eager_teacher: Any
) -> dict[str, Any]:
    variant = VARIANTS[name]
    loss_cls = plugins.loss(variant.loss)
    options = {**(ADKD_DEFAULTS if variant.loss == "adkd" else {}), **variant.loss_options}
    loss: DistillationLoss = loss_cls(loss_cls.Options(**options), setup.task)
    option_models: dict[str, Any] = {variant.loss: loss.options}
    if loss.providers_used():
        option_models["ig"] = plugins.provider("ig").Options(**variant.ig_options)
    factory = provider_factory(plugins.provider, option_models)
    the_teacher = eager_teacher if variant.eager_teacher else teacher
    attn = "eager" if loss_cls.needs.double_backward else None
    torch.manual_seed(0)
    student = build_student("copy:3", teacher, setup.task, attn_implementation=attn)
    if attn is not None:
        set_attention(student, attn)
    dataset = setup.subset
    if variant.grouped:  # the same examples, batched by length
        dataset = dataset.select(sorted(range(len(dataset)), key=lambda i: dataset[i]["length"]))
    if variant.cached:
        os.environ["KDKIT_HOME"] = str(home)
        ctx = LossContext(task=setup.task, student=student, teacher=the_teacher, provider_factory=factory)
        dataset = add_teacher_signals(dataset, loss, ctx, device=torch.device("cpu"), pad_token_id=setup.pad)
    collator = DistillationCollator(setup.pad, pad_to=variant.pad_to, token_signals=sorted(loss.needs.token_signals))
    args = training_arguments(
        TrainingConfig(batch_size=setup.batch_size, device="cpu", precision="fp32", max_steps=setup.batches),
        setup.task,
        tempfile.mkdtemp(prefix="adkd-bench-"),
        has_eval=False,
    )
    trainer = DistillationTrainer(
        model=student,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        loss=loss,
        context=LossContext(setup.task, student, None if variant.cached else the_teacher, provider_factory=factory),
    )
    trainer.create_optimizer_and_scheduler(num_training_steps=setup.batches)
    rows = [dataset[i] for i in range(len(dataset))]
    batches = [collator(rows[i : i + setup.batch_size]) for i in range(0, len(rows), setup.batch_size)]
    if variant.grouped:  # batches in random order, as the length-grouped sampler gives them
        order = torch.randperm(len(batches), generator=torch.Generator().manual_seed(1)).tolist()
        batches = [batches[i] for i in order]
    return {"trainer": trainer, "batches": batches}


def run_steps(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    plugins = PluginManager(autoload=False, enable=["adkd"])
    setup = Setup(args.teacher, args.data_dir, args.batch_size, args.warmup + args.steps, args.seed)
    teacher, eager_teacher = setup.teacher(), setup.teacher(eager=True)
    home = Path(tempfile.mkdtemp(prefix="adkd-bench-home-"))
    variants = {name: build_variant(setup, name, plugins, home, teacher, eager_teacher) for name in args.variants}
    times: dict[str, list[float]] = {name: [] for name in variants}
    lengths = {name: [int(b["input_ids"].shape[1]) for b in v["batches"]] for name, v in variants.items()}
    for index in range(setup.batches):
        for name, variant in variants.items():
            seconds = train_step(variant["trainer"], variant["batches"][index])
            if index >= args.warmup:
                times[name].append(seconds)
        print(
            f"batch {index + 1}/{setup.batches}: " + " ".join(f"{n}={times[n][-1]:.2f}s" for n in times if times[n]),
            flush=True,
        )
    result: dict[str, Any] = {"batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup, "variants": {}}
    for name, values in times.items():
        entry: dict[str, Any] = {
            "median_step_s": statistics.median(values),
            "mean_step_s": statistics.mean(values),
            "examples_per_s": args.batch_size / statistics.mean(values),
            "mean_padded_length": statistics.mean(lengths[name][args.warmup :]),
        }
        for reference in ("kd", "kd-live", "reference"):
            if reference in times and reference != name:
                if not (VARIANTS[name].grouped or VARIANTS[reference].grouped):  # same batches: paired ratios
                    entry[f"ratio_to_{reference}_paired_median"] = statistics.median(
                        a / b for a, b in zip(values, times[reference], strict=True)
                    )
                entry[f"ratio_to_{reference}_of_means"] = statistics.mean(values) / statistics.mean(times[reference])
        result["variants"][name] = entry
    if "reference" in times:
        for name in ("adkd", "adkd-grouped"):
            if name in times:
                result[f"examples_per_s_{name}_over_reference"] = statistics.mean(times["reference"]) / statistics.mean(
                    times[name]
                )
    return result


def run_memory(args: argparse.Namespace) -> dict[str, Any]:
    """Each variant in its own child process; reports its peak RSS during training.

    For cached variants a first child builds the teacher-signal cache and exits, so that the measured child
    reads it from disk as every later run does (building it is a one-off with its own memory profile).
    """
    out: dict[str, Any] = {}
    for name in args.variants:
        home = tempfile.mkdtemp(prefix="adkd-bench-memory-")
        command = [sys.executable, __file__, "_memory_child", "--teacher", args.teacher, "--variants", name,
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
                   "--data-dir", str(args.data_dir), "--home", home]  # fmt: skip
        if VARIANTS[name].cached:
            subprocess.run([*command, "--prepare-only"], capture_output=True, text=True, check=True)
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        out[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(name, out[name], flush=True)
    for base in ("kd", "kd-live"):
        other = base.replace("kd", "adkd")
        if base in out and other in out:
            out[f"peak_ratio_{other}_to_{base}"] = out[other]["peak_rss_mib"] / out[base]["peak_rss_mib"]
            out[f"training_increase_ratio_{other}_to_{base}"] = (
                out[other]["training_increase_mib"] / out[base]["training_increase_mib"]
            )
    return out


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def memory_child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    plugins = PluginManager(autoload=False, enable=["adkd"])
    setup = Setup(args.teacher, args.data_dir, args.batch_size, args.warmup + args.steps, args.seed)
    teacher = setup.teacher()
    eager_teacher = setup.teacher(eager=True) if VARIANTS[args.variants[0]].eager_teacher else teacher
    variant = build_variant(setup, args.variants[0], plugins, Path(args.home), teacher, eager_teacher)
    if args.prepare_only:
        return
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before = _status_kib("VmRSS")
    for inputs in variant["batches"]:
        train_step(variant["trainer"], inputs)
    peak = _status_kib("VmHWM")
    result = {"rss_before_training_mib": before / 1024, "peak_rss_mib": peak / 1024}
    print(json.dumps({**result, "training_increase_mib": (peak - before) / 1024}))


def run_cache(args: argparse.Namespace) -> dict[str, Any]:
    """Build AD-KD's cache (logits and maps, m = 1) for the full SST-2 training set, from scratch."""
    torch.set_num_threads(args.threads)
    plugins = PluginManager(autoload=False, enable=["adkd"])
    setup = Setup(args.teacher, args.data_dir, args.batch_size, 1, args.seed)
    teacher = setup.teacher()
    loss_cls = plugins.loss("adkd")
    loss = loss_cls(loss_cls.Options(**ADKD_DEFAULTS), setup.task)
    factory = provider_factory(plugins.provider, {"ig": plugins.provider("ig").Options()})
    os.environ["KDKIT_HOME"] = tempfile.mkdtemp(prefix="adkd-bench-cache-")
    ctx = LossContext(task=setup.task, student=teacher, teacher=teacher, provider_factory=factory)
    start = time.perf_counter()
    add_teacher_signals(setup.train, loss, ctx, device=torch.device("cpu"), pad_token_id=setup.pad, batch_size=64)
    seconds = time.perf_counter() - start
    tokens = sum(setup.train["length"])
    return {
        "examples": len(setup.train),
        "real_tokens": tokens,
        "cache_build_s": seconds,
        "examples_per_s": len(setup.train) / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["steps", "memory", "cache", "_memory_child"])
    parser.add_argument("--teacher", required=True, help="fine-tuned SST-2 teacher (run or model directory)")
    parser.add_argument("--data-dir", type=Path, default=GLUE)
    parser.add_argument("--variants", nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--home", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.what == "_memory_child":
        memory_child(args)
        return
    if args.variants is None:
        args.variants = list(VARIANTS) if args.what == "steps" else ["kd", "adkd"]
    runner = {"steps": run_steps, "memory": run_memory, "cache": run_cache}[args.what]
    result = {"benchmark": args.what, "machine": machine(), "teacher": args.teacher, **runner(args)}
    print(json.dumps(result, indent=2))
    out = args.out or RESULTS / f"adkd_{args.what}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
