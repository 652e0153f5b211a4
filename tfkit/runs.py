"""Run directories: `runs/<name>/<NNNNN>/`, numbered, holding the resolved config first.

A run directory is created with its `config.yaml` written atomically before anything else,
so a directory that exists is always a valid run (never half-written).
"""

from __future__ import annotations

import re
from pathlib import Path

from tfkit.config import ExperimentConfig, diff_keys, read_yaml, save_config, to_dict, validate
from tfkit.errors import UserError

CONFIG_FILE = "config.yaml"
G_EMA_FILE = "G_ema.keras"  # a GAN run's EMA generator, loadable in safe mode
_NUMBER = re.compile(r"^(\d{5})$")


def next_run_dir(root: str | Path, name: str) -> Path:
    """The next free numbered directory `root/name/NNNNN` (not created)."""
    parent = Path(root) / name
    numbers = [int(m.group(1)) for p in parent.glob("*") if (m := _NUMBER.match(p.name))]
    return parent / f"{(max(numbers) + 1 if numbers else 0):05d}"


def create_run_dir(
    config: ExperimentConfig, run_dir: str | Path | None = None, root: str | Path = "runs"
) -> Path:
    """Create a run directory holding `config.yaml` and return its path.

    Args:
        config: the resolved experiment config, saved as `config.yaml`.
        run_dir: an explicit directory (`--run-dir`); it must not already hold a run.
        root: where numbered run directories go when `run_dir` is None.

    Raises:
        UserError: `run_dir` already holds a run or is a file.
    """
    if run_dir is not None:
        path = Path(run_dir)
        if path.is_file():
            raise UserError(f"--run-dir {path} is a file, expected a directory")
        if (path / CONFIG_FILE).exists():
            raise UserError(
                f"--run-dir {path} already holds a run; use --resume {path} to continue it "
                "or choose another directory"
            )
    else:
        path = next_run_dir(root, config.name)
    for _attempt in range(100):  # another process may take the same number
        try:
            path.mkdir(parents=True, exist_ok=run_dir is not None)
            break
        except FileExistsError:
            path = next_run_dir(root, config.name)
    save_config(config, path / CONFIG_FILE)
    return path


def is_run_dir(path: str | Path) -> bool:
    """Whether `path` is a tfkit run directory (it holds `config.yaml`)."""
    return (Path(path) / CONFIG_FILE).is_file()


def load_run_config(run_dir: str | Path) -> ExperimentConfig:
    """The resolved config saved in a run directory.

    Raises:
        UserError: `run_dir` is missing or is not a tfkit run directory.
    """
    path = Path(run_dir)
    if not path.exists():
        raise UserError(f"Run directory not found: {path}")
    if not is_run_dir(path):
        raise UserError(f"{path} is not a tfkit run directory (no {CONFIG_FILE} in it)")
    return validate(read_yaml(path / CONFIG_FILE), str(path / CONFIG_FILE))


def check_resume_compatible(
    run_dir: str | Path, config: ExperimentConfig, sections=("model",)
) -> None:
    """Refuse to resume `run_dir` with a config whose `sections` changed, naming the keys."""
    saved = to_dict(load_run_config(run_dir))
    new = to_dict(config)
    changed = [k for s in sections for k in diff_keys(saved.get(s), new.get(s), f"{s}.")]
    if changed:
        raise UserError(
            f"Cannot resume {run_dir}: the config changed at {', '.join(changed)} "
            f"(saved in {Path(run_dir) / CONFIG_FILE}). Start a new run instead."
        )
