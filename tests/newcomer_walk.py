"""A newcomer's walk: README's commands, in order, in the environment README's first command creates.

    python tests/newcomer_walk.py install     # build (or find) that environment; .ci/run does, before the tests
    python tests/newcomer_walk.py run DIR     # walk README in DIR, one line per step

The environment is a virtual environment made with README's own install commands (the ``pip install ...``
parts of its first command, run from the repository root): the editable kdkit with only the extras README
names. It is cached under ``KDKIT_NEWCOMER_CACHE`` (else ``~/.cache/kdkit-newcomer``), keyed by those commands,
the pyproject.toml files they install and the Python version; kdkit's code is installed editable, so a cached
environment runs the code of the checkout. CI's own environment (``.[test]``) has more packages: a package
that only the test extras bring (onnxruntime for ``kdkit export``, once) passes there and fails here.

The walk runs every ``kdkit ...`` command of README's ``bash`` blocks in order, with small sizes appended
(flags given later win: fewer examples, short inputs, one epoch), from a folder laid out like the repository's
(``../shared`` is the real shared data; ``train.csv``/``dev.csv`` are written for the custom-data example), with
a fresh ``KDKIT_HOME``, offline, and output going to a file (no terminal, as in a CI log). A step fails when it
exits non-zero, prints a Python traceback, or redraws a progress bar with carriage returns.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
READY = ".kdkit-ready"
#: flags appended to each command so the walk is small (a later flag overrides README's own)
SMALL = {
    "finetune": ["--max-train-samples", "48", "--max-eval-samples", "48", "--max-length", "48", "--epochs", "1"],
    "distill": ["--max-train-samples", "48", "--max-eval-samples", "48", "--max-length", "48", "--epochs", "1"],
    "evaluate": ["--max-eval-samples", "48"],
    "export": ["--max-eval-samples", "48"],
    # one small trial; budgets loose enough that an untrained-size student meets them (the walk checks the command
    # runs end to end, not what it finds)
    "compress": [
        *("--max-train-samples", "48", "--max-eval-samples", "48", "--trials", "1", "--max-epochs", "1"),
        *("--max-drop", "100", "--max-latency-ms", "10000", "--no-vocab-pruning"),
    ],
}
#: and to a distill that fine-tunes the default teacher
SMALL_TEACHER = ["--teacher-epochs", "1"]
TRACEBACK = "Traceback (most recent call last)"


def bash_blocks(text: str) -> list[str]:
    """The contents of README's ```bash blocks, in order."""
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def _segments(block: str) -> Iterator[list[str]]:
    """Each shell command of a block: lines without comments, split at ``&&``."""
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        command: list[str] = []
        for word in [*words, "&&"]:
            if word == "&&":
                if command:
                    yield command
                command = []
            else:
                command.append(word)


def install_commands(text: str) -> list[list[str]]:
    """The ``pip install`` commands of README's first command (the first line of its first block)."""
    first_line = bash_blocks(text)[0].splitlines()[0]
    return [words for words in _segments(first_line) if words[:2] == ["pip", "install"]]


def kdkit_commands(text: str) -> list[list[str]]:
    """Every ``kdkit ...`` command of README's bash blocks, in order."""
    return [words for block in bash_blocks(text) for words in _segments(block) if words[0] == "kdkit"]


def small(command: list[str]) -> list[str]:
    """``command`` with the walk's small sizes appended."""
    extra = list(SMALL.get(command[1], [])) if len(command) > 1 else []
    if command[1:2] == ["distill"] and "--teacher" not in command:
        extra += SMALL_TEACHER
    return [*command, *extra]


# -- the environment ------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kdkit-newcomer"
    return Path(os.environ.get("KDKIT_NEWCOMER_CACHE", default)).expanduser()


