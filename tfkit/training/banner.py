"""The first line of every run: what trains where, and where a resumed run continues.

The one start/resume banner of the run engine. `tfkit train` (fit and the custom loop),
`tfkit gan train` and `tfkit tune` print

    COMMAND: NAME -> RUN_DIR (DETAIL, ...[, resuming at POSITION])

e.g. `tfkit train: mnist -> runs/mnist/00003 (OneDeviceStrategy (1 replica), resuming
at epoch 3, step 250)`. The epoch of a position counts from 1, as Keras' progress bar and
the stop line (`stopped at epoch N`) do: it is the epoch the run continues with.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

# what a worker other than the chief adds: its files go to a temporary directory
NOT_CHIEF = "this worker writes to a temporary directory"


def continued_epoch(step: int, steps_per_epoch: int | None, saved_epoch: int = 0) -> int:
    """The epoch (from 1) a run continues with after `step` optimizer steps.

    Args:
        step: the optimizer steps done.
        steps_per_epoch: the epoch length (None or 0: unknown, `saved_epoch` is used).
        saved_epoch: the epochs finished, as saved.
    """
    return (step // steps_per_epoch if steps_per_epoch else saved_epoch) + 1


def epoch_position(step: int, steps_per_epoch: int | None, saved_epoch: int = 0) -> str:
    """'epoch E, step S' (see `continued_epoch`)."""
    return f"epoch {continued_epoch(step, steps_per_epoch, saved_epoch)}, step {step}"


def kimg_position(nimg: int) -> str:
    """'kimg K': a GAN run's position, `nimg` images shown to D."""
    return f"kimg {nimg / 1000:g}"


def start_line(
    command: str,
    name: str,
    run_dir: str | os.PathLike,
    details: Iterable[str | None],
    *,
    chief: bool = True,
    resuming_at: str | None = None,
) -> str:
    """The banner a run prints when it starts.

    Args:
        command: the command, e.g. "tfkit train".
        name: the config's name.
        run_dir: the run directory.
        details: what the path says about itself (None entries are left out).
        chief: False on a worker that writes to a temporary directory.
        resuming_at: where a resumed run continues (`epoch_position`, `kimg_position`).

    Returns:
        One line, without a newline.
    """
    parts = [d for d in details if d]
    if not chief:
        parts.append(NOT_CHIEF)
    if resuming_at:
        parts.append(f"resuming at {resuming_at}")
    return f"{command}: {name} -> {run_dir} ({', '.join(parts)})"
