"""The `tune` section: a Keras Tuner search over dotted config keys."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from tfkit.config.base import Seed, Strict


class HyperParameterConfig(Strict):
    """One hyperparameter of a `tune.space`: exactly one of `choice`, `float`, `int`, `boolean`.

    `when: {key: value}` makes it conditional: active only when the other space key `key`
    takes `value` (or one of a list of values).
    """

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, populate_by_name=True, serialize_by_alias=True
    )

    choice: list[Any] | None = None
    float_range: tuple[float, float] | None = Field(None, alias="float")
    int_range: tuple[int, int] | None = Field(None, alias="int")
    boolean: bool | None = None
    sampling: Literal["linear", "log", "reverse_log"] = "linear"
    step: float | None = None
    default: Any = None
    when: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        """`choice`, `float`, `int` or `boolean`."""
        for kind, value in (
            ("choice", self.choice),
            ("float", self.float_range),
            ("int", self.int_range),
            ("boolean", self.boolean),
        ):
            if value is not None:
                return kind
        return "none"

    @model_validator(mode="after")
    def _check(self) -> HyperParameterConfig:
        given = [
            k
            for k, v in (
                ("choice", self.choice),
                ("float", self.float_range),
                ("int", self.int_range),
                ("boolean", self.boolean),
            )
            if v is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "needs exactly one of `choice`, `float`, `int`, `boolean`. "
                f"Received: {', '.join(given) or 'none of them'}"
            )
        if self.choice is not None and not self.choice:
            raise ValueError("`choice` needs at least one value. Received: choice=[]")
        bounds = self.float_range or self.int_range
        if bounds is not None:
            low, high = bounds
            if low > high:
                raise ValueError(f"range low must be <= high. Received: {given[0]}=[{low}, {high}]")
            if self.sampling != "linear" and low <= 0:
                raise ValueError(
                    f"`sampling: {self.sampling}` needs positive bounds. "
                    f"Received: {given[0]}=[{low}, {high}]"
                )
        if self.step is not None and self.step <= 0:
            raise ValueError(f"`step` must be > 0. Received: step={self.step}")
        if self.int_range is not None and self.step is not None and self.step != int(self.step):
            raise ValueError(f"`step` of an int range must be an integer. Received: {self.step}")
        return self


class ObjectiveConfig(Strict):
    """The metric a search optimizes (as Keras names it, e.g. `val_accuracy`) and its direction."""

    name: str = "val_loss"
    direction: Literal["min", "max"] = "min"


class TuneConfig(Strict):
    """The tune section: a Keras Tuner search over dotted config keys (`tfkit tune`).

    `space` maps a dotted config key (`model.dropout`, `train.optimizer.learning_rate`) to a
    hyperparameter; each trial is this experiment with the sampled values applied.
    """

    tuner: Literal["random", "hyperband", "bayesian", "grid"] = "random"
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    max_trials: int = Field(10, ge=1)  # random, bayesian, grid
    executions_per_trial: int = Field(1, ge=1)
    max_epochs: int = Field(10, ge=1)  # hyperband
    factor: int = Field(3, ge=2)  # hyperband
    hyperband_iterations: int = Field(1, ge=1)
    seed: Seed | None = None  # default runtime.seed
    directory: str | None = None  # default <run dir>/search
    save_best_model: bool = True
    space: dict[str, HyperParameterConfig] = Field(default_factory=dict)

    @field_validator("objective", mode="before")
    @classmethod
    def _objective_name(cls, v: Any) -> Any:
        if isinstance(v, str):  # `objective: val_accuracy` -> direction from the name
            low = v.lower()
            better_high = any(s in low for s in ("acc", "auc", "precision", "recall", "f1"))
            return {"name": v, "direction": "max" if better_high else "min"}
        return v

    @model_validator(mode="after")
    def _conditions(self) -> TuneConfig:
        for key, param in self.space.items():
            for parent in (param.when or {}).keys():
                if parent not in self.space:
                    raise ValueError(
                        f"space.{key}.when refers to `{parent}`, which is not a space key. "
                        f"Space keys: {', '.join(self.space)}"
                    )
                if parent == key:
                    raise ValueError(f"space.{key}.when refers to itself")
        return self
