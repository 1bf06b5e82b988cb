"""Does AD-KD beat vanilla KD at the paper's budget? (issue 18) Converged teachers, 6-10 epochs, a study that a
2-core machine finishes in pieces.

    python benchmarks/paper_study.py run --tasks cola --budget-minutes 240   # continue for at most 4 hours
    python benchmarks/paper_study.py teachers --tasks mrpc,stsb              # only the teacher grids, lr by lr
    python benchmarks/paper_study.py status --tasks cola,mrpc,stsb           # what is done, what is left
    python benchmarks/paper_study.py report --tasks cola,mrpc,stsb           # docs/results.md's section
    python benchmarks/paper_study.py rerun benchmarks/results/paper/cola/t-<fp>/adkd/seed-1.json

Per task, in order: the teacher grid (the embedded MiniLM fine-tuned 15 epochs at each learning rate, best dev
epoch kept; the best of the grid is the teacher), then CE, vanilla KD and AD-KD students (paper preset, the
paper's epochs, seed by seed), then on the lever task the levers on a held-out 10% of its training set and the
tuned rows. Each finished run leaves a committed summary (benchmarks/paper_records.py); a run whose summary is
present and matches is skipped, so ``run`` continues where any earlier call, on any machine, stopped.
``--budget-minutes`` stops between runs. An interrupted run resumes from its last epoch's checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paper_plan as plan
import paper_records as records
from paper_plan import BF16_DIR, HOLDOUT_DIR, Settings, Student

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class BudgetReached(Exception):
    """The time budget would run out before the next run: stop between runs."""


class Study:
    """Runs (or skips) the study's steps in order, within the time budget."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started = time.monotonic()
        self.trained = 0

    # -- the budget ---------------------------------------------------------------------------------------------

    def check_budget(self, what: str, estimate_s: float | None) -> None:
        """Raise :class:`BudgetReached` when the budget is spent, or would be by a run of ``estimate_s``."""
        budget = self.settings.budget_minutes
        if budget is None:
            return
        used = time.monotonic() - self.started
        if used >= budget * 60 or (estimate_s is not None and used + estimate_s > budget * 60):
            guess = f" (about {estimate_s / 60:.0f} min)" if estimate_s else ""
            raise BudgetReached(
                f"budget of {budget:g} min reached after {used / 60:.0f} min: stopped before {what}{guess}"
            )

    def estimate(self, pattern: str) -> float | None:
        """Mean wall time of the finished runs matching ``pattern`` (summaries under ``results``), if any."""
        found = records.summaries(self.settings.results, pattern)
        times = [s["cost"]["wall_time_s"] for s in found if s.get("cost")]
        return sum(times) / len(times) if times else None

    # -- teachers -------------------------------------------------------------------------------------------------

    def teacher_paths(self, task: str, lr: float, batch: int) -> tuple[Path, Path]:
        name = plan.grid_name(lr, batch)
        return (
            self.settings.work / task / "teacher-grid" / name,
            self.settings.results / task / "teacher" / f"{name}.json",
        )

    def teacher(self, task: str, lr: float, batch: int, *, need_weights: bool = False) -> dict[str, Any]:
        """The summary of the grid's teacher at (``lr``, ``batch``): read back, adopted from a finished local run,
        or trained. With ``need_weights`` the weights must be here too: a summary from elsewhere is rebuilt and
        compared."""
        spec = plan.teacher_spec(self.settings, task, lr, batch)
        directory, path = self.teacher_paths(task, lr, batch)
        summary = records.matching(path, spec)
        local = directory / "run.json"
        if local.is_file() and not plan.same_teacher_run(json.loads(local.read_text()), spec):
            raise records.RecordError(f"{directory} is another teacher than the study's; move it away")
        if summary is not None and (local.is_file() or not need_weights):
            if local.is_file() and records.teacher_fingerprint(directory / "best") != summary["fingerprint"]:
                return self._rebuilt(task, spec, directory)
            return summary
        if not local.is_file():
            self.check_budget(f"the {task} teacher {directory.name}", self.estimate(f"{task}/teacher/lr-*.json"))
            cost = self._train_teacher(spec, directory)
        else:
            cost = None  # trained before by the same recipe (e.g. an earlier call, or kdkit finetune by hand)
        fresh = self._teacher_summary(spec, directory, cost)
        if summary is not None and fresh["fingerprint"] != summary["fingerprint"]:
            return self._rebuilt(task, spec, directory)
        if summary is None:
            records.write_summary(path, fresh)
        return summary or fresh

    def _train_teacher(self, spec: dict[str, Any], directory: Path) -> records.Cost:
        from kdkit import api

        print(f"[study] fine-tuning the {spec['task']} teacher {directory.name}", flush=True)
        partial = directory.with_name(directory.name + ".partial")
        config = plan.teacher_config(self.settings, spec, directory, resume=partial.is_dir())
        with records.measured() as cost:
            api.finetune(config)
        self.trained += 1
        return cost

    def _teacher_summary(self, spec: dict[str, Any], directory: Path, cost: records.Cost | None) -> dict[str, Any]:
        run = json.loads((directory / "run.json").read_text())
        metric = run["main_metric"]
        curve = records.epoch_curve(run.get("history", []))
        best = max(curve, key=lambda point: point[metric]) if curve else {"epoch": 0.0, metric: float("nan")}
        return {
            "spec": spec,
            "metric": metric,
            "dev_score": float(run["metrics"][metric]),
            "best_epoch": best["epoch"],
            "curve": curve,
            "fingerprint": records.teacher_fingerprint(directory / "best"),
            "cost": cost.to_json() if cost else {"wall_time_s": run["train"]["wall_time_s"], "cpu_time_s": None},
            "machine": records.machine(),
            "finished_at": run.get("finished_at"),
        }

    def _rebuilt(self, task: str, spec: dict[str, Any], directory: Path) -> dict[str, Any]:
        """A teacher rebuilt here whose weights differ from the recorded one: its own record, beside the grid's."""
        fresh = self._teacher_summary(spec, directory, None)
        path = self.settings.results / task / "teacher" / f"rebuilt-{fresh['fingerprint']}.json"
        if records.read_summary(path) is None:
            records.write_summary(path, {**fresh, "rebuilt": True})
        print(
            f"[study] the rebuilt {task} teacher differs from the recorded one: students go under its own "
            f"fingerprint {fresh['fingerprint']}",
            flush=True,
        )
        return fresh

    def chosen_teacher(self, task: str) -> tuple[dict[str, Any], Path]:
        """The grid's best teacher (highest dev score; the first of the grid on a tie), with its weights here."""
        grid = [self.teacher(task, lr, batch) for lr, batch in self.settings.teacher_grid]
        lr, batch = self.settings.teacher_grid[plan.best_of_grid(grid)]
        return self.teacher(task, lr, batch, need_weights=True), self.teacher_paths(task, lr, batch)[0] / "best"

    # -- students -------------------------------------------------------------------------------------------------

    def student_paths(self, run: Student, fingerprint: str) -> tuple[Path, Path]:
        """The run folder and the summary of ``run``; held-out (lever) runs live under ``holdout/``, apart from the
        dev-set rows of the same method and seed."""
        split = [HOLDOUT_DIR] if run.holdout is not None else []
        split += [BF16_DIR] if run.precision != "fp32" else []
        where = Path(run.task, f"t-{fingerprint}", *split, run.method, f"seed-{run.seed}")
        return self.settings.work / where, self.settings.results / where.with_suffix(".json")

    def student(self, run: Student) -> dict[str, Any]:
        """The summary of ``run``: read back if present and matching, else trained now."""
        teacher, teacher_dir = self.chosen_teacher(run.task)
        identity = {"fingerprint": teacher["fingerprint"], "dev_score": teacher["dev_score"]}
        spec = plan.student_spec(self.settings, run, identity)
        directory, path = self.student_paths(run, teacher["fingerprint"])
        summary = records.matching(path, spec)
        if summary is not None:
            return summary
        if directory.exists():  # a finished run without a matching summary: not ours to trust, train again
            shutil.rmtree(directory)
        folder = "".join(f"{name}/" for name in self.student_paths(run, "*")[1].parent.parts[2:-1])
        pattern = f"{run.task}/t-*/{folder}{run.method}/seed-*.json"
        self.check_budget(f"{run.task} {run.method} seed {run.seed}", self.estimate(pattern))
        return self._train_student(spec, teacher_dir, directory, path)

    def _train_student(self, spec: dict[str, Any], teacher_dir: Path, directory: Path, path: Path) -> dict[str, Any]:
        from kdkit import api
        from kdkit.plugins.manager import get_plugin_manager

        print(f"[study] {spec['task']} {spec['method']} seed {spec['seed']}", flush=True)
        partial = directory.with_name(directory.name + ".partial")
        manager = get_plugin_manager()
        config = api.resolve_distill_config(
            plan.student_config(spec, teacher_dir, directory, partial.is_dir()), manager
        )
        with records.measured() as cost:
            api.distill(config, plugins=manager)
        self.trained += 1
        print(f"[study] done in {cost.wall_s:.0f} s", flush=True)
        run = json.loads((directory / "run.json").read_text())
        summary = student_summary(run, spec, cost)
        records.write_summary(path, summary)
        return summary

    # -- the plan -------------------------------------------------------------------------------------------------

    def steps(self, task: str) -> Iterator[Student]:
        """The task's students in order; the tuned rows are known once the levers are done."""
        seeds = self.settings.seeds[task]
        yield from plan.main_students(task, seeds)
        if self.settings.levers and task == self.settings.lever_task:
            levers = plan.lever_students(self.settings)
            scores = {}
            for run in levers:
                summary = self.student(run)
                scores[run.method] = summary["metrics"][summary["main_metric"]]
            yield from plan.tuned_students(task, seeds, scores)

    def teachers(self) -> None:
        """Every task's teacher grid, learning rate by learning rate across the tasks (so that each task has a
        teacher early), and no student: the long pole of a new task, started ahead of the other runs."""
        for lr, batch in self.settings.teacher_grid:
            for task in self.settings.tasks:
                self.teacher(task, lr, batch)
                write_report(self.settings)

    def bf16_check(self) -> None:
        """The lever task's seed 1 of CE, KD and AD-KD in bf16 (compared with the fp32 rows in the report)."""
        for run in plan.bf16_check_students(self.settings):
            self.student(run)
            write_report(self.settings)

    def run(self) -> None:
        for task in self.settings.tasks:
            for step in self.steps(task):
                self.student(step)
                write_report(self.settings)


