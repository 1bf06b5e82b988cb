"""What the paper-budget study trains (benchmarks/paper_study.py): its settings, teachers, methods, levers and the
kdkit configurations of each run.

Every run is described by a ``spec`` (a JSON-able dict): what its committed summary records and what decides
whether a present summary can stand for it. Torch-free (kdkit is imported where a config is built).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the paper's student budget per task (epochs of the reference scripts), and the study's seeds per task
EPOCHS = {"cola": 10, "mrpc": 10, "stsb": 8, "sst2": 6}
SEEDS = {"cola": 5, "mrpc": 3, "stsb": 3, "sst2": 3}
TASKS = ("cola", "mrpc", "stsb", "sst2")
#: SST-2 at this budget: its first 20,000 training sentences (teacher and students)
SST2_TRAIN = 20000
MAIN_METHODS = ("ce", "kd", "adkd")
#: the folder of the held-out (lever) runs beside the dev-set rows: results/<task>/t-<fp>/holdout/<lever>/seed-<n>
HOLDOUT_DIR = "holdout"
#: the folder of the bf16 check's runs (``paper_study.py bf16-check``): results/<task>/t-<fp>/bf16/<method>/seed-<n>
BF16_DIR = "bf16"

#: the levers (issue 18), tried on a held-out share of the lever task's training set, one seed each. ``kd`` is the
#: ``adkd`` loss without L_attr (the same code path), so every row is the paper preset plus these options.
LEVERS: dict[str, dict[str, Any]] = {
    "kd": {"ablation": "no_attr"},
    "kd-T2": {"ablation": "no_attr", "temperature": 2.0},
    "kd-T4": {"ablation": "no_attr", "temperature": 4.0},
    "kd-T4-anneal": {"ablation": "no_attr", "temperature": 4.0, "anneal": True},
    "adkd": {},
    "adkd-beta10": {"beta": 10.0},
    "adkd-beta50": {"beta": 50.0},
    "adkd-T2": {"temperature": 2.0},
    "adkd-T4": {"temperature": 4.0},
    "adkd-T4-anneal": {"temperature": 4.0, "anneal": True},
    "adkd-Khalf": {"top_k_fraction": 0.5},
}


@dataclass
class Settings:
    """The study's settings (``run``'s flags); tests shrink them (tiny models, a few examples, 1 epoch)."""

    data_dir: Path = Path("../shared/data/glue")
    work: Path = Path("runs/paper")
    results: Path = Path("benchmarks/results/paper")
    report: Path = Path("docs/results.md")
    tasks: tuple[str, ...] = ("cola",)
    base_model: str | None = None
    #: (learning rate, batch size) of each teacher of the grid
    teacher_grid: tuple[tuple[float, int], ...] = ((1e-4, 32), (5e-5, 32), (2e-4, 32))
    teacher_epochs: int = 15
    teacher_seed: int = 42
    epochs: dict[str, int] = field(default_factory=lambda: dict(EPOCHS))
    seeds: dict[str, int] = field(default_factory=lambda: dict(SEEDS))
    levers: bool = True
    lever_task: str = "cola"
    lever_holdout: float = 0.1
    lever_seed: int = 1
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    student: str = "copy:3"
    max_length: int = 128
    budget_minutes: float | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        settings = cls(data_dir=args.data_dir, work=args.work, results=args.results, report=args.report)
        settings.tasks = tuple(t for t in args.tasks.split(",") if t)
        settings.base_model = args.base_model
        settings.teacher_grid = parse_grid(args.teacher_grid)
        settings.teacher_epochs = args.teacher_epochs
        settings.levers = not args.no_levers
        settings.max_train_samples, settings.max_eval_samples = args.max_train_samples, args.max_eval_samples
        settings.student, settings.max_length = args.student, args.max_length
        settings.budget_minutes = args.budget_minutes
        for item in filter(None, (args.epochs or "").split(",")):
            task, _, value = item.partition("=")
            settings.epochs[task] = int(value)
        for item in filter(None, (args.seeds or "").split(",")):
            task, _, value = item.partition("=")
            settings.seeds[task] = int(value)
        return settings

    def train_samples(self, task: str) -> int | None:
        if self.max_train_samples is not None:
            return self.max_train_samples
        return SST2_TRAIN if task == "sst2" else None

    def data(self, task: str, holdout: float | None = None) -> dict[str, Any]:
        """The ``data`` section of a run on ``task`` (the data folder as given: summaries stay portable)."""
        data: dict[str, Any] = {"task": task, "data_dir": str(self.data_dir), "max_length": self.max_length}
        if self.train_samples(task) is not None:
            data["max_train_samples"] = self.train_samples(task)
        if self.max_eval_samples is not None:
            data["max_eval_samples"] = self.max_eval_samples
        if holdout is not None:
            data["holdout_fraction"] = holdout
        return data


# -- teachers -------------------------------------------------------------------------------------------------


def parse_grid(text: str) -> tuple[tuple[float, int], ...]:
    """``"1e-4,5e-5@16"`` -> ``((1e-4, 32), (5e-5, 16))``: learning rates, each with an optional ``@batch``."""
    grid = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        lr, _, batch = item.partition("@")
        grid.append((float(lr), int(batch) if batch else 32))
    return tuple(grid)


def grid_name(lr: float, batch: int) -> str:
    """``lr-1e-4`` (batch 32), ``lr-5e-5-b16``: a teacher's folder and summary name."""
    mantissa, exponent = f"{lr:e}".split("e")
    name = f"lr-{float(mantissa):g}e{int(exponent)}"
    return name if batch == 32 else f"{name}-b{batch}"


