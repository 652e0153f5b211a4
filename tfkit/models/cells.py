"""`MinimalRNNCell`: a recurrent cell written the Keras way, for the base `keras.layers.RNN`.

`keras.layers.RNN(cell)` runs any cell over a sequence: the cell has a `state_size`, creates
its weights in `build` and maps `(inputs_t, states) -> (output_t, new_states)` in `call`.
Configs select it with `model.cell: rnn` (the builder wraps it in `keras.layers.RNN`); a
cell of your own goes in as `cell: {class_path: mypkg.cells.MyCell, args: {...}}`.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfkit")
class MinimalRNNCell(keras.layers.Layer):
    """An Elman cell: `h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)`.

    Args:
        units: size of the output and of the state.
        activation: activation name or callable (default `tanh`).
        use_bias: whether to add a bias vector.
        kernel_initializer: initializer of the input kernel.
        recurrent_initializer: initializer of the recurrent kernel.
        bias_initializer: initializer of the bias.
        **kwargs: base layer arguments (`name`, `dtype`, `trainable`).

    Call arguments:
        inputs: one time step, `(batch, features)`.
        states: a list holding the previous output, `(batch, units)`.

    Example:

    >>> layer = keras.layers.RNN(MinimalRNNCell(8))
    >>> layer(keras.ops.ones((2, 5, 3))).shape
    (2, 8)
    """

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise ValueError(f"`units` must be a positive integer. Received: units={units!r}")
        self.units = units
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.state_size = units
        self.output_size = units

    def build(self, input_shape: tuple) -> None:
        """Create `kernel` (features, units), `recurrent_kernel` (units, units) and `bias`."""
        self.kernel = self.add_weight(
            name="kernel", shape=(input_shape[-1], self.units), initializer=self.kernel_initializer
        )
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel",
            shape=(self.units, self.units),
            initializer=self.recurrent_initializer,
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.units,), initializer=self.bias_initializer)
            if self.use_bias
            else None
        )

    def call(self, inputs, states, training: bool | None = None):
        """One step: the new output, which is also the new state."""
        previous = states[0] if isinstance(states, (list, tuple)) else states
        h = ops.matmul(inputs, self.kernel) + ops.matmul(previous, self.recurrent_kernel)
        if self.bias is not None:
            h = h + self.bias
        output = self.activation(h)
        return output, [output]

    def get_config(self) -> dict:
        """Every constructor argument, serialized."""
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
