"""``kdkit compress``: from a latency, size or accuracy budget to a verified, deployable student.

    from pathlib import Path
    from kdkit.compress import Budget, CompressOptions, compress
    from kdkit.config import DataConfig

    result = compress(CompressOptions(
        teacher=Path("runs/sst2-teacher"), data=DataConfig(task="sst2", data_dir="../shared/data/glue"),
        output=Path("runs/sst2-compressed"), budget=Budget(max_latency_ms=4, max_drop=1.5), trials=24,
    ))
    result.chosen  # the most accurate trial within the budget (exported in runs/sst2-compressed/student)

The search is an Optuna study (:mod:`kdkit.compress.study`) over :class:`~kdkit.compress.space.SearchSpace`;
each trial is distilled, exported and measured as deployed (:mod:`kdkit.compress.trial`); the frontier and the
choice are :mod:`kdkit.compress.frontier`'s, the report :mod:`kdkit.compress.report`'s.

Faults: a trial that raises is recorded as failed (its error in the ``error`` user attribute) and the search
goes on; Ctrl-C marks the running trial failed (Optuna does) and stops, and the next run continues the study
until ``trials`` trials have finished. Nothing finished is lost: every trial is committed to the storage when it
ends. Pruning on the per-epoch dev score is not done: Optuna does not prune multi-objective studies.
"""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from kdkit.compress.budget import Budget
from kdkit.compress.frontier import Row, choose, pareto_front, unmet_error
from kdkit.compress.report import write_report
from kdkit.compress.space import PERCENTILES, Plan, SearchSpace, check_losses, length_cuts, student_depths
from kdkit.compress.study import open_study, storage_url
from kdkit.compress.trial import TrialSetup, dev_set, measure_teacher, run_trial
from kdkit.config import DataConfig
from kdkit.errors import ConfigError, KdkitWarning
from kdkit.plugins.manager import PluginManager, get_plugin_manager
from kdkit.records.manifests import file_sha256

Runner = Callable[[Plan, TrialSetup, Path], dict[str, Any]]
STUDENT_DIR = "student"


@dataclass(frozen=True)
class CompressOptions:
    """What ``kdkit compress`` is asked (its flags).

    Attributes:
        teacher: the fine-tuned teacher's folder (a kdkit run's ``best/`` or a saved classifier).
        data: the task's data options (``max_length``: the longest cut the search may choose).
        output: the output folder (the study, trials, report and chosen student).
        budget: the limits the chosen student must meet.
        trials: finished trials the study should hold (a later run with more continues it).
        losses, depths, max_epochs: the search space's losses, ``copy:N`` depths (None: every N), epochs.
        int8, vocab_pruning: let the search choose int8 and a pruned vocabulary.
        threads: onnxruntime threads of the latency measurement (batch 1).
        storage, study_name: the Optuna storage URL (default: SQLite in ``output``) and the study's name.
        exporter: ``dynamo`` or ``torchscript``.
        training: training options every trial gets (``batch_size``, ``seed``, ``device`` ...).
        seed: the sampler's seed (None: random).
    """

    teacher: Path
    data: DataConfig
    output: Path
    budget: Budget
    trials: int = 20
    losses: tuple[str, ...] = ("kd",)
    depths: tuple[int, ...] | None = None
    max_epochs: int = 3
    int8: bool = True
    vocab_pruning: bool = True
    threads: int = 1
    storage: str | None = None
    study_name: str = "kdkit-compress"
    exporter: str = "dynamo"
    training: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    def check(self) -> None:
        """One line for an option that cannot work, before any work."""
        self.budget.check()
        for flag, value in (("--trials", self.trials), ("--threads", self.threads), ("--max-epochs", self.max_epochs)):
            if value < 1:
                raise ConfigError(f"{flag} {value}: must be 1 or more", f"pass {flag} 1 or more")
        check_losses(self.losses)


@dataclass
class CompressResult:
    """What :func:`compress` returns: the report, every finished trial, the frontier, the chosen trial."""

    output: Path
    report: Path
    teacher: dict[str, Any]
    rows: list[Row]
    frontier: list[Row]
    chosen: Row | None
    failed: int


def _teacher_info(options: CompressOptions) -> tuple[int, int]:
    """The teacher's depth and max length; one line for a teacher that is not a classifier of the task."""
    from kdkit.export.source import check_classifier_config
    from kdkit.models.checks import check_exists
    from kdkit.models.loading import load_config
    from kdkit.models.saving import read_task_file
    from kdkit.training.teachers import check_teacher_task

    check_exists(options.teacher, role="teacher")
    check_classifier_config(options.teacher)
    from kdkit.data.loading import load_raw

    check_teacher_task(str(options.teacher), load_raw(options.data, need_train=False).task)
    config = load_config(str(options.teacher))
    depth = int(getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None) or 0)
    recorded = read_task_file(options.teacher)
    return depth, min(options.data.max_length, recorded[1]) if recorded else options.data.max_length


