"""Optimizers and learning-rate schedules from an `OptimizerConfig`.

`build_optimizer(cfg)` returns a Keras optimizer (SGD, Adam, AdamW, RMSprop) with gradient
clipping and weight EMA as configured. Schedules (`constant`, `cosine`, `exponential`,
`piecewise`) may start with a linear warm-up; `WarmupSchedule` is a serializable
`keras.optimizers.schedules.LearningRateSchedule`, so a saved `.keras` model keeps it.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfkit.config import OptimizerConfig, ScheduleConfig
from tfkit.errors import UserError, unknown_name

OPTIMIZER_NAMES = ("adam", "adamw", "rmsprop", "sgd")


@keras.saving.register_keras_serializable(package="tfkit")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then the wrapped schedule.

    The wrapped schedule sees steps counted from the end of the warm-up, so a cosine decay
    of `decay_steps` lasts `decay_steps` after warm-up.

    Args:
        after: the schedule after warm-up (a `LearningRateSchedule`) or a constant float.
        warmup_steps: number of warm-up steps (>= 1).
        peak: the learning rate at the end of the warm-up (default: `after(0)`).
    """

    def __init__(self, after: Any, warmup_steps: int, peak: float | None = None):
        if warmup_steps < 1:
            raise UserError(f"`warmup_steps` must be >= 1. Received: warmup_steps={warmup_steps}")
        self.after = after
        self.warmup_steps = int(warmup_steps)
        if peak is None:
            peak = float(after) if isinstance(after, (int, float)) else float(after(0))
        self.peak = float(peak)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = self.peak * (step + 1.0) / float(self.warmup_steps)
        if isinstance(self.after, (int, float)):
            later = ops.cast(self.after, "float32")
        else:
            later = ops.cast(self.after(ops.maximum(step - self.warmup_steps, 0.0)), "float32")
        return ops.where(step < self.warmup_steps, warm, later)

    def get_config(self) -> dict[str, Any]:
        after = self.after
        if not isinstance(after, (int, float)):
            after = keras.saving.serialize_keras_object(after)
        return {"after": after, "warmup_steps": self.warmup_steps, "peak": self.peak}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> WarmupSchedule:
        config = dict(config)
        if isinstance(config["after"], dict):
            config["after"] = keras.saving.deserialize_keras_object(config["after"])
        return cls(**config)


def build_schedule(cfg: ScheduleConfig, learning_rate: float) -> Any:
    """A learning rate (float) or `LearningRateSchedule` from the `optimizer.schedule` config.

    Raises:
        UserError: piecewise boundaries/values that do not match.
    """
    schedules = keras.optimizers.schedules
    if cfg.name == "constant":
        after: Any = float(learning_rate)
    elif cfg.name == "cosine":
        after = schedules.CosineDecay(learning_rate, decay_steps=cfg.decay_steps, alpha=cfg.alpha)
    elif cfg.name == "exponential":
        after = schedules.ExponentialDecay(
            learning_rate,
            decay_steps=cfg.decay_steps,
            decay_rate=cfg.decay_rate,
            staircase=cfg.staircase,
        )
    elif cfg.name == "piecewise":
        if not cfg.boundaries or len(cfg.values) != len(cfg.boundaries) + 1:
            raise UserError(
                "`train.optimizer.schedule` piecewise needs len(values) == len(boundaries) + 1 "
                f"and at least one boundary. Received: boundaries={cfg.boundaries}, values={cfg.values}"
            )
        if list(cfg.boundaries) != sorted(cfg.boundaries):
            raise UserError(
                "`train.optimizer.schedule.boundaries` must be increasing. "
                f"Received: boundaries={cfg.boundaries}"
            )
        after = schedules.PiecewiseConstantDecay(
            list(cfg.boundaries), [float(v) for v in cfg.values]
        )
    else:  # pragma: no cover - the config Literal prevents this
        raise unknown_name("schedule", cfg.name, ["constant", "cosine", "exponential", "piecewise"])
    if cfg.warmup_steps:
        return WarmupSchedule(after, cfg.warmup_steps)
    return after


def build_optimizer(cfg: OptimizerConfig | str) -> keras.optimizers.Optimizer:
    """Build a Keras optimizer from the `train.optimizer` config.

    Args:
        cfg: the optimizer section (or just a name).

    Returns:
        A fresh `keras.optimizers.Optimizer` (build one per model: optimizers hold state).

    Raises:
        UserError: unknown name (listing the valid ones) or conflicting clipping options.
    """
    if isinstance(cfg, str):
        if cfg.lower() not in OPTIMIZER_NAMES:
            raise unknown_name("optimizer", cfg, OPTIMIZER_NAMES)
        cfg = OptimizerConfig(name=cfg.lower())
    clips = [k for k in ("clipnorm", "clipvalue", "global_clipnorm") if getattr(cfg, k) is not None]
    if len(clips) > 1:
        raise UserError(
            "`train.optimizer` takes at most one of clipnorm, clipvalue, global_clipnorm. "
            f"Received: {', '.join(f'{k}={getattr(cfg, k)}' for k in clips)}"
        )
    common: dict[str, Any] = {
        "learning_rate": build_schedule(cfg.schedule, cfg.learning_rate),
        "clipnorm": cfg.clipnorm,
        "clipvalue": cfg.clipvalue,
        "global_clipnorm": cfg.global_clipnorm,
        "use_ema": cfg.use_ema,
        "ema_momentum": cfg.ema_momentum,
    }
    if cfg.weight_decay is not None and cfg.name != "adamw":
        common["weight_decay"] = cfg.weight_decay
    if cfg.name == "sgd":
        return keras.optimizers.SGD(momentum=cfg.momentum, nesterov=cfg.nesterov, **common)
    if cfg.nesterov:
        raise UserError(f"`train.optimizer.nesterov` is only for sgd. Received: name={cfg.name}")
    adam_args = {
        "beta_1": cfg.beta_1,
        "beta_2": cfg.beta_2,
        "epsilon": cfg.epsilon,
        "amsgrad": cfg.amsgrad,
    }
    if cfg.name == "adam":
        return keras.optimizers.Adam(**adam_args, **common)
    if cfg.name == "adamw":
        decay = 0.004 if cfg.weight_decay is None else cfg.weight_decay
        return keras.optimizers.AdamW(weight_decay=decay, **adam_args, **common)
    if cfg.amsgrad:
        raise UserError(
            f"`train.optimizer.amsgrad` is for adam and adamw. Received: name={cfg.name}"
        )
    if cfg.name == "rmsprop":
        return keras.optimizers.RMSprop(momentum=cfg.momentum, epsilon=cfg.epsilon, **common)
    raise unknown_name("optimizer", cfg.name, OPTIMIZER_NAMES)  # pragma: no cover
