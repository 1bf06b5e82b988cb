"""Many training processes at once on one machine, all inside one deadline (the GPU study's scheduler).

A :class:`Job` is a command with its own log, an expected number of optimiser steps and a ``kind`` (what
sets its speed: ``teacher``, ``ce``, ``kd``, ``adkd``). :class:`Pool` keeps up to ``slots`` jobs running and,
whenever a slot is free, launches the first job of its list (the list is the priority order) that is

- ready: every job in ``after`` is done (a teacher), every job in ``after_started`` has begun training or
  ended (the first run of a kind builds the teacher-signal cache that the others then read), every job in
  ``after_launched`` has left the queue (the jobs of a group start in their order, or not at all);
- expected to finish before the deadline: start-up + steps / rate + finish, times ``safety``.

Progress comes from the jobs' logs (kdkit's ``--quiet`` lines ``step N/M ...``). The rate of a kind is the
median over its jobs of steps per second since their first step line (the load of the moment included);
until a kind has been seen, another seen kind's rate scaled by the ``prior`` seconds per step of both. A
running job that cannot finish even at ``tolerance`` times its present rate is dropped (killed at once, so
that the others run faster); at the deadline every job still running is killed. Each job ends in one state:
``done``, ``failed``, ``killed`` (deadline), ``dropped`` (would not finish) or ``skipped`` (never started:
no time left, or a job it needs did not finish).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

STEP = re.compile(rb"step (\d+)/(\d+)")
#: seconds per optimiser step assumed before any job of a kind has been seen (several jobs sharing one GPU)
PRIOR = {"teacher": 0.035, "ce": 0.03, "kd": 0.035, "adkd": 0.06}
FINAL = ("done", "failed", "killed", "dropped", "skipped")


@dataclass
class Job:
    """One process of the pool, and what the pool saw of it."""

    name: str
    command: list[str]
    log: Path
    kind: str
    steps: int
    env: dict[str, str] = field(default_factory=dict)
    after: list[str] = field(default_factory=list)
    after_started: list[str] = field(default_factory=list)
    after_launched: list[str] = field(default_factory=list)
    state: str = "queued"
    started: float | None = None
    ended: float | None = None
    first_step_at: float | None = None
    first_step: int = 0
    step: int = 0
    max_steps: int | None = None
    returncode: int | None = None
    note: str = ""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    handle: IO[bytes] | None = field(default=None, repr=False)

    @property
    def training(self) -> bool:
        return self.first_step_at is not None

    def own_rate(self, now: float) -> float | None:
        """Steps per second since the first step line (None until enough was seen)."""
        if self.first_step_at is None or self.step - self.first_step < 1:
            return None
        elapsed = (self.ended or now) - self.first_step_at
        return (self.step - self.first_step) / elapsed if elapsed > 0 else None

    def record(self, origin: float) -> dict[str, Any]:
        """What status.json keeps of the job (times in seconds from the pool's start)."""

        def rel(t: float | None) -> float | None:
            return round(t - origin, 1) if t is not None else None

        wall = round(self.ended - self.started, 1) if self.started and self.ended else None
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self.state,
            "note": self.note,
            "started_s": rel(self.started),
            "ended_s": rel(self.ended),
            "process_wall_s": wall,
            "first_step_s": rel(self.first_step_at),
            "step": self.step,
            "max_steps": self.max_steps or self.steps,
            "returncode": self.returncode,
            "log": self.log.name,
        }


@dataclass(frozen=True)
class Timing:
    """The pool's pace and margins: seconds from launch to the first step line until one has been seen
    (``startup_s``) and from the last step to the process's end (``finish_s``); the factor on a queued job's
    estimate (``safety``) and the speed-up granted to a running job before it is dropped (``tolerance``); the
    seconds between two looks at the jobs (``poll_s``)."""

    startup_s: float = 25.0
    finish_s: float = 8.0
    safety: float = 1.1
    tolerance: float = 1.3
    poll_s: float = 1.0


