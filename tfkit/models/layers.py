"""tfkit's own layers, written the Keras way, and the `dense` factory the builders use.

`Dense` is a from-scratch fully connected layer (weights made in `build` with `add_weight`,
the maths in `call`, every argument in `get_config`), registered as `tfkit>Dense` so models
that use it load from `.keras` files in safe mode. Configs select it with
`dense_impl: custom`.
"""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="tfkit")
class Dense(keras.layers.Layer):
    """A fully connected layer: `activation(inputs @ kernel + bias)`.

    Works on inputs of any rank >= 2: the kernel applies to the last axis, like
    `keras.layers.Dense`.

    Args:
        units: size of the last axis of the output.
        activation: activation name or callable; None means linear.
        use_bias: whether to add a bias vector.
        kernel_initializer: initializer of the kernel.
        bias_initializer: initializer of the bias.
        **kwargs: base layer arguments (`name`, `dtype`, `trainable`).

    Call arguments:
        inputs: a tensor of shape `(..., input_dim)`.

    Example:

    >>> layer = Dense(4, activation="relu")
    >>> layer(keras.ops.ones((2, 3))).shape
    (2, 4)
    """

    def __init__(
        self,
        units: int,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
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
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape: tuple) -> None:
        """Create `kernel` (input_dim, units) and `bias` (units,) for the input's last axis."""
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"The last axis of the input to `{self.name}` must be known. "
                f"Received: input_shape={input_shape}"
            )
        self.kernel = self.add_weight(
            name="kernel", shape=(input_dim, self.units), initializer=self.kernel_initializer
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.units,), initializer=self.bias_initializer)
            if self.use_bias
            else None
        )
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: input_dim})

    def call(self, inputs):
        """Apply the affine map and the activation to the last axis of `inputs`."""
        outputs = keras.ops.matmul(inputs, self.kernel)
        if self.bias is not None:
            outputs = keras.ops.add(outputs, self.bias)
        return self.activation(outputs)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """The input shape with its last axis replaced by `units`."""
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self) -> dict:
        """Every constructor argument, serialized."""
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config


def dense(
    units: int,
    activation: Any = None,
    impl: str = "keras",
    **kwargs: Any,
) -> keras.layers.Layer:
    """A dense layer: `keras.layers.Dense` (`impl="keras"`) or tfkit's `Dense` (`"custom"`)."""
    if impl == "custom":
        return Dense(units, activation=activation, **kwargs)
    if impl == "keras":
        return keras.layers.Dense(units, activation=activation, **kwargs)
    raise ValueError(f"`dense_impl` must be 'keras' or 'custom'. Received: dense_impl={impl!r}")
