"""The package's structure: no import cycle, only the CLI imports command modules, run-file
names are spelled only in `tfkit/runs.py`, the config layer imports no TensorFlow side."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tfkit
from tfkit import runs

PACKAGE = Path(tfkit.__file__).parent
RUN_FILE_NAMES = [
    runs.CONFIG_FILE,
    runs.SPEC_FILE,
    runs.MODEL_FILE,
    runs.RESULT_FILE,
    runs.METRICS_FILE,
    runs.LAST_CHECKPOINT_FILE,
    runs.BEST_CHECKPOINT_FILE,
    runs.GAN_OPTIONS_FILE,
    runs.G_EMA_FILE,
    runs.RESUMES_FILE,
    runs.FAILED_FILE,
    runs.EXPORT_MANIFEST_FILE,
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """The tfkit modules `module` imports, anywhere in its file (lazy imports count)."""
    path = MODULES[module]
    base = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                prefix = base
                for _ in range(node.level - 1):
                    prefix = prefix.rpartition(".")[0]
                mod = f"{prefix}.{mod}" if mod else prefix
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for target in targets:
            if target.split(".")[0] == "tfkit" and (resolved := _resolve(target)):
                # a package re-exporting its own modules is not an import between modules
                if resolved != module and not module.startswith(resolved + "."):
                    out.add(resolved)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_cycles():
    # the property below is only as good as the finder: it must see a 2- and a 3-cycle
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(_cycles(graph)) == [["a", "b"], ["c", "d", "e"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_tfkit():
    assert _cycles(GRAPH) == []


def test_only_the_cli_imports_command_modules():
    commands = {m for m in MODULES if m.endswith(".commands")}
    assert commands, "the walk found no command module"
    offenders = {m: sorted(GRAPH[m] & commands) for m in MODULES if m != "tfkit.cli"}
    assert {m: c for m, c in offenders.items() if c} == {}


def _closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for dep in GRAPH[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def test_config_imports_no_tensorflow_side_module():
    # everything config.py reaches, lazily or not, is outside the TF-side packages
    tf_side = ("tfkit.data", "tfkit.models", "tfkit.training", "tfkit.stylegan", "tfkit.tuning")
    reached = _closure("tfkit.config")
    assert sorted(m for m in reached if m.startswith(tf_side)) == []
    # and validating a config (a GAN preset included) loads neither TensorFlow nor Keras
    code = (
        "import sys; from tfkit.config import load_config; "
        "load_config(None, ['gan.preset=shapes16']); "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)},
    ).stdout
    assert out.strip() == "[]"


def test_runs_and_distribute_keep_their_direction():
    # the run directory is below everything: it imports config and errors (and, to load a
    # model, tfkit.saving, which registers every tfkit object)
    assert GRAPH["tfkit.runs"] <= {"tfkit", "tfkit.config", "tfkit.errors", "tfkit.saving"}
    # distribute creates no run directory
    source = MODULES["tfkit.distribute"].read_text()
    assert "create_run_dir" not in source and "Run.create" not in source


@pytest.mark.parametrize("name", RUN_FILE_NAMES)
def test_run_file_names_are_spelled_only_in_runs_py(name):
    spelled = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        for module, path in MODULES.items()
        if module != "tfkit.runs"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value == name
    ]
    assert spelled == []


def test_run_file_name_check_sees_a_literal(tmp_path):
    # the check above reads string constants: a spelled name is found
    tree = ast.parse(f"PATH = run_dir / {runs.MODEL_FILE!r}")
    assert any(isinstance(n, ast.Constant) and n.value == runs.MODEL_FILE for n in ast.walk(tree))
