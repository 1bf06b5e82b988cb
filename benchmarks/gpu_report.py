"""What a GPU session returned, in words: the summary it prints last, and the docs sections made from it.

``load`` gathers an unpacked ``results/`` folder of benchmarks/gpu_session.sh (session/, gpu-check/, study/)
into one dict, kept as docs/results/gpu-study.json; ``summary`` prints it; ``report`` writes the GPU section
of docs/results.md and the GPU figures of docs/benchmarks.md's issue-9 section, each between two markers (the
rest of both files stays as it is). Means, standard deviations, pairing and the verdict are glue_study's.

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

NAMES = {"ce": "student alone (CE)", "kd": "vanilla KD", "adkd": "AD-KD"}
DISPLAY = {"cola": "CoLA", "mrpc": "MRPC", "stsb": "STS-B", "sst2": "SST-2"}
CHECK_BEGIN = "<!-- gpu check: written by benchmarks/gpu_study.py report; edit the script, not this part -->"
CHECK_END = "<!-- end of the gpu check part -->"
#: the issue's figures before the throughput work (H200, kdkit distill wall time, MRPC-like pairs)
BEFORE = {"kd": {32: 897, 128: 1563}, "adkd": {32: 591, 128: 1311}}


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


# -- the summary --------------------------------------------------------------------------------------------


def tasks_of(data: dict[str, Any]) -> list[str]:
    planned = data["plan"].get("tasks") or list(common.TASKS)
    return [t for t in planned if any(r["task"] == t for r in data["runs"]) or t in data["teachers"]]


def card(data: dict[str, Any]) -> str:
    m = data["machine"]
    if m.get("card"):
        return f"{m['card']} ({m.get('gpu_memory_gib', '?')} GiB)"
    return f"no GPU ({m.get('cpu', 'CPU')})"


def pair(data: dict[str, Any], task: str) -> tuple[list[float], float, str]:
    """AD-KD − KD per seed (points), KD's seed spread, and the CPU study's verdict on them."""
    diffs = common.paired_difference(data["runs"], task, "adkd", "kd")
    spread = common.mean_std([100 * v for v in common.metric_values(data["runs"], task, "kd")])[1]
    return diffs, spread, common.verdict(diffs, spread)


def check_lines(check: dict[str, Any]) -> list[str]:
    """The GPU check's key figures and the two targets, as plain lines."""
    lines = []
    for run in (check.get("step_real") or {}).get("runs", []):
        kd = run["variants"].get("kd")
        for name, v in run["variants"].items():
            vs = f", step {kd['examples_per_s'] / v['examples_per_s']:.2f}x kd's" if kd and name != "kd" else ""
            lines.append(
                f"  {run['task']} b{run['batch_size']} {name:5s} {v['examples_per_s']:8.0f} ex/s, "
                f"median step {v['median_step_ms']:.2f} ms (host CPU {v['median_cpu_ms']:.2f} ms){vs}"
            )
    for loss in ("kd", "adkd"):
        d = check.get(f"distill_{loss}")
        if d:
            lines.append(
                f"  kdkit distill {loss}: {d['steps']} steps at batch {d['batch_size']} in {d['wall_time_s']} s "
                f"(eval + checkpoints included): {d['examples_per_second']} ex/s{before(loss, d['batch_size'])}, "
                f"{d['metric']} {d['value']:.4f}"
            )
    lines += [f"  TARGET {text}: {value} -> {verdict}" for text, value, verdict in targets(check)]
    return lines or ["  no result"]


def before(loss: str, batch: int) -> str:
    figure = BEFORE[loss].get(batch)
    return f" (the issue's H200 figure before: {figure:,})" if figure else ""


def targets(check: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target, measured, met?) of issue 9's two GPU targets."""
    runs = [r for r in (check.get("step_real") or {}).get("runs", []) if r["batch_size"] == 128]
    if not runs or not {"kd", "adkd"} <= set(runs[0]["variants"]):
        return []
    kd, adkd = runs[0]["variants"]["kd"], runs[0]["variants"]["adkd"]
    ratio = kd["examples_per_s"] / adkd["examples_per_s"]
    return [
        (
            "vanilla KD >= 15,000 training ex/s (MRPC, batch 128, bf16)",
            f"{kd['examples_per_s']:,.0f}",
            "met" if kd["examples_per_s"] >= 15000 else "NOT met",
        ),
        ("AD-KD step <= 1.3x the KD step (m = 1, cached)", f"{ratio:.2f}x", "met" if ratio <= 1.3 else "NOT met"),
    ]


