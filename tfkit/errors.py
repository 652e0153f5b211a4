"""User-facing errors.

A `UserError` is something the user can fix (a bad config, a missing file, data that does
not fit the model). The CLI prints its message on one line to stderr and exits with
status 2; any other exception is an internal error (status 1).
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by user input; its message says what to change.

    Args:
        message: what is wrong, naming the file, field or argument, what was expected
            and what was received.
    """

    exit_code = 2


class MissingPathError(UserError):
    """A path a config key names does not exist.

    Args:
        key: the dotted config key (e.g. `data.source.path`), so a command reading a run's
            saved config can say how to override it.
        message: as for `UserError`.
    """

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


class NonFiniteLossError(UserError):
    """The training loss (or its gradients) became NaN or Inf; training stopped there.

    Args:
        value: the non-finite value (nan, inf or -inf).
        step: optimizer steps done, the bad one included.
        epoch: the epoch of that step, counting from 1.
        checkpoint: the last good checkpoint, kept for `--resume` (None: none saved yet).
    """

    def __init__(self, value: float, step: int, epoch: int, checkpoint: str | None):
        self.value = value
        self.step = int(step)
        self.epoch = int(epoch)
        self.checkpoint = checkpoint
        self.run_outcome: str | None = None  # set by `Run.training`: "marked failed", ...
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.checkpoint is not None:
            kept = f"The last good checkpoint is {self.checkpoint}."
        else:
            kept = "No checkpoint was written yet, so there is nothing to resume"
            kept += f"; the run is {self.run_outcome}." if self.run_outcome else "."
        return (
            f"The training loss (or its gradients) became {self.value} at step {self.step} "
            f"(epoch {self.epoch}); stopped. {kept} Lower "
            "`train.optimizer.learning_rate`, add clipping, or set `train.nan_policy: skip_step`"
        )


class Stopped(BaseException):
    """Training stopped on a signal after saving everything `--resume` needs.

    A `BaseException`, like `KeyboardInterrupt`: code that catches `Exception` (Keras
    Tuner's trial runner) lets it through.

    The CLI prints `str(err)` on its own line and exits with `exit_code`: 128 + the signal
    number (143 for SIGTERM, 130 for SIGINT / Ctrl-C), as a shell reports a killed process.

    Args:
        signum: the signal that asked to stop.
        epoch: the epoch (counting from 1) that was running when the run stopped.
        step: the optimizer steps completed, all saved.
    """

    def __init__(self, signum: int, epoch: int, step: int):
        super().__init__(signum, epoch, step)
        self.signum = int(signum)
        self.epoch = int(epoch)
        self.step = int(step)
        self.exit_code = 128 + self.signum
        self.resume_hint: str | None = None  # e.g. "tfkit train --resume RUN" (the command's)
        self.position = f"epoch {self.epoch}"  # where it stopped (the GAN trainer: kimg)

    def __str__(self) -> str:
        text = f"stopped at {self.position}"
        return f"{text}; continue with: {self.resume_hint}" if self.resume_hint else text


def did_you_mean(name: str, valid: list[str] | tuple[str, ...]) -> str:
    """Return ' Did you mean `x`?' for the closest valid name, or ''."""
    import difflib

    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" Did you mean `{close[0]}`?" if close else ""


def unknown_name(kind: str, name: str, valid) -> UserError:
    """A `UserError` for an unknown registry name that lists the valid ones."""
    valid = sorted(valid)
    plural = f"{kind}es" if kind.endswith("s") else f"{kind}s"
    return UserError(
        f"Unknown {kind} `{name}`.{did_you_mean(name, valid)} Valid {plural}: {', '.join(valid)}"
    )


class WorkerLost(Exception):
    """A peer of a multi-worker run died or became unreachable; this worker stopped.

    The run keeps its last checkpoint (every worker's state there is the same), so the
    whole cluster continues from it with `--resume`. The CLI prints `str(err)` on one line
    and exits with 75 (EX_TEMPFAIL: a retry can succeed); `tfkit launch --max-restarts N`
    restarts the workers itself.

    Args:
        lost: who was lost, e.g. "worker 1" (or "a peer worker" when the error names none).
        reason: the transport's short reason, e.g. "connection reset by peer".
    """

    exit_code = 75

    def __init__(self, lost: str, reason: str):
        super().__init__(lost, reason)
        self.lost = lost
        self.reason = reason
        self.resume_hint: str | None = None  # set by the command: "tfkit train --resume RUN"

    def __str__(self) -> str:
        text = f"lost {self.lost} ({self.reason}); stopped, the run keeps its last checkpoint"
        if self.resume_hint:
            text += f"; continue with `{self.resume_hint}` on every worker"
        return text
