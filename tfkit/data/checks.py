"""Data that cannot train a meaningful model is refused before training, named and counted.

Checks on in-memory examples (NumPy; no TensorFlow here): feature and label dtypes, equal
lengths, NaN/Inf cells (`data.nan_policy: error | drop`), labels that fit the task and the
number of classes, and split and step counts. Each failure is a `UserError` naming the
file or key, the column or feature, and how many examples are affected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tfkit.errors import UserError


def _named_columns(x: Any) -> dict[str, np.ndarray]:
    return dict(x) if isinstance(x, dict) else {"x": x}


def numpy_file_problem(path: str | Path, err: Exception) -> str:
    """Why `np.load(path, allow_pickle=False)` failed, in words a user can act on.

    NumPy answers "contains pickled data ... allow_pickle" for any file that is neither a
    `.npy` nor a `.npz`; tfkit never loads pickles, so that hint is replaced.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as read_err:
        return read_err.strerror or str(read_err)
    text = str(err)
    if head.startswith(b"\x93NUMPY"):
        if "pickle" in text:
            return (
                "it holds an object array (Python objects, which tfkit never unpickles); "
                "save a rectangular numeric array with numpy.save"
            )
        return f"the .npy file is truncated or corrupt ({text}); save it again with numpy.save"
    if head.startswith(b"PK"):
        return f"the .npz file is truncated or corrupt ({text}); save it again with numpy.savez"
    return (
        "not a NumPy file (it starts with neither the .npy signature nor the .npz zip "
        "signature); write arrays with numpy.save (.npy) or numpy.savez (.npz)"
    )


def check_rows(x: Any, y: Any, where: str) -> None:
    """Each feature array and the labels must hold one row per example (not a 0-d value).

    Raises:
        UserError: naming the feature (or the labels) that is a single value.
    """
    named = {f"feature `{k}`": v for k, v in _named_columns(x).items()}
    if y is not None:
        named["the labels"] = y
    for what, value in named.items():
        if np.ndim(value) == 0:
            raise UserError(
                f"{where}: {what} is a single value ({np.asarray(value).dtype} scalar, a 0-d "
                "array), not one row per example; store an array whose first axis counts "
                "the examples"
            )


def check_dtypes(x: Any, y: Any, where: str) -> None:
    """Refuse complex, object (ragged) and text features, and text or complex labels.

    Raises:
        UserError: naming the feature or label and its dtype.
    """
    for name, col in _named_columns(x).items():
        col = np.asarray(col) if not isinstance(col, np.ndarray) else col
        if col.dtype.kind in "SU":
            sample = col.reshape(-1)[0] if col.size else ""
            raise UserError(
                f"{where}: feature `{name}` is text ({col.dtype}, e.g. {str(sample)[:20]!r}); "
                "tfkit models take numbers. Encode the text as numbers (class ids, one-hot "
                "or embeddings) before training"
            )
        if col.dtype.kind == "c":
            raise UserError(
                f"{where}: feature `{name}` is complex ({col.dtype}); tfkit would drop the "
                "imaginary part. Split it into real and imaginary features"
            )
        if col.dtype.kind == "O":
            raise UserError(
                f"{where}: feature `{name}` is an object array (ragged rows or mixed "
                "types); store a rectangular numeric array"
            )
    if y is None:
        return
    y = np.asarray(y) if not isinstance(y, np.ndarray) else y
    if y.dtype.kind in "SUO":
        sample = next((v for v in y.reshape(-1) if not isinstance(v, (int, float))), y.flat[0])
        raise UserError(
            f"{where}: the labels are text (e.g. {sample!r}); tfkit needs class ids 0..k-1 "
            "or numbers. Map each class name to an integer first"
        )
    if y.dtype.kind == "c":
        raise UserError(f"{where}: the labels are complex ({y.dtype}); expected real numbers")


def check_lengths(lengths: dict[str, int], where: str) -> None:
    """Every array must hold the same number of examples."""
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{k}: {v}" for k, v in lengths.items())
        raise UserError(
            f"{where}: arrays hold different numbers of examples ({listed}); each example "
            "needs features and a label"
        )


