"""Issue 14: output that works in logs. Off a terminal, progress is plain lines (step, examples/s, ETA, loss
terms) at every logging step and at least every PLAIN_INTERVAL_S seconds, with no carriage return; on a
terminal the bar fits 80 columns, its loss terms on their own line."""

from __future__ import annotations

import io
import itertools
import re
from pathlib import Path

from rich.console import Console
from transformers import TrainerControl, TrainerState, TrainingArguments

from kdkit.training import progress
from kdkit.training.progress import LoopProgress, PlainLogCallback, RichProgressCallback, training_display


def _log_console(width: int = 80) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=width, force_terminal=False, color_system=None), buffer


def _terminal(width: int = 80) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=width, force_terminal=True, color_system="truecolor"), buffer


def _state(step: int, total: int) -> TrainerState:
    state = TrainerState()
    state.global_step, state.max_steps, state.epoch = step, total, step / total
    return state


def _seconds(clock: str) -> int:
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return 3600 * hours + 60 * minutes + seconds


def test_the_display_is_plain_lines_off_a_terminal_and_a_bar_on_one(tmp_path: Path):
    log, _ = _log_console()
    terminal, _ = _terminal()
    assert isinstance(training_display(log, "distill sst2"), PlainLogCallback)
    assert isinstance(training_display(terminal, "distill sst2"), RichProgressCallback)
    assert isinstance(training_display(terminal, "distill sst2", plain=True), PlainLogCallback)  # --quiet


