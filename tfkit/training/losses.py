"""Losses by name, built from a `LossConfig`, plus tfkit's Huber loss written both Keras ways.

`build_loss(LossConfig(name="binary_focal_crossentropy", gamma=3.0))` returns a configured
`keras.losses.Loss`. Arguments a loss does not take are refused when they were set
explicitly (a `gamma` given to `mse` is a mistake, not a no-op).

The custom Huber loss exists twice, as the seed shows it:

- `huber(threshold)`: a factory returning a registered loss *function*;
- `HuberLoss(threshold)`: a registered `keras.losses.Loss` subclass with `get_config`.

Both equal `keras.losses.Huber(delta=threshold)` and both survive `.keras` round trips.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfkit.config import ClassPathConfig, LossConfig
from tfkit.data.spec import DataSpec
from tfkit.errors import UserError, unknown_name
from tfkit.keras_names import LOSS_ALIASES, LOSS_NAMES, LOSSES, loss_arguments

PACKAGE = "tfkit"

# --------------------------------------------------------------------------------------
# custom Huber
# --------------------------------------------------------------------------------------


def _huber_values(y_true, y_pred, threshold: float):
    """Per-example Huber loss (mean over the last axis), as `keras.losses.huber`."""
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    error = ops.subtract(y_pred, y_true)
    abs_error = ops.abs(error)
    threshold = ops.cast(threshold, y_pred.dtype)
    small = ops.multiply(0.5, ops.square(error))
    large = ops.subtract(
        ops.multiply(threshold, abs_error), ops.multiply(0.5, ops.square(threshold))
    )
    return ops.mean(ops.where(abs_error <= threshold, small, large), axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class HuberFn:
    """The loss function returned by `huber(threshold)`: a callable that keeps its threshold.

    Keras serializes plain functions by name only, which would lose the threshold; this
    small callable carries it in `get_config`, so a compiled model saved to `.keras`
    reloads with the same loss (safe mode on).
    """

    def __init__(self, threshold: float = 1.0):
        self.threshold = float(threshold)
        self.__name__ = "huber_fn"

    def __call__(self, y_true, y_pred):
        return _huber_values(y_true, y_pred, self.threshold)

    def get_config(self) -> dict[str, Any]:
        return {"threshold": self.threshold}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> HuberFn:
        return cls(**config)


def huber(threshold: float = 1.0) -> HuberFn:
    """Return a Huber loss function with the given threshold (the seed's factory style).

    Args:
        threshold: where the loss turns from quadratic to linear (> 0).

    Example:
        >>> model.compile(optimizer="adam", loss=huber(2.0))
    """
    if threshold <= 0:
        raise UserError(f"`threshold` of huber must be > 0. Received: threshold={threshold}")
    return HuberFn(threshold)


@keras.saving.register_keras_serializable(package=PACKAGE)
class HuberLoss(keras.losses.Loss):
    """Huber loss as a `keras.losses.Loss` subclass (the seed's class style).

    Args:
        threshold: where the loss turns from quadratic to linear (> 0).
        **kwargs: `reduction`, `name`, `dtype` as for any Keras loss.

    Example:
        >>> model.compile(optimizer="adam", loss=HuberLoss(threshold=2.0))
    """

    def __init__(self, threshold: float = 1.0, name: str = "huber_loss", **kwargs):
        if threshold <= 0:
            raise UserError(
                f"`threshold` of HuberLoss must be > 0. Received: threshold={threshold}"
            )
        super().__init__(name=name, **kwargs)
        self.threshold = float(threshold)

    def call(self, y_true, y_pred):
        return _huber_values(y_true, y_pred, self.threshold)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"threshold": self.threshold})
        return config


# --------------------------------------------------------------------------------------
# losses by name
# --------------------------------------------------------------------------------------


def _loss_class(name: str) -> Any:
    """The Loss class of a canonical name (tfkit's HuberLoss for `huber`)."""
    return HuberLoss if name == "huber" else getattr(keras.losses, LOSSES[name][0])


_PER_TASK = {
    "binary": "binary_crossentropy",
    "regression": "mse",
}


def default_loss_name(spec: DataSpec) -> str:
    """The loss that fits a dataset's task and label format."""
    if spec.task == "multiclass":
        return "categorical_crossentropy" if spec.one_hot else "sparse_categorical_crossentropy"
    return _PER_TASK[spec.task]


def resolve_loss_name(name: str, spec: DataSpec | None = None) -> str:
    """Canonical loss name (`auto`/aliases resolved against the spec), or a UserError."""
    key = name.lower()
    if key not in LOSS_NAMES:
        raise unknown_name("loss", name, LOSS_NAMES)
    key = LOSS_ALIASES.get(key, key)
    if key == "auto":
        if spec is None:
            raise UserError("`train.loss.name: auto` needs the dataset spec to choose a loss")
        key = default_loss_name(spec)
    return key


def loss_name_of(cfg: LossConfig | ClassPathConfig | str, spec: DataSpec | None) -> str | None:
    """The canonical name of a configured loss; None for a loss class of your own."""
    if isinstance(cfg, ClassPathConfig):
        return None
    return resolve_loss_name(cfg if isinstance(cfg, str) else cfg.name, spec)


def _check_fits_data(name: str, spec: DataSpec) -> None:
    """Refuse a loss that cannot work with the dataset's labels, naming both sides."""
    label = f"data task `{spec.task}`" + (" with one-hot labels" if spec.one_hot else "")
    kind = LOSSES[name][0]
    if kind == "SparseCategoricalCrossentropy" and spec.one_hot:
        raise UserError(
            f"`train.loss.name: {name}` expects integer labels, but the {label}. "
            "Use `categorical_crossentropy` or set `data.one_hot: false`"
        )
    if kind.startswith("Categorical") and spec.task == "multiclass" and not spec.one_hot:
        raise UserError(
            f"`train.loss.name: {name}` expects one-hot labels, but the {label} has integer "
            "labels. Use `sparse_categorical_crossentropy` or set `data.one_hot: true`"
        )
    if kind.endswith("CategoricalCrossentropy") and spec.task != "multiclass":
        raise UserError(
            f"`train.loss.name: {name}` is for multiclass labels, but the {label}; set "
            "`data.task: multiclass` (two classes train a two-unit softmax) or choose a loss "
            "for that task"
        )
    if kind.startswith("Binary") and spec.task == "regression":
        raise UserError(f"`train.loss.name: {name}` is for 0/1 labels, but the {label}")


def build_loss(cfg: LossConfig | str, spec: DataSpec | None = None) -> keras.losses.Loss:
    """Build a Keras loss from its config.

    Args:
        cfg: the `train.loss` section (or just a name).
        spec: the dataset spec, used for `auto` and to check the loss fits the labels.

    Returns:
        A configured `keras.losses.Loss`.

    Raises:
        UserError: unknown name (listing the valid ones), an argument the loss does not
            take, or a loss that does not fit the labels.
    """
    if isinstance(cfg, ClassPathConfig):
        from tfkit.extensions import instantiate

        return instantiate(cfg, "train.loss", keras.losses.Loss, "Keras loss")
    if isinstance(cfg, str):
        cfg = LossConfig(name=cfg)
    name = resolve_loss_name(cfg.name, spec)
    cls, takes = _loss_class(name), loss_arguments(name)
    # a resolved config (config.yaml) spells out every default, so only values that differ
    # from the default count as "given"
    given = {
        k
        for k in cfg.model_fields_set - {"name", "reduction"}
        if getattr(cfg, k) != LossConfig.model_fields[k].default
    }
    refused = sorted(given - set(takes))
    if refused:
        accepted = ", ".join(["reduction", *takes])
        raise UserError(
            f"`train.loss` {name} does not take {', '.join(refused)}. "
            f"It accepts: {accepted}. Received: "
            + ", ".join(f"{k}={getattr(cfg, k)!r}" for k in refused)
        )
    if spec is not None:
        _check_fits_data(name, spec)
    # only the values that differ from the defaults: a Keras loss keeps its own defaults
    # (Tversky's alpha is 0.5, not the focal 0.25 of `train.loss.alpha`)
    kwargs: dict[str, Any] = {k: getattr(cfg, k) for k in takes if k in given}
    if name == "huber":
        kwargs = {"threshold": cfg.delta}
    return cls(reduction=cfg.reduction, **kwargs)
