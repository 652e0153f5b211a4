"""`ExperimentConfig`: a whole experiment, one YAML file of sections."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from tfkit.config.base import Strict
from tfkit.config.data import DataConfig
from tfkit.config.gan import GanConfig
from tfkit.config.model import CNNModel, ModelConfig
from tfkit.config.runtime import RuntimeConfig
from tfkit.config.train import LossConfig, TrainConfig
from tfkit.config.tune import TuneConfig


class ExperimentConfig(Strict):
    """A whole experiment: one YAML file."""

    name: str = "experiment"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=lambda: CNNModel(name="cnn"))
    train: TrainConfig = Field(default_factory=TrainConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    tune: TuneConfig | None = None
    gan: GanConfig | None = None

    @model_validator(mode="after")
    def _task_for_sparse_loss(self) -> ExperimentConfig:
        # as in Keras, `sparse_categorical_crossentropy` on labels 0/1 trains a two-unit
        # softmax: `data.task: auto` becomes multiclass (a stated task is checked as given)
        loss = self.train.loss
        if self.data.task == "auto" and isinstance(loss, LossConfig):
            from tfkit.keras_names import LOSSES

            if LOSSES.get(loss.name.lower(), ("",))[0] == "SparseCategoricalCrossentropy":
                self.data.task = "multiclass"
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or any(c in v for c in "/\\ ") or v.startswith("."):
            raise ValueError(f"must be a non-empty name without slashes or spaces. Received: {v!r}")
        return v
