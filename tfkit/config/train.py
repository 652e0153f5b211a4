"""The `train` section: loss, optimizer and schedule, metrics, callbacks, and the loop
(`fit` or the custom loop) that runs them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tfkit.config.base import Strict, steps_or_auto
from tfkit.config.class_path import ClassPathConfig


class ScheduleConfig(Strict):
    """Learning-rate schedule; `warmup_steps` adds a linear warm-up before any of them."""

    name: Literal["constant", "cosine", "exponential", "piecewise"] = "constant"
    decay_steps: int = Field(1000, ge=1)
    decay_rate: float = Field(0.96, gt=0)  # exponential
    alpha: float = Field(0.0, ge=0)  # cosine: final lr fraction
    boundaries: list[int] = Field(default_factory=list)  # piecewise
    values: list[float] = Field(default_factory=list)  # piecewise
    warmup_steps: int = Field(0, ge=0)
    staircase: bool = False


class OptimizerConfig(Strict):
    """Optimizer by name with its hyperparameters, schedule, clipping and weight EMA."""

    name: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam"
    learning_rate: float = Field(1e-3, gt=0)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    momentum: float = Field(0.0, ge=0, lt=1)  # sgd, rmsprop
    nesterov: bool = False
    beta_1: float = Field(0.9, ge=0, lt=1)
    beta_2: float = Field(0.999, ge=0, lt=1)
    epsilon: float = Field(1e-7, gt=0)
    amsgrad: bool = False  # adam, adamw
    weight_decay: float | None = Field(None, ge=0)  # adamw default 0.004
    clipnorm: float | None = Field(None, gt=0)
    clipvalue: float | None = Field(None, gt=0)
    global_clipnorm: float | None = Field(None, gt=0)
    use_ema: bool = False
    ema_momentum: float = Field(0.99, gt=0, lt=1)

    @model_validator(mode="after")
    def _amsgrad(self) -> OptimizerConfig:
        if self.amsgrad and self.name not in ("adam", "adamw"):
            raise ValueError(f"`amsgrad` is for adam and adamw. Received: name={self.name}")
        return self


class LossConfig(Strict):
    """Loss by name with its arguments (those a name does not take are refused)."""

    name: str = "sparse_categorical_crossentropy"
    from_logits: bool = False
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    gamma: float = Field(2.0, ge=0)  # focal
    alpha: float = Field(0.25, ge=0, le=1)  # focal
    apply_class_balancing: bool = False  # focal
    delta: float = Field(1.0, gt=0)  # huber threshold
    reduction: Literal["sum_over_batch_size", "sum", "mean", "none"] = "sum_over_batch_size"


class CallbackConfig(Strict):
    """A callback by name; `args` are passed to it (validated by the callback builder).

    A callback of your own goes in as `{class_path: mypkg.callbacks.MyCallback, args: {}}`
    (see `ClassPathConfig`).
    """

    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class TrainConfig(Strict):
    """The train section: loss, optimizer, metrics, callbacks and the loop that runs them."""

    loop: Literal["fit", "custom"] = "fit"
    epochs: int = Field(10, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1)
    validation_steps: int | None = Field(None, ge=1)
    validation_freq: int = Field(1, ge=1)
    # a name with its options, or a keras.losses.Loss of your own by `class_path`
    loss: LossConfig | ClassPathConfig | str = Field(default_factory=LossConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    # names, or keras.metrics.Metric classes of your own by `class_path`
    metrics: list[str | ClassPathConfig] = Field(default_factory=lambda: ["accuracy"])
    class_weight: dict[int, float] | Literal["balanced"] | None = None
    # names with args, or keras.callbacks.Callback classes of your own by `class_path`
    callbacks: list[CallbackConfig | ClassPathConfig] = Field(default_factory=list)
    checkpoint: Literal["best", "last", "both", "none"] = "both"
    monitor: str = "val_loss"
    tensorboard: bool = True
    histogram_freq: int = Field(0, ge=0)
    profile_batch: int | list[int] = 0
    update_freq: Literal["epoch", "batch"] | int = "epoch"
    verbose: Literal[0, 1, 2, "auto"] = "auto"
    # custom loop: optimizer steps per graph call. auto: 16 (at most an epoch; calls are
    # cut at epoch ends and checkpoint_every steps; batch hooks see each call)
    steps_per_loop: int | Literal["auto"] = "auto"
    checkpoint_every: int = Field(0, ge=0)  # steps; 0 = at each epoch end
    nan_policy: Literal["stop", "skip_step"] = "stop"

    @field_validator("loss", mode="before")
    @classmethod
    def _loss_name(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @field_validator("steps_per_loop", mode="before")
    @classmethod
    def _steps_per_loop(cls, v: Any) -> Any:
        return steps_or_auto(v)


# options only the custom loop reads, with the default `train.loop: fit` accepts
CUSTOM_LOOP_OPTIONS: dict[str, Any] = {"steps_per_loop": "auto", "nan_policy": "stop"}
