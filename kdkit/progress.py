"""Progress display: a rich live bar (step, examples/s, ETA, live loss terms) or plain log lines."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments


def _format_logs(logs: dict[str, Any]) -> str:
    parts = []
    for key, value in logs.items():
        if key in ("epoch", "step", "total_flos") or not isinstance(value, (int, float)):
            continue
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


class _Throughput:
    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.start_step = 0

    def examples_per_second(self, args: TrainingArguments, state: TrainerState) -> float:
        elapsed = time.perf_counter() - self.start
        steps = state.global_step - self.start_step
        per_step = args.train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
        return steps * per_step / elapsed if elapsed > 0 else 0.0


class RichProgressCallback(TrainerCallback):
    """A live progress bar with step, examples/s, ETA and the latest loss terms; eval results as lines."""

    def __init__(self, console: Console | None = None, description: str = "training") -> None:
        self.console = console or Console(stderr=True)
        self.description = description
        self.progress: Progress | None = None
        self.task_id: Any = None
        self.throughput = _Throughput()
        self.latest = ""

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero:
            return
        self.throughput = _Throughput()
        self.throughput.start_step = state.global_step
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[speed]:.1f} ex/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[terms]}"),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task_id = self.progress.add_task(
            self.description, total=state.max_steps, completed=state.global_step, speed=0.0, terms=""
        )

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.progress is None:
            return
        self.progress.update(
            self.task_id,
            completed=state.global_step,
            speed=self.throughput.examples_per_second(args, state),
            terms=self.latest,
        )

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.progress is None or not logs:
            return
        if "loss" in logs:
            self.latest = " ".join(
                f"{k.removeprefix('loss_')}={v:.4f}"
                for k, v in logs.items()
                if k.startswith("loss") and isinstance(v, float)
            )
        elif any(k.startswith("eval_") for k in logs):
            self.progress.console.print(f"[cyan]epoch {state.epoch or 0:.2f}[/] {_format_logs(logs)}")

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class PlainLogCallback(TrainerCallback):
    """``--quiet``: one plain line per log event (step, examples/s, loss terms or eval metrics)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.throughput = _Throughput()

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.throughput = _Throughput()
        self.throughput.start_step = state.global_step

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        speed = self.throughput.examples_per_second(args, state)
        self.console.print(
            f"step {state.global_step}/{state.max_steps} {speed:.1f} ex/s {_format_logs(logs)}", markup=False
        )


def quiet_libraries() -> None:
    """Silence transformers' and datasets' own progress bars and load reports (the CLI shows its own)."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
