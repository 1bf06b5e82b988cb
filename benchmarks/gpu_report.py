"""What a GPU session returned, in words: the summary it prints last, and the docs sections made from it.

``load`` gathers an unpacked ``results/`` folder of benchmarks/gpu_session.sh (session/, gpu-check/, study/)
into one dict, kept as docs/results/gpu-study.json; ``summary`` prints it (gpu_report_summary.py); ``report``
writes the GPU section of docs/results.md and the GPU figures of docs/benchmarks.md's issue-9 section, each
between two markers (the rest of both files stays as it is; gpu_report_sections.py). Means, standard
deviations, pairing and the verdict are the CPU study's (study_common.py).

    python benchmarks/gpu_study.py report --results R/results    # or --results docs/results/gpu-study.json
    python benchmarks/gpu_report.py env FILE WORK                 # the machine, written by the session
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import study_common as common
from gpu_report_sections import CHECK_BEGIN, CHECK_END, check_section, results_section
from gpu_report_summary import summary


def machine_info(work: str) -> dict[str, Any]:
    """The card, the host and the software, for the record (``env`` command)."""
    info: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cores": os.cpu_count()}
    info["cpu"] = common.cpu_model()
    info["load_average"] = os.getloadavg()
    import datasets
    import torch
    import transformers

    import kdkit

    info.update(python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda)
    info.update(transformers=transformers.__version__, datasets=datasets.__version__, kdkit=kdkit.__version__)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(card=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1))
        info["bf16"] = torch.cuda.is_bf16_supported()
        try:
            query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
            info["driver"] = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    df = subprocess.run(["df", "-h", work], capture_output=True, text=True).stdout.splitlines()
    info["work"] = {"path": work, "df": df[-1] if df else ""}
    return info


# -- gathering ----------------------------------------------------------------------------------------------


def read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def teacher_record(summary: dict[str, Any], task: str) -> dict[str, Any]:
    metric = common.REPORTED[task]
    curve = [(h.get("epoch"), h.get(f"eval_{metric}")) for h in summary.get("history", [])]
    return {
        "metric": metric,
        "value": float(summary["metrics"][metric]),
        "metrics": summary["metrics"],
        "curve": [(e, v) for e, v in curve if v is not None],
        "epochs": summary["train"]["epochs"],
        "examples": summary["train"]["examples"],
        "wall_time_s": summary["train"]["wall_time_s"],
        "best_checkpoint": summary.get("best_checkpoint"),
    }


def check_figures(folder: Path) -> dict[str, Any]:
    """The GPU check's key figures: step throughput per variant and batch, the short distills."""
    out: dict[str, Any] = {}
    for name in ("step_real", "step_compile"):
        result = read(folder / f"{name}.json")
        if result:
            out[name] = {"machine": result["machine"], "runs": result["runs"]}
    for loss in ("kd", "adkd"):
        run = read(folder / f"run-{loss}.json")
        if run:
            t = run["train"]
            out[f"distill_{loss}"] = {
                "steps": t["steps"],
                "epochs": t["epochs"],
                "wall_time_s": t["wall_time_s"],
                "examples_per_second": t["examples_per_second"],
                "batch_size": run["config"]["training"]["batch_size"],
                "precision": run["environment"]["precision"],
                "device": run["environment"]["device"],
                "metric": run["main_metric"],
                "value": run["metrics"].get(run["main_metric"]),
            }
    return out


def utilization(path: Path) -> dict[str, Any]:
    """Mean GPU utilisation and the most memory used, from nvidia-smi's samples (every 2 s)."""
    if not path.is_file():
        return {}
    util, memory = [], []
    for row in csv.reader(path.read_text().splitlines()):
        try:
            util.append(float(row[1].strip().split()[0]))
            memory.append(float(row[2].strip().split()[0]))
        except (IndexError, ValueError):
            continue
    if not util:
        return {}
    return {"samples": len(util), "mean_gpu_util_pct": round(statistics.fmean(util), 1), "max_memory_mib": max(memory)}


def load(results: Path) -> dict[str, Any]:
    """One dict of everything the session returned (a folder), or the JSON ``report`` wrote before (a file)."""
    if results.is_file():
        return dict(json.loads(results.read_text()))
    study = results / "study"
    timeline = {}
    if (results / "session" / "timeline.txt").is_file():
        for line in (results / "session" / "timeline.txt").read_text().splitlines():
            name, _, value = line.partition(" ")
            if value.lstrip("-").isdigit():
                timeline[name] = int(value)
    teachers = {p.stem: teacher_record(json.loads(p.read_text()), p.stem) for p in (study / "teachers").glob("*.json")}
    mps = results / "session" / "mps.txt"
    environments = [read(p).get("environment", {}) for p in sorted((study / "runs").glob("*.json"))]
    precision = sorted({f"{e.get('precision')} on {e.get('device')}" for e in environments})
    return {
        "precision": ", ".join(precision),
        "machine": read(results / "session" / "env.json") or {},
        "mps": mps.read_text().strip() if mps.is_file() else "off",
        "timeline": timeline,
        "utilization": utilization(results / "session" / "util.csv"),
        "plan": read(study / "plan.json") or {},
        "status": read(study / "status.json") or {"jobs": []},
        "teachers": teachers,
        "runs": (read(study / "study.json") or {"runs": []})["runs"],
        "gpu_check": check_figures(results / "gpu-check"),
    }


def main(args: argparse.Namespace) -> None:
    """``gpu_study.py summary`` and ``report``."""
    data = load(args.results)
    if args.command == "summary":
        print(summary(data))
        return
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=1) + "\n")
    common.replace_section(args.results_md, common.GPU_BEGIN, common.GPU_END, results_section(data))
    common.replace_section(
        args.benchmarks_md, CHECK_BEGIN, CHECK_END, check_section(data), after="## Training-step throughput"
    )
    print(f"wrote {args.results_md}, {args.benchmarks_md} and {args.json}")
    print(summary(data))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "env":
        Path(sys.argv[2]).write_text(json.dumps(machine_info(sys.argv[3]), indent=1) + "\n")
        print("[session] machine:", Path(sys.argv[2]).read_text().replace("\n", " "))
    else:
        sys.exit("usage: gpu_report.py env FILE WORK (summary and report: benchmarks/gpu_study.py)")