def unfinished(data: dict[str, Any]) -> list[str]:
    """Each job that did not finish, in a few words; the never-started ones grouped by why."""
    out, skipped = [], {"no time": [], "waited": []}
    for job in data["status"]["jobs"]:
        if job["state"] == "skipped":
            skipped["waited" if job["note"].startswith("never started") else "no time"].append(job["name"])
        elif job["state"] != "done":
            where = f" at step {job['step']}/{job['max_steps']}" if job["state"] in ("killed", "dropped") else ""
            out.append(f"{job['name']} {job['state']}{where}{': ' + job['note'] if job['note'] else ''}")
    if skipped["no time"]:
        out.append("not started, not expected to finish in the time left: " + ", ".join(skipped["no time"]))
    if skipped["waited"]:
        out.append("not started, waiting for one of those: " + ", ".join(skipped["waited"]))
    return out


def student_lines(data: dict[str, Any], task: str) -> list[str]:
    runs, metric = data["runs"], common.REPORTED[task]
    lines = []
    for method in ("ce", "kd", "adkd"):
        values = common.metric_values(runs, task, method)
        seeds = " ".join(f"{100 * v:.2f}" for v in values) or "-"
        walls = [r["wall_time_s"] for r in runs if r["task"] == task and r["method"] == method]
        wall = f" | training {statistics.fmean(walls):.0f} s" if walls else ""
        lines.append(f"  {task.upper():5s} {metric:9s} {NAMES[method]:19s} {seeds} -> {common.fmt(values)}{wall}")
    diffs, spread, verdict = pair(data, task)
    if diffs:
        mean, std = common.mean_std(diffs)
        per_seed = " ".join(f"{d:+.2f}" for d in diffs)
        lines.append(
            f"  {'':15s} AD-KD - KD per seed {per_seed}: {mean:+.2f} ± {std:.2f} (KD spread {spread:.2f}): {verdict}"
        )
    return lines


def summary(data: dict[str, Any]) -> str:
    m, plan, status = data["machine"], data["plan"], data["status"]
    lines = [
        f"== GPU session: {card(data)}, driver {m.get('driver', '?')}, {m.get('cores', '?')} cores "
        f"({m.get('cpu', '?')}), torch {m.get('torch', '?')}, kdkit {m.get('kdkit', '?')}, {m.get('date', '')} =="
    ]
    lines.append("timeline (s from the command's start): " + ", ".join(f"{k} {v}" for k, v in data["timeline"].items()))
    lines.append("gpu check (MRPC, cached teacher signals; bf16 on CUDA, fp32 on a CPU):")
    lines += check_lines(data["gpu_check"])
    jobs = status["jobs"]
    done = sum(j["state"] == "done" for j in jobs)
    util = data["utilization"]
    use = (
        f"; GPU busy {util['mean_gpu_util_pct']}% on average, at most {util['max_memory_mib'] / 1024:.1f} GiB"
        if util
        else ""
    )
    lines.append(
        f"study: {plan.get('jobs', '?')} processes at a time, MPS {data['mps']}; {done} of {len(jobs)} jobs "
        f"done in {status.get('wall_s', 0):.0f} s{use}"
    )
    lines.append("teachers (dev, %; per epoch, best kept):")
    for task in tasks_of(data):
        t = data["teachers"].get(task)
        if t:
            curve = " ".join(f"{100 * v:.2f}" for _, v in t["curve"])
            lines.append(
                f"  {task.upper():5s} {t['metric']} {100 * t['value']:.2f} ({t['examples']} examples, "
                f"{t['epochs']:.0f} epoch(s): {curve}; {t['wall_time_s']:.0f} s)"
            )
        else:
            lines.append(f"  {task.upper():5s} no teacher")
    lines.append("students (dev, %; per seed -> mean ± std; training wall time under sharing):")
    for task in tasks_of(data):
        lines += student_lines(data, task)
    lines.append("not finished: " + ("; ".join(unfinished(data)) or "none"))
    return "\n".join(lines)


# -- docs/results.md: the GPU section -----------------------------------------------------------------------


def sizes(data: dict[str, Any], tasks: list[str]) -> str:
    """Each task's training examples per student, from the runs (else the plan)."""
    seen = {r["task"]: r["examples"] for r in data["runs"]}
    return ", ".join(f"{DISPLAY[t]} {seen[t]:,}" for t in tasks if t in seen) or "none finished"