def test_plain_lines_come_at_logging_steps_and_every_interval(tmp_path: Path, monkeypatch):
    console, buffer = _log_console()
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, use_cpu=True, report_to=[])
    callback = PlainLogCallback(console, "distill sst2")  # the default interval
    now = [1000.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    control = TrainerControl()
    callback.on_train_begin(args, _state(0, 100), control)
    for step in range(1, 101):
        now[0] += 4.0  # a slow step: 4 s each, no logging step in between
        callback.on_step_end(args, _state(step, 100), control)
        if step == 50:
            callback.on_log(args, _state(step, 100), control, logs={"loss": 0.5, "loss_ce": 0.3, "loss_kd": 0.2})
    text = buffer.getvalue()
    lines = text.splitlines()
    assert "\r" not in text
    assert lines[0] == "distill sst2: 100 steps of 8 examples"
    step_lines = [line for line in lines if ": step " in line]
    elapsed = [0, *(_seconds(re.search(r"elapsed (\d+:\d\d:\d\d)", line)[1]) for line in step_lines)]  # type: ignore[index]
    assert max(b - a for a, b in itertools.pairwise(elapsed)) <= 30 and elapsed[-1] >= 400 - 30  # a line every 30 s
    assert (
        "distill sst2: step 50/100 (50%), 2.0 ex/s, elapsed 0:03:20, ETA 0:03:20, loss=0.5000 ce=0.3000 "
        "kd=0.2000" in lines
    )
    assert all(re.search(r"ETA \d:\d\d:\d\d", line) for line in step_lines)


def _plain_run(
    tmp_path: Path, monkeypatch, steps: int
) -> tuple[PlainLogCallback, TrainingArguments, io.StringIO, list[float]]:
    """A plain-line display (10 s interval) on a log, its run begun at step 0 of ``steps``; the clock (``now[0]``)
    moves only when the test moves it."""
    console, buffer = _log_console()
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    callback = PlainLogCallback(console, "finetune sst2", interval=10.0)
    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    callback.on_train_begin(args, _state(0, steps), TrainerControl())
    return callback, args, buffer, now


def test_a_logging_step_has_one_plain_line_with_its_own_loss(tmp_path: Path, monkeypatch):
    callback, args, buffer, now = _plain_run(tmp_path, monkeypatch, 100)
    callback.on_log(args, _state(50, 100), TrainerControl(), logs={"loss": 0.57})
    now[0] += 60.0  # a line is due when step 100, a logging step, ends
    control = TrainerControl(should_log=True)  # as Trainer's flow callback sets it before ours runs
    callback.on_step_end(args, _state(100, 100), control)
    callback.on_log(args, _state(100, 100), control, logs={"loss": 0.46})
    at_100 = [line for line in buffer.getvalue().splitlines() if "step 100/100" in line]
    assert len(at_100) == 1 and at_100[0].endswith("loss=0.4600"), at_100


def test_plain_lines_while_evaluating_and_eval_metrics_as_a_line(tmp_path: Path, monkeypatch):
    callback, args, buffer, now = _plain_run(tmp_path, monkeypatch, 10)
    for _ in range(5):  # a long evaluation: 5 batches of 6 s
        now[0] += 6.0
        callback.on_prediction_step(args, _state(10, 10), TrainerControl())
    callback.on_log(args, _state(10, 10), TrainerControl(), logs={"eval_accuracy": 0.8125, "epoch": 1.0})
    lines = buffer.getvalue().splitlines()
    assert sum("evaluating at step 10" in line for line in lines) == 2
    assert lines[-1] == "finetune sst2: epoch 1.00 eval_accuracy=0.8125"


def test_the_bar_fits_80_columns_with_its_terms_on_a_line_of_their_own(tmp_path: Path):
    console, buffer = _terminal(80)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    callback = RichProgressCallback(console, "distill sst2")
    callback.on_train_begin(args, _state(0, 125), TrainerControl())
    callback.on_log(args, _state(125, 125), TrainerControl(), logs={"loss": 0.41, "loss_ce": 0.3, "loss_kd": 0.11})
    callback.on_step_end(args, _state(125, 125), TrainerControl())
    callback.on_train_end(args, _state(125, 125), TrainerControl())
    final = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", buffer.getvalue()).split("\r")[-1]
    assert "125/125" in final and "ETA" in final and "ex/s" in final and "…" not in final
    assert "loss=0.4100 ce=0.3000 kd=0.1100" in final
    assert all(len(line) <= 80 for line in final.splitlines())


def test_loop_progress_is_plain_lines_in_a_log(monkeypatch):
    console, buffer = _log_console()
    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    with LoopProgress(console, "teacher signals", 4000, interval=15.0) as loop:
        for _ in range(40):
            now[0] += 1.0
            loop.advance(100)
    lines = buffer.getvalue().splitlines()
    assert "\r" not in buffer.getvalue()
    assert lines[0].startswith("teacher signals: 0/4000 examples (0%)")
    assert lines[-1] == "teacher signals: 4000/4000 examples (100%), 100.0 examples/s, elapsed 0:00:40, ETA 0:00:00"
    assert len(lines) == 4  # the start, every 15 s, the end


def test_a_short_run_logs_its_loss_about_20_times_by_default(tmp_path: Path, tiny_teacher: Path, tiny_csv):
    """The default cadence: every 50 steps, more often in a short run, so its model card has a loss curve."""
    from kdkit import api
    from kdkit.config import DataConfig, DistillConfig, TrainingConfig
    from kdkit.plugins.manager import PluginManager

    assert TrainingConfig().logging_every(32) == 1 and TrainingConfig().logging_every(400) == 20
    assert TrainingConfig().logging_every(5000) == 50 and TrainingConfig(logging_steps=7).logging_every(32) == 7
    config = DistillConfig(
        teacher=str(tiny_teacher),
        student="copy:1",
        data=DataConfig(train_file=tiny_csv[0], validation_file=tiny_csv[1], max_length=32),
        training=TrainingConfig(epochs=1, batch_size=16),
        output=tmp_path / "run",
        quiet=True,
    )
    summary = api.distill(config, plugins=PluginManager(autoload=False)).summary
    assert summary["config"]["training"]["logging_steps"] == 1  # 6 steps: one log each
    assert len(summary["train_log"]) == 6