def best_of_grid(teachers: list[dict[str, Any]]) -> int:
    """Index of the grid's teacher to distil from: the highest dev score, the first of the grid on a tie."""
    return max(range(len(teachers)), key=lambda i: (teachers[i]["dev_score"], -i))


def teacher_spec(settings: Settings, task: str, lr: float, batch: int) -> dict[str, Any]:
    return {
        "kind": "teacher",
        "task": task,
        "base_model": settings.base_model,
        "learning_rate": lr,
        "epochs": settings.teacher_epochs,
        "batch_size": batch,
        "seed": settings.teacher_seed,
        "warmup_ratio": 0.1,
        "max_train_samples": settings.train_samples(task),
        "max_eval_samples": settings.max_eval_samples,
    }


def teacher_config(settings: Settings, spec: dict[str, Any], output: Path, resume: bool) -> Any:
    """The ``kdkit finetune`` configuration of a teacher of the grid."""
    from kdkit.config import FinetuneConfig

    data = settings.data(spec["task"])
    return FinetuneConfig.model_validate(
        {
            "model": spec["base_model"],
            "data": data,
            "training": {
                "epochs": spec["epochs"],
                "learning_rate": spec["learning_rate"],
                "batch_size": spec["batch_size"],
                "seed": spec["seed"],
                "warmup_ratio": spec["warmup_ratio"],
                "precision": "fp32",  # explicit: auto would pick bf16 on AMX CPUs
            },
            "output": str(output),
            "resume": resume,
            "quiet": True,
        }
    )


def same_teacher_run(run: dict[str, Any], spec: dict[str, Any]) -> bool:
    """Whether a finished fine-tune's run.json is the teacher ``spec`` asks for (adopted without training)."""
    config = run.get("config", {})
    training, data = config.get("training", {}), config.get("data", {})
    wanted = {
        "task": spec["task"],
        "learning_rate": spec["learning_rate"],
        "epochs": float(spec["epochs"]),
        "batch_size": spec["batch_size"],
        "seed": spec["seed"],
        "warmup_ratio": spec["warmup_ratio"],
        "max_train_samples": spec["max_train_samples"],
        "max_eval_samples": spec["max_eval_samples"],
    }
    found = {
        "task": data.get("task"),
        "learning_rate": training.get("learning_rate"),
        "epochs": float(training.get("epochs", 0)),
        "batch_size": training.get("batch_size"),
        "seed": training.get("seed"),
        "warmup_ratio": training.get("warmup_ratio"),
        "max_train_samples": data.get("max_train_samples"),
        "max_eval_samples": data.get("max_eval_samples"),
    }
    base = config.get("model") or None
    return found == wanted and (spec["base_model"] is None or base == spec["base_model"])