class Pool:
    """Runs ``jobs`` (in priority order) ``slots`` at a time until they end or ``deadline`` (time.time())."""

    def __init__(
        self,
        jobs: list[Job],
        slots: int,
        deadline: float,
        *,
        say: Callable[[str], None] = print,
        on_end: Callable[[Job], None] | None = None,
        prior: dict[str, float] | None = None,
        timing: Timing = Timing(),
    ) -> None:
        self.jobs = jobs
        self.by_name = {job.name: job for job in jobs}
        self.slots = slots
        self.deadline = deadline
        self.say = say
        self.on_end = on_end
        self.prior = {**PRIOR, **(prior or {})}
        self.timing = timing
        self.origin = time.time()

    # -- the loop -----------------------------------------------------------------------------------------

    def run(self) -> list[Job]:
        """Launch, watch and end jobs until none runs and none can start; every job ends in a final state."""
        try:
            while True:
                now = time.time()
                if now >= self.deadline:
                    self.stop(self.running(), "killed", "deadline")
                    break
                self.watch(now)
                self.skip_orphans()
                self.drop_late(now)
                self.launch_ready(now)
                if not self.running():
                    break
                time.sleep(self.timing.poll_s)
        except BaseException:  # interrupted (an outer timeout's SIGTERM, ^C): end everything, say so
            for job in self.jobs:
                if job.state == "queued":
                    job.note = "the pool was stopped before it started"
            raise
        finally:
            if self.running():
                self.stop(self.running(), "killed", "pool stopped")
            queued = [job for job in self.jobs if job.state == "queued"]
            notes = {job.name: job.note or self.why_not(job) for job in queued}  # before any state changes
            for job in queued:
                job.state, job.note = "skipped", notes[job.name]
        return self.jobs

    def running(self) -> list[Job]:
        return [job for job in self.jobs if job.state == "running"]

    def launch_ready(self, now: float) -> None:
        for job in self.jobs:
            if len(self.running()) >= self.slots:
                return
            if job.state == "queued" and self.ready(job) and self.fits(job, now):
                self.launch(job)

    def ready(self, job: Job) -> bool:
        if any(self.by_name[name].state != "done" for name in job.after):
            return False
        if any(self.by_name[name].state == "queued" for name in job.after_launched):
            return False
        return all(self.by_name[n].training or self.by_name[n].state in FINAL for n in job.after_started)

    def skip_orphans(self) -> None:
        """Queued jobs whose prerequisite ended without finishing can never start."""
        for job in self.jobs:
            bad = [n for n in job.after if self.by_name[n].state in FINAL and self.by_name[n].state != "done"]
            if job.state == "queued" and bad:
                job.state, job.note = "skipped", f"{bad[0]} {self.by_name[bad[0]].state}"
                self.say(f"[pool] skipped {job.name}: {job.note}")

    def why_not(self, job: Job) -> str:
        """Why a job never left the queue."""
        waits = [n for n in job.after if self.by_name[n].state != "done"]
        waits += [n for n in job.after_launched if self.by_name[n].state == "queued"]
        waits += [n for n in job.after_started if not self.by_name[n].training and self.by_name[n].state not in FINAL]
        if waits:
            return f"never started: waited for {', '.join(waits)}"
        return f"not expected to finish in time (estimate {self.estimate(job, time.time()):.0f} s)"

    # -- processes ----------------------------------------------------------------------------------------

    def launch(self, job: Job) -> None:
        job.log.parent.mkdir(parents=True, exist_ok=True)
        job.handle = job.log.open("ab")
        env = {**os.environ, **job.env}
        job.process = subprocess.Popen(
            job.command, stdout=job.handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        job.state, job.started = "running", time.time()
        left, needs = self.deadline - job.started, self.estimate(job, job.started)
        self.say(f"[pool] +{job.started - self.origin:5.0f}s start {job.name} (~{needs:.0f} s; {left:.0f} s left)")

    def stop(self, jobs: list[Job], state: str, why: str) -> None:
        """End running jobs' process groups together: SIGTERM, then SIGKILL to what is left after 3 s."""
        for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            for job in jobs:
                assert job.process is not None
                if job.process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(job.process.pid, sig)
            until = time.time() + grace
            while time.time() < until and any(job.process.poll() is None for job in jobs if job.process):
                time.sleep(0.1)
        for job in jobs:
            self.read_progress(job, time.time())
            self.end(job, state, why)

    def end(self, job: Job, state: str, note: str = "") -> None:
        job.state, job.ended, job.note = state, time.time(), note
        job.returncode = job.process.poll() if job.process is not None else None
        if job.handle is not None:
            job.handle.close()
        progress = f"step {job.step}/{job.max_steps or job.steps}"
        wall = job.ended - (job.started or job.ended)
        self.say(
            f"[pool] +{job.ended - self.origin:5.0f}s {state} {job.name} after {wall:.0f} s, {progress} {note}".rstrip()
        )
        if self.on_end is not None:
            self.on_end(job)

    def watch(self, now: float) -> None:
        for job in self.running():
            self.read_progress(job, now)
            assert job.process is not None
            code = job.process.poll()
            if code is not None:
                self.end(job, "done" if code == 0 else "failed", "" if code == 0 else f"exit {code}")

    def read_progress(self, job: Job, now: float) -> None:
        """The last ``step N/M`` line of the job's log (only its last 16 KiB are read)."""
        try:
            with job.log.open("rb") as fh:
                fh.seek(max(0, job.log.stat().st_size - 16384))
                matches = STEP.findall(fh.read())
        except OSError:
            return
        if not matches:
            return
        step, total = int(matches[-1][0]), int(matches[-1][1])
        if job.first_step_at is None:
            job.first_step_at, job.first_step = now, step
        job.step, job.max_steps = step, total

    # -- estimates ----------------------------------------------------------------------------------------

    def rate(self, kind: str, now: float) -> float:
        """Steps per second of ``kind`` now: its jobs' median, else another kind's scaled by the prior."""
        seen: dict[str, list[float]] = {}
        for job in self.jobs:
            rate = job.own_rate(now)
            if rate is not None and (job.state == "running" or job.state == "done"):
                seen.setdefault(job.kind, []).append(rate)
        if kind in seen:
            return statistics.median(seen[kind])
        scaled = [statistics.median(v) * self.prior.get(k, 0.04) / self.prior.get(kind, 0.04) for k, v in seen.items()]
        return statistics.median(scaled) if scaled else 1.0 / self.prior.get(kind, 0.04)

    def startup(self) -> float:
        """Seconds from launch to the first step line: the median seen so far, else ``startup_s``."""
        seen = [j.first_step_at - j.started for j in self.jobs if j.first_step_at is not None and j.started]
        return statistics.median(seen) if seen else self.timing.startup_s

    def estimate(self, job: Job, now: float) -> float:
        """Seconds ``job`` still needs (all of it when queued)."""
        total = job.max_steps or job.steps
        if job.state == "running" and job.training:
            own = job.own_rate(now)
            rate = own if own is not None and job.step - job.first_step >= 0.1 * total else self.rate(job.kind, now)
            return (total - job.step) / rate + self.timing.finish_s
        startup = self.startup()
        if job.state == "running" and job.started is not None:
            startup = max(startup - (now - job.started), 5.0)
        return startup + total / self.rate(job.kind, now) + self.timing.finish_s

    def fits(self, job: Job, now: float) -> bool:
        return now + self.timing.safety * self.estimate(job, now) <= self.deadline

    def drop_late(self, now: float) -> None:
        """Kill running jobs that cannot finish before the deadline even when they speed up by ``tolerance``."""
        for job in self.running():
            if not job.training or job.step - job.first_step < 0.1 * (job.max_steps or job.steps):
                continue
            needs = self.estimate(job, now)
            if now + needs / self.timing.tolerance > self.deadline:
                self.stop([job], "dropped", f"would not finish by the deadline (needs ~{needs:.0f} s)")
