"""`mlp`: the seed's `keras.Sequential` classifier, sized from the config and the data."""

from __future__ import annotations

import keras

from tfkit.config import MLPModel
from tfkit.data.spec import DataSpec
from tfkit.models import checks
from tfkit.models.layers import dense


def build_mlp(cfg: MLPModel, spec: DataSpec) -> keras.Sequential:
    """A `keras.Sequential` MLP: Input -> [Flatten] -> (Dense [-> BatchNorm] [-> Activation]
    [-> Dropout]) x N -> Dense output. With `batch_norm` or `activation_layer` the hidden
    Dense layers are linear and an `Activation` layer follows.

    With the defaults and the seed's binary data this is Input(50) -> Dense 128 relu ->
    Dense 64 relu -> Dense 1 sigmoid.

    Raises:
        UserError: the data has several inputs, a stated `input_shape` differs from the
            data's, or `outputs` does not fit the labels.
    """
    inp, units, activation = checks.dense_classifier_input(cfg, spec)

    layers: list = [keras.Input(shape=inp.shape, dtype=inp.dtype, name=inp.name)]
    if len(inp.shape) > 1:
        layers.append(keras.layers.Flatten(name="flatten"))
    for i, width in enumerate(cfg.units):
        # Batch norm sits between the affine map and the activation, so the Dense is linear
        # and the activation is a layer of its own (as `activation_layer` asks without it).
        separate = cfg.batch_norm or cfg.activation_layer
        layers.append(
            dense(
                width,
                None if separate else cfg.activation,
                cfg.dense_impl,
                # batch norm removes a bias (its gradient is rounding noise Adam would amplify)
                use_bias=not cfg.batch_norm,
                name=f"dense_{i}",
            )
        )
        if cfg.batch_norm:
            layers.append(
                keras.layers.BatchNormalization(
                    momentum=cfg.batch_norm_momentum,
                    epsilon=cfg.batch_norm_epsilon,
                    synchronized=True,  # global-batch statistics: every replica stays equal
                    name=f"batch_norm_{i}",
                )
            )
        if separate:
            layers.append(keras.layers.Activation(cfg.activation, name=f"activation_{i}"))
        if cfg.dropout:
            layers.append(keras.layers.Dropout(cfg.dropout, name=f"dropout_{i}"))
    # float32 output keeps the loss stable under a mixed-precision policy.
    layers.append(dense(units, activation, cfg.dense_impl, name="output", dtype="float32"))
    return keras.Sequential(layers, name="mlp")
