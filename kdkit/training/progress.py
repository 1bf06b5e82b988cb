"""Progress display: a live rich bar on a terminal, plain periodic lines in a log.

On a terminal, training shows one bar line (step, examples/s, elapsed, ETA) that fits 80 columns, with the
latest loss terms on a second line. When the console is not a terminal (``kdkit distill ... > run.log 2>&1``,
CI, a notebook's captured output) or with ``--quiet``, nothing is redrawn: a plain line is printed at every
logging step and at least every :data:`PLAIN_INTERVAL_S` seconds, during evaluation too::

    distill sst2: step 40/125 (32%), 84.1 ex/s, elapsed 0:00:15, ETA 0:00:32, loss=0.41 ce=0.30 kd=0.11

:class:`LoopProgress` does the same for kdkit's own loops (the teacher-signal pass).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

#: in a log, a progress line at least this often (seconds)
PLAIN_INTERVAL_S = 15.0
_SKIPPED_LOG_KEYS = ("epoch", "step", "total_flos")


def is_live(console: Console) -> bool:
    """Whether ``console`` can redraw a live bar (a real terminal); else progress is plain lines."""
    return bool(console.is_terminal and not console.is_dumb_terminal)


def clock(seconds: float | None) -> str:
    """``0:01:05`` (``-:--:--`` when unknown)."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "-:--:--"
    return str(timedelta(seconds=round(seconds)))


def format_logs(logs: dict[str, Any]) -> str:
    """``key=value`` for every number of a Trainer log (loss terms without their ``loss_`` prefix)."""
    parts = []
    for key, value in logs.items():
        if key in _SKIPPED_LOG_KEYS or not isinstance(value, (int, float)):
            continue
        name = key.removeprefix("loss_") if key.startswith("loss_") else key
        parts.append(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}")
    return " ".join(parts)


def _loss_terms(logs: dict[str, Any]) -> str:
    return " ".join(
        f"{'loss' if k == 'loss' else k.removeprefix('loss_')}={v:.4f}"
        for k, v in logs.items()
        if k.startswith("loss") and isinstance(v, float)
    )


class _Throughput:
    """Examples per second and the time left, over the steps this process ran."""

    def __init__(self, start_step: int = 0) -> None:
        self.start = time.perf_counter()
        self.start_step = start_step

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def examples_per_second(self, args: TrainingArguments, state: TrainerState) -> float:
        elapsed = self.elapsed()
        steps = state.global_step - self.start_step
        per_step = args.train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
        return steps * per_step / elapsed if elapsed > 0 else 0.0

    def eta(self, state: TrainerState) -> float | None:
        steps = state.global_step - self.start_step
        if steps <= 0:
            return None
        return (state.max_steps - state.global_step) * self.elapsed() / steps


class _BarWithTerms(Progress):
    """A progress bar line, and under it the latest loss terms (so the bar itself fits 80 columns)."""

    terms: str = ""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        if self.terms:
            yield Text(f"  {self.terms}", overflow="fold")


