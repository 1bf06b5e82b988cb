"""The example plugin examples/kdkit-occlusion, installed as a user would install it: pip builds it from its
folder into a temporary target; ``kdkit plugins`` lists it with its distribution; its own tests (written with
kdkit.testing) pass; a short ``kdkit distill --plugin adkd`` uses occlusion for the teacher's maps.

Everything after the installation runs in subprocesses whose ``PYTHONPATH`` starts with the target, so the
installed copy (and its entry point) is what kdkit finds.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import kdkit

pytestmark = pytest.mark.slow  # builds and installs the example plugin

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "kdkit-occlusion"


def _can_build_offline() -> bool:
    """setuptools with its own bdist_wheel (>= 70.1), or wheel: the build needs no download."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    import setuptools

    major, minor = (int(part) for part in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Install a copy of the example (no build files left in the repository); the subprocesses' environment."""
    root = tmp_path_factory.mktemp("kdkit-occlusion")
    source = root / "source"
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache")
    )
    target = root / "site"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(source)]
    if _can_build_offline():
        command.insert(4, "--no-build-isolation")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (target / "kdkit_occlusion" / "provider.py").is_file()
    # the target first, then this kdkit (and the adkd plugin this process uses), then the rest
    paths = [str(target), str(Path(kdkit.__file__).resolve().parents[1])]
    adkd = importlib.util.find_spec("kdkit_adkd")
    if adkd is not None and adkd.origin is not None:
        paths.append(str(Path(adkd.origin).resolve().parents[1]))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [env.get("PYTHONPATH")])])
    env["KDKIT_HOME"] = str(root / "kdkit-home")
    env.pop("KDKIT_DISABLE_PLUGIN_AUTOLOAD", None)
    env.pop("KDKIT_DISABLE_PLUGINS", None)
    env.pop("KDKIT_PLUGINS", None)
    return env


def _run(env: dict[str, str], *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env={**env, **(extra_env or {})}, cwd=REPO, timeout=600
    )
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_kdkit_plugins_lists_occlusion_with_its_distribution(installed: dict[str, str]) -> None:
    listing = json.loads(_run(installed, "-m", "kdkit.cli", "plugins", "--json").stdout)
    occlusion = next(row for row in listing["components"] if row["name"] == "occlusion")
    assert occlusion["plugin"] == "occlusion" and occlusion["source"] == "kdkit-occlusion 0.1.0"
    assert occlusion["kind"] == "attribution provider" and occlusion["differentiable"] is False
    assert set(occlusion["options"]) == {"replacement", "token_id", "batch_size"}
    assert listing["failures"] == []
    # by name: autoload off, then enabled with the option, and disabled (disabling wins)
    off = {"KDKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    listing = json.loads(
        _run(installed, "-m", "kdkit.cli", "--enable-plugin", "occlusion", "plugins", "--json", extra_env=off).stdout
    )
    assert {row["plugin"] for row in listing["components"]} == {"builtin", "occlusion"}
    listing = json.loads(
        _run(installed, "-m", "kdkit.cli", "plugins", "--json", extra_env={"KDKIT_DISABLE_PLUGINS": "occlusion"}).stdout
    )
    assert "occlusion" not in {row["plugin"] for row in listing["components"]}
    assert listing["disabled"] == ["occlusion"]


def test_the_examples_own_tests_pass(installed: dict[str, str]) -> None:
    done = _run(installed, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests"))
    assert " passed" in done.stdout, done.stdout
    if importlib.util.find_spec("kdkit_adkd") is not None:
        assert "skipped" not in done.stdout, done.stdout  # the AD-KD test ran too


def test_a_short_distillation_uses_occlusion_for_the_teacher(
    installed: dict[str, str], tiny_teacher: Path, tiny_csv: tuple[Path, Path], tmp_path: Path
) -> None:
    pytest.importorskip("kdkit_adkd", reason="the AD-KD plugin is not installed (pip install -e plugins/adkd)")
    train, validation = tiny_csv
    output = tmp_path / "run"
    _run(
        installed,
        "-m",
        "kdkit.cli",
        "distill",
        "--plugin",
        "adkd",
        "--set",
        "adkd.teacher_provider=occlusion",
        "--teacher",
        str(tiny_teacher),
        "--student",
        "copy:1",
        "--train-file",
        str(train),
        "--validation-file",
        str(validation),
        "--max-length",
        "32",
        "--max-steps",
        "2",
        "--batch-size",
        "8",
        "--logging-steps",
        "1",
        "--quiet",
        "--output",
        str(output),
    )
    summary = json.loads((output / "run.json").read_text())
    assert summary["loss"] == "adkd" and summary["options"]["adkd"]["teacher_provider"] == "occlusion"
    assert summary["options"]["occlusion"] == {"replacement": "mask", "token_id": None, "batch_size": 256}
    assert summary["options"]["ig"]["steps"] == 1  # the student's side
    assert summary["teacher_cache"]["used"] is True
    assert [entry["step"] for entry in summary["train_log"]] == [1, 2]
    assert all(entry["loss_attr"] > 0 for entry in summary["train_log"])
