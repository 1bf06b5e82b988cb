"""README's first command, timed as a new user would run it (issue #12, part 6).

    python benchmarks/first_command.py                      # README's command, fresh KDKIT_HOME, prints a report
    python benchmarks/first_command.py --json out.json      # also the figures as JSON
    python benchmarks/first_command.py --seeds 42,42,1,2    # four runs, each from a fresh KDKIT_HOME: the range
    python benchmarks/first_command.py --precision fp32 --loss adkd --seeds 42,1,2 --home /tmp/h  # variants

``--precision`` and ``--loss`` change README's command (``--precision``/``--plugin``); ``--home`` shares one
KDKIT_HOME between the runs (the default teacher is fine-tuned by the first run of each precision, then reused:
the runs then differ only in the student).

Runs the ``kdkit distill ...`` part of README's first command (after the install) from a temporary folder laid
out like the repository (``../shared`` is the real shared data), with a fresh ``KDKIT_HOME`` (so the default
teacher is fine-tuned, as on a first run), offline, output to a log file. Reports the wall time, the CPU time
(user + sys of the command and its children), the student's SST-2 dev accuracy, the phases (teacher fine-tune,
teacher signals, student training: from the run records), the load average before and after, the CPU model and
cores, and the thread settings (``OMP_NUM_THREADS``, ``OMP_WAIT_POLICY``) it ran with.

The machine is shared: with a load average above the core count, wall time says little. The report then also
gives ``cpu / cores``, the wall time the same work would take if it kept every core busy (a lower bound for an
idle machine: parts of the run are serial). Compare CPU times, and wall times only at the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
sys.path.insert(0, str(REPO / "benchmarks"))

from study_common import cpu_model  # noqa: E402


def first_command() -> list[str]:
    """The ``kdkit ...`` part of README's first command (the first line of its first bash block)."""
    block = re.search(r"^```bash\n(.*?)^```", README.read_text(), flags=re.MULTILINE | re.DOTALL)
    assert block is not None, "README has no bash block"
    line = block.group(1).splitlines()[0]
    parts = [shlex.split(part) for part in line.split("&&")]
    return next(words for words in parts if words and words[0] == "kdkit")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def phases(home: Path, run_dir: Path | None) -> dict[str, float | None]:
    """Seconds of the teacher's training, the teacher-signal pass and the student's training (run records)."""
    teachers = sorted((home / "teachers").glob("*/run.json"))
    teacher = _json(teachers[0]) if teachers else {}
    student = _json(run_dir / "run.json") if run_dir else {}
    return {
        "teacher_training_s": (teacher.get("train") or {}).get("wall_time_s"),
        "teacher_signals_s": (student.get("teacher_cache") or {}).get("seconds"),
        "student_training_s": (student.get("train") or {}).get("wall_time_s"),
    }


