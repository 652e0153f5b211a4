"""Import TensorFlow without its start-up noise on stderr.

Loading TensorFlow's C++ libraries prints lines before any Python code can configure
logging: absl's "All log messages before absl::InitializeLog() ..." banner, the oneDNN
notice, "Could not find cuda drivers", the `cpu_feature_guard` instructions and, at the
first device query, "failed call to cuInit" on a machine without a GPU driver.
`TF_CPP_MIN_LOG_LEVEL` silences none of the import-time lines (they come before absl reads
it). `import_tensorflow()` therefore points file descriptor 2 at a temporary file while
TensorFlow loads and enumerates its devices, then writes back every captured line that is
not one of those known notices: a real error (e.g. a CUDA driver that exists and fails)
still reaches the user. No TensorFlow is imported by this module itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

# absl log line: severity letter, MMDD, time, thread id, file:line]
_ABSL = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ ([\w.]+):\d+\] ")
_BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_CPU_FEATURES_TAIL = re.compile(r"^To enable the following instructions: .* compiler flags\.$")
_NO_DRIVER = "Could not find cuda drivers on your machine"
_CUINIT = "failed call to cuInit"


def wants_framework_logs() -> bool:
    """Whether the user asked for TensorFlow's C++ log lines by setting
    `TF_CPP_MIN_LOG_LEVEL` to 0 or 1 themselves."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() in ("0", "1")


def drop_noise(text: str) -> str:
    """`text` without TensorFlow's start-up notices (keeps everything else, in order).

    Dropped: absl's pre-initialization banner, INFO and WARNING lines of the C++ logger
    (what `TF_CPP_MIN_LOG_LEVEL=2` hides once absl is initialized), the second line of the
    `cpu_feature_guard` notice, and the cuInit error when the same output says no CUDA
    driver exists (a machine without a GPU). Every other line, including other C++ errors,
    is kept.
    """
    no_driver = _NO_DRIVER in text
    kept = []
    for line in text.splitlines(keepends=True):
        stripped = line.rstrip("\n")
        match = _ABSL.match(stripped)
        if stripped == _BANNER or _CPU_FEATURES_TAIL.match(stripped):
            continue
        if match and match.group(1) in "IW":
            continue
        if match and no_driver and _CUINIT in stripped:
            continue
        kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Send file descriptor 2 (C++ and Python stderr alike) to a temporary file for the
    duration of the block, then write what was captured, minus `drop_noise`, to stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = drop_noise(capture.read().decode("utf-8", "replace"))
            if text:
                sys.stderr.write(text)
                sys.stderr.flush()


def import_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow and enumerate its devices, keeping stderr free of start-up notices.

    Args:
        verbose: show every line TensorFlow prints (also when the user set
            `TF_CPP_MIN_LOG_LEVEL` to 0 or 1).
    """
    if "tensorflow" in sys.modules:
        return
    if verbose or wants_framework_logs():
        import tensorflow  # noqa: F401

        return
    with filtered_stderr():
        import tensorflow as tf

        # the first device query is where a machine without a GPU driver logs cuInit errors
        tf.config.list_physical_devices()


# C++ error lines a multi-worker run prints when a peer is lost, before the Python error
# that tfkit turns into its one line (`tfkit.errors.WorkerLost`): the collective executor's
# abort, gRPC's details and the coordination service's heartbeat reports
_PEER_LOSS_SOURCES = re.compile(
    r"^[IWEF]\d{4} [\d:.]+\s+\d+ (\w*collective\w*|ring_\w+|hierarchical_tree_broadcaster"
    r"|permuter|coordination\w*|\w*grpc\w*|rpc_\w+)\.cc:\d+\] "
)


class _PeerLossFilter:
    """Fd 2 through a pipe and one reader thread that drops the C++ lines of a lost peer."""

    def __init__(self) -> None:
        import threading

        sys.stderr.flush()
        self.saved = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self.reader = os.fdopen(read, "rb", buffering=0)
        self.thread = threading.Thread(target=self._pump, name="tfkit-stderr", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        # A C++ log message, continuation lines included, reaches the pipe in one write, so
        # one read returns it whole; lines after a dropped message's first line in the same
        # read are its continuation, up to the next log line or a line of tfkit's own.
        partial = b""
        while chunk := os.read(self.reader.fileno(), 65536):
            *lines, partial = (partial + chunk).split(b"\n")
            kept, dropping = [], False
            for raw in lines:
                line = raw.decode("utf-8", "replace")
                if _PEER_LOSS_SOURCES.match(line):
                    dropping = True
                elif _ABSL.match(line) or line.startswith("tfkit"):
                    dropping = False
                if not dropping:
                    kept.append(raw + b"\n")
            if kept:
                os.write(self.saved, b"".join(kept))
        if partial:
            os.write(self.saved, partial)

    def close(self) -> None:
        """Point fd 2 back at the real stderr and write out what the pipe still holds."""
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(self.saved, 2)  # closes the pipe's last write end: the reader sees EOF
        self.thread.join(timeout=5)


_PEER_FILTER: _PeerLossFilter | None = None


def hide_peer_loss_logs() -> None:
    """From now on, drop the C++ error lines a lost multi-worker peer causes from stderr
    (tfkit reports the loss in one line); everything else passes through. Not when the
    user asked for TensorFlow's logs (`TF_CPP_MIN_LOG_LEVEL` 0 or 1). Idempotent."""
    global _PEER_FILTER
    if _PEER_FILTER is None and not wants_framework_logs():
        import atexit

        _PEER_FILTER = _PeerLossFilter()
        # the reader is a daemon thread: what it still holds at exit must be written first
        atexit.register(flush_stderr)


def flush_stderr() -> None:
    """Write out every stderr line still in `hide_peer_loss_logs`' pipe (before the process
    ends with `os._exit`, which would drop them)."""
    global _PEER_FILTER
    if _PEER_FILTER is not None:
        _PEER_FILTER.close()
        _PEER_FILTER = None
