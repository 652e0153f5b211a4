"""The notebooks: committed ones are valid, clean and in sync with their sources (fast), and
each one runs (property tier).

A notebook's source is its Jupytext percent-format file `notebooks/0N_<name>.py`; the
committed `.ipynb` beside it is written from it by `make notebooks`. The fast checks read the
committed `.ipynb` files: valid nbformat, a title and sections, code cells, outputs present
(they are committed executed), no error outputs, and the same cells (types and sources) as
the `.py` source. The property tests execute every notebook's source top to bottom with
nbclient in a fresh `python3` kernel (`jupyter_client` starts it with this interpreter, so the
venv's packages and tfkit are used); a cell that raises fails the test.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = [
    "01_data_pipelines",
    "02_models",
    "03_training",
    "04_stylegan",
    "05_tuning",
]
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
SOURCES = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
MAX_BYTES = 1_500_000  # committed notebooks stay small enough to read on a code host
CELL_TIMEOUT_S = 300

# dev dependencies: missing one is an error, not a skip
import jupytext  # noqa: E402
import nbformat  # noqa: E402


def _load_runner():
    """`notebooks/execute.py` as a module (the nbclient options live there)."""
    spec = importlib.util.spec_from_file_location("notebooks_execute", NOTEBOOK_DIR / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cells(nb) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in nb.cells]


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def test_every_planned_notebook_is_committed_with_its_source():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED
    assert [p.stem for p in SOURCES] == EXPECTED, "each notebook has its .py source"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_notebook_is_valid_and_clean(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes"

    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert markdown and markdown[0].lstrip().startswith("# "), "starts with a title"
    headings = [line for text in markdown for line in text.splitlines() if re.match(r"##+ ", line)]
    assert len(headings) >= 3, f"sections as headings, found {headings}"
    assert len(code) >= 3

    # committed executed, in order, with no errors or tracebacks in any output
    counts = [c.execution_count for c in code]
    assert all(isinstance(n, int) for n in counts), "every code cell was executed"
    assert counts == sorted(counts), "cells ran top to bottom"
    assert any(c.outputs for c in code)
    for cell in code:
        for out in cell.outputs:
            assert out.output_type != "error", f"error output in {path.name}: {out.get('ename')}"
            text = out.get("text", "")
            assert "Traceback (most recent call last)" not in text, f"traceback in {path.name}"


@pytest.mark.parametrize("source", SOURCES, ids=_ids(SOURCES))
def test_committed_notebook_is_in_sync_with_its_source(source: Path):
    """The committed `.ipynb` holds the cells (types and sources) of its `.py` source;
    outputs and metadata are not compared."""
    path = source.with_suffix(".ipynb")
    assert path.exists(), f"{path.name} is missing: run `make notebooks`"
    expected = _cells(jupytext.read(source))
    committed = _cells(nbformat.read(path, as_version=4))
    assert len(expected) >= 3, f"{source.name} reads as {len(expected)} cells"
    for index, (want, got) in enumerate(zip(expected, committed, strict=False)):
        assert got == want, (
            f"{path.name} cell {index} differs from {source.name}: run `make notebooks`\n"
            f"in the .py ({want[0]}):\n{want[1]}\nin the .ipynb ({got[0]}):\n{got[1]}"
        )
    assert len(committed) == len(expected), (
        f"{path.name} has {len(committed)} cells, {source.name} {len(expected)}: "
        "run `make notebooks`"
    )


def test_kernel_runs_this_interpreter():
    """The `python3` kernel starts with the test's Python (the venv with tfkit installed)."""
    from jupyter_client.manager import KernelManager

    command = KernelManager(kernel_name="python3").format_kernel_cmd()
    assert command[0] == sys.executable
    assert command[1:3] == ["-m", "ipykernel_launcher"]


@pytest.mark.property
@pytest.mark.parametrize("source", SOURCES, ids=_ids(SOURCES))
def test_notebook_executes(source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from nbclient import NotebookClient

    runner = _load_runner()
    nb = jupytext.read(source)  # the source of truth, so an unsynced edit is run too
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel writes its files under tmp_path
    client = NotebookClient(nb, **runner.client_options(CELL_TIMEOUT_S))
    assert client.kernel_name == "python3"
    client.execute()  # raises CellExecutionError on the first failing cell
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
