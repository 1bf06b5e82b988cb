"""The GPU session's summary in plain lines (benchmarks/gpu_report.py ``summary``), and what the docs sections
(gpu_report_sections.py) share with it: the method and task names, the card, the pairing, the targets and the
unfinished jobs. Torch-free; means, standard deviations, pairing and the verdict are study_common's."""

from __future__ import annotations

import statistics
from typing import Any

import study_common as common

DISPLAY = {"cola": "CoLA", "mrpc": "MRPC", "stsb": "STS-B", "sst2": "SST-2"}
#: the issue's figures before the throughput work (H200, kdkit distill wall time, MRPC-like pairs)
BEFORE = {"kd": {32: 897, 128: 1563}, "adkd": {32: 591, 128: 1311}}


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
    out: list[str] = []
    skipped: dict[str, list[str]] = {"no time": [], "waited": []}
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
        name = common.NAMES[method]
        lines.append(f"  {task.upper():5s} {metric:9s} {name:19s} {seeds} -> {common.fmt(values)}{wall}")
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