# -- students -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Student:
    """One student run: ``method`` names the row (``ce``, ``kd``, ``adkd``, a lever, or ``tuned-<lever>``)."""

    task: str
    method: str
    seed: int
    adkd: tuple[tuple[str, Any], ...] = ()  # adkd options on top of the paper preset (none for ce)
    holdout: float | None = None
    precision: str = "fp32"  # every row of the study; bf16 only for the bf16 check

    @property
    def loss(self) -> str:
        return "ce" if self.method == "ce" else "adkd"


def main_students(task: str, seeds: int) -> list[Student]:
    """CE, vanilla KD and AD-KD, seed by seed (a stopped study leaves whole seeds)."""
    runs = []
    for seed in range(1, seeds + 1):
        for method in MAIN_METHODS:
            options = tuple(sorted(LEVERS[method].items())) if method != "ce" else ()
            runs.append(Student(task, method, seed, options))
    return runs


def lever_students(settings: Settings) -> list[Student]:
    return [
        Student(settings.lever_task, name, settings.lever_seed, tuple(sorted(options.items())), settings.lever_holdout)
        for name, options in LEVERS.items()
    ]


def tuned_students(task: str, seeds: int, lever_scores: dict[str, float]) -> list[Student]:
    """For KD and AD-KD: the lever with the best held-out score, if it beats the preset (``kd``/``adkd``) there,
    on the dev set with every seed, as the row ``tuned-<lever>``."""
    runs = []
    for family in ("kd", "adkd"):
        scored = {name: s for name, s in lever_scores.items() if name.split("-")[0] == family}
        if family not in scored or len(scored) < 2:
            continue
        best = max(scored, key=lambda name: (scored[name], name == family))
        if best != family and scored[best] > scored[family]:
            options = tuple(sorted(LEVERS[best].items()))
            runs += [Student(task, f"tuned-{best}", seed, options) for seed in range(1, seeds + 1)]
    return runs


def bf16_check_students(settings: Settings) -> list[Student]:
    """CE, KD and AD-KD on the lever task's dev set, seed 1, in bf16: whether bf16 lands within the fp32 rows'
    seed spread (issue 30: the study's remaining runs may use bf16 only then)."""
    return [
        Student(settings.lever_task, method, 1, tuple(sorted(LEVERS[method].items())) if method != "ce" else (),
                precision="bf16")
        for method in MAIN_METHODS
    ]


def student_spec(settings: Settings, run: Student, teacher: dict[str, Any]) -> dict[str, Any]:
    spec = _student_spec(settings, run, teacher)
    if run.precision != "fp32":  # fp32 specs stay those of the summaries committed before precision was a choice
        spec["precision"] = run.precision
    return spec


def _student_spec(settings: Settings, run: Student, teacher: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "student",
        "task": run.task,
        "method": run.method,
        "seed": run.seed,
        "loss": run.loss,
        "preset": None if run.loss == "ce" else "paper",
        "adkd": dict(run.adkd),
        "epochs": settings.epochs[run.task],
        "student": settings.student,
        "data": settings.data(run.task, run.holdout),
        "teacher": teacher,
    }


def student_config(spec: dict[str, Any], teacher_dir: Path, output: Path, resume: bool) -> dict[str, Any]:
    """The raw ``kdkit distill`` configuration of a student (resolved with the preset by kdkit.api)."""
    from kdkit_adkd.presets import paper_preset

    training = dict(paper_preset(spec["task"])["training"])  # every method: the paper's lr and batch size
    training.update({"epochs": spec["epochs"], "seed": spec["seed"], "logging_steps": 100})
    training["precision"] = spec.get("precision", "fp32")  # explicit: auto would pick bf16 on AMX CPUs
    raw: dict[str, Any] = {
        "loss": spec["loss"],
        "teacher": str(teacher_dir),
        "student": spec["student"],
        # length-grouped batches (every method the same): about 2x fewer padded tokens
        "data": {**spec["data"], "group_by_length": True},
        "training": training,
        "options": {"adkd": spec["adkd"]} if spec["loss"] == "adkd" else {},
        "output": str(output),
        "resume": resume,
        "quiet": True,
    }
    if spec["preset"]:
        raw["preset"] = spec["preset"]
    return raw
