"""The docs sections made from a GPU session (benchmarks/gpu_report.py ``report``): the GPU section of
docs/results.md and the GPU figures of docs/benchmarks.md's issue-9 section (study_common.replace_section puts
them in place). Torch-free."""

from __future__ import annotations

from typing import Any

import study_common as common
from gpu_report_summary import BEFORE, DISPLAY, card, pair, targets, tasks_of, unfinished
from study_common import NAMES

CHECK_BEGIN = "<!-- gpu check: written by benchmarks/gpu_study.py report; edit the script, not this part -->"
CHECK_END = "<!-- end of the gpu check part -->"


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
    status = data["status"]
    lines = common.wall_time_table(data["runs"], tasks)
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
