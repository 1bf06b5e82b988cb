"""bf16 against fp32 on the CPU (issue 30), in one process: the machine's matmul peaks, and the kd and adkd training
steps, the teacher-signal pass and evaluation of the embedded MiniLM (``copy:3`` student, a 6-layer teacher) in each
precision, with the FLOP/s each achieves as a fraction of the peak.

    python benchmarks/cpu_precision.py                       # batch 32 x length 128, 1 thread
    python benchmarks/cpu_precision.py --rounds 2 --length 32  # a smoke run

Times are CPU seconds of this process on one thread (``time.process_time``), not wall time: on a shared, loaded
machine they move far less than wall time. Variants run interleaved, one call each per round, and the figures are
medians, so compare the precisions as ratios within one run. A step is what the trainer does per batch
(``kdkit.training.step``: the student's forward with what the loss needs, the loss's terms, backward, AdamW (fused,
as the Trainer builds it) on fp32 master weights), on a fixed batch of random token ids with every position real;
the teacher's signals are computed once (as the teacher-signal cache does). FLOPs are counted from the shapes
(matrix products only): an encoder layer's forward is ``2·B·L·(4H² + 2HI) + 4·B·L²·H``; a training step is 3
forwards (backward = 2x); an adkd step (m = 1) is 6 (the forward, the input gradient, and the backward through
both); a teacher signal pass is 1 teacher forward for kd and 3 for adkd (forward and input gradient, no weight
gradients).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from kdkit.config import default_base_model
from kdkit.data.tasks import GLUE_TASKS
from kdkit.losses.base import Batch, LossContext
from kdkit.models.loading import freeze, load_base_for_task, quiet_libraries, set_attention
from kdkit.models.students import build_student
from kdkit.plugins.manager import get_plugin_manager
from kdkit.plugins.options import provider_factory
from kdkit.training.precision import autocast, cpu_bf16_features, teacher_precision
from kdkit.training.step import student_step_forward

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_common import cpu_model

RESULTS = Path(__file__).resolve().parent / "results"
OPTIONS = {"kd": {"alpha": 0.8, "temperature": 2.0}, "adkd": {"alpha": 0.8, "beta": 1.0, "temperature": 2.0}}
FORWARDS = {"kd": 3, "adkd": 6}  # forwards' worth of matrix products per training step
SIGNAL_FORWARDS = {"kd": 1, "adkd": 3}


def cpu_ms(call: Callable[[], object]) -> float:
    start = time.process_time()
    call()
    return (time.process_time() - start) * 1000


def matmul_gflops(dtype: torch.dtype, n: int, repeats: int) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    return max(2 * n**3 / cpu_ms(lambda: a @ b) / 1e6 for _ in range(repeats))


def layer_flops(config: Any, batch: int, length: int) -> float:
    """Matrix-product FLOPs of one encoder layer's forward (module docstring)."""
    h, i = config.hidden_size, config.intermediate_size
    return 2 * batch * length * (4 * h * h + 2 * h * i) + 4 * batch * length * length * h


