"""Model builders: one explicit name -> builder dict, and `build(cfg, spec)`.

Each builder takes its config section (`tfkit.config.ModelConfig`) and the data's
`DataSpec`, checks that the config fits the data (input rank and size, input count, class
count vs `outputs`, label shape), and only then makes the layers. `outputs` and
`output_activation` "auto" come from the spec (`spec.output_units`,
`spec.output_activation`).

Importing this package imports Keras (and TensorFlow); `tfkit/__init__.py` does not import it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from tfkit.data.spec import DataSpec
from tfkit.errors import unknown_name
from tfkit.models.functional import build_cnn, build_rnn, build_two_input
from tfkit.models.layers import Dense, dense
from tfkit.models.sequential import build_mlp
from tfkit.models.subclassed import SimpleANN, build_simple_ann

BUILDERS: dict[str, Callable[[Any, DataSpec], keras.Model]] = {
    "mlp": build_mlp,
    "two_input": build_two_input,
    "simple_ann": build_simple_ann,
    "cnn": build_cnn,
    "rnn": build_rnn,
}


def build(cfg: Any, spec: DataSpec) -> keras.Model:
    """Build the model `cfg.name` for data described by `spec`.

    Call it inside `strategy.scope()` to place the variables for distributed training.

    Args:
        cfg: a model config section (`MLPModel`, `TwoInputModel`, `SimpleANNModel`,
            `CNNModel` or `RNNModel`).
        spec: the data's `DataSpec`.

    Returns:
        An uncompiled, built `keras.Model`.

    Raises:
        UserError: the name is unknown (listing the valid ones), or the config does not fit
            the data (naming the model field and the data's input or labels).
    """
    builder = BUILDERS.get(cfg.name)
    if builder is None:
        raise unknown_name("model", cfg.name, BUILDERS)
    return builder(cfg, spec)


__all__ = ["BUILDERS", "Dense", "SimpleANN", "build", "dense"]
