"""Metrics by name, and class weights (a dict or `balanced`, computed from the train labels)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import keras
import numpy as np

from tfkit.config import ClassPathConfig
from tfkit.data.spec import DataSpec
from tfkit.errors import UserError, unknown_name
from tfkit.keras_names import METRIC_NAMES, METRICS

# tfkit's own names; every other name of METRIC_NAMES is a Keras metric class (METRICS)
_TFKIT_METRICS: dict[str, Any] = {
    "accuracy": lambda: "accuracy",  # Keras picks the accuracy that matches the loss/labels
    "top5_accuracy": lambda: keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy"),
    "rmse": lambda: keras.metrics.RootMeanSquaredError(name="rmse"),
}


def _build_metric(key: str) -> Any:
    """The metric of a known lower-case name, named as the config names it (its log key)."""
    if key in _TFKIT_METRICS:
        return _TFKIT_METRICS[key]()
    return getattr(keras.metrics, METRICS[key])(name=key)


_CLASSIFICATION_ONLY = {
    "accuracy",
    "binary_accuracy",
    "categorical_accuracy",
    "sparse_categorical_accuracy",
    "top5_accuracy",
    "auc",
    "precision",
    "recall",
}


def build_metrics(
    names: Iterable[str | ClassPathConfig], spec: DataSpec | None = None
) -> list[Any]:
    """Keras metrics (objects, or `"accuracy"` for Keras to match) from their names, and
    metrics of your own from `{class_path, args}` entries.

    Raises:
        UserError: an unknown name (listing the valid ones), a classification metric on
            a regression dataset, or a class path that does not give a Keras metric.
    """
    out = []
    for i, name in enumerate(names):
        if isinstance(name, ClassPathConfig):
            from tfkit.extensions import instantiate

            out.append(
                instantiate(name, f"train.metrics[{i}]", keras.metrics.Metric, "Keras metric")
            )
            continue
        key = name.lower()
        if key not in METRIC_NAMES:
            raise unknown_name("metric", name, METRIC_NAMES)
        if spec is not None and spec.task == "regression" and key in _CLASSIFICATION_ONLY:
            raise UserError(
                f"`train.metrics` has `{name}`, a classification metric, but the data task is "
                "`regression` (data.task: auto takes float or negative labels for regression "
                "targets; set data.task for class ids). Use mae, mse or rmse"
            )
        if spec is not None and key in ("precision", "recall", "auc") and spec.task == "multiclass":
            raise UserError(
                f"`train.metrics` has `{name}`, which expects binary labels, but the data task is "
                f"`multiclass` ({spec.num_classes} classes)"
            )
        out.append(_build_metric(key))
    return out


def labels_of(dataset) -> np.ndarray:
    """Every label of a batched `(x, y[, w])` dataset as integer class ids."""
    parts = []
    for element in dataset:
        y = np.asarray(element[1])
        if y.ndim >= 2 and y.shape[-1] > 1:  # one-hot
            y = y.argmax(-1)
        parts.append(y.reshape(-1))
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros((0,), np.int64)


def resolve_class_weight(
    class_weight: dict[int, float] | str | None, spec: DataSpec, train_dataset=None
) -> dict[int, float] | None:
    """The `class_weight` dict for `fit`: as given, or `balanced` from the train labels.

    `balanced` weights class c by n / (k * n_c), as scikit-learn does.

    Raises:
        UserError: class weights on a regression task, or class ids outside the label range.
    """
    if class_weight is None:
        return None
    if spec.task == "regression":
        raise UserError(
            "`train.class_weight` is for classification, but the data task is `regression`"
        )
    if spec.has_sample_weight:
        raise UserError(
            "`train.class_weight` cannot be combined with the data's sample weights (Keras "
            "refuses both at once); fold the class weights into the sample weights"
        )
    k = spec.num_classes or 2
    if class_weight == "balanced":
        if train_dataset is None:
            raise UserError("`train.class_weight: balanced` needs the train split to count labels")
        labels = labels_of(train_dataset)
        counts = np.bincount(labels, minlength=k).astype(np.float64)
        n = counts.sum()
        return {c: float(n / (k * counts[c])) if counts[c] else 0.0 for c in range(k)}
    bad = sorted(c for c in class_weight if not 0 <= c < k)
    if bad:
        raise UserError(
            f"`train.class_weight` names classes {bad}, but the data has {k} classes (0..{k - 1})"
        )
    return {int(c): float(w) for c, w in class_weight.items()}