def _space(options: CompressOptions, depth: int, max_length: int) -> SearchSpace:
    """The search space: depths, and the length cuts measured on the data with the teacher's tokenizer."""
    from kdkit.compress.trial import _all_texts
    from kdkit.models.loading import load_tokenizer

    tokenizer = load_tokenizer(str(options.teacher))
    encoded = tokenizer.backend_tokenizer.encode_batch(_all_texts(options.data))
    return SearchSpace(
        depths=student_depths(depth, options.depths),
        lengths=length_cuts([len(e.ids) for e in encoded], max_length, PERCENTILES),
        losses=check_losses(options.losses),
        max_epochs=options.max_epochs,
        precisions=("fp32", "int8") if options.int8 else ("fp32",),
        vocabs=("full", "pruned") if options.vocab_pruning and _prunable(tokenizer) else ("full",),
    )


def _prunable(tokenizer: Any) -> bool:
    """Whether vocabulary pruning applies (a WordPiece tokenizer, :mod:`kdkit.models.vocab`); when it does not,
    the search leaves the pruned vocabulary out rather than fail every trial that draws it."""
    model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
    if type(model).__name__ == "WordPiece":
        return True
    warnings.warn(
        f"vocabulary pruning needs a WordPiece tokenizer, not {type(model).__name__}: the search keeps the full one",
        KdkitWarning,
        stacklevel=3,
    )
    return False


def _identity(options: CompressOptions) -> dict[str, Any]:
    weights = options.teacher / "model.safetensors"
    data = options.data
    return {
        "task": data.task_name,
        "teacher_sha256": file_sha256(weights) if weights.is_file() else str(options.teacher.absolute()),
        "data": "|".join(
            str(value)
            for value in (
                data.data_dir,
                data.train_file,
                data.validation_file,
                data.max_train_samples,
                data.max_eval_samples,
            )
        ),
    }


def finished_rows(study: Any) -> tuple[list[Row], list[Row]]:
    """(finished trials, failed ones) of ``study`` as report rows."""
    import optuna

    done: list[Row] = []
    failed: list[Row] = []
    for trial in study.get_trials(deepcopy=False):
        row = {"number": trial.number, "params": trial.user_attrs.get("plan", dict(trial.params)),
               "measured": trial.user_attrs.get("measured"), "error": trial.user_attrs.get("error")}  # fmt: skip
        if trial.state == optuna.trial.TrialState.COMPLETE and row["measured"]:
            done.append(row)
        elif trial.state == optuna.trial.TrialState.FAIL:
            failed.append(row)
    return done, failed


class _Progress:
    """One line per trial: which of how many, what it measured, the best within the budget so far, time left."""

    def __init__(self, console: Console, study: Any, options: CompressOptions, teacher_score: float) -> None:
        self.console, self.study, self.options, self.teacher_score = console, study, options, teacher_score
        self.started = time.perf_counter()
        self.ran = 0

    def starting(self, number: int, plan: Plan) -> None:
        done, _ = finished_rows(self.study)
        self.console.print(
            f"trial {len(done) + 1} of {self.options.trials} (#{number}): {plan.student} {plan.loss} "
            f"T={plan.temperature:.2g} α={plan.alpha:.2f} lr={plan.learning_rate:.1e} {plan.epochs} epoch(s) "
            f"max length {plan.max_length} {plan.precision} vocab {plan.vocab}",
            soft_wrap=True,
        )

    def __call__(self, study: Any, trial: Any) -> None:
        self.ran += 1
        done, _ = finished_rows(study)
        measured = trial.user_attrs.get("measured")
        said = (
            f"score {100 * measured['score']:.2f}, p95 {measured['p95_ms']:.2f} ms, "
            f"{measured['size_bytes'] / 1e6:.1f} MB"
            if measured
            else f"failed: {trial.user_attrs.get('error', 'see report.md')}"
        )
        best = choose(done, self.options.budget, self.teacher_score)
        best_said = (
            f"best within budget: #{best['number']} ({100 * best['measured']['score']:.2f}, "
            f"{best['measured']['p95_ms']:.2f} ms)" if best else "none within budget yet"
        )  # fmt: skip
        left = max(0, self.options.trials - len(done))
        per_trial = (time.perf_counter() - self.started) / self.ran
        self.console.print(
            f"  #{trial.number} {said} | {best_said} | {len(done)} of {self.options.trials} done, "
            f"~{left * per_trial / 60:.0f} min left",
            soft_wrap=True,
        )