def environment_key(text: str) -> str:
    """What the environment depends on: README's install commands, the pyproject files, Python's version, and
    this checkout's path (README installs it editable: an environment made for another checkout runs its code)."""
    digest = hashlib.sha256(repr(install_commands(text)).encode() + sys.version.encode())
    digest.update(str(REPO.resolve()).encode())
    for pyproject in sorted([REPO / "pyproject.toml", *REPO.glob("plugins/*/pyproject.toml")]):
        digest.update(pyproject.read_bytes())
    return digest.hexdigest()[:12]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _clean_env(venv: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if venv is not None:
        env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return env


def environment() -> Path:
    """The virtual environment README's first command creates (built once per key, then reused)."""
    text = README.read_text()
    venv = cache_dir() / f"venv-{environment_key(text)}"
    if (venv / READY).is_file():
        return venv
    with _locked(cache_dir() / f"venv-{environment_key(text)}.lock"):
        if (venv / READY).is_file():
            return venv
        shutil.rmtree(venv, ignore_errors=True)  # a half-built one from an interrupted run
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        for command in install_commands(text):
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            done = subprocess.run(
                [*pip, *command[2:]], cwd=REPO, env=_clean_env(venv), capture_output=True, text=True, timeout=1800
            )
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed:\n{(done.stderr or done.stdout)[-3000:]}")
        (venv / READY).write_text("\n".join(" ".join(c) for c in install_commands(text)) + "\n")
    return venv


# -- the walk ---------------------------------------------------------------------------------------------------


@dataclass
class Step:
    """One command of the walk and how it went."""

    command: list[str]
    returncode: int
    seconds: float
    output: str

    @property
    def problems(self) -> list[str]:
        found = [f"exit status {self.returncode}"] if self.returncode != 0 else []
        if TRACEBACK in self.output:
            found.append("a Python traceback")
        if "\r" in self.output:
            found.append("carriage returns (a redrawn progress bar)")
        return found


def _workspace(folder: Path, shared: Path) -> Path:
    """``folder/repo`` (the working directory) beside ``folder/shared`` (-> the real shared data), as README's
    relative paths expect; plus the custom-data examples' train.csv, dev.csv and unlabelled.txt."""
    work = folder / "repo"
    work.mkdir(parents=True, exist_ok=True)
    link = folder / "shared"
    if not link.exists():
        link.symlink_to(shared.resolve(), target_is_directory=True)
    words = [("a gripping , funny film", "pos"), ("a dull and lifeless mess", "neg")]
    words += [("moving and warm", "pos"), ("tedious , flat and long", "neg")]
    for name, count in (("train.csv", 48), ("dev.csv", 16)):
        rows = [f'"{words[i % 4][0]} {i}",{words[i % 4][1]}' for i in range(count)]
        (work / name).write_text("text,label\n" + "\n".join(rows) + "\n")
    (work / "unlabelled.txt").write_text("".join(f"{words[i % 4][0]} again {i}\n" for i in range(32)))
    return work


def walk(folder: Path, shared: Path, venv: Path, *, say: object = None) -> list[Step]:
    """Run README's kdkit commands in order (small sizes) in ``folder``; stops at the first failing step."""
    work = _workspace(folder, shared)
    env = _clean_env(venv) | {"KDKIT_HOME": str(folder / "kdkit-home"), "COLUMNS": "80"}
    env.pop("FORCE_COLOR", None)
    steps: list[Step] = []
    for index, command in enumerate(kdkit_commands(README.read_text()), start=1):
        log = folder / f"step-{index:02d}.log"
        start = time.perf_counter()
        with log.open("w") as handle:
            code = subprocess.run(small(command), cwd=work, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
        step = Step(command, code, time.perf_counter() - start, log.read_text(errors="replace"))
        steps.append(step)
        if callable(say):
            say(f"{'ok  ' if not step.problems else 'FAIL'} {step.seconds:6.1f} s  {' '.join(command)}")
        if step.problems:
            break
    return steps


def main(argv: list[str]) -> int:
    if argv == ["install"]:
        print(f"newcomer environment: {environment()}")
        return 0
    if len(argv) == 2 and argv[0] == "run":
        steps = walk(Path(argv[1]).absolute(), REPO.parent / "shared", environment(), say=print)
        return 0 if steps and not steps[-1].problems else 1
    print("usage: python tests/newcomer_walk.py install | run DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
