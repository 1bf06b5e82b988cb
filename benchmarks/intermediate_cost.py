"""What intermediate-layer distillation costs (issue 13; figures in docs/benchmarks.md).

    python benchmarks/intermediate_cost.py steps [--steps 30 --warmup 3]
    python benchmarks/intermediate_cost.py cache-size

``steps``: training-step time of vanilla KD and of each new term on the same random SST-2 batches (batch 32,
dynamic padding, max length 128), in one process, round-robin (one step of every variant per batch), so that
background load hits them alike; reported as the median step time and the median of the per-batch ratios to
``kd``. A step is what kdkit's trainer does: ``DistillationTrainer.compute_loss`` (cached teacher signals from
the cache built beforehand, live ones computed in the step), backward, clipping, AdamW. Teacher: the embedded
all-MiniLM-L6-v2 with a fresh two-class head (speed does not depend on its weights); student ``copy:3``.

- ``kd``            vanilla KD (α = 0.8, T = 2), teacher logits cached: kdkit's default
- ``kd-live``       vanilla KD with a teacher forward in every step (``--no-teacher-cache``)
- ``kd-eager``      ``kd`` with teacher and student on eager attention: what the attention loss's kernel costs
- ``kd+hidden``     ``kd`` plus the ``hidden`` loss (MSE of 3 mapped layers over every real token)
- ``kd+hidden-cls`` ``kd`` plus ``hidden`` with ``target=cls`` (PKD)
- ``kd+attention``  ``kd`` plus the ``attention`` loss (KL of 3 mapped layers; eager attention)
- ``adkd``          AD-KD, paper SST-2 values (α = 0.8, β = 1, T = 2), m = 1, maps at the embeddings, cached
- ``adkd+hidden``   ``adkd`` plus ``hidden``
- ``adkd@2``        AD-KD with the maps at student layer 2 / teacher layer 4 (``ig.layer=2``)

``cache-size``: what caching per-layer teacher states would take, from the real token counts of the GLUE
training sets here (MiniLM's tokenizer, max length 128), against the logits and AD-KD maps kdkit caches.

Results go to benchmarks/results/intermediate_*.json (ignored by git).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep: the cores are shared
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from step_timing import train_step  # one optimiser step as the trainer takes it (benchmarks/, beside this)

from kdkit.config import DataConfig, TrainingConfig, default_base_model
from kdkit.data.batching import DistillationCollator
from kdkit.data.tasks import TaskSpec
from kdkit.data.tokenizing import load_task_data
from kdkit.losses.base import LossContext
from kdkit.losses.composite import build_loss
from kdkit.models.loading import freeze, load_base_for_task, load_tokenizer, quiet_libraries, set_attention
from kdkit.models.students import copy_student
from kdkit.plugins.manager import PluginManager
from kdkit.plugins.options import provider_factory
from kdkit.training.arguments import training_arguments
from kdkit.training.teacher_cache import add_teacher_signals
from kdkit.training.trainer import DistillationTrainer

RESULTS = Path(__file__).resolve().parent / "results"
GLUE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue"
KD = {"alpha": 0.8, "temperature": 2.0}
ADKD = {"alpha": 0.8, "beta": 1.0, "temperature": 2.0}
#: name -> (loss, component options, teacher-signal cache on, eager attention everywhere)
VARIANTS: dict[str, tuple[str, dict[str, dict[str, Any]], bool, bool]] = {
    "kd": ("kd", {"kd": KD}, True, False),
    "kd-live": ("kd", {"kd": KD}, False, False),
    "kd-eager": ("kd", {"kd": KD}, True, True),
    "kd+hidden": ("kd+hidden", {"kd": KD}, True, False),
    "kd+hidden-cls": ("kd+hidden", {"kd": KD, "hidden": {"target": "cls"}}, True, False),
    "kd+attention": ("kd+attention", {"kd": KD}, True, False),
    "adkd": ("adkd", {"adkd": ADKD}, True, False),
    "adkd+hidden": ("adkd+hidden", {"adkd": ADKD}, True, False),
    "adkd@2": ("adkd", {"adkd": ADKD, "ig": {"layer": 2}}, True, False),
}


def machine() -> dict[str, Any]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average_at_start": os.getloadavg(),
        "date": date.today().isoformat(),
    }


def build(name: str, teacher_path: str, task: TaskSpec, subset: Any, pad: int, args: argparse.Namespace) -> Any:
    """A DistillationTrainer for variant ``name`` and its collated batches of ``subset`` (cache built first)."""
    loss_name, option_values, cached, eager = VARIANTS[name]
    plugins = PluginManager(autoload=False, enable=["adkd"])
    loss_cls = plugins.loss(loss_name)
    options = {n: plugins.component_options(n)(**v) for n, v in option_values.items()}  # type: ignore[misc]
    loss = build_loss(loss_cls, options, task)
    for provider in loss.providers_used():
        options.setdefault(provider, plugins.provider(provider).Options())
    teacher = load_base_for_task(teacher_path, task)
    freeze(teacher)
    if eager or loss_cls.needs.teacher_attention:
        set_attention(teacher, "eager")
    torch.manual_seed(0)
    student = copy_student(teacher, 3)
    kernel = "eager" if eager else loss_cls.needs.student_attention
    if kernel:
        set_attention(student, kernel)
    factory = provider_factory(plugins.provider, options)
    ctx = LossContext(task=task, student=student, teacher=teacher, provider_factory=factory)
    loss.prepare(ctx)
    dataset = subset
    if cached:
        dataset = add_teacher_signals(dataset, loss, ctx, device=torch.device("cpu"), pad_token_id=pad)
    collator = DistillationCollator(pad, token_signals=sorted(loss.needs.token_signals))
    training = TrainingConfig(batch_size=args.batch_size, device="cpu", precision="fp32", max_steps=args.batches)
    trainer = DistillationTrainer(
        model=student,
        args=training_arguments(training, task, tempfile.mkdtemp(prefix="inter-bench-"), has_eval=False),
        train_dataset=dataset,
        data_collator=collator,
        loss=loss,
        context=LossContext(
            task, student, teacher if (not cached or loss.needs.teacher_outputs) else None, provider_factory=factory
        ),
    )
    trainer.create_optimizer_and_scheduler(num_training_steps=args.batches)
    items = [dataset[i] for i in range(len(dataset))]
    batches = [collator(items[i : i + args.batch_size]) for i in range(0, len(items), args.batch_size)]
    return trainer, batches


def run_steps(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    quiet_libraries()
    at_start = machine()
    teacher_path = default_base_model()
    tokenizer = load_tokenizer(teacher_path)
    data_config = DataConfig(task="sst2", data_dir=args.data_dir, max_length=128, max_eval_samples=16)
    data = load_task_data(data_config, tokenizer)
    assert data.train is not None
    args.batches = args.warmup + args.steps
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(args.seed))
    subset = data.train.select(order[: args.batch_size * args.batches].tolist())  # the batches, in order
    pad = int(tokenizer.pad_token_id or 0)
    os.environ["KDKIT_HOME"] = tempfile.mkdtemp(prefix="inter-bench-home-")
    built = {name: build(name, teacher_path, data.task, subset, pad, args) for name in args.variants}
    times: dict[str, list[float]] = {name: [] for name in built}
    for index in range(args.batches):
        for name, (trainer, batches) in built.items():
            seconds = train_step(trainer, batches[index])
            if index >= args.warmup:
                times[name].append(seconds)
        print(f"batch {index + 1}/{args.batches}: " + " ".join(f"{n}={t[-1]:.2f}" for n, t in times.items() if t))
    lengths = [int(b["input_ids"].shape[1]) for b in next(iter(built.values()))[1][args.warmup :]]
    result: dict[str, Any] = {"machine": at_start, "batch_size": args.batch_size, "steps": args.steps}
    result["mean_padded_length"] = statistics.mean(lengths)
    result["variants"] = {
        name: {
            "median_step_s": statistics.median(values),
            "examples_per_s": args.batch_size / statistics.mean(values),
            "ratio_to_kd": statistics.median(a / b for a, b in zip(values, times["kd"], strict=True)),
        }
        for name, values in times.items()
    }
    result["load_average_at_end"] = os.getloadavg()
    return result


def run_cache_size(args: argparse.Namespace) -> dict[str, Any]:
    """Bytes per training set: logits, AD-KD maps, and per-layer hidden states / attentions (fp32)."""
    quiet_libraries()
    tokenizer = load_tokenizer(default_base_model())
    width, layers, heads, mapped = 384, 6, 12, 3  # MiniLM-L6; a copy:3 student maps 3 teacher layers
    out: dict[str, Any] = {}
    for task in ("cola", "mrpc", "stsb", "sst2"):
        data = load_task_data(DataConfig(task=task, data_dir=args.data_dir, max_length=128), tokenizer)
        assert data.train is not None
        lengths = [len(ids) for ids in data.train["input_ids"]]
        tokens, squares = sum(lengths), sum(n * n for n in lengths)
        classes = max(data.task.num_labels, 1)
        out[task] = {
            "examples": len(lengths),
            "tokens": tokens,
            "logits_mb": len(lengths) * classes * 4 / 1e6,
            "adkd_maps_mb": tokens * (1 if classes <= 2 else classes) * 4 / 1e6,
            "hidden_mapped_gb": tokens * mapped * width * 4 / 1e9,
            "hidden_all_gb": tokens * (layers + 1) * width * 4 / 1e9,
            "attentions_mapped_gb": squares * mapped * heads * 4 / 1e9,
        }
        print(task, out[task], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["steps", "cache-size"])
    parser.add_argument("--data-dir", type=Path, default=GLUE)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = run_steps(args) if args.part == "steps" else run_cache_size(args)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"intermediate_{args.part.replace('-', '_')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
