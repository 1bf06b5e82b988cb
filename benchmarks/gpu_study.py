"""The paper-budget GLUE study on one GPU (issue 9, part 4): the CPU study's runs, at the paper's epochs.

The same runs as benchmarks/glue_study.py (its ``Study``, ``method_runs`` and result format are used as they
are): per task a teacher fine-tuned on the GPU (best dev checkpoint), then ``ce``, ``kd`` and ``adkd``
students for each seed at the paper's epochs, learning rate and batch size (CoLA 10, MRPC 10, STS-B 8, SST-2
6 epochs; SST-2 students on the first 20,000 training sentences, its teacher on all 67,349). Every run is one
process (``worker``); ``run`` keeps ``--jobs`` of them on the one card at a time (benchmarks/gpu_pool.py)
inside a hard deadline, in this order, so that whatever is cut off is the least valuable:

1. the four teachers at once;
2. the students task by task, smallest first (MRPC, CoLA, STS-B, SST-2), seed by seed, AD-KD, KD, CE within a
   seed (a seed's KD starts only once its AD-KD has, its CE once its KD has): when time runs out, each finished
   task has all three methods for as many seeds as possible, and no seed has a KD run without its AD-KD pair.

A task's later KD and AD-KD runs wait until its first one has started training: that one builds the cached
teacher signals, the others read them. Each task has its own ``KDKIT_HOME`` under ``--work``.

    # on the GPU machine (benchmarks/gpu_session.sh does this):
    python benchmarks/gpu_study.py run --work /dev/shm/kdkit-study --out STAGE/study --deadline UNIX_TIME
    # anywhere, at tiny sizes:
    python benchmarks/gpu_study.py run --tiny --work /tmp/study-tiny --out /tmp/stage/study --seconds 600
    # back on the development machine, from the unpacked results (benchmarks/gpu_report.py):
    python benchmarks/gpu_study.py report --results DIR      # docs/results.md and docs/benchmarks.md sections
    python benchmarks/gpu_study.py summary --results DIR     # the plain summary the session prints last
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import study_common as common
from gpu_pool import Job, Pool

#: students' tasks, cheapest first (optimiser steps at the paper's budget: 2,300, 2,680, 2,880, 3,750)
ORDER = ("mrpc", "cola", "stsb", "sst2")
#: methods within a seed, longest first (so that the three of a seed end close together)
METHODS = ("adkd", "kd", "ce")
#: GLUE training-set sizes
TRAIN_SIZE = {"cola": 8551, "mrpc": 3668, "stsb": 5749, "sst2": 67349}
#: teachers' epochs: until the dev score stops improving (best dev checkpoint kept); SST-2 on its whole set
TEACHER_EPOCHS = {"mrpc": 6, "cola": 6, "stsb": 6, "sst2": 2}
TEACHER_BATCH = 32  # glue_study's Study.teacher


def paper_epochs(task: str) -> int:
    from kdkit_adkd.presets import PAPER_TABLE

    return PAPER_TABLE[task][2]


def make_plan(args: argparse.Namespace) -> dict[str, Any]:
    """Everything a worker needs, written once to ``--work/plan.json``."""
    tasks = [t for t in ORDER if t in args.tasks.split(",")]
    tiny = args.tiny
    return {
        "tasks": tasks,
        "seeds": [int(s) for s in args.seeds.split(",")],
        "methods": [m for m in METHODS if m in args.methods.split(",")],
        "data_dir": str(Path(args.data_dir).resolve()),
        "work": str(Path(args.work).resolve()),
        "epochs": {t: 1 if tiny else paper_epochs(t) for t in tasks},
        "teacher_epochs": {t: 1 if tiny else TEACHER_EPOCHS[t] for t in tasks},
        "teacher_lr": args.teacher_lr,
        "sst2_train_samples": args.sst2_train_samples,
        "sst2_teacher_train_samples": args.max_train_samples if tiny else None,
        "max_train_samples": args.max_train_samples if tiny else None,
        "max_eval_samples": args.max_eval_samples if tiny else None,
        "jobs": args.jobs,
        "tiny": tiny,
    }


def study_args(plan: dict[str, Any], task: str) -> argparse.Namespace:
    """The namespace glue_study's ``Study`` reads, for ``task``'s budget."""
    return argparse.Namespace(
        data_dir=Path(plan["data_dir"]),
        agnews_dir=Path("."),
        agnews_train_samples=None,
        agnews_eval_samples=None,
        work=Path(plan["work"]) / "runs",
        seeds=",".join(map(str, plan["seeds"])),
        epochs=plan["epochs"][task],
        teacher_epochs=plan["teacher_epochs"][task],
        teacher_epochs_for="",
        teacher_lr=plan["teacher_lr"],
        sst2_train_samples=plan["sst2_train_samples"],
        sst2_teacher_train_samples=plan["sst2_teacher_train_samples"],
        sst2_teacher_epochs=plan["teacher_epochs"][task],
        lever_holdout=0.2,
    )


class GpuStudy(common.Study):
    """glue_study's Study, with the tiny mode's sample limits on every task."""

    def __init__(self, plan: dict[str, Any], task: str) -> None:
        super().__init__(study_args(plan, task))
        self.plan = plan

    def data(self, task: str) -> dict[str, Any]:
        data = super().data(task)
        if self.plan["max_train_samples"]:
            data["max_train_samples"] = min(self.plan["max_train_samples"], data.get("max_train_samples") or 10**9)
        if self.plan["max_eval_samples"]:
            data["max_eval_samples"] = self.plan["max_eval_samples"]
        return data


def train_size(plan: dict[str, Any], task: str, teacher: bool) -> int:
    size = TRAIN_SIZE[task]
    if task == "sst2":
        size = (plan["sst2_teacher_train_samples"] or size) if teacher else min(size, plan["sst2_train_samples"])
    return min(size, plan["max_train_samples"] or size)


def student_steps(plan: dict[str, Any], task: str) -> int:
    batch = int(common.paper_training(task)["batch_size"])
    return math.ceil(train_size(plan, task, teacher=False) / batch) * plan["epochs"][task]


# -- one process per run ----------------------------------------------------------------------------------


def worker(args: argparse.Namespace) -> None:
    """Train one teacher (``--method teacher``) or one student run of the plan."""
    import torch

    from kdkit.models.loading import quiet_libraries

    torch.set_num_threads(int(os.environ.get("KDKIT_THREADS", "1")))
    quiet_libraries()
    plan = json.loads(Path(args.plan).read_text())
    study = GpuStudy(plan, args.task)
    if args.method == "teacher":
        study.teacher(args.task)
        return
    if not (study.work / args.task / "teacher" / "run.json").is_file():
        sys.exit(f"no finished {args.task} teacher under {study.work}: run its teacher first")
    (spec,) = common.method_runs(args.task, args.seed, [args.method])
    study.run(spec)


def jobs_of(plan: dict[str, Any], plan_path: Path, out: Path) -> list[Job]:
    """The teachers, then every student, in priority order."""
    py, script, work = sys.executable, str(Path(__file__).resolve()), Path(plan["work"])

    def job(name: str, task: str, method: str, seed: int, kind: str, steps: int) -> Job:
        command = [py, script, "worker", "--plan", str(plan_path), "--task", task, "--method", method]
        env = {"KDKIT_HOME": str(work / "home" / task), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        return Job(name, [*command, "--seed", str(seed)], out / "logs" / f"{name}.log", kind, steps, env)

    jobs = []
    for task in plan["tasks"]:
        steps = math.ceil(train_size(plan, task, teacher=True) / TEACHER_BATCH) * plan["teacher_epochs"][task]
        jobs.append(job(f"{task}-teacher", task, "teacher", 0, "teacher", steps))
    for task in plan["tasks"]:
        first: dict[str, str] = {}
        for seed in plan["seeds"]:
            group: list[str] = []
            for method in plan["methods"]:
                student = job(f"{task}-{method}-seed{seed}", task, method, seed, method, student_steps(plan, task))
                student.after = [f"{task}-teacher"]
                if method != "ce" and method in first:  # the first one builds the teacher-signal cache
                    student.after_started = [first[method]]
                student.after_launched = group[-1:]  # a seed's methods start in order, or not at all
                first.setdefault(method, student.name)
                group.append(student.name)
                jobs.append(student)
    return jobs


# -- the study --------------------------------------------------------------------------------------------


def collect(plan: dict[str, Any], out: Path, job: Job) -> None:
    """A finished job's run.json into ``out`` (and its result into study.json); one line about it."""
    task, _, rest = job.name.partition("-")
    study = GpuStudy(plan, task)
    if rest == "teacher":
        summary_path = study.work / task / "teacher" / "run.json"
        target = out / "teachers" / f"{task}.json"
    else:
        method, _, seed = rest.rpartition("-seed")
        (spec,) = common.method_runs(task, int(seed), [method])
        summary_path = spec.directory(study.work) / "run.json"
        target = out / "runs" / f"{job.name}.json"
    if not summary_path.is_file():
        job.state, job.note = "failed", "exit 0 without run.json"
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(summary_path, target)
    summary = json.loads(summary_path.read_text())
    metric = common.REPORTED[task]
    value = 100 * float(summary["metrics"][metric])
    if rest != "teacher":
        common.save_results(out / "study.json", [study.run(spec)])  # run.json exists: reads it, trains nothing
    print(f"[study] {job.name}: {metric} {value:.2f} (training {summary['train']['wall_time_s']:.0f} s)", flush=True)


