"""The GPU study's scheduler, plan and report (benchmarks/gpu_pool.py, gpu_study.py, gpu_report.py and its
gpu_report_summary.py, gpu_report_sections.py).

The pool runs real processes (a few lines of Python that print kdkit's ``step N/M`` lines); the report is
built from a results folder laid out as benchmarks/gpu_session.sh packs it. No GPU is needed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
STEPPER = """
import sys, time
steps, delay, code = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
for i in range(1, steps + 1):
    time.sleep(delay)
    print(f"step {i}/{steps} 10.0 ex/s loss 0.5", flush=True)
sys.exit(code)
"""


@pytest.fixture(scope="module")
def modules() -> dict[str, ModuleType]:
    sys.path.insert(0, str(BENCHMARKS))
    import gpu_pool
    import gpu_report
    import gpu_report_sections
    import gpu_report_summary
    import gpu_study
    import study_common

    return {
        "pool": gpu_pool,
        "study": gpu_study,
        "report": gpu_report,
        "summary": gpu_report_summary,
        "sections": gpu_report_sections,
        "gs": study_common,
    }


def stepper(tmp_path: Path, modules, name: str, steps: int, delay: float, code: int = 0, **kw):
    script = tmp_path / "stepper.py"
    script.write_text(STEPPER)
    command = [sys.executable, str(script), str(steps), str(delay), str(code)]
    return modules["pool"].Job(name, command, tmp_path / f"{name}.log", kw.pop("kind", "kd"), steps, **kw)


def pool(modules, jobs, slots: int, seconds: float, tolerance: float = 1.3, **kw):
    timing = modules["pool"].Timing(startup_s=0.5, finish_s=0.1, tolerance=tolerance, poll_s=0.05)
    return modules["pool"].Pool(jobs, slots, time.time() + seconds, say=lambda line: None, timing=timing, **kw)


def test_jobs_run_in_priority_order_within_the_slots(tmp_path, modules) -> None:
    jobs = [stepper(tmp_path, modules, f"j{i}", 3, 0.05) for i in range(3)]
    pool(modules, jobs, slots=1, seconds=60, prior={"kd": 0.01}).run()
    assert [j.state for j in jobs] == ["done"] * 3
    assert jobs[0].ended <= jobs[1].started and jobs[1].ended <= jobs[2].started
    assert all(j.step == 3 and j.max_steps == 3 and j.returncode == 0 for j in jobs)


def test_prerequisites_gate_and_failures_skip_their_dependants(tmp_path, modules) -> None:
    teacher = stepper(tmp_path, modules, "teacher", 2, 0.05, code=3, kind="teacher")
    student = stepper(tmp_path, modules, "student", 2, 0.05, after=["teacher"])
    ok = stepper(tmp_path, modules, "first", 6, 0.1)
    reader = stepper(tmp_path, modules, "reader", 2, 0.05, after_started=["first"])
    pool(modules, [teacher, student, ok, reader], slots=4, seconds=60, prior={"kd": 0.01, "teacher": 0.01}).run()
    assert (teacher.state, teacher.note) == ("failed", "exit 3")
    assert (student.state, student.note, student.started) == ("skipped", "teacher failed", None)
    # the reader waited until the first job had printed a step line (it builds the cache the others read)
    assert reader.state == "done" and ok.first_step_at is not None and reader.started >= ok.first_step_at


def test_the_deadline_kills_what_runs_and_records_its_progress(tmp_path, modules) -> None:
    slow = stepper(tmp_path, modules, "slow", 1000, 0.05)
    start = time.time()
    # a prior that says it fits, so that it starts; it drops only after 10% of its steps
    pool(modules, [slow], slots=1, seconds=1.5, prior={"kd": 0.0001}, tolerance=1000).run()
    assert slow.state == "killed" and slow.note == "deadline"
    assert 0 < slow.step < 1000 and slow.process.poll() is not None
    assert time.time() - start < 8


def test_a_job_not_expected_to_finish_is_never_started(tmp_path, modules) -> None:
    quick = stepper(tmp_path, modules, "quick", 2, 0.05, kind="ce")
    long = stepper(tmp_path, modules, "long", 1000, 0.05, kind="adkd")
    paired = stepper(tmp_path, modules, "paired", 2, 0.05, kind="ce", after_launched=["long"])
    pool(modules, [long, paired, quick], slots=3, seconds=5, prior={"ce": 0.01, "adkd": 0.05}).run()
    assert quick.state == "done"
    assert long.state == "skipped" and long.started is None and "not expected to finish" in long.note
    # the job that comes after it in its group does not start alone, though it would fit
    assert paired.state == "skipped" and paired.started is None and paired.note == "never started: waited for long"


def test_a_running_job_that_cannot_finish_is_dropped_early(tmp_path, modules) -> None:
    late = stepper(tmp_path, modules, "late", 60, 0.1)  # 6 s of steps, 3 s to the deadline
    pool(modules, [late], slots=1, seconds=3, prior={"kd": 0.001}).run()
    assert late.state == "dropped" and "would not finish" in late.note
    assert late.step >= 6 and late.ended < late.started + 2.9


def test_rates_come_from_the_logs_and_unseen_kinds_are_scaled_by_the_prior(tmp_path, modules) -> None:
    p = pool(modules, [], slots=1, seconds=10, prior={"kd": 0.02, "adkd": 0.04})
    job = stepper(tmp_path, modules, "seen", 100, 0.0)
    job.state, job.first_step_at, job.first_step, job.step, job.max_steps = "running", 100.0, 1, 41, 100
    p.jobs.append(job)
    assert p.rate("kd", now=110.0) == pytest.approx(4.0)  # 40 steps in 10 s
    assert p.rate("adkd", now=110.0) == pytest.approx(2.0)  # twice the prior time per step
    assert p.estimate(job, now=110.0) == pytest.approx(59 / 4.0 + p.timing.finish_s)


def test_the_plan_orders_tasks_seeds_and_methods_and_gates_the_cache(tmp_path, modules) -> None:
    study = modules["study"]
    args = argparse.Namespace(
        tasks="sst2,mrpc", seeds="1,2", methods="ce,kd,adkd", data_dir=str(tmp_path), work=str(tmp_path / "w"),
        teacher_lr=5e-5, sst2_train_samples=20000, tiny=False, max_train_samples=48, max_eval_samples=32, jobs=12,
    )  # fmt: skip
    plan = study.make_plan(args)
    assert plan["tasks"] == ["mrpc", "sst2"] and plan["epochs"] == {"mrpc": 10, "sst2": 6}
    jobs = study.jobs_of(plan, tmp_path / "plan.json", tmp_path / "out")
    names = [j.name for j in jobs]
    assert names[:2] == ["mrpc-teacher", "sst2-teacher"]
    assert names[2:8] == [f"mrpc-{m}-seed{s}" for s in (1, 2) for m in ("adkd", "kd", "ce")]
    by = {j.name: j for j in jobs}
    assert by["mrpc-kd-seed2"].after_started == ["mrpc-kd-seed1"] and by["mrpc-kd-seed1"].after_started == []
    assert by["mrpc-ce-seed2"].after_started == [] and by["sst2-ce-seed1"].after == ["sst2-teacher"]
    assert by["mrpc-adkd-seed2"].after_launched == [] and by["mrpc-kd-seed2"].after_launched == ["mrpc-adkd-seed2"]
    assert by["mrpc-ce-seed2"].after_launched == ["mrpc-kd-seed2"]
    assert by["mrpc-adkd-seed1"].steps == 230 * 10  # 3,668 pairs at batch 16
    assert by["sst2-kd-seed1"].steps == 625 * 6  # 20,000 sentences at batch 32
    assert by["sst2-teacher"].steps == 2105 * 2  # all 67,349 at batch 32
    assert by["mrpc-kd-seed1"].env["KDKIT_HOME"].endswith("home/mrpc")


# -- the report -------------------------------------------------------------------------------------------


def run_json(task: str, metric: str, value: float, curve: list[float] | None = None) -> dict:
    history = [{"epoch": i + 1.0, f"eval_{metric}": v} for i, v in enumerate(curve or [])]
    return {
        "metrics": {metric: value},
        "history": history,
        "best_checkpoint": "checkpoint-2",
        "train": {"epochs": float(len(curve or [1])), "examples": 3668, "wall_time_s": 12.5},
    }


def results_folder(tmp_path: Path, modules) -> Path:
    root = tmp_path / "results"
    study = root / "study"
    (study / "teachers").mkdir(parents=True)
    (root / "session").mkdir()
    (root / "gpu-check").mkdir()
    plan = {"tasks": ["mrpc", "cola"], "seeds": [1, 2, 3], "jobs": 12, "epochs": {"mrpc": 10, "cola": 10},
            "teacher_epochs": {"mrpc": 6, "cola": 6}, "teacher_lr": 5e-5, "sst2_train_samples": 20000}  # fmt: skip
    (study / "plan.json").write_text(json.dumps(plan))
    (study / "teachers" / "mrpc.json").write_text(json.dumps(run_json("mrpc", "f1", 0.88, [0.85, 0.88, 0.87])))
    scores = {"ce": [0.80, 0.81, 0.82], "kd": [0.83, 0.835, 0.84], "adkd": [0.86, 0.87, 0.88]}
    runs = [
        {"task": "mrpc", "method": m, "seed": s + 1, "metrics": {"f1": v[s]}, "wall_time_s": 40.0 + s,
         "examples": 3668, "epochs": 10.0}
        for m, v in scores.items() for s in range(3)
    ]  # fmt: skip
    runs.append({"task": "cola", "method": "kd", "seed": 1, "metrics": {"mcc": 0.3}, "wall_time_s": 50.0,
                 "examples": 8551, "epochs": 10.0})  # fmt: skip
    (study / "study.json").write_text(json.dumps({"runs": runs}))
    jobs = [
        {"name": "cola-adkd-seed1", "state": "killed", "note": "deadline", "step": 900, "max_steps": 2680},
        {"name": "mrpc-teacher", "state": "done", "note": "", "step": 690, "max_steps": 690},
        {"name": "sst2-adkd-seed1", "state": "skipped", "note": "not expected to finish in time (estimate 200 s)"},
        {"name": "sst2-kd-seed1", "state": "skipped", "note": "never started: waited for sst2-adkd-seed1"},
    ]
    (study / "status.json").write_text(json.dumps({"wall_s": 380.0, "jobs": jobs}))
    env = {"card": "NVIDIA H200", "gpu_memory_gib": 139.8, "driver": "580", "cores": 16, "date": "2026-11-28"}
    (root / "session" / "env.json").write_text(json.dumps(env))
    (root / "session" / "util.csv").write_text("t, 40 %, 1000 MiB, 100 W\nt, 60 %, 3048 MiB, 200 W\n")
    (root / "session" / "timeline.txt").write_text("start 45\ngpu-check 47\nstudy 160\n")
    variants = {
        "kd": {"examples_per_s": 16000.0, "median_step_ms": 8.0, "median_cpu_ms": 7.9},
        "adkd": {"examples_per_s": 12000.0, "median_step_ms": 10.7, "median_cpu_ms": 10.5},
    }
    step = {"machine": {"gpu": "NVIDIA H200"}, "runs": [{"task": "mrpc", "batch_size": 128, "variants": variants}]}
    (root / "gpu-check" / "step_real.json").write_text(json.dumps(step))
    return root


def test_the_report_reuses_the_cpu_studys_pairing_and_verdict(tmp_path, modules) -> None:
    report, gs = modules["report"], modules["gs"]
    data = report.load(results_folder(tmp_path, modules))
    diffs = gs.paired_difference(data["runs"], "mrpc", "adkd", "kd")
    assert diffs == pytest.approx([3.0, 3.5, 4.0])
    section = "\n".join(modules["sections"].results_section(data))
    assert section.startswith(gs.GPU_BEGIN) and section.endswith(gs.GPU_END)
    assert "| MRPC | +3.00, +3.50, +4.00 | +3.50 ± 0.50 | 0.50 | AD-KD better |" in section
    assert "| COLA | – | – | – | too few seeds to say |" in section
    assert "| vanilla KD | 83.50 ± 0.50 | 30.00 (1 of 3) |" in section
    assert "| MRPC | f1 | 85.00, 88.00, 87.00 | 88.00 | 3,668 | 12 |" in section
    assert "cola-adkd-seed1 killed at step 900/2680: deadline" in section
    assert "not started, not expected to finish in the time left: sst2-adkd-seed1; " in section
    assert "not started, waiting for one of those: sst2-kd-seed1." in section
    assert "busy 50.0% of the time" in section and "at most 3.0 GiB" in section
    text = modules["summary"].summary(data)
    assert "TARGET vanilla KD >= 15,000 training ex/s (MRPC, batch 128, bf16): 16,000 -> met" in text
    assert "TARGET AD-KD step <= 1.3x the KD step (m = 1, cached): 1.33x -> NOT met" in text


def test_report_writes_both_sections_in_place_and_keeps_the_rest(tmp_path, modules) -> None:
    report, gs = modules["report"], modules["gs"]
    results = results_folder(tmp_path, modules)
    results_md, benchmarks_md = tmp_path / "results.md", tmp_path / "benchmarks.md"
    results_md.write_text("# CPU study\n\ntable\n")
    benchmarks_md.write_text("# B\n\n## Training-step throughput (issue 9)\n\nold text\n\n## Next\n\nmore\n")
    args = argparse.Namespace(command="report", results=results, results_md=results_md,
                              benchmarks_md=benchmarks_md, json=tmp_path / "gpu-study.json")  # fmt: skip
    report.main(args)
    first = (results_md.read_text(), benchmarks_md.read_text())
    assert first[0].startswith("# CPU study\n\ntable\n\n" + gs.GPU_BEGIN)
    bench = first[1]
    assert (
        bench.index("old text")
        < bench.index(modules["sections"].CHECK_BEGIN)
        < bench.index(modules["sections"].CHECK_END)
        < bench.index("## Next")
    )
    assert "| `kd` (batch 128) | 16,000 | 8.00 | 7.90 | 1.00x |" in bench
    # again, from the JSON it kept: the same sections, replaced in place
    report.main(argparse.Namespace(**{**vars(args), "results": tmp_path / "gpu-study.json"}))
    assert (results_md.read_text(), benchmarks_md.read_text()) == first
    # the CPU study's report, rewritten, keeps the GPU section
    assert gs.kept_section(results_md, gs.GPU_BEGIN, gs.GPU_END).strip() == first[0].split("table\n", 1)[1].strip()


def test_session_script_is_valid_bash() -> None:
    for script in ("gpu_session.sh", "gpu_check.sh"):
        subprocess.run(["bash", "-n", str(BENCHMARKS / script)], check=True)


@pytest.mark.e2e
@pytest.mark.slow
def test_a_tiny_study_runs_glue_studys_runs_in_parallel_and_reports_them(glue_dir, tmp_path, modules) -> None:
    work, out = tmp_path / "work", tmp_path / "out"
    command = [sys.executable, str(BENCHMARKS / "gpu_study.py"), "run", "--tiny", "--tasks", "mrpc", "--seeds", "1",
               "--methods", "kd,adkd", "--max-train-samples", "16", "--max-eval-samples", "8", "--jobs", "2",
               "--work", str(work), "--out", str(out), "--data-dir", str(glue_dir), "--seconds", "900"]  # fmt: skip
    subprocess.run(command, check=True, timeout=900)
    status = json.loads((out / "status.json").read_text())
    assert [(j["name"], j["state"]) for j in status["jobs"]] == [
        ("mrpc-teacher", "done"), ("mrpc-adkd-seed1", "done"), ("mrpc-kd-seed1", "done")
    ]  # fmt: skip
    runs = {r["method"]: r for r in json.loads((out / "study.json").read_text())["runs"]}
    assert set(runs) == {"kd", "adkd"} and {r["seed"] for r in runs.values()} == {1}
    assert (
        runs["kd"]["options"]["adkd"]["ablation"] == "no_attr" and runs["adkd"]["options"]["adkd"]["ablation"] == "none"
    )
    for run in runs.values():  # the paper's MRPC learning rate and batch size, the tiny budget, 16 examples
        assert (run["training"]["learning_rate"], run["training"]["batch_size"]) == (3e-5, 16)
        assert run["epochs"] == 1.0 and run["examples"] == 16
        summary = json.loads((out / "runs" / f"mrpc-{run['method']}-seed1.json").read_text())
        assert summary["teacher"] == str(work / "runs" / "mrpc" / "teacher" / "best")
    # one teacher-signal cache per loss, in the task's own KDKIT_HOME
    assert len(list((work / "home" / "mrpc" / "teacher-signals").glob("*.json"))) == 2
    teacher = json.loads((out / "teachers" / "mrpc.json").read_text())
    assert teacher["train"]["examples"] == 16
    data = modules["report"].load(_as_results(tmp_path, out))
    assert "too few seeds to say" in modules["summary"].summary(data)


def _as_results(tmp_path: Path, study: Path) -> Path:
    """The layout the session packs: results/study (plus session/ and gpu-check/, absent here)."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "study").symlink_to(study)
    return results
