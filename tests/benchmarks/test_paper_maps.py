"""benchmarks/paper_maps.py at tiny size: the students' attribution maps against the teacher's, from the study's
folders; a student that is the teacher agrees fully, one that is not the run of its summary is left out."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from kdkit.data.tasks import get_task
from kdkit.testing import save_tiny_classifier

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import paper_maps  # noqa: E402
import paper_plan  # noqa: E402
import paper_records as records  # noqa: E402
import paper_report  # noqa: E402


def _model(directory: Path, seed: int, task_name: str) -> Path:
    """A tiny classifier whose maps depend on the tokens (a fresh one puts nearly all on [CLS])."""
    from kdkit.models.loading import load_classifier, load_tokenizer
    from kdkit.models.saving import save_model
    from kdkit.testing.models import perturb_parameters

    task = get_task(task_name)
    fresh = save_tiny_classifier(directory.with_name(directory.name + "-fresh"), task)
    model = perturb_parameters(load_classifier(fresh, task), seed=seed, scale=0.5)
    save_model(model, load_tokenizer(fresh), task, directory, max_length=64)
    return directory


def _student(results: Path, work: Path, method: str, seed: int, model: Path, metrics: dict[str, float]) -> None:
    """A student folder as the study leaves it (``best/``, ``run.json``) and its committed summary."""
    folder = work / method / f"seed-{seed}"
    shutil.copytree(model, folder / "best")
    task = json.loads((model / "kdkit_task.json").read_text())["task"]
    run = {"kdkit_version": "test", "command": "distill", "task": task, "metrics": metrics}
    (folder / "run.json").write_text(json.dumps(run))
    records.write_summary(results / method / f"seed-{seed}.json", {"metrics": {"mcc": 0.25}})


@pytest.mark.parametrize("task", ["cola", "mrpc"])  # one sentence, a pair
@pytest.mark.filterwarnings("ignore::kdkit.errors.TruncationWarning")  # the tiny models' 64 positions
def test_maps_agree_fully_for_the_teacher_itself_and_less_for_another_model(
    task: str, tmp_path: Path, glue_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    teacher = _model(tmp_path / "work" / task / "teacher-grid" / "lr-1e-3" / "best", seed=0, task_name=task)
    records.write_summary(tmp_path / "results" / task / "teacher" / "lr-1e-3.json", {"dev_score": 0.3})
    other = _model(tmp_path / "other", seed=7, task_name=task)
    fingerprint = records.teacher_fingerprint(teacher)
    work, results = tmp_path / "work" / task / f"t-{fingerprint}", tmp_path / "results" / task / f"t-{fingerprint}"
    _student(results, work, "kd", 1, teacher, {"mcc": 0.25})  # the teacher's own weights
    _student(results, work, "ce", 1, other, {"mcc": 0.25})
    _student(results, work, "adkd", 1, other, {"mcc": 0.5})  # not the run its summary records

    args = ["--task", task, "--data-dir", str(glue_dir), "--work", str(tmp_path / "work")]
    args += ["--results", str(tmp_path / "results"), "--max-sentences", "12"]
    assert paper_maps.main(args) == 0
    out = capsys.readouterr().out
    summary = records.read_summary(results / "map-agreement.json")
    assert summary is not None and summary["sentences"] == 12 and set(summary["students"]) == {"ce", "kd"}
    same, different = summary["students"]["kd"][0], summary["students"]["ce"][0]
    assert same == {"seed": "seed-1", "gap": 0.0, "l_attr": 0.0, "cosine": pytest.approx(1.0), "top1": 1.0}
    assert different["gap"] > 0.1 and different["l_attr"] > 1e-3 and different["cosine"] < 0.9
    assert "left out" in out and "adkd/seed-1" in out
    assert "| vanilla KD | 1 | 0.000 | 0.0000 | 1.000 | 100.0% |" in out
    # the study's report shows the table under the teacher's students
    settings = paper_plan.Settings(results=tmp_path / "results")
    shown = paper_report.map_lines(settings, task, fingerprint)
    assert [line.split(" |")[0] for line in shown if line.startswith("| ") and "seeds" not in line] == [
        "| student alone (CE)", "| vanilla KD"
    ]  # fmt: skip
