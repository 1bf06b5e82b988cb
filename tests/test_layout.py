"""kdkit's layout stays what docs/architecture.md draws: a few packages, each importing only the ones below it, no
import cycle, torch-free packages that stay torch-free, plugins that import only the plugin API, and modules and
functions of a readable size."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KDKIT = REPO / "kdkit"
BENCHMARKS = REPO / "benchmarks"

#: the floors of kdkit, lowest first: a module may import its own package (or module) and any floor below
#: its own, never a floor above or a neighbour on its floor (training and export know nothing of each other)
FLOORS: list[tuple[str, ...]] = [
    ("errors",),
    ("config", "extras"),
    ("data",),
    ("records",),
    ("models",),
    ("attribution",),
    ("losses",),
    ("training", "export", "hookspecs"),
    ("plugins", "web"),
    ("api", "plugin_api"),
    ("compress",),
    ("cli", "testing"),
    ("entry",),
]
#: what must import without torch (a fresh interpreter, then ``"torch" not in sys.modules``): the records,
#: what ``kdkit predict`` runs on, and the configuration and the CLI's own modules
TORCH_FREE = (
    "kdkit",
    "kdkit.errors",
    "kdkit.hookspecs",
    "kdkit.config",
    "kdkit.extras",
    "kdkit.data.tasks",
    "kdkit.data.sources",
    "kdkit.data.texts",
    "kdkit.data.labels",
    "kdkit.data.checks",
    "kdkit.data.metrics",
    "kdkit.data.baselines",
    *(f"kdkit.records.{path.stem}" for path in sorted((KDKIT / "records").glob("[!_]*.py"))),
    "kdkit.models.checks",
    "kdkit.export.hf_layout",
    "kdkit.export.manifest",
    "kdkit.export.inference",
    *(f"kdkit.web.{path.stem}" for path in sorted((KDKIT / "web").glob("[!_]*.py"))),
    "kdkit.cli",
    "kdkit.entry",
)

#: targets of readable code (the project's style): see docs/architecture.md; the sizes hold for benchmarks/ too
MAX_TOP_LEVEL_MODULES = 12
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 8


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(KDKIT.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _imports(path: Path) -> Iterator[str]:
    """The kdkit modules ``path`` imports, at the top or inside a function (not under ``TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for statement in node.body
        for child in ast.walk(statement)
    }
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] == "kdkit")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "kdkit":
            module = node.module or "kdkit"
            for alias in node.names:  # ``from kdkit.records import runs`` imports kdkit.records.runs
                candidate = f"{module}.{alias.name}"
                yield candidate if (REPO / (candidate.replace(".", "/") + ".py")).is_file() else module


def _graph() -> dict[str, set[str]]:
    return {name: set(_imports(path)) - {name} for name, path in _modules()}


def _unit(module: str) -> str:
    """The package or top-level module a module belongs to: ``kdkit.records.runs`` -> ``records``
    (``python -m kdkit.cli`` runs the console script: its ``__main__`` is the entry's)."""
    if module == "kdkit.cli.__main__":
        return "entry"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "kdkit"


def _floor(unit: str) -> int:
    """The floor of a package or module; ``kdkit`` itself (its version) is below them all."""
    return next((index for index, units in enumerate(FLOORS) for name in units if name == unit), -1)


def test_every_package_and_top_level_module_has_a_floor():
    units = {_unit(name) for name, _ in _modules()} - {"kdkit"}
    assert units == {unit for floor in FLOORS for unit in floor}


def test_docs_architecture_draws_these_floors():
    text = (REPO / "docs" / "architecture.md").read_text()
    drawn = {
        int(number): tuple(re.findall(r"\b(\w+)(?:/|\.py)", rest))
        for number, rest in re.findall(r"^floor\s+(\d+)\s+(.*)$", text, flags=re.MULTILINE)
    }
    assert [drawn[floor] for floor in sorted(drawn)] == FLOORS


