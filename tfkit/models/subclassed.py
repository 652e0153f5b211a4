"""`simple_ann`: the seed's subclassed `keras.Model`, with a functional view for summaries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from tfkit.config import SimpleANNModel
from tfkit.data.spec import DataSpec
from tfkit.models import checks
from tfkit.models.layers import dense


@keras.saving.register_keras_serializable(package="tfkit")
class SimpleANN(keras.Model):
    """A dense network written as a `keras.Model` subclass: Flatten -> Dense x N -> output.

    A subclassed model's `summary()` cannot show output shapes, since its graph exists only
    inside `call`; `build_graph(input_shape)` returns a functional model over the same layers
    whose summary can.

    Args:
        units: width of each hidden dense layer.
        activation: activation of the hidden layers.
        dropout: dropout rate after each hidden layer (0 disables it).
        outputs: units of the output layer.
        output_activation: activation of the output layer.
        dense_impl: "keras" for `keras.layers.Dense`, "custom" for `tfkit.models.layers.Dense`.
        **kwargs: base model arguments (`name`, `trainable`, `dtype`).

    Call arguments:
        inputs: a tensor of shape `(batch, ...)`; axes after the batch are flattened.
        training: whether dropout is active.

    Example:

    >>> model = SimpleANN(units=[16], outputs=3, output_activation="softmax")
    >>> model.build_graph((8,)).output_shape
    (None, 3)
    """

    def __init__(
        self,
        units: Sequence[int] = (64, 32),
        activation: str = "relu",
        dropout: float = 0.0,
        outputs: int = 1,
        output_activation: str = "sigmoid",
        dense_impl: str = "keras",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = [int(u) for u in units]
        self.activation = activation
        self.dropout = float(dropout)
        self.outputs = int(outputs)
        self.output_activation = output_activation
        self.dense_impl = dense_impl
        self.flatten = keras.layers.Flatten(name="flatten")
        self.hidden = [
            dense(width, activation, dense_impl, name=f"dense_{i}")
            for i, width in enumerate(self.units)
        ]
        self.dropouts = [
            keras.layers.Dropout(self.dropout, name=f"dropout_{i}") if self.dropout else None
            for i in range(len(self.units))
        ]
        self.head = dense(
            self.outputs, output_activation, dense_impl, name="output", dtype="float32"
        )

    def build(self, input_shape: tuple) -> None:
        """Build every layer for inputs of `input_shape` (batch axis included)."""
        self.flatten.build(tuple(input_shape))
        shape = self.flatten.compute_output_shape(tuple(input_shape))
        for layer in self.hidden:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.head.build(shape)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """`(batch, outputs)`."""
        return (input_shape[0], self.outputs)

    def call(self, inputs, training: bool | None = None):
        """Forward pass: flatten, hidden layers with dropout, output layer."""
        x = self.flatten(inputs)
        for layer, drop in zip(self.hidden, self.dropouts, strict=True):
            x = layer(x)
            if drop is not None:
                x = drop(x, training=training)
        return self.head(x)

    def build_graph(self, input_shape: Sequence[int | None]) -> keras.Model:
        """A functional model over this model's layers, for `summary()` and `plot_model`.

        Args:
            input_shape: per-example input shape, without the batch axis.
        """
        inputs = keras.Input(shape=tuple(input_shape), name="inputs")
        return keras.Model(inputs=inputs, outputs=self.call(inputs), name=f"{self.name}_graph")

    def get_config(self) -> dict:
        """Every constructor argument, so the model round-trips through `.keras` files."""
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": self.activation,
                "dropout": self.dropout,
                "outputs": self.outputs,
                "output_activation": self.output_activation,
                "dense_impl": self.dense_impl,
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> SimpleANN:
        """Rebuild the model from `get_config()` output."""
        return cls(**config)


def build_simple_ann(cfg: SimpleANNModel, spec: DataSpec) -> SimpleANN:
    """A built `SimpleANN` for the data's single input.

    Raises:
        UserError: the data has several inputs, a stated `input_shape` differs from the
            data's, or `outputs` does not fit the labels.
    """
    inp, units, activation = checks.dense_classifier_input(cfg, spec)
    model = SimpleANN(
        units=cfg.units,
        activation=cfg.activation,
        dropout=cfg.dropout,
        outputs=units,
        output_activation=activation,
        dense_impl=cfg.dense_impl,
        name="simple_ann",
    )
    model.build((None, *inp.shape))
    return model