class Setup:
    """Teacher, student, loss and a fixed batch for one loss (``kd`` or ``adkd``)."""

    def __init__(self, loss_name: str, batch: int, length: int) -> None:
        task, plugins = GLUE_TASKS["sst2"], get_plugin_manager()
        self.teacher = freeze(load_base_for_task(default_base_model(), task))
        torch.manual_seed(0)
        loss_cls = plugins.loss(loss_name)
        attention = "eager" if loss_cls.needs.double_backward else None
        self.student = build_student("copy:3", self.teacher, task, attn_implementation=attention)
        if attention:
            set_attention(self.student, attention)
        self.loss = loss_cls(loss_cls.Options(**OPTIONS[loss_name]), task)
        options: dict[str, Any] = {loss_name: self.loss.options}
        options.update({p: plugins.provider(p).Options() for p in self.loss.providers_used()})
        self.ctx = LossContext(
            task, self.student, self.teacher, provider_factory=provider_factory(plugins.provider, options)
        )
        self.loss.prepare(self.ctx)
        ids = torch.randint(1000, 20000, (batch, length))
        self.batch = Batch({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, torch.randint(0, 2, (batch,)))
        self.optimizer = torch.optim.AdamW(self.student.parameters(), lr=1e-5, fused=True)  # as the Trainer builds it
        self.signals: dict[str, dict[str, torch.Tensor]] = {}

    def teacher_signals(self, precision: str) -> dict[str, torch.Tensor]:
        differentiated = bool(self.loss.providers_used())  # as the teacher-signal cache runs it
        with torch.no_grad(), teacher_precision(self.teacher, precision, "cpu", differentiated=differentiated):
            return dict(self.loss.teacher_signals(self.teacher, self.batch, self.ctx))

    def step(self, precision: str) -> None:
        signals = self.signals.setdefault(precision, self.teacher_signals(precision))
        self.student.train()
        with autocast(precision, "cpu"):
            outputs = student_step_forward(self.student, self.batch, self.loss, self.ctx)
            total = sum(self.loss(self.batch, outputs.logits, signals, self.ctx).values())
        total.backward()  # type: ignore[union-attr]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def evaluate(self, precision: str) -> None:
        self.student.eval()
        with torch.no_grad(), autocast(precision, "cpu") if precision != "fp32" else nullcontext():
            self.student(**self.batch.inputs)


def variants(args: argparse.Namespace) -> dict[str, tuple[Callable[[], object], float]]:
    """name -> (one call, its matrix-product FLOPs), for each loss, measure and precision."""
    found: dict[str, tuple[Callable[[], object], float]] = {}
    for loss_name in args.losses:
        setup = Setup(loss_name, args.batch_size, args.length)
        student = (
            layer_flops(setup.student.config, args.batch_size, args.length) * setup.student.config.num_hidden_layers
        )
        teacher = (
            layer_flops(setup.teacher.config, args.batch_size, args.length) * setup.teacher.config.num_hidden_layers
        )
        for precision in ("fp32", "bf16"):
            found[f"{loss_name} step, {precision}"] = (partial(setup.step, precision), FORWARDS[loss_name] * student)
            signals = partial(setup.teacher_signals, precision)
            found[f"{loss_name} teacher signals, {precision}"] = (signals, SIGNAL_FORWARDS[loss_name] * teacher)
            if loss_name == args.losses[0]:
                found[f"evaluation, {precision}"] = (partial(setup.evaluate, precision), student)
    return found


def measure(calls: dict[str, tuple[Callable[[], object], float]], rounds: int) -> dict[str, list[float]]:
    for call, _ in calls.values():  # warm-up: first-call allocations, the teacher signals of each precision
        call()
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, (call, _) in calls.items():
            times[name].append(cpu_ms(call))
    return times


def table(times: dict[str, list[float]], flops: dict[str, float], peaks: dict[str, float]) -> list[str]:
    lines = [
        "| what | precision | CPU ms (median) | speed-up vs fp32 | GFLOP/s | of the bf16 peak | of the fp32 peak |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, values in times.items():
        what, precision = name.rsplit(", ", 1)
        median = statistics.median(values)
        base = statistics.median(times[f"{what}, fp32"])
        gflops = flops[name] / median / 1e6
        lines.append(
            f"| {what} | {precision} | {median:.0f} | {base / median:.2f}x | {gflops:.0f} | "
            f"{gflops / peaks['bf16']:.0%} | {gflops / peaks['fp32']:.0%} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5, help="timed calls per variant (interleaved)")
    parser.add_argument("--losses", nargs="+", default=["kd", "adkd"], choices=("kd", "adkd"))
    parser.add_argument(
        "--output", type=Path, help="JSON results [default: benchmarks/results/cpu_precision-<time>.json]"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    quiet_libraries()
    peaks = {
        name: matmul_gflops(dtype, 1024, 10) for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))
    }
    calls = variants(args)
    load_before = os.getloadavg()[0]
    times = measure(calls, args.rounds)
    lines = [
        f"{cpu_model()}, bf16 units {', '.join(cpu_bf16_features()) or 'none'}, torch {torch.__version__}, 1 thread; "
        f"batch {args.batch_size} x length {args.length}; load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}",
        "",
        f"matmul 1024x1024, 1 thread: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s "
        f"({peaks['bf16'] / peaks['fp32']:.1f}x)",
        "",
        *table(times, {name: flops for name, (_, flops) in calls.items()}, peaks),
    ]
    print("\n".join(lines))
    output = args.output or RESULTS / f"cpu_precision-{datetime.now():%Y%m%d-%H%M%S}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "args": vars(args),
        "peaks_gflops": peaks,
        "times_ms": times,
        "table": lines,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    output.write_text(json.dumps(record, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