def introduction(data: dict[str, Any], tasks: list[str]) -> list[str]:
    m, plan = data["machine"], data["plan"]
    epochs = ", ".join(f"{DISPLAY[t]} {plan['epochs'][t]}" for t in tasks)
    teachers = ", ".join(
        f"{DISPLAY[t]} {plan['teacher_epochs'][t]} epochs on {data['teachers'][t]['examples']:,} examples"
        for t in tasks
        if t in data["teachers"]
    )
    dev = f"the first {plan['max_eval_samples']} of each dev set" if plan.get("max_eval_samples") else "every dev set"
    return [
        f"{card(data)}, driver {m.get('driver', '?')}; host {m.get('cores', '?')} cores ({m.get('cpu', '?')}); "
        f"torch {m.get('torch', '?')}, transformers {m.get('transformers', '?')}, kdkit {m.get('kdkit', '?')}; "
        f"{m.get('date', '')}. **Kit**: the GPU machine has no network, so kdkit ran from the kit of ../shared/gpu, "
        "whose all-MiniLM-L6-v2 is *packed* to travel (fp16 weights, int8 word embeddings with a per-row scale; "
        "hidden states within cosine 0.99998 of the original's): compare these figures with each other and "
        "with other GPU runs made with the kit, not with the CPU study above.",
        "",
        f"Budget: {epochs} epochs (the paper's: CoLA 10, MRPC 10, STS-B 8, SST-2 6), the paper's learning rates "
        f"and batch sizes (the table above), {data.get('precision') or '?'}, length-grouped batches, cached teacher "
        f"signals, best dev checkpoint (evaluated each epoch on {dev}). Training examples per student: "
        f"{sizes(data, tasks)}. Seeds {','.join(map(str, plan.get('seeds', [])))}. Teachers: all-MiniLM-L6-v2 "
        f"fine-tuned on the same GPU (lr {plan.get('teacher_lr')}, batch 32, seed 42, best dev checkpoint): "
        f"{teachers or 'none finished'}. Methods as in the CPU study. {plan.get('jobs', '?')} runs at a time "
        f"shared the one card (one process each; CUDA MPS {data['mps']}), within one device call: the runs that "
        "could not finish in it are listed below.",
        *(["", "**Tiny sizes (a test of the scripts, not a result).**"] if plan.get("tiny") else []),
        "",
        "```bash",
        "# on the GPU machine, one device call (carry .devkit, timeout_s 575):",
        "export KDKIT_SESSION_T0=$(date +%s); bash .devkit/setup.sh && source /tmp/kdkit-env.sh && "
        "bash benchmarks/gpu_session.sh",
        "# here, from what came back:",
        "mkdir -p R && tar xzf results.tar.gz -C R && python benchmarks/gpu_study.py report --results R/results",
        "```",
    ]


def teacher_table(data: dict[str, Any], tasks: list[str]) -> list[str]:
    lines = [
        "| task | metric | dev score after each epoch (%) | best | training examples | wall time (s) |",
        "|---|---|---|---:|---:|---:|",
    ]
    for task in tasks:
        t = data["teachers"].get(task)
        if t:
            curve = ", ".join(f"{100 * v:.2f}" for _, v in t["curve"])
            lines.append(
                f"| {task.upper()} | {t['metric']} | {curve} | {100 * t['value']:.2f} | {t['examples']:,} | "
                f"{t['wall_time_s']:.0f} |"
            )
        else:
            lines.append(f"| {task.upper()} | {common.REPORTED[task]} | did not finish | – | – | – |")
    return lines