def test_every_package_imports_only_downward():
    wrong = [
        f"{module} -> {target}"
        for module, targets in _graph().items()
        for target in targets
        if _unit(module) not in ("kdkit", _unit(target)) and _floor(_unit(target)) >= _floor(_unit(module))
    ]
    assert not wrong, "imports that run up or sideways (see FLOORS): " + "; ".join(sorted(wrong))


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """An import cycle of ``graph`` (module -> the modules it imports), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[module] = 2
        return None

    return next((cycle for module in sorted(graph) if module not in state and (cycle := visit(module))), None)


def test_there_is_no_import_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _benchmark_graph() -> dict[str, set[str]]:
    """benchmarks/*.py as modules (they import each other by bare name: the scripts' folder is on the path)."""
    scripts = {path.stem: path for path in (REPO / "benchmarks").glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in scripts.items():
        named = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                named |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                named.add(node.module)
        graph[name] = {module for module in named if module in scripts} - {name}
    return graph


def test_benchmarks_have_no_import_cycle_and_share_code_through_study_common():
    graph = _benchmark_graph()
    cycle = _cycle(graph)
    assert cycle is None, "import cycle in benchmarks/: " + " -> ".join(cycle or [])
    assert "study_common" in graph and not graph["study_common"], "study_common imports no other script"
    assert _cycle({**graph, "a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]  # the finder finds one


def test_the_torch_free_modules_import_without_torch():
    code = "import importlib, sys\n"
    code += "".join(f"importlib.import_module({name!r})\n" for name in TORCH_FREE)
    code += "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'datasets'})\n"
    code += "assert not heavy, heavy\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_plugins_and_the_plugin_docs_import_kdkit_only_through_the_plugin_api():
    """plugins/adkd, examples/kdkit-occlusion and the code of docs/writing-plugins.md and docs/plugins.md use
    kdkit.plugin_api (and kdkit.testing in tests): the plugin-facing API is named in one place."""
    allowed = {"kdkit.plugin_api", "kdkit.testing", "kdkit.testing.fixtures"}
    sources = [*(REPO / "plugins").rglob("*.py"), *(REPO / "examples").rglob("*.py")]
    used = {f"{path.relative_to(REPO)}: {target}" for path in sources for target in _imports(path)}
    assert used and not {line for line in used if line.split(": ")[1] not in allowed}, sorted(used)
    for doc in ("writing-plugins.md", "plugins.md"):
        text = (REPO / "docs" / doc).read_text()
        named = set(re.findall(r"^\s*(?:from|import) (kdkit(?:\.\w+)*)[\s(]", text, flags=re.MULTILINE))
        assert named and named <= allowed, f"docs/{doc} imports {sorted(named - allowed)}"


# -- sizes ---------------------------------------------------------------------------------------------------


def _is_command(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A Typer command of kdkit/cli (its parameters are its flags: exempt from the limits)."""
    return any("command" in ast.unparse(decorator) for decorator in node.decorator_list)


def test_the_top_level_holds_few_modules():
    modules = sorted(path.name for path in KDKIT.glob("*.py"))
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, modules


def _sized_modules() -> Iterator[tuple[str, Path]]:
    """kdkit's modules and the benchmark scripts with their helper modules (``benchmarks.export_latency``)."""
    yield from _modules()
    for path in sorted(BENCHMARKS.glob("*.py")):
        yield f"benchmarks.{path.stem}", path


@pytest.mark.parametrize("name", [name for name, _ in _sized_modules()])
def test_modules_and_functions_are_of_a_readable_size(name: str):
    path = dict(_sized_modules())[name]
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines (at most {MAX_MODULE_LINES})"
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or _is_command(node):
            continue
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        assert length <= MAX_FUNCTION_LINES, f"{name}.{node.name} has {length} lines (at most {MAX_FUNCTION_LINES})"
        arguments = node.args
        count = len(arguments.posonlyargs + arguments.args + arguments.kwonlyargs)
        count -= bool(arguments.args) and arguments.args[0].arg in ("self", "cls")
        assert count <= MAX_PARAMETERS, f"{name}.{node.name} takes {count} parameters (at most {MAX_PARAMETERS})"


def _dangling_names(text: str) -> list[str]:
    """``kdkit.a.b...`` names in ``text`` whose modules do not exist: each part is a package or a module below
    ``kdkit/``, until a module (after which come its attributes) or a name its package's ``__init__`` mentions."""
    dangling = []
    for match in re.finditer(r"(?<![\w./-])kdkit((?:\.[A-Za-z_]\w*)+)", text):
        parts, here = match.group(1).strip(".").split("."), KDKIT
        for index, part in enumerate(parts):
            if part.startswith("__") or (here / f"{part}.py").is_file():
                break
            if (here / part).is_dir():
                here = here / part
                continue
            if not re.search(rf"\b{re.escape(part)}\b", (here / "__init__.py").read_text()):
                dangling.append("kdkit." + ".".join(parts[: index + 1]))
            break
    return dangling


def test_the_modules_that_docs_and_docstrings_name_exist():
    """A module moved is a module renamed everywhere: kdkit's docstrings, the docs, the plugins and benchmarks
    name the modules where they are (the CHANGELOG keeps the old names it recorded)."""
    places = [*KDKIT.rglob("*.py"), *(REPO / "docs").glob("*.md"), REPO / "README.md", *REPO.glob("benchmarks/*.py")]
    places += [*(REPO / "plugins").rglob("*.py"), *(REPO / "examples").rglob("*.py")]
    dangling = {f"{path.relative_to(REPO)}: {name}" for path in places for name in _dangling_names(path.read_text())}
    assert not dangling, "names of modules that do not exist: " + "; ".join(sorted(dangling))
