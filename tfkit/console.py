"""Whether stdout is in the middle of a line, so a message never glues onto a progress bar.

A Keras progress bar redraws its line with backspaces and `\\r` and writes the newline
only when its epoch ends. A message printed while that line is open (a stop, a user error
raised by a callback, a disk full at a checkpoint) would continue it. The CLI runs every
command inside `tracking_stdout()`; `end_line()` then finishes an open line and does
nothing at the start of a line. No TensorFlow is imported here (the CLI imports it).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any, TextIO


class _LineTracker:
    """A text stream that remembers whether the last text written to it ended a line."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self.line_open = False

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        if text:
            self.line_open = not text.endswith("\n")
        return written

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding, ...
        return getattr(self._stream, name)


@contextlib.contextmanager
def tracking_stdout() -> Iterator[None]:
    """Track `sys.stdout`'s open line for the block (see `end_line`)."""
    original = sys.stdout
    tracker = original if isinstance(original, _LineTracker) else _LineTracker(original)
    sys.stdout = tracker
    try:
        yield
    finally:
        if sys.stdout is tracker:
            sys.stdout = original


def end_line() -> None:
    """Finish stdout's open line (a progress bar's) so the next message starts a line.

    Inside `tracking_stdout()` nothing is written when stdout is at the start of a line;
    outside it the line's state is unknown and a newline is always written.
    """
    out = sys.stdout
    if isinstance(out, _LineTracker) and not out.line_open:
        return
    out.write("\n")
    out.flush()