def score_tables(data: dict[str, Any], tasks: list[str]) -> list[str]:
    runs = data["runs"]
    lines = [
        "| method | " + " | ".join(f"{t.upper()} ({common.REPORTED[t]})" for t in tasks) + " |",
        "|---|" + "---:|" * len(tasks),
    ]
    teachers = [data["teachers"].get(t) for t in tasks]
    lines.append("| teacher | " + " | ".join(f"{100 * t['value']:.2f}" if t else "–" for t in teachers) + " |")
    planned = len(data["plan"]["seeds"])
    for method in ("ce", "kd", "adkd"):
        cells = []
        for task in tasks:
            values = common.metric_values(runs, task, method)
            cells.append(common.fmt(values) + (f" ({len(values)} of {planned})" if 0 < len(values) < planned else ""))
        lines.append(f"| {NAMES[method]} | " + " | ".join(cells) + " |")
    seeds = data["plan"]["seeds"]
    lines += [
        "",
        "Per seed:",
        "",
        "| task | method | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|---|" + "---:|" * len(seeds),
    ]
    for task in tasks:
        for method in ("ce", "kd", "adkd"):
            by_seed = {
                r["seed"]: r["metrics"][common.REPORTED[task]]
                for r in runs
                if r["task"] == task and r["method"] == method
            }
            cells = [f"{100 * by_seed[s]:.2f}" if s in by_seed else "–" for s in seeds]
            lines.append(f"| {task.upper()} | {NAMES[method]} | " + " | ".join(cells) + " |")
    return lines


def verdict_table(data: dict[str, Any], tasks: list[str]) -> list[str]:
    lines = [
        "Paired by seed, with the CPU study's rule: a difference counts only when it is larger than both twice",
        "its standard error and vanilla KD's seed spread.",
        "",
        "| task | AD-KD − KD per seed (points) | mean ± std | KD seed spread | verdict |",
        "|---|---|---:|---:|---|",
    ]
    for task in tasks:
        diffs, spread, verdict = pair(data, task)
        mean, std = common.mean_std(diffs) if diffs else (float("nan"), float("nan"))
        cells = [", ".join(f"{d:+.2f}" for d in diffs), f"{mean:+.2f} ± {std:.2f}", f"{spread:.2f}"]
        cells = [c if diffs and "nan" not in c else "–" for c in cells]
        lines.append(f"| {task.upper()} | " + " | ".join(cells) + f" | {verdict} |")
    return lines


def cost_lines(data: dict[str, Any], tasks: list[str]) -> list[str]:
    runs, status = data["runs"], data["status"]
    lines = ["| method | " + " | ".join(t.upper() for t in tasks) + " |", "|---|" + "---:|" * len(tasks)]
    for method in ("ce", "kd", "adkd"):
        cells = []
        for task in tasks:
            walls = [r["wall_time_s"] for r in runs if r["task"] == task and r["method"] == method]
            cells.append(f"{statistics.fmean(walls):.0f}" if walls else "–")
        lines.append(f"| {NAMES[method]} | " + " | ".join(cells) + " |")
    jobs = status["jobs"]
    util = data["utilization"]
    lines += [
        "",
        f"The study's wall time: {status.get('wall_s', 0):.0f} s for {sum(j['state'] == 'done' for j in jobs)} "
        f"of its {len(jobs)} jobs (teachers included)"
        + (
            f"; the GPU was busy {util['mean_gpu_util_pct']}% of the time on average (nvidia-smi, every 2 s), "
            f"at most {util['max_memory_mib'] / 1024:.1f} GiB of its memory in use"
            if util
            else ""
        )
        + ".",
    ]
    missing = unfinished(data)
    lines += ["", "Not finished: " + ("; ".join(missing) if missing else "none") + "."]
    return lines


def results_section(data: dict[str, Any]) -> list[str]:
    tasks = tasks_of(data)
    return [
        common.GPU_BEGIN,
        "## The paper's budget on a GPU (issue 9)",
        "",
        *introduction(data, tasks),
        "",
        "### Teachers",
        "",
        *teacher_table(data, tasks),
        "",
        "### Students on the GLUE dev sets (%, mean ± std over seeds)",
        "",
        *score_tables(data, tasks),
        "",
        "### Verdict: AD-KD minus vanilla KD",
        "",
        *verdict_table(data, tasks),
        "",
        f"### Cost: wall time of one student's training (mean over seeds, s; {data['plan'].get('jobs', '?')} runs "
        "at a time on the card)",
        "",
        *cost_lines(data, tasks),
        common.GPU_END,
    ]


# -- docs/benchmarks.md: the GPU figures of issue 9 ---------------------------------------------------------


def distill_precision(check: dict[str, Any]) -> str:
    d = check.get("distill_kd") or check.get("distill_adkd")
    return f"{d['precision']} on {d['device']}" if d else "precision as `--precision auto` picks"


