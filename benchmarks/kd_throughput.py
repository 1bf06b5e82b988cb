"""Training throughput of vanilla KD on SST-2 (CPU): static padding to 128 vs dynamic padding vs length grouping.

Runs the real training loop (DistillationTrainer, teacher-signal cache on) for a fixed number of steps in
each padding mode, in one process, and reports training examples per second after a warm-up. The teacher
is the embedded all-MiniLM-L6-v2 with a classification head (speed does not depend on its weights), the
student is copy:3.

    python benchmarks/kd_throughput.py --data-dir ../shared/data/glue [--steps 40] [--warmup 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback

from kdkit.config import DataConfig, TrainingConfig, default_base_model
from kdkit.data.batching import DistillationCollator
from kdkit.data.tokenizing import load_task_data
from kdkit.losses.base import LossContext
from kdkit.losses.kd import KDOptions, VanillaKD
from kdkit.models.loading import freeze, load_base_for_task, load_tokenizer, quiet_libraries
from kdkit.models.students import copy_student
from kdkit.training.arguments import training_arguments
from kdkit.training.teacher_cache import add_teacher_signals
from kdkit.training.trainer import DistillationTrainer


class StepTimer(TrainerCallback):
    """Wall time of every optimiser step."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
        self._start = time.perf_counter()

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        self.times.append(time.perf_counter() - self._start)


def measure(mode: str, args: argparse.Namespace, teacher_path: str, workdir: Path) -> dict[str, Any]:
    padding = "max_length" if mode == "static-128" else "dynamic"
    data_config = DataConfig(
        task="sst2",
        data_dir=args.data_dir,
        max_length=128,
        padding=padding,
        group_by_length=mode == "dynamic+grouped",
        max_train_samples=args.samples,
        max_eval_samples=64,
    )
    tokenizer = load_tokenizer(teacher_path)
    data = load_task_data(data_config, tokenizer)
    task = data.task
    teacher = freeze(load_base_for_task(teacher_path, task))
    student = copy_student(teacher, 3)
    loss = VanillaKD(KDOptions(alpha=0.5, temperature=2.0), task)
    assert data.train is not None
    train = data.train
    if args.teacher_cache:
        train = add_teacher_signals(
            train,
            loss,
            LossContext(task, student, teacher),
            device=torch.device("cpu"),
            pad_token_id=int(tokenizer.pad_token_id or 0),
        )
    training = TrainingConfig(
        max_steps=args.warmup + args.steps, batch_size=args.batch_size, logging_steps=1000, term_grad_norm_steps=0
    )
    targs = training_arguments(
        training, task, str(workdir / mode), has_eval=False, group_by_length=data_config.group_by_length
    )
    targs.save_strategy = "no"
    timer = StepTimer()
    trainer = DistillationTrainer(
        model=student,
        args=targs,
        train_dataset=train,
        data_collator=DistillationCollator(
            int(tokenizer.pad_token_id or 0), pad_to=128 if padding == "max_length" else None
        ),
        loss=loss,
        context=LossContext(task, student, None if args.teacher_cache else teacher),
        callbacks=[timer],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    measured = timer.times[args.warmup :]
    step = statistics.median(measured)
    return {
        "mode": mode,
        "median_step_s": round(step, 4),
        "mean_step_s": round(statistics.fmean(measured), 4),
        "examples_per_s": round(args.batch_size / step, 1),
        "steps": len(measured),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("KDKIT_GLUE_DIR", "../shared/data/glue"))
    parser.add_argument("--steps", type=int, default=40, help="measured steps per mode")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4000, help="SST-2 training examples to sample batches from")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-teacher-cache", dest="teacher_cache", action="store_false")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/kd_throughput.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quiet_libraries()
    teacher_path = default_base_model()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("static-128", "dynamic", "dynamic+grouped"):
            results.append(measure(mode, args, teacher_path, Path(tmp)))
            print(json.dumps(results[-1]), flush=True)
    static = results[0]["examples_per_s"]
    print("\n| padding | median step (s) | examples/s | vs static-128 |")
    print("|---|---:|---:|---:|")
    for row in results:
        row["speedup_vs_static"] = round(row["examples_per_s"] / static, 2)
        cells = [row["mode"], f"{row['median_step_s']:.3f}", f"{row['examples_per_s']:.1f}"]
        print("| " + " | ".join(cells) + f" | {row['speedup_vs_static']:.2f}x |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "date": date.today().isoformat(),
                "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}",
                "threads": args.threads,
                "batch_size": args.batch_size,
                "teacher_cache": args.teacher_cache,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
