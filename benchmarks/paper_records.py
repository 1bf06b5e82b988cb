"""The paper-budget study's committed records (benchmarks/paper_study.py): one small JSON summary per finished run
under ``benchmarks/results/paper/``, the teacher fingerprint, the machine and its load.

Layout (a summary is written once its run has finished, atomically)::

    benchmarks/results/paper/<task>/teacher/lr-<lr>.json          one teacher of the learning-rate grid
    benchmarks/results/paper/<task>/teacher/rebuilt-<fp>.json     a teacher rebuilt elsewhere that came out different
    benchmarks/results/paper/<task>/t-<fp>/<method>/seed-<n>.json a student of the teacher with fingerprint <fp>

A summary holds its run's ``spec`` (what was asked for: task, method, seed, options, budget, teacher); the study
skips a run whose summary is present, reads back intact and has the same spec. Students live under their
teacher's fingerprint, so students of a rebuilt teacher that differs never mix with (or overwrite) the others.

Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import resource
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study_common import cpu_model

#: the layout's version: a summary of another version is not reused
VERSION = 1
RESULTS = Path("benchmarks/results/paper")
WEIGHTS = "model.safetensors"


class RecordError(RuntimeError):
    """A summary or teacher that cannot be used as it is (damaged, edited, or from another layout)."""


def canonical(value: Any) -> str:
    """A stable text of a JSON value (sorted keys), for comparing specs."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def write_summary(path: Path, summary: dict[str, Any]) -> Path:
    """Write ``summary`` with its ``checksum`` (SHA-256 of the rest), through a temporary file and a rename: a
    summary is complete or absent."""
    body = {k: v for k, v in summary.items() if k != "checksum"}
    body["version"] = VERSION
    body["checksum"] = hashlib.sha256(canonical(body).encode()).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
    os.replace(temporary, path)
    return path


def read_summary(path: Path) -> dict[str, Any] | None:
    """The summary at ``path``, or None if absent; a damaged or hand-edited one is a :class:`RecordError`."""
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: not a readable summary ({type(exc).__name__}); delete it to run again") from None
    if not isinstance(summary, dict) or summary.get("version") != VERSION:
        raise RecordError(f"{path}: not a version-{VERSION} summary; delete it to run again")
    body = {k: v for k, v in summary.items() if k != "checksum"}
    if hashlib.sha256(canonical(body).encode()).hexdigest() != summary.get("checksum"):
        raise RecordError(f"{path}: its checksum does not match (edited or damaged); delete it to run again")
    return summary


def matching(path: Path, spec: dict[str, Any]) -> dict[str, Any] | None:
    """The summary at ``path`` if it exists and records exactly ``spec``."""
    summary = read_summary(path)
    if summary is None or canonical(summary.get("spec")) != canonical(spec):
        return None
    return summary


def summaries(root: Path, pattern: str) -> list[dict[str, Any]]:
    """Every summary under ``root`` matching the glob ``pattern``, with its path (``_path``)."""
    found = []
    for path in sorted(root.glob(pattern)):
        summary = read_summary(path)
        if summary is not None:
            found.append({**summary, "_path": str(path)})
    return found


# -- the teacher's fingerprint ---------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def teacher_fingerprint(model_dir: Path) -> str:
    """The first 16 hex digits of the SHA-256 of the model's weights, checked against the SHA-256 kdkit recorded
    when it saved them (``kdkit_task.json``): a teacher whose weights changed since is refused."""
    weights = model_dir / WEIGHTS
    if not weights.is_file():
        raise RecordError(f"{model_dir} has no {WEIGHTS}: not a finished kdkit model")
    actual = file_sha256(weights)
    task_file = model_dir / "kdkit_task.json"
    recorded = json.loads(task_file.read_text()).get("files", {}).get(WEIGHTS, {}) if task_file.is_file() else {}
    if recorded.get("sha256") not in (None, actual):
        raise RecordError(f"{weights} changed after kdkit saved it; delete the teacher's run folder to rebuild it")
    return actual[:16]


# -- the machine and its load -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """CPU model and count, OS, Python, torch (if imported), and the checkout's commit."""
    torch_version = None
    try:
        import torch

        torch_version = torch.__version__
        threads: int | None = torch.get_num_threads()
    except ImportError:
        threads = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "gpu": None,
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch_version,
        "torch_threads": threads,
        "commit": _commit(),
    }


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


@dataclass
class Cost:
    """What a run cost: wall time, CPU time of this process and its children, and the 1-minute load average
    sampled every ``every`` seconds while it ran (other work on the machine shows as load above our threads)."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    load: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        samples = self.load or [0.0]
        return {
            "wall_time_s": round(self.wall_s, 1),
            "cpu_time_s": round(self.cpu_s, 1),
            "load_mean": round(sum(samples) / len(samples), 2),
            "load_max": round(max(samples), 2),
            "load_samples": len(self.load),
        }


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@contextmanager
def measured(every: float = 30.0) -> Iterator[Cost]:
    """Measure the block's :class:`Cost` (filled in when it ends)."""
    cost = Cost()
    stop = threading.Event()

    def sample() -> None:
        while True:
            cost.load.append(os.getloadavg()[0])
            if stop.wait(every):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    start, cpu = time.perf_counter(), _cpu_seconds()
    sampler.start()
    try:
        yield cost
    finally:
        stop.set()
        sampler.join()
        cost.wall_s, cost.cpu_s = time.perf_counter() - start, _cpu_seconds() - cpu


# -- the curve of a run --------------------------------------------------------------------------------------------


def epoch_curve(history: list[dict[str, Any]], prefix: str = "eval_") -> list[dict[str, float]]:
    """Per-evaluation metrics of a run.json ``history`` (``eval_*`` keys, without the prefix, runtime keys dropped)."""
    curve = []
    for entry in history:
        metrics = {
            k.removeprefix(prefix): float(v)
            for k, v in entry.items()
            if k.startswith(prefix) and not k.endswith(("runtime", "per_second")) and isinstance(v, (int, float))
        }
        if metrics:
            curve.append({"epoch": float(entry.get("epoch", 0.0)), "step": int(entry.get("step", 0)), **metrics})
    return curve


def relative(path: str | Path, root: Path) -> str:
    """``path`` relative to ``root`` (``../shared/data/glue``): committed summaries hold no machine's absolute paths."""
    return os.path.relpath(Path(path).resolve(), root.resolve())