def _bar(console: Console, *, speed: bool) -> _BarWithTerms:
    columns: list[Any] = [TextColumn("[bold]{task.description}"), BarColumn(bar_width=None), MofNCompleteColumn()]
    if speed:
        columns.append(TextColumn("{task.fields[speed]:.1f} ex/s"))
    columns += [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    return _BarWithTerms(*columns, console=console, transient=False, expand=True)


class RichProgressCallback(TrainerCallback):
    """A live bar (step, examples/s, elapsed, ETA) with the latest loss terms under it; eval results as lines."""

    def __init__(self, console: Console | None = None, description: str = "training") -> None:
        self.console = console or Console(stderr=True)
        self.description = description
        self.progress: _BarWithTerms | None = None
        self.task_id: Any = None
        self.throughput = _Throughput()

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero:
            return
        self.throughput = _Throughput(state.global_step)
        self.progress = _bar(self.console, speed=True)
        self.progress.start()
        self.task_id = self.progress.add_task(
            self.description, total=state.max_steps, completed=state.global_step, speed=0.0
        )

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.progress is None:
            return
        speed = self.throughput.examples_per_second(args, state)
        self.progress.update(self.task_id, completed=state.global_step, speed=speed)

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
            self.progress.terms = _loss_terms(logs)
            self.progress.refresh()
        elif any(k.startswith("eval_") for k in logs):
            self.progress.console.print(f"[cyan]epoch {state.epoch or 0:.2f}[/] {format_logs(logs)}")

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class PlainLogCallback(TrainerCallback):
    """Plain lines for a log (``--quiet``, or no terminal): step, examples/s, elapsed, ETA and loss terms at
    every logging step and at least every ``interval`` seconds (also while evaluating); eval metrics as lines."""

    def __init__(
        self, console: Console | None = None, description: str = "training", interval: float = PLAIN_INTERVAL_S
    ) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.description = description
        self.interval = interval
        self.throughput = _Throughput()
        self.last_line = time.perf_counter()
        self.terms = ""

    def _say(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        self.last_line = time.perf_counter()

    def _due(self) -> bool:
        return time.perf_counter() - self.last_line >= self.interval

    def _step_line(self, args: TrainingArguments, state: TrainerState) -> str:
        total = max(state.max_steps, 1)
        speed = self.throughput.examples_per_second(args, state)
        line = (
            f"{self.description}: step {state.global_step}/{state.max_steps} ({100 * state.global_step // total}%), "
            f"{speed:.1f} ex/s, elapsed {clock(self.throughput.elapsed())}, ETA {clock(self.throughput.eta(state))}"
        )
        return line + (f", {self.terms}" if self.terms else "")

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.throughput = _Throughput(state.global_step)
        if state.is_world_process_zero:
            steps = f"{state.max_steps} step{'s' if state.max_steps != 1 else ''}"
            self._say(f"{self.description}: {steps} of {args.train_batch_size} examples")

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        # a logging step (``control.should_log``, set by Trainer's flow callback) gets its line from ``on_log``,
        # with this step's loss: no second line for the same step with the last step's loss
        if state.is_world_process_zero and self._due() and not control.should_log:
            self._say(self._step_line(args, state))

    def on_prediction_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.is_world_process_zero and self._due():
            self._say(f"{self.description}: evaluating at step {state.global_step}")

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
        if "loss" in logs:
            self.terms = _loss_terms(logs)
            self._say(self._step_line(args, state))
        elif any(k.startswith("eval_") for k in logs):
            self._say(f"{self.description}: epoch {state.epoch or 0:.2f} {format_logs(logs)}")
        elif "train_runtime" not in logs:
            self._say(f"{self.description}: step {state.global_step} {format_logs(logs)}")


def training_display(console: Console, description: str, *, plain: bool = False) -> TrainerCallback:
    """The progress callback for a run: plain lines with ``plain`` (``--quiet``) or off a terminal, else a bar."""
    if plain or not is_live(console):
        return PlainLogCallback(console, description)
    return RichProgressCallback(console, description)


class LoopProgress:
    """Progress of one of kdkit's own loops (``with LoopProgress(console, "teacher signals", n) as p:
    p.advance(k)``): a live bar on a terminal, else a plain line at least every ``interval`` seconds."""

    def __init__(
        self,
        console: Console | None,
        description: str,
        total: int,
        *,
        unit: str = "examples",
        interval: float = PLAIN_INTERVAL_S,
    ) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.description, self.total, self.unit, self.interval = description, total, unit, interval
        self.done = 0
        self.start = self.last_line = time.perf_counter()
        self.bar: _BarWithTerms | None = _bar(self.console, speed=False) if is_live(self.console) else None
        self.task_id: Any = None

    def __enter__(self) -> LoopProgress:
        if self.bar is not None:
            self.bar.start()
            self.task_id = self.bar.add_task(self.description, total=self.total)
        else:
            self._line()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
        elif exc[0] is None:
            self._line()

    def _line(self) -> None:
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 and self.done else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else None
        percent = 100 * self.done // max(self.total, 1)
        self.console.print(
            f"{self.description}: {self.done}/{self.total} {self.unit} ({percent}%), {rate:.1f} {self.unit}/s, "
            f"elapsed {clock(elapsed)}, ETA {clock(eta)}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        self.last_line = time.perf_counter()

    def advance(self, count: int) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(self.task_id, completed=self.done)
        elif time.perf_counter() - self.last_line >= self.interval:
            self._line()
