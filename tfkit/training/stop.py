"""Stop requests from signals: SIGTERM (schedulers, `kill`) and SIGINT (Ctrl-C).

Inside `StopSignals()` the first SIGTERM or SIGINT only records a request; the training
loop checks `requested` at its next step boundary, saves what `--resume` needs and raises
`tfkit.errors.Stopped` (exit 143 or 130). A second signal of the same kind acts at once:
SIGINT raises `KeyboardInterrupt`, SIGTERM terminates the process.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from tfkit.console import end_line

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """A context manager turning SIGTERM/SIGINT into a stop request (main thread only).

    Example:
        with StopSignals() as stop:
            for step in ...:
                train_step()
                if stop.requested:
                    save()
                    raise Stopped(stop.requested, epoch, step)
    """

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested == signum:  # asked twice: stop now
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.requested = signum

    def __enter__(self) -> StopSignals:
        self.requested = None
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()


def end_progress_line(verbose: Any) -> None:
    """Finish a Keras progress bar's open line, so the next message starts a line
    (`tfkit.console.end_line`; nothing without a progress bar)."""
    if verbose == 1 or verbose == "auto":
        end_line()
