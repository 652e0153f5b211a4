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
