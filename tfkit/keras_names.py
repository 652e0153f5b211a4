"""The Keras names a config may use, as static tables: no TensorFlow, no Keras import.

`tfkit config validate` checks loss, metric, activation and callback names (and callback
arguments) against these tables without importing Keras, and the training code builds
from the same tables, so a config the validator accepts is a config `train` accepts.
`tests/test_keras_names.py` regenerates every table from Keras itself and fails when
they drift (a new Keras release adding a loss, say).
"""

from __future__ import annotations

import difflib
from typing import Any

# loss name -> (class in keras.losses, the `train.loss` fields it takes besides `reduction`).
# Every lower-case name `keras.losses.get` knows; `huber` is tfkit's own HuberLoss (equal to
# keras.losses.Huber), `auto` picks the loss from the data and `crossentropy` is its alias.
LOSSES: dict[str, tuple[str, tuple[str, ...]]] = {
    "bce": ("BinaryCrossentropy", ("from_logits", "label_smoothing")),
    "binary_crossentropy": ("BinaryCrossentropy", ("from_logits", "label_smoothing")),
    "binary_focal_crossentropy": (
        "BinaryFocalCrossentropy",
        ("from_logits", "label_smoothing", "gamma", "alpha", "apply_class_balancing"),
    ),
    "categorical_crossentropy": ("CategoricalCrossentropy", ("from_logits", "label_smoothing")),
    "categorical_focal_crossentropy": (
        "CategoricalFocalCrossentropy",
        ("from_logits", "label_smoothing", "gamma", "alpha"),
    ),
    "categorical_hinge": ("CategoricalHinge", ()),
    "circle": ("Circle", ("gamma",)),
    "cosine_similarity": ("CosineSimilarity", ()),
    "ctc": ("CTC", ()),
    "dice": ("Dice", ()),
    "hinge": ("Hinge", ()),
    "huber": ("Huber", ("delta",)),
    "kl_divergence": ("KLDivergence", ()),
    "kld": ("KLDivergence", ()),
    "log_cosh": ("LogCosh", ()),
    "mae": ("MeanAbsoluteError", ()),
    "mape": ("MeanAbsolutePercentageError", ()),
    "mean_absolute_error": ("MeanAbsoluteError", ()),
    "mean_absolute_percentage_error": ("MeanAbsolutePercentageError", ()),
    "mean_squared_error": ("MeanSquaredError", ()),
    "mean_squared_logarithmic_error": ("MeanSquaredLogarithmicError", ()),
    "mse": ("MeanSquaredError", ()),
    "msle": ("MeanSquaredLogarithmicError", ()),
    "poisson": ("Poisson", ()),
    "sparse_categorical_crossentropy": ("SparseCategoricalCrossentropy", ("from_logits",)),
    "squared_hinge": ("SquaredHinge", ()),
    "tversky": ("Tversky", ("alpha",)),
}
LOSS_ALIASES = {"crossentropy": "auto"}
LOSS_NAMES: tuple[str, ...] = tuple(sorted([*LOSSES, *LOSS_ALIASES, "auto"]))

