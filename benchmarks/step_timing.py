"""Timing machinery of the throughput benchmarks (step_throughput.py, adkd_throughput.py, intermediate_cost.py):
one optimiser step as the trainer takes it, round-robin turns between trainer threads, per-step wall and CPU
clocks, batch-length recording, and the plain-loop floor of a variant."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch
from transformers import TrainerCallback

from kdkit.training.trainer import DistillationTrainer


class Baton:
    """Round-robin turns between trainer threads: only the holder runs; turns pass at the end of a step."""

    def __init__(self, names: list[str], enabled: bool) -> None:
        self.enabled = enabled
        self.active = list(names)
        self.arrived: set[str] = set()
        self.current = names[0]
        self.failed = False
        self.cond = threading.Condition()

    def _wait(self, name: str) -> None:
        ok = self.cond.wait_for(lambda: self.failed or (self.current == name and not self.waiting_for_start()), 7200)
        if self.failed or not ok:
            raise RuntimeError("another variant failed (or the turn never came)")

    def waiting_for_start(self) -> bool:
        return len(self.arrived) < len(self.active)

    def enter(self, name: str) -> None:
        if self.enabled:
            with self.cond:
                self.arrived.add(name)
                self.cond.notify_all()
                self._wait(name)

    def pass_on(self, name: str) -> None:
        if self.enabled:
            with self.cond:
                self.current = self.active[(self.active.index(name) + 1) % len(self.active)]
                self.cond.notify_all()
                self._wait(name)

    def leave(self, name: str) -> None:
        if self.enabled:
            with self.cond:
                index = self.active.index(name)
                self.active.remove(name)
                self.arrived.discard(name)
                self.current = self.active[index % len(self.active)] if self.active else ""
                self.cond.notify_all()

    def fail(self) -> None:
        with self.cond:
            self.failed = True
            self.cond.notify_all()


class StepClock(TrainerCallback):
    """Per-step wall and CPU times (end of the previous step to the end of this one), taking turns on a baton.

    CPU time is the process's (``time.process_time``: every thread, OpenMP workers included; the other
    variants' threads are blocked meanwhile), so it is what a step costs the host, whatever else the
    machine runs."""

    def __init__(self, name: str, baton: Baton, sync: Callable[[], None], warmup: int, seed: int) -> None:
        self.name, self.baton, self.sync, self.warmup, self.seed = name, baton, sync, warmup, seed
        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self.window: list[float] = []  # synchronised wall clock at the end of the warm-up and of the last step
        self._start = self._cpu_start = 0.0

    def _restart(self) -> None:
        self._start, self._cpu_start = time.perf_counter(), time.process_time()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.baton.enter(self.name)
        self._restart()

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        torch.manual_seed(self.seed + int(state.epoch or 0))  # the length-grouped sampler draws from it

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.baton.enabled or state.global_step in (self.warmup, state.max_steps):
            self.sync()
        now, cpu = time.perf_counter(), time.process_time()
        self.times.append(now - self._start)
        self.cpu_times.append(cpu - self._cpu_start)
        if state.global_step in (self.warmup, state.max_steps):
            self.window.append(now)
        self.baton.pass_on(self.name)
        self._restart()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.baton.leave(self.name)


class LengthRecorder:
    """The collator, recording each batch's padded length (to report it and check batches are shared)."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator
        self.lengths: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.collator, name)

    def __call__(self, features: Any) -> Any:
        batch = self.collator(features)
        self.lengths.append(int(batch["input_ids"].shape[-1]))
        return batch


class BareLoop:
    """The floor of a variant: its trainer's ``compute_loss`` on the same batches (the trainer's DataLoader)
    in a hand-written loop (backward, clipping, the trainer's AdamW, zero_grad), without Trainer's loop."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.callbacks: list[Any] = []

    def add_callback(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def _call(self, event: str, state: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self.trainer.args, state, None)

    def train(self) -> None:
        trainer, args = self.trainer, self.trainer.args
        model = trainer.model.to(args.device).train()
        optimizer = trainer.create_optimizer()
        state = SimpleNamespace(global_step=0, max_steps=args.max_steps, epoch=0.0)
        self._call("on_train_begin", state)
        while state.global_step < state.max_steps:
            self._call("on_epoch_begin", state)
            for batch in trainer.get_train_dataloader():
                with trainer.compute_loss_context_manager():
                    loss = trainer.compute_loss(model, batch)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
                state.global_step += 1
                self._call("on_step_end", state)
                if state.global_step >= state.max_steps:
                    break
            state.epoch += 1
        self._call("on_train_end", state)


def train_step(trainer: DistillationTrainer, inputs: dict[str, Any]) -> float:
    """One optimiser step as the trainer takes it; returns wall seconds."""
    model = trainer.model
    assert model is not None
    model.train()
    start = time.perf_counter()
    loss = trainer.compute_loss(model, dict(inputs))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), trainer.args.max_grad_norm)
    assert trainer.lr_scheduler is not None, "create_optimizer_and_scheduler() runs before the steps"
    trainer.optimizer.step()
    trainer.lr_scheduler.step()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start
