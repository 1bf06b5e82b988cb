"""The paper-budget study's section of docs/results.md, and its ``status``, computed from the committed summaries
alone (benchmarks/results/paper/; benchmarks/paper_records.py). Torch-free: no run is needed to write them."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import paper_plan as plan
import paper_records as records
from paper_plan import Settings
from paper_precision import bf16_runs, check_lines
from study_common import NAMES, REPORTED, fmt, mean_std, replace_section, verdict
from study_common import PAPER_BEGIN as BEGIN
from study_common import PAPER_END as END

READING = Path("docs/results/paper-reading.md")


def label(method: str) -> str:
    if method.startswith("tuned-"):
        lever = method.removeprefix("tuned-")
        options = ", ".join(f"{k}={v}" for k, v in plan.LEVERS[lever].items() if k != "ablation")
        return f"{NAMES[lever.split('-')[0]]}, tuned ({options})"
    return NAMES.get(method, method)


# -- reading the summaries ------------------------------------------------------------------------------------


def grid(settings: Settings, task: str) -> list[dict[str, Any]]:
    """The task's teacher-grid summaries present, in the grid's order."""
    found = []
    for lr, batch in settings.teacher_grid:
        summary = records.read_summary(settings.results / task / "teacher" / f"{plan.grid_name(lr, batch)}.json")
        if summary is not None and summary["spec"] == plan.teacher_spec(settings, task, lr, batch):
            found.append(summary)
    return found


def chosen(settings: Settings, task: str) -> dict[str, Any] | None:
    """The recorded teacher of ``task``: the grid's best, once the whole grid is recorded."""
    teachers = grid(settings, task)
    if len(teachers) < len(settings.teacher_grid):
        return None
    return teachers[plan.best_of_grid(teachers)]


def students(settings: Settings, task: str, fingerprint: str) -> list[dict[str, Any]]:
    """Summaries of ``task``'s students of the teacher ``fingerprint`` whose settings are this study's."""
    found = records.summaries(settings.results, f"{task}/t-{fingerprint}/*/seed-*.json")
    found += records.summaries(settings.results, f"{task}/t-{fingerprint}/{plan.HOLDOUT_DIR}/*/seed-*.json")
    spec_fields = ("epochs", "student", "data")
    return [
        s
        for s in found
        if all(
            s["spec"][k] == plan.student_spec(settings, _student_of(s), s["spec"]["teacher"])[k] for k in spec_fields
        )
    ]


def _student_of(summary: dict[str, Any]) -> plan.Student:
    spec = summary["spec"]
    holdout = spec["data"].get("holdout_fraction")
    options = tuple(sorted(spec["adkd"].items()))
    return plan.Student(spec["task"], spec["method"], spec["seed"], options, holdout, spec.get("precision", "fp32"))


def score(summary: dict[str, Any], final: bool = False) -> float:
    metrics = summary["final_metrics"] if final else summary["metrics"]
    return float(metrics[summary["main_metric"]])


def by_method(runs: list[dict[str, Any]], dev: bool = True) -> dict[str, dict[int, dict[str, Any]]]:
    """method -> seed -> summary, for dev-set runs (``dev``) or held-out (lever) runs."""
    table: dict[str, dict[int, dict[str, Any]]] = {}
    for run in runs:
        if ("holdout_fraction" in run["spec"]["data"]) != (not dev):
            continue
        table.setdefault(run["spec"]["method"], {})[run["spec"]["seed"]] = run
    return table


def seed_spread(settings: Settings, task: str, method: str, fingerprint: str) -> float:
    """Standard deviation (points) over seeds of a dev row: what a re-run is compared against."""
    rows = by_method(students(settings, task, fingerprint)).get(method, {})
    return mean_std([100 * score(s) for s in rows.values()])[1] if len(rows) > 1 else 0.0


# -- the section ----------------------------------------------------------------------------------------------


def teacher_lines(settings: Settings, task: str) -> list[str]:
    teachers = grid(settings, task)
    if not teachers:
        return []
    best = chosen(settings, task)
    metric = teachers[0]["metric"]
    epochs = max(len(t["curve"]) for t in teachers)
    header = " | ".join(str(e) for e in range(1, epochs + 1))
    lines = [
        f"**{task.upper()} teachers** (dev {metric} per epoch, %; the chosen one in bold; "
        f"{teachers[0]['spec']['epochs']} epochs, warm-up 10%, linear decay, seed {teachers[0]['spec']['seed']}):",
        "",
        f"| lr | batch | {header} | best (epoch) | wall (min) | CPU (min) |",
        "|---|---:|" + "---:|" * epochs + "---:|---:|---:|",
    ]
    for t in teachers:
        chosen_one = best is not None and t["fingerprint"] == best["fingerprint"]
        lines.append(_teacher_row(t, metric, epochs, "**" if chosen_one else ""))
    for rebuilt in records.summaries(settings.results, f"{task}/teacher/rebuilt-*.json"):
        cells, score = " | ".join([""] * epochs), 100 * rebuilt["dev_score"]
        lines.append(f"| rebuilt elsewhere ({rebuilt['fingerprint']}) | | {cells} | {score:.2f} | | |")
    missing = [plan.grid_name(lr, b) for lr, b in settings.teacher_grid if not any(_is(t, lr, b) for t in teachers)]
    if missing:
        lines.append(f"| (not yet trained: {', '.join(missing)}; the teacher is chosen when the grid is complete) |")
    note = "Wall time includes any pause of the study (it is stopped while tests run on the same cores); CPU time"
    return [*lines, "", note + " does not.", ""]


