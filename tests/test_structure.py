"""The package's structure: no import cycle, only the CLI imports command modules, run-file
names are spelled only in `tfkit/runs.py`, the config layer imports no TensorFlow side."""

from __future__ import annotations

import ast
import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tfkit
from tfkit import runs

PACKAGE = Path(tfkit.__file__).parent
# every file and folder of a run: each `*_FILE`, `*_DIR` and `*_STATE` name of runs.py
RUN_FILE_NAMES = sorted(
    value
    for key, value in vars(runs).items()
    if key.isupper() and key.endswith(("_FILE", "_DIR", "_STATE")) and isinstance(value, str)
)
# names that are also config words: `tune` (the section and the command), `checkpoint`
# (the `train.checkpoint` key); these count only where a path is built from them
CONFIG_WORDS = {runs.TUNE_DIR, runs.TF_CHECKPOINT_STATE}


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
    # everything tfkit.config reaches, lazily or not, is outside the TF-side packages
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


def _template(node: ast.AST) -> str | None:
    """A string constant's value, or an f-string with each placeholder as `{}`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def _is_path_part(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether `node` is joined into a path: an operand of `/`, or an argument of a call
    named `Path`, `join` or `joinpath`."""
    parent = parents.get(node)
    if isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Div):
        return True
    if isinstance(parent, ast.Call) and node in parent.args:
        func = parent.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        return name in ("Path", "join", "joinpath")
    return False


def spelled_names(source: str, names: list[str]) -> list[tuple[int, str]]:
    """(line, name) for each run-file name spelled in `source` (an f-string such as
    `f"fakes{tag}.png"` matches the template `"fakes{tag}.png"`)."""
    wanted = {re.sub(r"\{[^}]*\}", "{}", name): name for name in names}
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(parents.get(node), ast.JoinedStr):
            continue  # the parts of an f-string: the f-string itself is matched
        name = wanted.get(_template(node))
        if name is not None and (name not in CONFIG_WORDS or _is_path_part(node, parents)):
            found.append((node.lineno, name))
    return sorted(found)


@functools.cache
def _spelled_in_tfkit() -> dict[str, list[tuple[int, str]]]:
    return {
        module: spelled_names(path.read_text(), RUN_FILE_NAMES)
        for module, path in MODULES.items()
        if module != "tfkit.runs"
    }


def test_runs_py_names_every_file_of_a_run():
    # the names the issue found spelled elsewhere are all named in runs.py now
    assert len(RUN_FILE_NAMES) == len(set(RUN_FILE_NAMES)) >= 30
    for name in ("history.csv", "fakes{tag}.png", "tb/loop", "tfkit_search.json", "workers"):
        assert name in RUN_FILE_NAMES
    assert {"checkpoint", "saved_model.pb", "model.keras"} <= set(RUN_FILE_NAMES)


@pytest.mark.parametrize("name", RUN_FILE_NAMES)
def test_run_file_names_are_spelled_only_in_runs_py(name):
    spelled = [
        f"{MODULES[module].relative_to(PACKAGE.parent)}:{line}"
        for module, found in _spelled_in_tfkit().items()
        for line, spelled_name in found
        if spelled_name == name
    ]
    assert spelled == []


def test_run_file_name_check_sees_a_literal():
    # the check above reads string constants and f-strings: a spelled name is found
    assert spelled_names(f"PATH = run_dir / {runs.MODEL_FILE!r}", RUN_FILE_NAMES) == [
        (1, runs.MODEL_FILE)
    ]
    grid = 'def f(tag):\n    return out / f"fakes{tag}.png"\n'
    assert spelled_names(grid, RUN_FILE_NAMES) == [(2, runs.GAN_GRID_FILE)]
    # a config word counts only where a path is built from it
    state = 'os.replace(tmp, folder / "checkpoint")\nPath("tune", "x")\n'
    assert spelled_names(state, RUN_FILE_NAMES) == [(1, "checkpoint"), (2, "tune")]
    keys = 'cfg = {"checkpoint": "none"}\nif args.command == "tune": pass\n'
    assert spelled_names(keys, RUN_FILE_NAMES) == []