def run_study(args: argparse.Namespace) -> None:
    plan = make_plan(args)
    work, out = Path(plan["work"]), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    plan_path = work / "plan.json"
    plan_path.write_text(json.dumps(plan, indent=1) + "\n")
    shutil.copyfile(plan_path, out / "plan.json")
    deadline = args.deadline or time.time() + args.seconds
    jobs = jobs_of(plan, plan_path, out)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # an outer timeout: the pool still ends its runs
    start = time.time()
    print(f"[study] {len(jobs)} jobs, {args.jobs} at a time, {deadline - start:.0f} s until the deadline", flush=True)

    def on_end(job: Job) -> None:
        if job.state != "done":
            return
        try:
            collect(plan, out, job)
        except Exception as exc:  # a bad run.json must not stop the other runs
            job.state, job.note = "failed", f"collecting its results: {exc!r}"[:300]
            print(f"[study] {job.name}: {job.note}", flush=True)

    pool = Pool(jobs, args.jobs, deadline, on_end=on_end)
    if args.prior:
        pool.prior.update({k: float(v) for k, v in (p.split("=") for p in args.prior.split(","))})
    try:
        pool.run()
    finally:
        status = {
            "started": start,
            "ended": time.time(),
            "deadline": deadline,
            "wall_s": round(time.time() - start, 1),
            "jobs": [job.record(start) for job in jobs],
        }
        (out / "status.json").write_text(json.dumps(status, indent=1) + "\n")
    states = [job.state for job in jobs]
    print(f"[study] {states.count('done')} of {len(jobs)} jobs done in {status['wall_s']:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="teachers and students, in parallel, until the deadline")
    run.add_argument("--work", type=Path, required=True, help="models, caches and checkpoints (not returned)")
    run.add_argument("--out", type=Path, required=True, help="run.json files, logs, study.json, status.json")
    run.add_argument("--data-dir", default=os.environ.get("KDKIT_GLUE_DIR", "../shared/data/glue"))
    run.add_argument("--tasks", default=",".join(ORDER))
    run.add_argument("--seeds", default="1,2,3")
    run.add_argument("--methods", default=",".join(METHODS))
    run.add_argument("--jobs", type=int, default=12, help="processes at a time (teachers included)")
    run.add_argument("--deadline", type=float, default=None, help="unix time by which every process has ended")
    run.add_argument("--seconds", type=float, default=400, help="deadline from now, without --deadline")
    run.add_argument("--teacher-lr", type=float, default=5e-5)
    run.add_argument("--sst2-train-samples", type=int, default=20000, help="SST-2 students' training sentences")
    run.add_argument("--tiny", action="store_true", help="1 epoch, --max-train/eval-samples on every task")
    run.add_argument("--max-train-samples", type=int, default=48)
    run.add_argument("--max-eval-samples", type=int, default=32)
    run.add_argument("--prior", default="", help="seconds per step before any is seen, e.g. kd=0.5,adkd=1")
    one = sub.add_parser("worker", help="one run of the plan (started by run)")
    one.add_argument("--plan", type=Path, required=True)
    one.add_argument("--task", required=True)
    one.add_argument("--method", required=True, help="teacher, ce, kd or adkd")
    one.add_argument("--seed", type=int, default=0)
    for name, text in (("report", "docs/results.md and docs/benchmarks.md sections"), ("summary", "plain summary")):
        part = sub.add_parser(name, help=text)
        part.add_argument("--results", type=Path, required=True, help="the unpacked results folder")
        if name == "report":
            part.add_argument("--results-md", type=Path, default=Path("docs/results.md"))
            part.add_argument("--benchmarks-md", type=Path, default=Path("docs/benchmarks.md"))
            part.add_argument("--json", type=Path, default=Path("docs/results/gpu-study.json"))
    args = parser.parse_args()
    if args.command == "run":
        run_study(args)
    elif args.command == "worker":
        worker(args)
    else:
        import gpu_report

        gpu_report.main(args)


if __name__ == "__main__":
    main()