def _is(teacher: dict[str, Any], lr: float, batch: int) -> bool:
    return bool(teacher["spec"]["learning_rate"] == lr and teacher["spec"]["batch_size"] == batch)


def _teacher_row(t: dict[str, Any], metric: str, epochs: int, mark: str) -> str:
    """One teacher of the grid: its dev curve, best score and epoch, wall and CPU minutes (``mark``: bold)."""
    cells = [f"{100 * p[metric]:.1f}" for p in t["curve"]] + [""] * (epochs - len(t["curve"]))
    cpu = t["cost"].get("cpu_time_s")
    return (
        f"| {mark}{t['spec']['learning_rate']:g}{mark} | {t['spec']['batch_size']} | {' | '.join(cells)} | "
        f"{mark}{100 * t['dev_score']:.2f}{mark} ({t['best_epoch']:g}) | {t['cost']['wall_time_s'] / 60:.0f} | "
        + (f"{cpu / 60:.0f} |" if cpu is not None else "not recorded |")
    )


def score_rows(task: str, table: dict[str, dict[int, dict[str, Any]]], teacher: dict[str, Any]) -> list[str]:
    lines = [
        f"**{task.upper()}** ({REPORTED[task]}, %; teacher {100 * teacher['dev_score']:.2f}, fingerprint "
        f"`{teacher['fingerprint']}`):",
        "",
        "| method | seeds | best epoch's dev score | dev score after the last epoch | best epoch (mean) |",
        "|---|---:|---:|---:|---:|",
    ]
    for method in sorted(table, key=lambda m: (m.startswith("tuned-"), list(NAMES).index(m) if m in NAMES else 0, m)):
        runs = [table[method][s] for s in sorted(table[method])]
        lines.append(
            f"| {label(method)} | {len(runs)} | {fmt([score(r) for r in runs])} | "
            f"{fmt([score(r, final=True) for r in runs])} | {statistics.fmean(r['best_epoch'] for r in runs):.1f} |"
        )
    return [*lines, ""]


def rebuilt_lines(settings: Settings, task: str) -> list[str]:
    """Students of a teacher rebuilt elsewhere that came out different: their own table, never mixed in."""
    lines = []
    for rebuilt in records.summaries(settings.results, f"{task}/teacher/rebuilt-*.json"):
        table = by_method(students(settings, task, rebuilt["fingerprint"]))
        if table:
            lines += [
                f"Students of a **rebuilt** {task.upper()} teacher whose weights differ from the recorded one "
                "(not comparable with the table above, so kept apart):",
                "",
            ]
            lines += score_rows(task, table, rebuilt)
    return lines


#: the map comparison's summary (benchmarks/paper_maps.py), in the teacher's results folder ``<task>/t-<fp>/``
MAPS_SUMMARY = "map-agreement.json"


def map_lines(settings: Settings, task: str, fingerprint: str) -> list[str]:
    """The students' agreement with the teacher's attribution maps, when benchmarks/paper_maps.py measured it."""
    summary = records.read_summary(settings.results / task / f"t-{fingerprint}" / MAPS_SUMMARY)
    if summary is None:
        return []
    from attribution_gap import table

    cost = summary["cost"]
    made = (
        f"`python benchmarks/paper_maps.py --task {task}`, {summary['finished_at'][:16].replace('T', ' ')} UTC, "
        f"{cost['wall_time_s'] / 60:.1f} min wall, {cost['cpu_time_s'] / 60:.1f} min CPU, load {cost['load_mean']:.1f}"
    )
    note = "gap and L_attr: 0 = the teacher's map; L_attr is what AD-KD minimises; cosine 1 = the teacher's map"
    title = f"Agreement with the teacher's attribution maps ({task.upper()} dev, {summary['sentences']} sentences):"
    return [title, "", *table(summary["students"]), "", f"({made}; {note}.)", ""]


