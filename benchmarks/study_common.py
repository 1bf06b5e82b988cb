"""What the benchmark scripts share: the CPU's name (:func:`cpu_model`, for every script's record of its machine);
and what the GLUE studies share (benchmarks/glue_study.py, glue_study_intermediate.py, gpu_study.py, gpu_report.py,
paper_study.py): the tasks and the metric each one is reported by, the methods' names, the runs of each method,
the results file, mean ± std, paired differences and the verdict rule, the wall-time table, and the report sections
between markers (each script's own markers live here, so that one script keeps another's section without importing
it).

The scripts share code through this module (and the attribution gap's maps and measures through
attribution_gap.py, which imports torch inside its functions): none imports another script's module for its
helpers.
Torch-free: the report steps import nothing heavy (``paper_training``/``method_runs`` read the AD-KD presets).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: how the paper reports each task (Table 1)
REPORTED = {"cola": "mcc", "mrpc": "f1", "stsb": "spearman", "sst2": "accuracy", "agnews": "accuracy"}
#: the report sections other scripts write: the paper-budget study's (benchmarks/paper_study.py report), the
#: intermediate layers' (benchmarks/glue_study.py --parts intermediate) and the GPU study's (gpu_study.py report)
PAPER_BEGIN = "<!-- paper budget (issue 18): written by benchmarks/paper_study.py report; edit the script, not this -->"
PAPER_END = "<!-- end of the paper-budget section -->"
INTERMEDIATE_BEGIN = "<!-- intermediate layers (issue 13): written by benchmarks/glue_study.py --parts intermediate -->"
INTERMEDIATE_END = "<!-- end of the intermediate-layer section -->"

#: how the reports name the three methods of the GLUE studies
NAMES = {"ce": "student alone (CE)", "kd": "vanilla KD", "adkd": "AD-KD"}


def mean_std(values: list[float]) -> tuple[float, float]:
    """(mean, sample standard deviation); NaN for no values, std 0 for one."""
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    """``mean ± std`` of ``values`` times ``scale`` ("–" when empty; the mean alone for one value)."""
    if not values:
        return "–"
    mean, std = mean_std([v * scale for v in values])
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def verdict(diffs: list[float], spread: float, method: str = "AD-KD") -> str:
    """Plain words for a mean paired difference against the seed spread (std of the baseline's runs).

    A difference counts only when it is larger than both twice its standard error and the seed spread (no
    difference at all, with no spread, is no difference)."""
    if len(diffs) < 2:
        return "too few seeds to say"
    mean, std = mean_std(diffs)
    sem = std / len(diffs) ** 0.5
    if abs(mean) <= 2 * sem or abs(mean) <= spread:
        return "no clear difference (within the seed spread)"
    return f"{method} better" if mean > 0 else f"{method} worse"


def wall_time_table(runs: list[dict[str, Any]], tasks: list[str]) -> list[str]:
    """One student's training wall time (``wall_time_s``, mean over seeds, s) per method and task."""
    lines = ["| method | " + " | ".join(t.upper() for t in tasks) + " |", "|---|" + "---:|" * len(tasks)]
    for method in ("ce", "kd", "adkd"):
        cells = []
        for task in tasks:
            times = [r["wall_time_s"] for r in runs if r["task"] == task and r["method"] == method]
            cells.append(f"{statistics.fmean(times):.0f}" if times else "–")
        lines.append(f"| {NAMES[method]} | " + " | ".join(cells) + " |")
    return lines


def replace_section(
    report: Path, begin: str, end: str, lines: list[str], *, after_title: bool = False, after: str | None = None
) -> None:
    """Put ``lines`` (which start with ``begin`` and end with ``end``) in place of the block between those markers
    of ``report``; without markers, append it (or, with ``after_title``, insert it after the first heading's
    line; with ``after``, at the end of the ``## `` section whose heading starts with ``after``, when there is
    one). The rest of the file stays as it is."""
    text = report.read_text() if report.is_file() else ""
    block = "\n".join(lines)
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        text = before + block + rest.split(end, 1)[1]
    elif after_title and text.startswith("# "):
        title, _, rest = text.partition("\n")
        text = f"{title}\n\n{block}\n{rest}"
    elif after and after in text:
        at = text.index(after)
        following = text.find("\n## ", at + len(after))
        cut = following + 1 if following >= 0 else len(text)
        text = text[:cut].rstrip("\n") + "\n\n" + block + "\n" + ("\n" + text[cut:] if following >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)


def kept_section(path: Path, begin: str, end: str) -> str:
    """The block of ``path`` from ``begin`` to ``end`` (written by another script), after a blank line; or ""."""
    text = path.read_text() if path.is_file() else ""
    if begin not in text or end not in text:
        return ""
    return "\n" + begin + text.split(begin, 1)[1].split(end, 1)[0] + end + "\n"


TASKS = ("cola", "mrpc", "stsb", "sst2")


#: AD-KD variants tried on a held-out part of the training set (``--parts levers``), never on the dev set
LEVERS: dict[str, dict[str, dict[str, Any]]] = {
    "lever-kd": {"adkd": {"ablation": "no_attr"}},
    "lever-adkd": {},
    "lever-beta10": {"adkd": {"beta": 10.0}},
    "lever-beta100": {"adkd": {"beta": 100.0}},
}


#: the GPU study's section of the report (benchmarks/gpu_study.py report), kept when the report is rewritten
GPU_BEGIN = "<!-- GPU study (issue 9): written by benchmarks/gpu_study.py report; edit the script, not this section -->"


GPU_END = "<!-- end of the GPU study section -->"


#: the methods of the intermediate-layer part (issue 13), with their baselines
INTERMEDIATE_METHODS = ("kd", "adkd", "kd+hidden", "adkd+hidden", "adkd-layer2")


#: options of the ``hidden`` loss in the study: TinyBERT's MSE over every token, weight 1 (not tuned)
HIDDEN: dict[str, Any] = {"weight": 1.0, "target": "tokens", "layers": "uniform"}


@dataclass
class Run:
    """One training run of the study."""

    task: str
    method: str
    seed: int
    loss: str
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    preset: str | None = None

    def directory(self, work: Path) -> Path:
        return work / self.task / self.method / f"seed-{self.seed}"


def paper_training(task: str) -> dict[str, Any]:
    """The paper's learning rate and batch size for ``task`` (AG News: SST-2's)."""
    from kdkit_adkd.presets import paper_preset

    return dict(paper_preset(task if task != "agnews" else "sst2")["training"])


def method_runs(task: str, seed: int, methods: list[str]) -> list[Run]:
    preset = "paper" if task != "agnews" else None
    runs = []
    for method in methods:
        if method == "ce":
            runs.append(Run(task, method, seed, "ce"))
        elif method == "kd":
            runs.append(Run(task, method, seed, "adkd", {"adkd": {"ablation": "no_attr"}}, preset))
        elif method == "adkd":
            runs.append(Run(task, method, seed, "adkd", {}, preset))
        elif method == "adkd-no-ce":
            runs.append(Run(task, method, seed, "adkd", {"adkd": {"ablation": "no_ce"}}, preset))
        elif method == "adkd-no-kd":
            runs.append(Run(task, method, seed, "adkd", {"adkd": {"ablation": "no_kd"}}, preset))
        elif method == "adkd-single-view":
            runs.append(Run(task, method, seed, "adkd", {"adkd": {"views": "gold"}}, preset))
        elif method in LEVERS:
            runs.append(Run(task, method, seed, "adkd", LEVERS[method], preset))
        elif method == "kd+hidden":  # the study's kd (adkd without L_attr) plus the hidden loss
            runs.append(
                Run(task, method, seed, "adkd+hidden", {"adkd": {"ablation": "no_attr"}, "hidden": HIDDEN}, preset)
            )
        elif method == "adkd+hidden":
            runs.append(Run(task, method, seed, "adkd+hidden", {"hidden": HIDDEN}, preset))
        elif method == "adkd-layer2":  # maps at student layer 2 and the uniform map's teacher layer (4 of 6)
            runs.append(Run(task, method, seed, "adkd", {"ig": {"layer": 2}}, preset))
        else:
            raise ValueError(method)
    return runs


def metric_values(runs: list[dict[str, Any]], task: str, method: str, metric: str | None = None) -> list[float]:
    metric = metric or REPORTED[task]
    chosen = sorted((r for r in runs if r["task"] == task and r["method"] == method), key=lambda r: r["seed"])
    return [float(r["metrics"][metric]) for r in chosen]


def paired_difference(runs: list[dict[str, Any]], task: str, a: str, b: str) -> list[float]:
    """Per-seed metric(a) − metric(b), seeds present in both."""
    metric = REPORTED[task]
    by_seed = {
        m: {r["seed"]: r["metrics"][metric] for r in runs if r["task"] == task and r["method"] == m} for m in (a, b)
    }
    return [100 * (by_seed[a][s] - by_seed[b][s]) for s in sorted(set(by_seed[a]) & set(by_seed[b]))]


def save_results(path: Path, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge ``results`` into the JSON at ``path`` (keyed by task, method, seed); returns every run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(path.read_text()) if path.is_file() else {"runs": []}
    keyed = {(r["task"], r["method"], r["seed"]): r for r in previous["runs"]}
    keyed.update({(r["task"], r["method"], r["seed"]): r for r in results})
    runs = sorted(keyed.values(), key=lambda r: (r["task"], r["method"], r["seed"]))
    path.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    return runs


class Study:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work: Path = args.work
        self.command = ""
        self.machine = ""

    # -- data --------------------------------------------------------------------------------------

    def data(self, task: str) -> dict[str, Any]:
        if task == "agnews":
            return {
                "task": "agnews",
                "train_file": str(self.args.agnews_dir / "train.csv"),
                "validation_file": str(self.args.agnews_dir / "validation.csv"),
                "max_train_samples": self.args.agnews_train_samples,
                "max_eval_samples": self.args.agnews_eval_samples,
                "max_length": 128,
            }
        data: dict[str, Any] = {"task": task, "data_dir": str(self.args.data_dir), "max_length": 128}
        if task == "sst2" and self.args.sst2_train_samples:
            data["max_train_samples"] = self.args.sst2_train_samples
        return data

    # -- runs --------------------------------------------------------------------------------------

    def teacher(self, task: str) -> Path:
        from kdkit import api
        from kdkit.config import FinetuneConfig

        directory = self.work / task / "teacher"
        if not (directory / "run.json").is_file():
            print(f"[study] fine-tuning the {task} teacher", flush=True)
            data = self.data(task)
            epochs = teacher_epochs(self.args, task)
            if task == "sst2":
                data["max_train_samples"] = self.args.sst2_teacher_train_samples
                epochs = self.args.sst2_teacher_epochs
            config = FinetuneConfig.model_validate(
                {
                    "data": data,
                    "training": {
                        "epochs": epochs,
                        "learning_rate": self.args.teacher_lr,
                        "batch_size": 32,
                        "seed": 42,
                        "logging_steps": 100,
                    },
                    "output": str(directory),
                    "resume": directory.with_name("teacher.partial").is_dir(),
                    "quiet": True,
                }
            )
            api.finetune(config)
        return directory

    def run(self, spec: Run) -> dict[str, Any]:
        from kdkit import api
        from kdkit.plugins.manager import get_plugin_manager

        directory = spec.directory(self.work)
        if not (directory / "run.json").is_file():
            teacher = self.teacher(spec.task)
            training = {
                **paper_training(spec.task),
                "epochs": self.args.epochs,
                "seed": spec.seed,
                "logging_steps": 100,
            }
            raw: dict[str, Any] = {
                "loss": spec.loss,
                "teacher": str(teacher / "best"),
                "student": "copy:3",
                # length-grouped batches (same for every method): about 2x fewer padded tokens
                "data": {**self.data(spec.task), "group_by_length": True},
                # the levers are compared on a held-out part of train: the dev set stays unseen by the tuning
                "training": training,
                "options": spec.options,
                "output": str(directory),
                "resume": directory.with_name(directory.name + ".partial").is_dir(),
                "quiet": True,
            }
            if spec.method in LEVERS:
                raw["data"]["holdout_fraction"] = self.args.lever_holdout
            if spec.preset:
                raw["preset"] = spec.preset
            if spec.task == "agnews" and spec.loss == "adkd":
                # no paper values for AG News: SST-2's α, β, T
                raw["options"] = {
                    "adkd": {"alpha": 0.8, "beta": 1.0, "temperature": 2.0, **spec.options.get("adkd", {})}
                }
            print(f"[study] {spec.task} {spec.method} seed {spec.seed}", flush=True)
            start = time.perf_counter()
            manager = get_plugin_manager()
            config = api.resolve_distill_config(raw, manager)
            # the preset sets the epochs too: the study's budget wins
            config.training.epochs = float(self.args.epochs)
            api.distill(config, plugins=manager)
            print(f"[study] done in {time.perf_counter() - start:.0f} s", flush=True)
        summary = json.loads((directory / "run.json").read_text())
        return {
            "task": spec.task,
            "method": spec.method,
            "seed": spec.seed,
            "metrics": summary["metrics"],
            "wall_time_s": summary["train"]["wall_time_s"],
            "teacher_cache_s": summary["teacher_cache"]["seconds"],
            "epochs": summary["train"]["epochs"],
            "examples": summary["train"]["examples"],
            "options": summary["options"],
            "training": summary["config"]["training"],
            "directory": str(directory),
        }


def teacher_epochs(args: argparse.Namespace, task: str) -> int:
    """The teacher's epochs for ``task``: ``--teacher-epochs``, unless ``--teacher-epochs-for task=N`` says."""
    for item in filter(None, (args.teacher_epochs_for or "").split(",")):
        name, _, value = item.partition("=")
        if name == task:
            return int(value)
    return int(args.teacher_epochs)