def check_section(data: dict[str, Any]) -> list[str]:
    check, m = data["gpu_check"], data["machine"]
    lines = [
        CHECK_BEGIN,
        f"### Measured on the GPU: {card(data)}, {m.get('date', '')}",
        "",
        f"`benchmarks/gpu_session.sh` (its first part is `gpu_check.sh` with `KDKIT_GPU_CHECK_QUICK=1`), with the "
        f"kit of ../shared/gpu (packed base model); driver {m.get('driver', '?')}, torch {m.get('torch', '?')}, "
        f"{m.get('cores', '?')} host cores ({m.get('cpu', '?')}), {distill_precision(check)}, nothing else running "
        "on the machine. "
        "Step figures: `step_throughput.py --mode real`, MRPC, length-grouped batches, one variant after the "
        "other, examples/s over the measured window (warm-up excluded).",
        "",
        "| MRPC | examples/s | median step (ms) | host CPU per step (ms) | time per example vs kd |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("step_real", "step_compile"):
        for run in (check.get(name) or {}).get("runs", []):
            kd = run["variants"].get("kd")
            for variant, v in run["variants"].items():
                label = f"`{variant}`" + (" with `--compile`" if name == "step_compile" else "")
                vs = f"{kd['examples_per_s'] / v['examples_per_s']:.2f}x" if kd and name == "step_real" else ""
                lines.append(
                    f"| {label} (batch {run['batch_size']}) | {v['examples_per_s']:,.0f} | "
                    f"{v['median_step_ms']:.2f} | {v['median_cpu_ms']:.2f} | {vs} |"
                )
    lines += [
        "",
        "| `kdkit distill`, MRPC (eval + checkpoints included) | steps | wall time (s) | examples/s | "
        "the issue's figure before (H200) |",
        "|---|---:|---:|---:|---:|",
    ]
    for loss in ("kd", "adkd"):
        d = check.get(f"distill_{loss}")
        if d:
            before = BEFORE[loss].get(d["batch_size"])
            lines.append(
                f"| `{loss}`, batch {d['batch_size']}, {d['epochs']:.0f} epoch(s) | {d['steps']} | "
                f"{d['wall_time_s']:.1f} | {d['examples_per_second']:,.0f} | {f'{before:,}' if before else '–'} |"
            )
    lines += ["", "| target | measured | met? |", "|---|---|---|"]
    lines += [f"| {text} | {value} | {verdict} |" for text, value, verdict in targets(data["gpu_check"])] or [
        "| both GPU targets | no step figures came back | – |"
    ]
    runs = data["runs"]
    examples = sum(r["examples"] * r["epochs"] for r in runs)
    wall = data["status"].get("wall_s") or 0
    if runs and wall:
        lines += [
            "",
            f"The GPU study (docs/results.md) on the same card: {len(runs)} student runs finished, "
            f"{data['plan'].get('jobs', '?')} processes at a time (MPS {data['mps']}), "
            f"{examples / wall:,.0f} training examples/s for the whole card over the study's {wall:.0f} s "
            "(teachers, start-up, evaluation and checkpoints included).",
        ]
    return [*lines, CHECK_END]


def replace_block(path: Path, begin: str, end: str, lines: list[str], after: str | None = None) -> None:
    """Put ``lines`` (markers included) in place of the block between ``begin`` and ``end`` of ``path``; when
    there is none, at the end of the ``## `` section whose heading starts with ``after`` (else the file's end)."""
    text = path.read_text() if path.is_file() else ""
    block = "\n".join(lines)
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    elif after and after in text:
        at = text.index(after)
        following = text.find("\n## ", at + len(after))
        cut = following + 1 if following >= 0 else len(text)
        text = text[:cut].rstrip("\n") + "\n\n" + block + "\n" + ("\n" + text[cut:] if following >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main(args: argparse.Namespace) -> None:
    """``gpu_study.py summary`` and ``report``."""
    data = load(args.results)
    if args.command == "summary":
        print(summary(data))
        return
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=1) + "\n")
    replace_block(args.results_md, common.GPU_BEGIN, common.GPU_END, results_section(data))
    replace_block(args.benchmarks_md, CHECK_BEGIN, CHECK_END, check_section(data), after="## Training-step throughput")
    print(f"wrote {args.results_md}, {args.benchmarks_md} and {args.json}")
    print(summary(data))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "env":
        Path(sys.argv[2]).write_text(json.dumps(machine_info(sys.argv[3]), indent=1) + "\n")
        print("[session] machine:", Path(sys.argv[2]).read_text().replace("\n", " "))
    else:
        sys.exit("usage: gpu_report.py env FILE WORK (summary and report: benchmarks/gpu_study.py)")