def run(command: list[str], folder: Path, home: Path | None = None) -> dict[str, Any]:
    """Run ``command`` in ``folder/repo`` with ``home`` as KDKIT_HOME (default: a fresh one); the run's figures."""
    work = folder / "repo"
    work.mkdir()
    (folder / "shared").symlink_to((REPO.parent / "shared").resolve(), target_is_directory=True)
    home = home or folder / "kdkit-home"
    env = os.environ | {"KDKIT_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    log = folder / "first-command.log"
    load_before = os.getloadavg()
    cpu_before, start = _children_cpu(), time.perf_counter()
    with log.open("w") as handle:
        code = subprocess.run(command, cwd=work, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu_before
    output = log.read_text(errors="replace")
    if code != 0:
        sys.exit(f"the command failed (exit {code}):\n{output[-3000:]}")
    finished = sorted(work.glob("runs/*/run.json"))  # the command's default output: runs/<task>-<loss>-<time>
    run_dir = finished[-1].parent if finished else None
    metrics = _json(run_dir / "run.json").get("metrics", {}) if run_dir else {}
    cores = os.cpu_count() or 1
    return {
        "command": " ".join(command),
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "cpu_per_core_s": round(cpu / cores, 1),
        "student_accuracy": metrics.get("accuracy"),
        "phases": phases(home, run_dir),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_model": cpu_model(),
        "cores": cores,
        "threads": {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")},
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "log_lines": output.count("\n"),
    }


def report(figures: dict[str, Any]) -> str:
    accuracy = figures["student_accuracy"]
    lines = [
        f"command: {figures['command']}",
        f"date: {figures['date']}",
        f"machine: {figures['cpu_model']}, {figures['cores']} cores; threads {figures['threads']}",
        f"load average (1, 5, 15 min): before {figures['load_before']}, after {figures['load_after']}",
        f"wall {figures['wall_s']:.0f} s, CPU (user+sys) {figures['cpu_s']:.0f} s, "
        f"CPU / cores {figures['cpu_per_core_s']:.0f} s (the wall time with every core busy: an idle machine's floor)",
        "phases (s): " + ", ".join(f"{k.removesuffix('_s')} {v}" for k, v in figures["phases"].items()),
        f"student SST-2 dev accuracy: {100 * accuracy:.2f}%" if accuracy is not None else "no student accuracy",
    ]
    return "\n".join(lines)


def with_seed(command: list[str], seed: int | None) -> list[str]:
    """README's command, with ``--seed`` added unless ``seed`` is None (the command as README gives it)."""
    return command if seed is None else [*command, "--seed", str(seed)]


def variant(command: list[str], loss: str | None, precision: str | None) -> list[str]:
    """README's command with its ``--plugin`` replaced by ``loss`` and ``--precision`` added, when given."""
    if loss is not None:
        at = command.index("--plugin")
        command = [*command[: at + 1], loss, *command[at + 2 :]]
    return command if precision is None else [*command, "--precision", precision]


def summary(runs: list[dict[str, Any]]) -> str:
    """The range over the runs: student accuracy and wall time, and whether repeated commands agreed exactly."""
    accuracies = [100 * r["student_accuracy"] for r in runs if r["student_accuracy"] is not None]
    walls = [r["wall_s"] for r in runs]
    lines = [
        f"{len(runs)} runs: student accuracy {min(accuracies):.2f}-{max(accuracies):.2f}%, "
        f"wall {min(walls):.0f}-{max(walls):.0f} s"
    ]
    by_command: dict[str, list[float]] = {}
    for r, accuracy in zip(runs, accuracies, strict=False):
        by_command.setdefault(r["command"], []).append(accuracy)
    for command, values in by_command.items():
        if len(values) > 1:
            same = "identical" if len(set(values)) == 1 else "DIFFERENT"
            lines.append(f"repeated {len(values)}x: {same} accuracies {values} ({command.split(' --seed ')[-1]})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", type=Path, help="run in this (new) folder and keep it, instead of a temporary one")
    parser.add_argument(
        "--seeds", default="", help="run once per seed (42 is README's command as written; repeats allowed)"
    )
    parser.add_argument("--loss", help="the --plugin of README's command instead (e.g. adkd)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), help="add --precision to the command")
    parser.add_argument("--home", type=Path, help="one KDKIT_HOME for every run (default: a fresh one per run)")
    args = parser.parse_args()
    seeds: list[int | None] = [None if s == "42" else int(s) for s in args.seeds.split(",") if s] or [None]
    runs = []
    for i, seed in enumerate(seeds):
        command = with_seed(variant(first_command(), args.loss, args.precision), seed)
        if args.keep:
            folder = args.keep if len(seeds) == 1 else args.keep / f"run-{i}"
            folder.mkdir(parents=True)
            figures = run(command, folder.absolute(), args.home)
        else:
            with tempfile.TemporaryDirectory(prefix="kdkit-first-command-") as folder_name:
                figures = run(command, Path(folder_name), args.home)
        print(report(figures), flush=True)
        runs.append(figures)
    if len(runs) > 1:
        print(summary(runs))
    if args.json:
        args.json.write_text(json.dumps(runs if len(runs) > 1 else runs[0], indent=2) + "\n")


if __name__ == "__main__":
    main()