def verdict_rows(task: str, table: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    """Paired by seed: AD-KD − KD, CE baselines, and the tuned rows against their untuned rivals."""
    pairs = [("adkd", "kd"), ("kd", "ce"), ("adkd", "ce")]
    pairs += [(m, "kd") for m in table if m.startswith("tuned-")]
    pairs += [(m, t) for m in table if m.startswith("tuned-adkd") for t in table if t.startswith("tuned-kd")]
    lines = []
    for a, b in pairs:
        seeds = sorted(set(table.get(a, {})) & set(table.get(b, {})))
        if not seeds:
            continue
        for final in (False, True):
            diffs = [100 * (score(table[a][s], final) - score(table[b][s], final)) for s in seeds]
            spread = mean_std([100 * score(table[b][s], final) for s in seeds])[1]
            mean, std = mean_std(diffs)
            when = "last epoch" if final else "best epoch"
            lines.append(
                f"| {task.upper()} | {label(a)} − {label(b)} | {when} | {', '.join(f'{d:+.2f}' for d in diffs)} | "
                f"{mean:+.2f} ± {std:.2f} | {spread:.2f} | {verdict(diffs, spread, label(a))} |"
            )
    return lines


def lever_lines(settings: Settings, runs: list[dict[str, Any]]) -> list[str]:
    levers = {
        m: rows[settings.lever_seed] for m, rows in by_method(runs, dev=False).items() if settings.lever_seed in rows
    }
    if not levers:
        return []
    lines = [
        f"### Levers on a held-out {settings.lever_holdout:.0%} of {settings.lever_task.upper()}'s training set",
        "",
        f"Seed {settings.lever_seed}; the student trains on the other {1 - settings.lever_holdout:.0%} and is "
        "evaluated on the held-out part, never on the dev set (the teacher saw all of train). A setting that beats "
        "its family's preset here is run on dev with every seed as a *tuned* row above.",
        "",
        f"| setting | options on top of the paper preset | held-out {REPORTED[settings.lever_task]} (%) |",
        "|---|---|---:|",
    ]
    for name in plan.LEVERS:
        if name in levers:
            options = ", ".join(f"{k}={v}" for k, v in plan.LEVERS[name].items()) or "none (the preset)"
            lines.append(f"| `{name}` | {options} | {100 * score(levers[name]):.2f} |")
    lines.append(f"| (not yet run) | {', '.join(n for n in plan.LEVERS if n not in levers) or '–'} | |")
    return [*lines, ""]


def cost_group(spec: dict[str, Any]) -> str:
    """The cost table's row of a run: the task's teachers, a method's dev-set students, or a family's levers."""
    task = spec["task"].upper()
    if spec["kind"] == "teacher":
        return f"{task} teachers (grid)"
    if spec["data"].get("holdout_fraction") is not None:
        family = "AD-KD" if spec["method"].startswith("adkd") else "KD"
        return f"{task} {family} levers (held-out)"
    return f"{task} {spec['method']}"


def cost_lines(all_runs: list[dict[str, Any]], teachers: list[dict[str, Any]]) -> list[str]:
    if not all_runs and not teachers:
        return []
    lines = ["| runs | count | wall per run (min) | CPU per run (min) | load mean (max) |", "|---|---:|---:|---:|---:|"]
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in [*teachers, *all_runs]:
        groups.setdefault(cost_group(run["spec"]), []).append(run)
    for name, runs in sorted(groups.items()):
        costs = [r["cost"] for r in runs]
        cpu = [c["cpu_time_s"] for c in costs if c.get("cpu_time_s") is not None]
        loads = [c for c in costs if "load_mean" in c]
        load = (
            f"{statistics.fmean(c['load_mean'] for c in loads):.1f} ({max(c['load_max'] for c in loads):.1f})"
            if loads
            else "not recorded"
        )
        lines.append(
            f"| {name} | {len(runs)} | {statistics.fmean(c['wall_time_s'] for c in costs) / 60:.1f} | "
            f"{f'{statistics.fmean(cpu) / 60:.1f}' if cpu else 'not recorded'} | {load} |"
        )
    hours = sum(r["cost"]["wall_time_s"] for r in all_runs) / 3600
    teacher_hours = sum(t["cost"]["wall_time_s"] for t in teachers) / 3600
    return [*lines, "", f"Total: {hours:.1f} h of student training and {teacher_hours:.1f} h of teachers (wall).", ""]


def introduction(settings: Settings) -> list[str]:
    """The section's first lines: the begin marker, the heading, what the study is, how to run it, its progress."""
    return [
        BEGIN,
        "## Paper budget (CPU): converged teachers, 6-10 epochs",
        "",
        "The question of this page at the paper's budget (issue 18): teachers fine-tuned until their dev score stops "
        "improving, students trained for the paper's epochs (CoLA and MRPC 10, STS-B 8, SST-2 6 on 20,000 sentences) "
        "with the paper preset (its α, β, T, K, learning rate, batch; T annealed on MRPC as in the reference), "
        "`copy:3` students, length-grouped batches, the same batches and initial weights for every method within a "
        "seed. Each finished run is a committed summary under `benchmarks/results/paper/`; this section is computed "
        "from them alone:",
        "",
        "```bash",
        "python benchmarks/paper_study.py teachers --tasks mrpc,stsb                        # only the teacher grids",
        "python benchmarks/paper_study.py run --tasks cola,mrpc,stsb --budget-minutes 240   # continues the study",
        "python benchmarks/paper_study.py report --tasks cola,mrpc,stsb                     # rewrites this section",
        "python benchmarks/paper_study.py rerun benchmarks/results/paper/cola/t-<fp>/adkd/seed-1.json  # one run again",
        "```",
        "",
        f"Section written {time.strftime('%Y-%m-%d')}. {status_line(settings)}",
        "",
        "### Teachers",
        "",
    ]


def closing(verdicts: list[str], all_runs: list[dict[str, Any]], teachers: list[dict[str, Any]]) -> list[str]:
    """The verdict table (when there are verdicts), the cost, the machine and the reading, then the end marker."""
    lines: list[str] = []
    if verdicts:
        lines += [
            "### Verdict (paired by seed)",
            "",
            "Per-seed differences in points; spread = std of the second method over the same seeds. A difference "
            "counts only when larger than both twice its standard error and the spread (the 1-epoch study's rule).",
            "",
            "| task | comparison | checkpoint | per seed | mean ± std | spread | verdict |",
            "|---|---|---|---|---:|---:|---|",
            *verdicts,
            "",
        ]
    lines += ["### Cost", "", *cost_lines(all_runs, teachers)]
    if all_runs:
        machine = all_runs[-1]["machine"]
        lines += [
            f"Machine: {machine['cores']}-core {machine['cpu']}, no GPU, torch {machine['torch']}, "
            f"{machine['torch_threads']} threads; load = 1-minute load average sampled every 30 s.",
            "",
        ]
    if READING.is_file():
        lines += ["### Reading", "", READING.read_text().strip(), ""]
    return [*lines, END]


def section(settings: Settings) -> list[str]:
    lines = introduction(settings)
    verdicts, all_runs, teachers, tables = [], [], [], []
    for task in settings.tasks:
        lines += teacher_lines(settings, task)
        teachers += grid(settings, task)
        teacher = chosen(settings, task)
        if teacher is None:
            continue
        runs = students(settings, task, teacher["fingerprint"])
        all_runs += runs
        table = by_method(runs)
        if table:
            tables += score_rows(task, table, teacher)
            verdicts += verdict_rows(task, table)
        tables += map_lines(settings, task, teacher["fingerprint"])
        tables += lever_lines(settings, runs) if task == settings.lever_task else []
        tables += check_lines(bf16_runs(settings, task, teacher["fingerprint"]), table, task)
        tables += rebuilt_lines(settings, task)
    lines += ["### Students on the dev sets (mean ± std over seeds)", "", *tables]
    return [*lines, *closing(verdicts, all_runs, teachers)]


def write_section(settings: Settings) -> None:
    replace_section(settings.report, BEGIN, END, section(settings), after_title=True)


# -- status ---------------------------------------------------------------------------------------------------


def status_line(settings: Settings) -> str:
    done, planned = progress(settings)
    return (
        f"Progress: {done} of {planned} planned runs finished (teachers included; tuned rows not counted until known)."
    )


def progress(settings: Settings) -> tuple[int, int]:
    done = planned = 0
    for task in settings.tasks:
        planned += len(settings.teacher_grid)
        done += len(grid(settings, task))
        main = plan.main_students(task, settings.seeds[task])
        levers = plan.lever_students(settings) if settings.levers and task == settings.lever_task else []
        planned += len(main) + len(levers)
        teacher = chosen(settings, task)
        if teacher is not None:
            runs = students(settings, task, teacher["fingerprint"])
            done += sum(1 for r in runs if not r["spec"]["method"].startswith("tuned-"))
    return done, planned


def status(settings: Settings) -> str:
    lines = [status_line(settings)]
    for task in settings.tasks:
        teachers = grid(settings, task)
        lines.append(f"{task}: teachers {len(teachers)}/{len(settings.teacher_grid)}")
        teacher = chosen(settings, task)
        if teacher is None:
            continue
        table = by_method(students(settings, task, teacher["fingerprint"]))
        for method, rows in sorted(table.items()):
            lines.append(f"  {method}: seeds {sorted(rows)}")
        levers = by_method(students(settings, task, teacher["fingerprint"]), dev=False)
        if levers:
            lines.append(f"  levers: {sorted(levers)}")
    return "\n".join(lines)
