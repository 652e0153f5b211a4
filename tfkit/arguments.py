"""Range-checked argument types for the `tfkit` command line (no TensorFlow here).

Each function takes the argument's text and returns its value or raises
`argparse.ArgumentTypeError` with what was expected; the parser turns that into one line
naming the flag, and exit status 2, before any command starts.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

MAX_SEEDS = 4096  # images per `gan generate` call: one grid must fit in memory
MAX_SEED = 2**32 - 1  # numpy's RandomState takes seeds in [0, 2**32)


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {what}. Received: {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number. Received: {text!r}")
    return value


def int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer type in [low, high] (high: no limit when None)."""

    def parse(text: str) -> int:
        value = int(_number(text, int))
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"must be an integer {bound}. Received: {text}")
        return value

    parse.__name__ = "integer"
    return parse


def power_of_two(text: str) -> int:
    """A positive power of two (image resolutions)."""
    value = int(_number(text, int))
    if value < 1 or value & (value - 1):
        raise argparse.ArgumentTypeError(f"must be a power of two. Received: {text}")
    return value


def float_above(low: float, *, inclusive: bool = False) -> Callable[[str], float]:
    """A finite float type > low (>= low when `inclusive`)."""

    def parse(text: str) -> float:
        value = float(_number(text, float))
        if value < low or (value == low and not inclusive):
            op = ">=" if inclusive else ">"
            raise argparse.ArgumentTypeError(f"must be a number {op} {low:g}. Received: {text}")
        return value

    parse.__name__ = "number"
    return parse


def probability(text: str) -> float:
    """A number in [0, 1]."""
    value = float(_number(text, float))
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1]. Received: {text}")
    return value


def finite_float(text: str) -> float:
    """Any finite float (`nan`, `inf` refused)."""
    return float(_number(text, float))


def port(text: str) -> int:
    """A TCP port in 1..65535, or 0 for "pick free ports"."""
    value = int(_number(text, int))
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"must be a port in 1..65535 (0: free ports). Received: {text}"
        )
    return value


def parse_seeds(text: str) -> list[int]:
    """`0-3,7` -> [0, 1, 2, 3, 7]: at most `MAX_SEEDS` seeds, each in [0, 2**32).

    Raises:
        ValueError: not a comma-separated list of integers and ranges, an empty or
            reversed range, a seed out of range, or too many seeds (without building them).
    """
    parts = []
    total = 0
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        a, sep, b = part.partition("-")
        try:
            low, high = (int(a), int(b)) if sep else (int(part), int(part))
        except ValueError:
            raise ValueError(
                f"expects integers and ranges like 0-63 or 1,5,9. Received: {text!r}"
            ) from None
        if low > high:
            raise ValueError(f"range {part} is empty (start > end). Received: {text!r}")
        if low < 0 or high > MAX_SEED:
            raise ValueError(f"seeds must be in [0, {MAX_SEED}]. Received: {part}")
        total += high - low + 1
        if total > MAX_SEEDS:
            raise ValueError(
                f"names more than {MAX_SEEDS} seeds (one grid per call); generate fewer, e.g. "
                f"0-{MAX_SEEDS - 1}, and call again. Received: {text!r}"
            )
        parts.append((low, high))
    if not parts:
        raise ValueError(f"expects integers and ranges like 0-63 or 1,5,9. Received: {text!r}")
    return [s for low, high in parts for s in range(low, high + 1)]


def seeds(text: str) -> str:
    """An argparse type checking a `--seeds` list (the command parses it again)."""
    try:
        parse_seeds(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _check_parents(text: str) -> None:
    from pathlib import Path

    if not text:
        raise argparse.ArgumentTypeError("expected a path. Received: ''")
    parent = Path(text).parent
    for ancestor in (parent, *parent.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise argparse.ArgumentTypeError(
                    f"{text} is below {ancestor}, which is a file, not a directory"
                )
            break


def output_file(text: str) -> str:
    """A file to write: not a directory, and no existing parent of it is a regular file.

    Checked when the command line is parsed, so `--output results.csv/y.npy` fails at once
    instead of after predicting.
    """
    import os

    _check_parents(text)
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a directory; expected a file name")
    return text


def output_dir(text: str) -> str:
    """A directory to write into: not a regular file, and no existing parent is a file."""
    import os

    _check_parents(text)
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a file; expected a directory")
    return text


# file types `tfkit predict` reads and writes
PREDICT_INPUTS = (".npy", ".npz", ".csv", ".parquet")
PREDICT_OUTPUTS = (".npy", ".npz", ".csv")
# what `tfkit predict` says about images of another size than the model's input
PREDICT_RESIZE_HINT = (
    "; resize them first, or pass --resize to resize them (bilinear) as they are read"
)


def _suffix_list(suffixes: tuple[str, ...]) -> str:
    return ", ".join(suffixes[:-1]) + f" or {suffixes[-1]}" if len(suffixes) > 1 else suffixes[0]


def input_file(suffixes: tuple[str, ...], *, directory: str = "") -> Callable[[str], str]:
    """An existing file with one of `suffixes` (or, when `directory` names what one holds,
    an existing directory)."""
    from pathlib import Path

    expected = _suffix_list(suffixes) + (
        f" file, or a directory of {directory}" if directory else ""
    )

    def parse(text: str) -> str:
        path = Path(text)
        if not path.exists():
            raise argparse.ArgumentTypeError(f"{text}: file not found")
        if path.is_dir() and directory:
            return text
        if path.is_dir() or path.suffix not in suffixes:
            raise argparse.ArgumentTypeError(f"expected a {expected}. Received: {text}")
        return text

    parse.__name__ = "input file"
    return parse


def output_file_of(suffixes: tuple[str, ...], *, ignore_case: bool = False) -> Callable[[str], str]:
    """An `output_file` whose name ends with one of `suffixes`."""
    from pathlib import Path

    def parse(text: str) -> str:
        output_file(text)
        suffix = Path(text).suffix
        if (suffix.lower() if ignore_case else suffix) not in suffixes:
            raise argparse.ArgumentTypeError(
                f"expected a file name ending in {_suffix_list(suffixes)}. Received: {text}"
            )
        return text

    parse.__name__ = "output file"
    return parse
