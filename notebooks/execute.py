"""Execute the committed notebooks in place, so they carry their outputs on a code host.

A notebook's source is its Jupytext percent-format file, `notebooks/0N_<name>.py`; edit that,
then `make notebooks` writes each paired `.ipynb` from it (`jupytext --to ipynb --update`)
and runs this script:

    .venv/bin/python notebooks/execute.py            # execute every notebook
    .venv/bin/python notebooks/execute.py 01 03      # only these

Execution uses nbclient with the `python3` kernel; `jupyter_client` starts it with this
interpreter (`sys.executable`), so run the script with the virtual environment's Python.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def notebook_paths(only: list[str] | None = None) -> list[Path]:
    """The committed notebooks (`0N_<name>.ipynb`), those starting with a prefix in `only`."""
    paths = sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    return [p for p in paths if not only or any(p.name.startswith(o) for o in only)]


def client_options(timeout: int = 300) -> dict:
    """nbclient options shared with the tests.

    TensorFlow's C++ start-up lines are written straight to file descriptor 2; with
    `capture_fd_output=False` they go to the terminal, as in a classic Jupyter session,
    instead of into every notebook's first output. No timing metadata is recorded, so a
    re-run only changes the outputs.
    """
    return {
        "timeout": timeout,
        "kernel_name": "python3",
        "record_timing": False,
        "resources": {"metadata": {"path": str(HERE)}},
        "extra_arguments": ["--IPKernelApp.capture_fd_output=False"],
    }


def execute(nb, timeout: int = 300) -> None:
    """Run `nb` in place from the notebooks directory; everything it writes (its `WORK`
    directory, under the kernel's TMPDIR) lands in a directory removed afterwards."""
    from nbclient import NotebookClient

    previous = os.environ.get("TMPDIR")
    with tempfile.TemporaryDirectory(prefix="tfkit-nb-run-") as tmp:
        os.environ["TMPDIR"] = tmp
        try:
            NotebookClient(nb, **client_options(timeout)).execute()
        finally:
            if previous is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = previous


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="notebook prefixes, e.g. 01 03")
    args = parser.parse_args(argv)

    import nbformat

    for path in notebook_paths(args.only):
        nb = nbformat.read(path, as_version=4)
        nb.metadata.setdefault("kernelspec", KERNELSPEC)  # a new notebook has none yet
        for cell in nb.cells:
            cell.metadata.pop("execution", None)
        start = time.perf_counter()
        execute(nb)
        nbformat.write(nb, path)
        size = path.stat().st_size / 1024
        print(f"{path.name}: {time.perf_counter() - start:.1f} s, {size:.0f} KiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
