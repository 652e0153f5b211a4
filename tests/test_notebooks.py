"""The notebooks: committed ones are valid and clean (fast), and each one runs (property tier).

The fast checks read the committed `.ipynb` files: valid nbformat, a title and sections,
code cells, outputs present (they are committed executed) and no error outputs. The
property tests execute every notebook top to bottom with nbclient in a fresh `python3` kernel
(`jupyter_client` starts it with this interpreter, so the venv's packages and tfkit are
used); a cell that raises fails the test.
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
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
MAX_BYTES = 1_500_000  # committed notebooks stay small enough to read on a code host
CELL_TIMEOUT_S = 300

import nbformat  # noqa: E402  (a dev dependency: missing it is an error, not a skip)


def _load_builder():
    """`notebooks/build_notebooks.py` as a module (the nbclient options live there)."""
    spec = importlib.util.spec_from_file_location(
        "build_notebooks", NOTEBOOK_DIR / "build_notebooks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def test_every_planned_notebook_is_committed():
    present = {p.stem for p in NOTEBOOKS}
    missing = [name for name in EXPECTED if name not in present]
    assert not missing, f"notebooks missing from {NOTEBOOK_DIR}: {missing}"


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


def test_builder_sources_match_committed_notebooks():
    """The generator script and the committed notebooks hold the same cell sources."""
    builder = _load_builder()
    for name, cells in builder.NOTEBOOKS.items():
        path = NOTEBOOK_DIR / f"{name}.ipynb"
        assert path.exists(), f"{path.name} is missing: run notebooks/build_notebooks.py"
        nb = nbformat.read(path, as_version=4)
        committed = [(c.cell_type, c.source) for c in nb.cells]
        assert committed == list(cells), f"{path.name} differs from build_notebooks.py: rebuild it"


def test_kernel_runs_this_interpreter():
    """The `python3` kernel starts with the test's Python (the venv with tfkit installed)."""
    from jupyter_client.manager import KernelManager

    command = KernelManager(kernel_name="python3").format_kernel_cmd()
    assert command[0] == sys.executable
    assert command[1:3] == ["-m", "ipykernel_launcher"]


@pytest.mark.property
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_executes(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from nbclient import NotebookClient

    builder = _load_builder()
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel writes its files under tmp_path
    client = NotebookClient(nb, **builder.client_options(CELL_TIMEOUT_S))
    assert client.kernel_name == "python3"
    client.execute()  # raises CellExecutionError on the first failing cell
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