def student_summary(run: dict[str, Any], spec: dict[str, Any], cost: records.Cost) -> dict[str, Any]:
    """What is committed of a finished student: metrics per epoch and at the best epoch, the resolved config,
    the teacher's identity (in ``spec``), cost, machine and load."""
    metric = run["main_metric"]
    curve = records.epoch_curve(run.get("history", []))
    best = max(curve, key=lambda point: point[metric]) if curve else {"epoch": 0.0}
    config = dict(run.get("config", {}))
    config["data"] = {k: v for k, v in config.get("data", {}).items() if v is not None}
    for key in ("data_dir", "train_file", "validation_file"):
        if key in config["data"]:
            config["data"][key] = records.relative(config["data"][key], Path.cwd())
    config.pop("output", None)
    config["teacher"] = "the study's teacher (spec.teacher.fingerprint)"
    return {
        "spec": spec,
        "main_metric": metric,
        "metrics": run["metrics"],
        "best_epoch": best["epoch"],
        "final_metrics": {k: v for k, v in (curve[-1] if curve else {}).items() if k not in ("epoch", "step")},
        "curve": curve,
        "options": run.get("options", {}),
        "config": config,
        "train": run.get("train", {}),
        "teacher_cache_s": (run.get("teacher_cache") or {}).get("seconds"),
        "term_grad_norms": run.get("term_grad_norms", [])[:3],
        "cost": cost.to_json(),
        "machine": records.machine(),
        "finished_at": run.get("finished_at"),
    }


