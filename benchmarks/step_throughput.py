"""Steady-state training throughput of the distillation step (issue 9), through kdkit's real training loop.

Each variant is a ``DistillationTrainer`` as ``kdkit distill`` builds it (``training_arguments``, the
``DistillationCollator``, the teacher-signal cache, length-grouped dynamic-padding batches), trained for
``--warmup + --steps`` optimiser steps with evaluation and checkpoints off. A step's time is the wall time
from the end of the previous step to the end of this one (data loading, collation, forward, loss, backward,
clipping, AdamW, scheduler, logging): everything the loop does per step. The first ``--warmup`` steps are
dropped; medians and examples/s are over the rest.

Variants: ``kd`` (vanilla KD, cached teacher logits), ``kd-live`` (teacher forward every step), ``adkd``
(AD-KD, m = 1, cached teacher logits and maps), ``adkd-live`` (teacher attribution every step).

Order (``--order``): ``round-robin`` (the CPU default) runs the variants in one process, one step each in
turn on the same batches, so background load hits them alike (each in its own thread; only the one holding
the turn runs); ``sequential`` (the CUDA default) runs one variant after the other, with a CUDA
synchronisation only at the end of the warm-up and of the last step, so host and device overlap as in a
real run (examples/s then comes from that window).

Modes:

- ``real``: the embedded all-MiniLM-L6-v2 with a classification head as teacher (speed does not depend on
  its weights), ``copy:3`` student, SST-2 / MRPC from ``--data-dir``.
- ``host``: host overhead. A tiny BERT (2 layers, hidden 32, 2 heads, a 512-word vocabulary) built in code,
  teacher and student alike; the same real batches with token ids folded into the tiny vocabulary
  (``id % 512``: lengths and padding stay those of the real data). Arithmetic is negligible, so the step
  time is the framework's own per-step cost. The tiny students run eager attention under both losses: CPU
  SDPA's backward costs about 2 ms per call even at these sizes (kernel time, not host work, and nothing
  like it on a GPU), which would hide what this mode measures. One torch thread by default (no OpenMP
  hand-offs between cores that other jobs share).

    python benchmarks/step_throughput.py --mode host --tasks sst2 --batch-sizes 32 --steps 200
    python benchmarks/step_throughput.py --mode real --tasks sst2 mrpc --batch-sizes 32 128
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep: the cores are shared
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
import transformers
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import SaveStrategy

import kdkit
from kdkit.config import DataConfig, TrainingConfig, default_base_model
from kdkit.data.batching import DistillationCollator
from kdkit.data.tokenizing import load_task_data
from kdkit.losses.base import DistillationLoss, LossContext
from kdkit.models.loading import freeze, load_base_for_task, load_tokenizer, quiet_libraries, set_attention
from kdkit.models.students import build_student
from kdkit.plugins.manager import PluginManager
from kdkit.plugins.options import provider_factory
from kdkit.training.arguments import resolve_device, training_arguments
from kdkit.training.teacher_cache import add_teacher_signals
from kdkit.training.trainer import DistillationTrainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_timing import BareLoop, Baton, LengthRecorder, StepClock
from study_common import cpu_model

GLUE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue"
RESULTS = Path(__file__).resolve().parent / "results"
TINY_VOCAB = 512
KD = {"alpha": 0.8, "temperature": 2.0}
ADKD = {"alpha": 0.8, "beta": 1.0, "temperature": 2.0}  # the paper's SST-2 values; m = 1 (ig's default)


@dataclass(frozen=True)
class Variant:
    loss: str
    cached: bool


VARIANTS = {
    "kd": Variant("kd", True),
    "kd-live": Variant("kd", False),
    "adkd": Variant("adkd", True),
    "adkd-live": Variant("adkd", False),
}


def fold_ids(dataset: Any) -> Any:
    """Token ids into the tiny vocabulary (id % 512); lengths and padding unchanged."""

    def fold(batch: dict[str, list[Any]]) -> dict[str, Any]:
        return {"input_ids": [[i % TINY_VOCAB for i in row] for row in batch["input_ids"]]}

    return dataset.map(fold, batched=True, desc="folding ids")


def build_models(mode: str, task: Any, loss_cls: type[DistillationLoss]) -> tuple[Any, Any]:
    """(teacher, student) for a variant: frozen teacher; the student with eager attention under AD-KD (as
    ``kdkit distill`` runs it), and always in host mode."""
    attn = "eager" if loss_cls.needs.double_backward or mode == "host" else None
    if mode == "host":
        from kdkit.testing import tiny_classifier

        teacher = tiny_classifier("bert", num_labels=task.num_labels, vocab_size=TINY_VOCAB, max_positions=512)
    else:
        teacher = load_base_for_task(default_base_model(), task)
    freeze(teacher)
    torch.manual_seed(0)
    student = build_student("copy:2" if mode == "host" else "copy:3", teacher, task, attn_implementation=attn)
    if attn is not None:
        set_attention(student, attn)
    return teacher, student


def build_trainer(name: str, data: Any, args: argparse.Namespace, batch_size: int, plugins: PluginManager) -> Any:
    variant = VARIANTS[name]
    task = data.task
    loss_cls = plugins.loss(variant.loss)
    loss = loss_cls(loss_cls.Options(**(ADKD if variant.loss == "adkd" else KD)), task)
    options: dict[str, Any] = {variant.loss: loss.options}
    options.update({p: plugins.provider(p).Options() for p in loss.providers_used()})
    factory = provider_factory(plugins.provider, options)
    teacher, student = build_models(args.mode, task, loss_cls)
    training = TrainingConfig(
        max_steps=args.warmup + args.steps,
        batch_size=batch_size,
        device=args.device,
        precision=args.precision,
        term_grad_norm_steps=0,
        seed=args.seed,
        **args.training,
    )
    targs = training_arguments(
        training, task, tempfile.mkdtemp(prefix="kdkit-step-"), has_eval=False, group_by_length=args.group
    )
    targs.save_strategy = SaveStrategy.NO
    train = data.train
    pad = data.pad
    if variant.cached:
        teacher.to(targs.device)
        ctx = LossContext(task=task, student=student, teacher=teacher, provider_factory=factory)
        train = add_teacher_signals(train, loss, ctx, device=targs.device, pad_token_id=pad, batch_size=64)
    signals = sorted(loss.needs.token_signals)
    multiple = {"pad_to_multiple_of": args.pad_to_multiple_of} if args.pad_to_multiple_of else {}
    collator = LengthRecorder(DistillationCollator(pad, token_signals=signals, **multiple))
    trainer = DistillationTrainer(
        model=student,
        args=targs,
        train_dataset=train,
        data_collator=collator,
        loss=loss,
        context=LossContext(task, student, None if variant.cached else teacher, provider_factory=factory),
    )
    trainer.remove_callback(PrinterCallback)
    return trainer, collator


def run_group(data: Any, args: argparse.Namespace, batch_size: int, plugins: PluginManager) -> dict[str, Any]:
    """All variants at one task and batch size, round-robin or one after another."""
    built = {name: build_trainer(name, data, args, batch_size, plugins) for name in args.variants}
    if args.floor:
        for name in args.variants:
            trainer, collator = build_trainer(name, data, args, batch_size, plugins)
            built[f"{name}@floor"] = (BareLoop(trainer), collator)
    device = built[args.variants[0]][0].args.device
    sync: Callable[[], None] = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    order = args.order or ("sequential" if device.type == "cuda" else "round-robin")
    baton = Baton(list(built), enabled=order == "round-robin")
    clocks = {name: StepClock(name, baton, sync, args.warmup, args.seed) for name in built}
    errors: list[BaseException] = []

    def train(name: str) -> None:
        try:
            built[name][0].add_callback(clocks[name])
            built[name][0].train()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            baton.fail()

    if baton.enabled:
        threads = [threading.Thread(target=train, args=(name,), name=name) for name in built]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        for name in built:
            train(name)
    if errors:
        raise errors[0]
    return summarise(built, clocks, args, batch_size, order, str(device))


def summarise(built: dict[str, Any], clocks: dict[str, StepClock], args: argparse.Namespace, batch_size: int,
              order: str, device: str) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {"batch_size": batch_size, "order": order, "device": device, "variants": {}}
    lengths = {name: collator.lengths[: args.warmup + args.steps] for name, (_, collator) in built.items()}
    measured = {name: clock.times[args.warmup :] for name, clock in clocks.items()}
    for name, times in measured.items():
        clock = clocks[name]
        sequential = order == "sequential" and len(clock.window) == 2
        window = clock.window[-1] - clock.window[0] if sequential else sum(times)
        padded = lengths[name][args.warmup :]
        entry = {
            "median_step_ms": round(1000 * statistics.median(times), 3),
            "mean_step_ms": round(1000 * statistics.fmean(times), 3),
            "median_cpu_ms": round(1000 * statistics.median(clock.cpu_times[args.warmup :]), 3),
            "examples_per_s": round(batch_size * len(times) / window, 1),
            "steps": len(times),
            "mean_padded_length": round(statistics.fmean(padded), 1) if padded else None,
        }
        for base in ("kd", "kd-live"):
            if base in measured and base != name:
                pairs = zip(times, measured[base], strict=True)
                entry[f"ratio_to_{base}_paired_median"] = round(statistics.median(a / b for a, b in pairs), 3)
                cpu_pairs = zip(clock.cpu_times[args.warmup :], clocks[base].cpu_times[args.warmup :], strict=True)
                entry[f"cpu_ratio_to_{base}_paired_median"] = round(statistics.median(a / b for a, b in cpu_pairs), 3)
                of_medians = statistics.median(times) / statistics.median(measured[base])
                entry[f"ratio_to_{base}_of_medians"] = round(of_medians, 3)
        out["variants"][name] = entry
    out["same_batches"] = len({tuple(v) for v in lengths.values()}) == 1 if all(lengths.values()) else None
    return out


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return {**info, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}  # fmt: skip


class TaskBatches:
    """A task's tokenised training split, ready for the trainers (ids folded in host mode)."""

    def __init__(self, task_name: str, args: argparse.Namespace, samples: int) -> None:
        tokenizer = load_tokenizer(default_base_model())
        config = DataConfig(task=task_name, data_dir=args.data_dir, max_train_samples=samples, max_eval_samples=8)
        loaded = load_task_data(config, tokenizer)
        assert loaded.train is not None
        self.task = loaded.task
        self.train = fold_ids(loaded.train) if args.mode == "host" else loaded.train
        self.pad = int(tokenizer.pad_token_id or 0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["real", "host"], default="real")
    parser.add_argument("--tasks", nargs="+", default=["sst2", "mrpc"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 128])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["kd", "adkd"])
    parser.add_argument("--steps", type=int, default=30, help="measured steps per variant")
    parser.add_argument("--warmup", type=int, default=5, help="steps dropped before measuring")
    parser.add_argument("--samples", type=int, default=None, help="training examples per task (default: enough)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    parser.add_argument("--order", choices=["round-robin", "sequential"], default=None)
    parser.add_argument("--no-group-by-length", dest="group", action="store_false", help="random batches")
    parser.add_argument("--pad-to-multiple-of", type=int, default=None, help="length buckets (for --set compile=true)")
    floor = "also each variant's compute_loss, backward, clipping, AdamW in a plain loop (VARIANT@floor)"
    parser.add_argument("--floor", action="store_true", help=floor)
    threads = "torch threads (default: 1 in host mode, else 2 on CPU, torch's own on CUDA)"
    parser.add_argument("--threads", type=int, default=None, help=threads)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("KDKIT_GLUE_DIR", GLUE)))
    parser.add_argument("--set", dest="training", action="append", default=[], metavar="FIELD=VALUE",
                        help="a TrainingConfig field for every variant (e.g. dataloader_workers=2)")  # fmt: skip
    parser.add_argument("--label", default="", help="a name for this run in the JSON (e.g. 'before')")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    import yaml

    args.training = {k: yaml.safe_load(v) for k, _, v in (item.partition("=") for item in args.training)}
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads is None and not torch.cuda.is_available():
        args.threads = 1 if args.mode == "host" else 2
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_libraries()
    os.environ.setdefault("KDKIT_HOME", tempfile.mkdtemp(prefix="kdkit-step-home-"))
    plugins = PluginManager(autoload=False, enable=["adkd"])
    resolve_device(TrainingConfig(device=args.device))  # fails early on --device cuda without one
    import kdkit_adkd

    result: dict[str, Any] = {
        "benchmark": "step_throughput",
        "label": args.label,
        "mode": args.mode,
        "started": datetime.now().isoformat(timespec="seconds"),
        "load_average_at_start": os.getloadavg(),
        "machine": machine(),
        "kdkit": {
            "version": kdkit.__version__,
            "path": str(Path(kdkit.__file__).parent),
            "adkd_path": str(Path(kdkit_adkd.__file__).parent),
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("output", "data_dir")},
        "runs": [],
    }
    samples = args.samples or max(args.batch_sizes) * (args.warmup + args.steps)
    out = args.output or RESULTS / f"step_throughput-{args.mode}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    for task_name in args.tasks:
        data = TaskBatches(task_name, args, samples)
        for batch_size in args.batch_sizes:
            run = {"task": task_name, "examples": len(data.train), **run_group(data, args, batch_size, plugins)}
            result["runs"].append(run)
            result["load_average_at_end"] = os.getloadavg()
            out.write_text(json.dumps(result, indent=2) + "\n")  # after each run: a timeout keeps what finished
            print(json.dumps(run), file=sys.stderr, flush=True)
    print_table(result)
    return result


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{result['mode']} mode, {result['machine'].get('gpu') or result['machine']['cpu']}, "
          f"load {result['load_average_at_start'][0]:.2f} -> {result['load_average_at_end'][0]:.2f}")  # fmt: skip
    print("| task | batch | variant | step (ms) | CPU (ms) | examples/s | padded length | vs kd (paired) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for run in result["runs"]:
        for name, v in run["variants"].items():
            ratio = v.get("ratio_to_kd_paired_median")
            step, cpu, speed = f"{v['median_step_ms']:.1f}", f"{v['median_cpu_ms']:.1f}", f"{v['examples_per_s']:.0f}"
            cells = [run["task"], str(run["batch_size"]), name, step, cpu, speed, str(v["mean_padded_length"])]
            cells.append(f"{ratio:.2f}x" if ratio else "")
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
