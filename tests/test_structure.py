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


def _uses_importlib(tree: ast.AST) -> bool:
    return any(
        isinstance(node, (ast.Import, ast.ImportFrom))
        and "importlib" in {getattr(node, "module", None), *(a.name for a in node.names)}
        for node in ast.walk(tree)
    )


def imports_of(module: str, source: str | None = None) -> set[str]:
    """The tfkit modules `module` imports, anywhere in its file (lazy imports count).

    In a module that uses `importlib`, every string naming a tfkit module (`"tfkit.x.y"`,
    or `"tfkit.x.y:function"` as the CLI's handler table spells it) counts as an import:
    that is how `tfkit.saving`, the CLI and the packages' lazy attributes import.
    """
    path = MODULES.get(module)
    tree = ast.parse(path.read_text() if source is None else source)
    is_package = path is not None and path.name == "__init__.py"
    base = module if is_package else module.rpartition(".")[0]
    dynamic = _uses_importlib(tree)
    out = set()
    for node in ast.walk(tree):
        targets = []
        if dynamic and isinstance(node, ast.Constant) and isinstance(node.value, str):
            name = node.value.partition(":")[0]
            if name.startswith("tfkit.") and name.replace(".", "").replace("_", "").isalnum():
                targets = [name]
        elif isinstance(node, ast.Import):
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


# DESIGN.md's import direction, top layer first: cli -> commands -> (training | stylegan |
# tuning | export) -> (models | data | distribute) -> (runs | config | errors). A module
# imports from its own layer or the layers below, never from a layer above; every module
# has a layer (a new top-level module must choose one here).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cli", ("tfkit.cli",)),
    ("commands", ("*.commands",)),
    # saving registers every tfkit Keras object: it imports models, training and stylegan
    (
        "engines",
        ("tfkit.training", "tfkit.stylegan", "tfkit.tuning", "tfkit.export", "tfkit.saving"),
    ),
    ("building blocks", ("tfkit.models", "tfkit.data", "tfkit.distribute", "tfkit.launch")),
    # the run directory, the config and what both use (no TensorFlow-side module)
    (
        "foundation",
        (
            "tfkit",
            "tfkit.runs",
            "tfkit.config",
            "tfkit.errors",
            "tfkit.keras_names",
            "tfkit.extensions",
            "tfkit.cluster",
            "tfkit.arguments",
            "tfkit.console",
            "tfkit.quiet",
        ),
    ),
)


def layer_of(module: str) -> int:
    """The index in LAYERS of `module`'s layer (0 is the top); the most specific entry wins
    (`*.commands` over its package)."""
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if prefix == "*.commands":
                length = 10**6 if module.endswith(".commands") else -1
            elif module == prefix or (prefix != "tfkit" and module.startswith(prefix + ".")):
                length = len(prefix)
            else:
                length = -1
            if length >= 0 and (best is None or length > best[0]):
                best = (length, rank)
    if best is None:
        raise KeyError(f"{module} has no layer in LAYERS")
    return best[1]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a lower layer to a higher one, as `importer -> imported`."""
    return sorted(
        f"{module} ({LAYERS[layer_of(module)][0]}) -> {dep} ({LAYERS[layer_of(dep)][0]})"
        for module, deps in graph.items()
        for dep in deps
        if layer_of(dep) < layer_of(module)
    )


def test_every_module_has_a_layer():
    missing = []
    for module in MODULES:
        try:
            layer_of(module)
        except KeyError:
            missing.append(module)
    assert missing == []


def test_no_import_runs_up_the_layers():
    assert upward_imports(GRAPH) == []


def test_the_layer_check_sees_upward_and_lazy_imports():
    # the property above is only as good as the parser and the layer table: a lazy import
    # inside a function, an importlib string and a relative import are all seen
    lazy = "def f():\n    from tfkit.stylegan.trainer import Trainer\n"
    assert imports_of("tfkit.runs", lazy) == {"tfkit.stylegan.trainer"}
    assert upward_imports({"tfkit.runs": {"tfkit.stylegan.trainer"}}) == [
        "tfkit.runs (foundation) -> tfkit.stylegan.trainer (engines)"
    ]
    dynamic = "import importlib\nimportlib.import_module('tfkit.training.fit')\n"
    assert imports_of("tfkit.data.tools", dynamic) == {"tfkit.training.fit"}
    relative = "from ..stylegan import trainer\n"
    assert imports_of("tfkit.data.tools", relative) == {"tfkit.stylegan", "tfkit.stylegan.trainer"}
    assert upward_imports({"tfkit.training.fit": {"tfkit.training.commands"}}) != []
    # downward and same-layer imports are allowed
    assert upward_imports({"tfkit.cli": {"tfkit.runs"}, "tfkit.export": {"tfkit.training"}}) == []
    assert layer_of("tfkit.stylegan.commands") == 1 and layer_of("tfkit.stylegan.trainer") == 2


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
    # the run directory is below everything: it imports config and errors only (a model's
    # tfkit objects come from the caller, see Run.load_model)
    assert GRAPH["tfkit.runs"] <= {"tfkit", "tfkit.config", "tfkit.errors"}
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
