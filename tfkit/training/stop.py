"""Stop requests from signals: SIGTERM (schedulers, `kill`) and SIGINT (Ctrl-C).

The one stop-signal handler of the run engine: `tfkit train` (fit and the custom loop),
`tfkit gan train` and `tfkit tune` all stop through `StopSignals`.

- The first SIGTERM or SIGINT only records a request. The training loop checks
  `requested` at its next safe point (a step or chunk boundary; under a multi-worker
  strategy where every worker agrees, `tfkit.distribute.StopAgreement`), saves what
  `--resume` needs and stops; the CLI prints one line (`stopped at ...; continue with:
  ...`) and exits 143 (SIGTERM) or 130 (SIGINT), see `tfkit.errors.Stopped`.
- A second signal of the same kind stops at once, without waiting for the save in
  progress (`--resume` continues from the last complete checkpoint, as after a kill -9):
  a second SIGTERM ends the process by that signal (a shell reports 143), even while the main thread waits
  inside TensorFlow (a save, a collective) and runs no Python; a second SIGINT raises
  `KeyboardInterrupt` (the CLI exits 130; a notebook's kernel survives).
- A signal of the other kind replaces the request (`tfkit launch` passes a Ctrl-C on to
  its workers as SIGTERM: they still save).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from tfkit.console import end_line

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """A context manager turning SIGTERM/SIGINT into a stop request (main thread only;
    elsewhere it handles no signal and `requested` stays None).

    Example:
        with StopSignals() as stop:
            for step in ...:
                train_step()
                if stop.requested:
                    save()
                    raise Stopped(stop.requested, epoch, step)

    `install()` and `restore()` are the same as entering and leaving the context.
    """

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested == signum:  # Ctrl-C twice (a second SIGTERM never gets here)
            raise KeyboardInterrupt
        self.requested = signum
        if signum == signal.SIGTERM:
            # the next SIGTERM ends the process in the kernel, whatever the main thread does
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def install(self) -> StopSignals:
        """Handle SIGTERM and SIGINT from now on (a new request: `requested` is None)."""
        self.requested = None
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def restore(self) -> None:
        """Put back the handlers from before `install()`."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def __enter__(self) -> StopSignals:
        return self.install()

    def __exit__(self, *exc: Any) -> None:
        self.restore()


def end_progress_line(verbose: Any) -> None:
    """Finish a Keras progress bar's open line, so the next message starts a line
    (`tfkit.console.end_line`; nothing without a progress bar)."""
    if verbose == 1 or verbose == "auto":
        end_line()