def write_report(settings: Settings) -> None:
    from paper_report import write_section

    write_section(settings)


def rerun(path: Path, settings: Settings) -> int:
    """Train the run of a committed summary again (same spec, same teacher recipe) and compare: 0 when it lands
    within the seed spread of its row, else 1."""
    from paper_report import seed_spread

    recorded = records.read_summary(path)
    if recorded is None or recorded["spec"].get("kind") != "student":
        raise SystemExit(f"{path}: not a student summary of the paper study")
    spec = recorded["spec"]
    study = Study(settings)
    teacher, teacher_dir = study.chosen_teacher(spec["task"])
    if teacher["fingerprint"] != spec["teacher"]["fingerprint"]:
        print(
            f"[rerun] note: the teacher here ({teacher['fingerprint']}) differs from the run's "
            f"({spec['teacher']['fingerprint']}); comparing anyway",
            flush=True,
        )
    directory = (
        settings.work.with_name(settings.work.name + "-rerun") / spec["task"] / spec["method"] / f"seed-{spec['seed']}"
    )
    for stale in (directory, directory.with_name(directory.name + ".partial")):
        shutil.rmtree(stale, ignore_errors=True)
    scratch = directory.with_suffix(".json")
    again = study._train_student(spec, teacher_dir, directory, scratch)
    metric = recorded["main_metric"]
    before, after = 100 * recorded["metrics"][metric], 100 * again["metrics"][metric]
    spread = seed_spread(settings, spec["task"], spec["method"], spec["teacher"]["fingerprint"])
    within = abs(after - before) <= spread + 1e-9
    print(
        f"[rerun] {spec['task']} {spec['method']} seed {spec['seed']}: recorded {before:.2f}, again {after:.2f} "
        f"({after - before:+.2f} points); seed spread of the row {spread:.2f}: "
        f"{'within' if within else 'OUTSIDE'}",
        flush=True,
    )
    return 0 if within else 1


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "teachers", "bf16-check", "status", "report", "rerun"))
    parser.add_argument("summary", nargs="?", type=Path, help="rerun: a student summary")
    parser.add_argument("--tasks", default="cola", help="in order: any of cola, mrpc, stsb, sst2")
    parser.add_argument("--budget-minutes", type=float, default=None, help="stop between runs after this long")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("KDKIT_GLUE_DIR", "../shared/data/glue")))
    parser.add_argument("--work", type=Path, default=Path("runs/paper"), help="run folders (not committed)")
    parser.add_argument("--results", type=Path, default=plan.Settings.results, help="committed summaries")
    parser.add_argument("--report", type=Path, default=Path("docs/results.md"))
    parser.add_argument("--base-model", default=None, help="the teachers' base model (default: embedded MiniLM)")
    parser.add_argument("--teacher-grid", default="1e-4,5e-5,2e-4", help="learning rates, each with an optional @batch")
    parser.add_argument("--teacher-epochs", type=int, default=15)
    parser.add_argument("--epochs", default="", help="per-task student epochs, e.g. cola=10 (default: the paper's)")
    parser.add_argument("--seeds", default="", help="per-task seed counts, e.g. cola=5,mrpc=3 (default)")
    parser.add_argument("--no-levers", action="store_true", help="skip the levers and tuned rows")
    parser.add_argument("--max-train-samples", type=int, default=None, help="(tests) cap every training set")
    parser.add_argument("--max-eval-samples", type=int, default=None, help="(tests) cap every dev set")
    parser.add_argument("--student", default="copy:3")
    parser.add_argument("--max-length", type=int, default=128)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    settings = Settings.from_args(args)
    if args.command in ("run", "teachers", "bf16-check", "rerun"):
        import torch

        torch.set_num_threads(int(os.environ.get("KDKIT_THREADS", "2")))
        from kdkit.models.loading import quiet_libraries

        quiet_libraries()
    if args.command == "rerun":
        if args.summary is None:
            raise SystemExit("rerun needs a summary: python benchmarks/paper_study.py rerun PATH.json")
        return rerun(args.summary, settings)
    if args.command == "status":
        from paper_report import status

        print(status(settings))
        return 0
    if args.command == "report":
        write_report(settings)
        print(f"[study] paper-budget section written to {settings.report}", flush=True)
        return 0
    study = Study(settings)
    try:
        {"teachers": study.teachers, "bf16-check": study.bf16_check}.get(args.command, study.run)()
    except BudgetReached as stop:
        print(f"[study] {stop}; {study.trained} run(s) trained in this call. Run the same command to continue.")
    write_report(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
