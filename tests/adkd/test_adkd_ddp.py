"""AD-KD under DistributedDataParallel: ``torchrun --nproc_per_node 2`` on CPU (gloo) trains exactly like one
process with the same global batch, although the student's loss differentiates through input gradients.

Why it works (pytorch #47562, #63812): DDP averages gradients in hooks that fire when ``backward()``
accumulates parameter gradients. AD-KD takes the student's input gradient with
``torch.autograd.grad(F, E, create_graph=True)``, which is out of place and w.r.t. the embedding output
E, not parameters, so no DDP hook fires there; the single ``backward()`` of the total loss then reaches every
parameter once, through the double-backward graph too, and DDP averages that. AD-KD also averages L_attr
over the real tokens of the global batch (not each process's), so the averaged gradient is the
single-process one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ddp_worker import build_config
from safetensors.torch import load_file

from kdkit import api
from kdkit.data.tasks import TaskSpec
from kdkit.plugins.manager import PluginManager
from kdkit.testing import save_tiny_classifier

pytestmark = pytest.mark.slow  # two processes train

WORKER = Path(__file__).with_name("ddp_worker.py")


def _losses(run: Path) -> list[float]:
    return [entry["loss"] for entry in json.loads((run / "run.json").read_text())["train_log"] if "loss" in entry]


@pytest.fixture(scope="module")
def deterministic_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny teacher without dropout (its copy:1 student inherits that), so runs can be compared exactly."""
    task = TaskSpec(
        name="tiny", text_fields=("text",), label_names=("neg", "pos"), metrics=("accuracy",), main_metric="accuracy"
    )
    directory = save_tiny_classifier(tmp_path_factory.mktemp("ddp") / "teacher", task)
    config = json.loads((directory / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_two_processes_match_one_process_with_the_same_global_batch(
    tiny_csv: tuple[Path, Path],
    deterministic_teacher: Path,
    tmp_path: Path,
    adkd_manager: PluginManager,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    train, validation = tiny_csv
    env = {**os.environ, "ADKD_BETA": "100000", "PYTHONPATH": os.pathsep.join(sys.path)}  # L_attr dominates
    args = [str(deterministic_teacher), str(train), str(validation)]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*torchrun, str(WORKER), *args, str(tmp_path / "two"), "8"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "two" / "run.json").read_text())
    assert summary["environment"]["world_size"] == 2
    monkeypatch.setenv("ADKD_BETA", "100000")
    api.distill(build_config(*args, str(tmp_path / "one"), 16), plugins=adkd_manager)  # one process, in this one
    two, one = _losses(tmp_path / "two"), _losses(tmp_path / "one")
    assert len(two) == len(one) == 6
    assert two == pytest.approx(one, rel=1e-4)
    a, b = (
        load_file(tmp_path / "one" / "last" / "model.safetensors"),
        load_file(tmp_path / "two" / "last" / "model.safetensors"),
    )
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4


def test_under_torchrun_the_output_must_be_given(monkeypatch: pytest.MonkeyPatch) -> None:
    from kdkit.errors import ConfigError

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="pass --output"):
        api.default_output("sst2", "adkd")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert api.default_output("sst2", "adkd").parent.name == "runs"