def _objective(
    study: Any, space: SearchSpace, setup: TrialSetup, options: CompressOptions, runner: Runner, progress: _Progress
) -> Callable[[Any], tuple[float, ...]]:
    teacher_score = progress.teacher_score

    def objective(trial: Any) -> tuple[float, ...]:
        plan = space.suggest(trial)
        trial.set_user_attr("plan", {**plan.to_dict(), "student": plan.student})
        progress.starting(trial.number, plan)
        try:
            measured = runner(plan, setup, options.output / "trials" / options.study_name / f"{trial.number:04d}")
        except KeyboardInterrupt:
            from kdkit.records.runs import take_unfinished

            take_unfinished()  # the trial's half-done run is not resumed: running compress again continues the study
            trial.set_user_attr("error", "interrupted (Ctrl-C)")
            raise
        except Exception as exc:
            trial.set_user_attr("error", (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300])
            raise
        trial.set_user_attr("measured", measured)
        for name, value in zip(
            ("latency", "size", "drop"), options.budget.constraints(measured, teacher_score), strict=True
        ):
            trial.set_constraint(name, value)
        values = (float(measured["score"]), float(measured["p95_ms"]))
        return (*values, measured["size_bytes"] / 1e6) if options.budget.limits_size else values

    return objective


def compress(
    options: CompressOptions,
    *,
    plugins: PluginManager | None = None,
    console: Console | None = None,
    runner: Runner | None = None,
) -> CompressResult:
    """Search for the most accurate student within ``options.budget`` (see the module docstring); writes
    ``report.md`` and, when a trial meets the budget, exports it to ``output/student``; otherwise raises
    :class:`~kdkit.compress.budget.BudgetUnmet` naming the closest trials (after writing the report)."""
    import optuna

    options.check()
    console = console or Console(stderr=True)
    depth, max_length = _teacher_info(options)
    space = _space(options, depth, max_length)
    options.output.mkdir(parents=True, exist_ok=True)
    url = storage_url(options.output, options.storage)
    study = open_study(url, options.study_name, _identity(options), with_size=options.budget.limits_size,
                       seed=options.seed)  # fmt: skip
    console.print(
        f"study '{options.study_name}' in {url}; measuring the teacher (exported, {options.threads} thread(s))"
    )
    teacher = measure_teacher(options.teacher, options.data, options.output, options.threads, options.exporter)
    setup = trial_setup(options, teacher, plugins)
    progress = _Progress(console, study, options, float(teacher["score"]))
    objective = _objective(study, space, setup, options, runner or run_trial, progress)
    enough = optuna.study.MaxTrialsCallback(options.trials, states=(optuna.trial.TrialState.COMPLETE,))
    done, _ = finished_rows(study)
    while len(done) < options.trials:  # failed trials do not count: run more until enough have finished
        study.optimize(objective, n_trials=options.trials - len(done), catch=(Exception,), callbacks=[enough, progress])
        before, (done, _) = len(done), finished_rows(study)
        if len(done) == before:  # every trial of the round failed: report them rather than retry forever
            break
    return _finish(study, options, space, teacher)


def trial_setup(options: CompressOptions, teacher: dict[str, Any], plugins: PluginManager | None) -> TrialSetup:
    """What every trial of ``options`` shares (``teacher``: the teacher's measured reference)."""
    import numpy as np

    return TrialSetup(
        teacher=options.teacher, data=options.data, dev=dev_set(options.data),
        teacher_predictions=np.asarray(teacher["predictions"]), training=options.training, threads=options.threads,
        exporter=options.exporter, plugins=plugins or get_plugin_manager(), console=Console(stderr=True, quiet=True),
    )  # fmt: skip


def _finish(study: Any, options: CompressOptions, space: SearchSpace, teacher: dict[str, Any]) -> CompressResult:
    """Frontier, choice, report; the chosen export copied to ``output/student``; or the unmet-budget error."""
    done, failed = finished_rows(study)
    teacher_score = float(teacher["score"])
    frontier = pareto_front(done, options.budget.limits_size)
    chosen = choose(done, options.budget, teacher_score)
    if chosen is not None and Path(chosen["measured"]["export"]).is_dir():
        _install_student(Path(chosen["measured"]["export"]), options.output / STUDENT_DIR)
    elif chosen is not None:  # a trial of a shared study that ran on another machine
        warnings.warn(
            f"the chosen trial #{chosen['number']} was exported on another machine ({chosen['measured']['export']}): "
            f"copy it from there; {STUDENT_DIR}/ was not written",
            KdkitWarning,
            stacklevel=2,
        )
    report = write_report(options.output, options.budget, space, teacher, done, failed, frontier, chosen)
    result = CompressResult(options.output, report, teacher, done, frontier, chosen, len(failed))
    if chosen is None:
        error = unmet_error(done, options.budget, teacher_score)
        error.result = result  # what was found all the same (the frontier, every trial)
        raise error
    return result


def _install_student(export: Path, target: Path) -> None:
    """Copy the chosen export (with its model card) to ``target``, replacing an earlier choice; under a lock, as
    processes sharing a study and an output folder may finish together."""
    from kdkit.records.locking import RunLock

    lock = RunLock(target)
    lock.acquire(wait=True)
    try:
        work, old = target.with_name(f".{target.name}.partial"), target.with_name(f".{target.name}.old")
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(export, work)
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        work.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        lock.release()