def nonfinite_rows(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per array, a boolean mask of the examples holding a NaN or an infinite value."""
    out = {}
    for name, a in arrays.items():
        if a is None or a.dtype.kind not in "fc":
            continue
        bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1) if a.ndim else np.zeros(0, bool)
        if bad.any():
            out[name] = bad
    return out


def apply_nan_policy(
    arrays,
    where: str,
    policy: str,
    feature_names: list[str] | None = None,
    hint: str = "Fix the data, or set data.nan_policy: drop to train without those examples",
):
    """Refuse (policy `error`) or drop (`drop`) examples with NaN/Inf features or labels.

    Args:
        arrays: a `tfkit.data.datasets.Arrays`, changed in place when rows are dropped.
        where: the file or key named in messages.
        policy: `error` or `drop`.
        feature_names: column names of a single feature matrix (CSV columns), to name the
            columns holding the bad cells.
        hint: what to do, ending the message.

    Returns:
        The number of dropped examples.
    """
    named = {f"feature `{k}`": np.asarray(v) for k, v in _named_columns(arrays.x).items()}
    if arrays.y is not None:
        named["the labels"] = np.asarray(arrays.y)
    if arrays.sample_weight is not None:
        named["sample_weight"] = np.asarray(arrays.sample_weight)
    bad = nonfinite_rows(named)
    if not bad:
        return 0
    rows = np.zeros(len(arrays), bool)
    for mask in bad.values():
        rows |= mask
    if policy == "drop":
        keep = ~rows
        if not keep.any():
            raise UserError(f"{where}: every example holds a NaN or infinite value")
        if isinstance(arrays.x, dict):
            arrays.x = {k: v[keep] for k, v in arrays.x.items()}
        else:
            arrays.x = arrays.x[keep]
        arrays.y = None if arrays.y is None else arrays.y[keep]
        if arrays.sample_weight is not None:
            arrays.sample_weight = arrays.sample_weight[keep]
        import logging

        logging.getLogger("tfkit.data").warning(
            "%s: dropped %d of %d examples holding NaN/Inf (data.nan_policy: drop)",
            where, int(rows.sum()), len(rows),
        )  # fmt: skip
        return int(rows.sum())
    parts = []
    for what, mask in bad.items():
        detail = ""
        a = named[what]
        if feature_names is not None and what == "feature `x`" and a.ndim == 2:
            cols = np.flatnonzero(~np.isfinite(a).all(axis=0))
            detail = " in column(s) " + ", ".join(f"`{feature_names[c]}`" for c in cols[:5])
        parts.append(f"{what}{detail}: {int(mask.sum())} example(s)")
    raise UserError(
        f"{where}: NaN or infinite values in " + "; ".join(parts) + f" of {len(rows)}. {hint}"
    )


def check_labels(y: np.ndarray, where: str, task: str | None, num_classes: int | None) -> None:
    """Labels must fit the task: class ids in 0..num_classes-1, two classes at least, 0/1
    for binary.

    Raises:
        UserError: naming the task, the label range and how many labels do not fit.
    """
    if y is None or task not in ("binary", "multiclass"):
        return
    y = np.asarray(y)
    if y.size == 0:
        return
    flat = y.argmax(-1) if y.ndim >= 2 and y.shape[-1] > 1 else y.reshape(-1)
    if flat.dtype.kind == "f" and not np.all(np.mod(flat, 1) == 0):
        raise UserError(
            f"{where}: data task `{task}` needs integer class ids, but the labels hold "
            f"fractions (e.g. {flat[np.mod(flat, 1) != 0][0]!r}); set data.task: regression"
        )
    values = np.unique(flat)
    low, high = values.min(), values.max()
    if task == "binary" and not set(values.tolist()) <= {0, 1}:
        raise UserError(
            f"{where}: data task `binary` needs labels 0 and 1, but the labels range over "
            f"{len(values)} values from {low:g} to {high:g}; set data.task: multiclass "
            "(or auto)"
        )
    k = num_classes or (2 if task == "binary" else int(high) + 1)
    outside = int(np.sum((flat < 0) | (flat >= k)))
    if outside:
        raise UserError(
            f"{where}: {outside} label(s) lie outside the classes 0..{k - 1} "
            f"(labels range from {low:g} to {high:g}); raise data.num_classes to "
            f"{int(high) + 1} or fix the labels"
        )
    if len(values) < 2:
        raise UserError(
            f"{where}: every one of the {flat.size} labels is {low:g}: a classifier needs "
            "at least two classes"
        )


def check_split_counts(counts: dict[str, int], fractions: dict[str, float], total: int) -> None:
    """A split asked for (fraction > 0) must hold at least one example."""
    for name, fraction in fractions.items():
        if fraction > 0 and counts.get(name, 0) == 0:
            need = 1.0 / total if total else 1.0
            raise UserError(
                f"`data.split.{name}` is {fraction:g} of {total} examples, which leaves the "
                f"{name} split empty; use at least {need:.3g} (one example) or set it to 0"
            )


def check_steps(counts: dict[str, int], batch_size: int, drop_remainder: bool) -> None:
    """With `drop_remainder`, each split must hold at least one full global batch."""
    if not drop_remainder:
        return
    for name, n in counts.items():
        if 0 < n < batch_size:
            raise UserError(
                f"`data.drop_remainder: true` with `data.batch_size: {batch_size}` leaves "
                f"0 steps in the {name} split ({n} examples); lower the batch size or set "
                "drop_remainder: false"
            )