# metric name -> class in keras.metrics: every lower-case name keras.metrics knows whose
# class needs no constructor argument, but the accumulators `mean`, `sum` and the bases.
# The metric is built with `name=<config name>`, so its log key is the name in the config.
METRICS: dict[str, str] = {
    "auc": "AUC",
    "bce": "BinaryCrossentropy",
    "binary_accuracy": "BinaryAccuracy",
    "binary_crossentropy": "BinaryCrossentropy",
    "binary_io_u": "BinaryIoU",
    "categorical_accuracy": "CategoricalAccuracy",
    "categorical_crossentropy": "CategoricalCrossentropy",
    "categorical_hinge": "CategoricalHinge",
    "concordance_correlation": "ConcordanceCorrelation",
    "cosine_similarity": "CosineSimilarity",
    "f1_score": "F1Score",
    "f_beta_score": "FBetaScore",
    "false_negatives": "FalseNegatives",
    "false_positives": "FalsePositives",
    "hinge": "Hinge",
    "kl_divergence": "KLDivergence",
    "log_cosh_error": "LogCoshError",
    "mae": "MeanAbsoluteError",
    "mape": "MeanAbsolutePercentageError",
    "mean_absolute_error": "MeanAbsoluteError",
    "mean_absolute_percentage_error": "MeanAbsolutePercentageError",
    "mean_squared_error": "MeanSquaredError",
    "mean_squared_logarithmic_error": "MeanSquaredLogarithmicError",
    "mse": "MeanSquaredError",
    "msle": "MeanSquaredLogarithmicError",
    "pearson_correlation": "PearsonCorrelation",
    "poisson": "Poisson",
    "precision": "Precision",
    "r2_score": "R2Score",
    "recall": "Recall",
    "root_mean_squared_error": "RootMeanSquaredError",
    "sparse_categorical_accuracy": "SparseCategoricalAccuracy",
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
    "sparse_top_k_categorical_accuracy": "SparseTopKCategoricalAccuracy",
    "squared_hinge": "SquaredHinge",
    "top_k_categorical_accuracy": "TopKCategoricalAccuracy",
    "true_negatives": "TrueNegatives",
    "true_positives": "TruePositives",
}
# tfkit's own names: `accuracy` lets Keras pick the accuracy matching the labels
TFKIT_METRICS = ("accuracy", "rmse", "top5_accuracy")
METRIC_NAMES: tuple[str, ...] = tuple(sorted([*METRICS, *TFKIT_METRICS]))

# every name `keras.activations.get` accepts
ACTIVATIONS: tuple[str, ...] = (
    "celu", "elu", "exponential", "gelu", "glu", "hard_shrink", "hard_sigmoid", "hard_silu",
    "hard_swish", "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish",
    "relu", "relu6", "selu", "sigmoid", "silu", "soft_shrink", "softmax", "softplus",
    "softsign", "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus", "swish", "tanh",
    "tanh_shrink", "threshold",
)  # fmt: skip

# callback name -> {argument: kind}; kind is `number` (int or float, not a boolean), `int`,
# `bool`, `str` or `any`. Path arguments and Throughput's batch size are filled in by tfkit.
CALLBACKS: dict[str, dict[str, str]] = {
    "backup_and_restore": {
        "backup_dir": "str", "save_freq": "any", "double_checkpoint": "bool",
        "delete_checkpoint": "bool",
    },
    "csv_logger": {"filename": "str", "separator": "str", "append": "bool"},
    "early_stopping": {
        "monitor": "str", "min_delta": "number", "patience": "int", "verbose": "int",
        "mode": "str", "baseline": "any", "restore_best_weights": "bool",
        "start_from_epoch": "int",
    },
    "last_checkpoint": {"path": "str", "min_interval_s": "number", "save_at_end": "bool"},
    "metrics_logger": {"path": "str"},
    "model_checkpoint": {
        "filepath": "str", "monitor": "str", "verbose": "int", "save_best_only": "bool",
        "save_weights_only": "bool", "mode": "str", "save_freq": "any",
        "initial_value_threshold": "any",
    },
    "reduce_lr_on_plateau": {
        "monitor": "str", "factor": "number", "patience": "int", "verbose": "int",
        "mode": "str", "min_delta": "number", "cooldown": "int", "min_lr": "number",
    },
    "tensorboard": {
        "log_dir": "str", "histogram_freq": "int", "write_graph": "bool",
        "write_images": "bool", "write_steps_per_second": "bool", "update_freq": "any",
        "profile_batch": "any", "embeddings_freq": "int", "embeddings_metadata": "any",
    },
    "terminate_on_nan": {"raise_error": "bool"},
    "throughput": {"batch_size": "int", "log_dir": "any"},
}  # fmt: skip
CALLBACK_NAMES: tuple[str, ...] = tuple(sorted(CALLBACKS))
# values Keras would only warn about (or misuse silently): argument -> (test, expected)
CALLBACK_VALUES: dict[str, tuple[Any, str]] = {
    "mode": (lambda v: v in ("auto", "min", "max"), "one of auto, min, max"),
    "patience": (lambda v: v >= 0, "an integer >= 0"),
    "cooldown": (lambda v: v >= 0, "an integer >= 0"),
    "start_from_epoch": (lambda v: v >= 0, "an integer >= 0"),
    "min_lr": (lambda v: v >= 0, "a number >= 0"),
    "histogram_freq": (lambda v: v >= 0, "an integer >= 0"),
    "embeddings_freq": (lambda v: v >= 0, "an integer >= 0"),
    "min_interval_s": (lambda v: v >= 0, "a number >= 0"),
    "batch_size": (lambda v: v >= 1, "an integer >= 1"),
}
# the same argument name with another range in one callback
CALLBACK_VALUES_OF: dict[tuple[str, str], tuple[Any, str]] = {
    ("reduce_lr_on_plateau", "factor"): (lambda v: 0 < v < 1, "a number in (0, 1)"),
}

# keys tfkit adds to the epoch logs (Throughput) and Keras' learning-rate entry
EXTRA_LOG_KEYS = ("examples_per_sec", "step_ms", "learning_rate")


def _unknown(kind: str, name: Any, valid: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.6)
    hint = f" Did you mean `{close[0]}`?" if close else ""
    kinds = f"{kind}es" if kind.endswith("s") else f"{kind}s"
    return f"unknown {kind} {name!r}.{hint} Valid {kinds}: {', '.join(sorted(valid))}"


def check_loss_name(name: str) -> str:
    """`name` if it is a loss `train` builds, else a ValueError listing the valid ones."""
    if name.lower() not in LOSS_NAMES:
        raise ValueError(_unknown("loss", name, LOSS_NAMES))
    return name


def loss_arguments(name: str) -> tuple[str, ...]:
    """The `train.loss` fields a loss takes besides `reduction` (none for `auto`)."""
    key = LOSS_ALIASES.get(name.lower(), name.lower())
    return LOSSES[key][1] if key in LOSSES else ()


def check_metric_name(name: str) -> str:
    """`name` if it is a metric `train` builds, else a ValueError listing the valid ones."""
    if name.lower() not in METRIC_NAMES:
        raise ValueError(_unknown("metric", name, METRIC_NAMES))
    return name


def check_activation_name(name: str | None) -> str | None:
    """`name` (or None, or `auto`) if Keras has that activation, else a ValueError."""
    if name is None or name == "auto" or name in ACTIVATIONS:
        return name
    raise ValueError(_unknown("activation", name, ACTIVATIONS))


def _fits(kind: str, value: Any) -> bool:
    if value is None or kind == "any":
        return True
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int)
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")


def callback_problems(name: str, args: dict[str, Any]) -> list[str]:
    """What is wrong with a `{name, args}` callback entry (empty when nothing)."""
    key = name.lower()
    if key not in CALLBACKS:
        return [_unknown("callback", name, CALLBACK_NAMES)]
    takes = CALLBACKS[key]
    problems = []
    unknown = sorted(set(args) - set(takes))
    if unknown:
        problems.append(f"{key} does not take {', '.join(unknown)}. Valid args: {', '.join(takes)}")
    for arg, value in args.items():
        kind = takes.get(arg)
        if kind is not None and not _fits(kind, value):
            expected = {"number": "a finite number", "int": "an integer"}.get(kind, f"a {kind}")
            problems.append(f"{key} argument `{arg}` must be {expected}. Received: {value!r}")
            continue
        rule = CALLBACK_VALUES_OF.get((key, arg)) or CALLBACK_VALUES.get(arg)
        if kind is not None and value is not None and rule and not rule[0](value):
            problems.append(f"{key} argument `{arg}` must be {rule[1]}. Received: {value!r}")
    return problems


def log_keys(metrics: list[str]) -> list[str]:
    """The keys of `fit`'s epoch logs for these metrics: loss, each metric, their `val_`."""
    base = ["loss", *(m.lower() for m in metrics)]
    return [*base, *(f"val_{k}" for k in base), *EXTRA_LOG_KEYS]
