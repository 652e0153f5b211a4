"""Does a model config fit the data? Checks run by the builders before any layer is made.

Each failure is a `UserError` naming both sides: the model field and its value, and the data
input (or labels) with its shape, e.g. "model `cnn` with dims=2 needs inputs of rank 3
(H, W, C); data input `x` has shape (50,)".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tfkit.data.spec import DataSpec, InputSpec
from tfkit.errors import UserError, did_you_mean
from tfkit.keras_names import ACTIVATIONS


def fmt_shape(shape: Sequence[int | None]) -> str:
    """A shape as Python prints a tuple: `(50,)`, `(8, 8, 1)`, `()`."""
    return str(tuple(shape))


def describe_inputs(spec: DataSpec) -> str:
    """`x` (50,) style list of the data's inputs."""
    return ", ".join(f"`{i.name}` {fmt_shape(i.shape)}" for i in spec.inputs) or "none"


def shapes_match(a: Sequence[int | None], b: Sequence[int | None]) -> bool:
    """Equal rank and equal sizes where both are known (None matches any size)."""
    return len(a) == len(b) and all(
        x is None or y is None or x == y for x, y in zip(a, b, strict=True)
    )


def activation_names() -> list[str]:
    """Names `keras.activations.get` accepts (tfkit.keras_names, checked against Keras)."""
    return sorted(ACTIVATIONS)


def check_activation(model: str, field: str, name: str | None) -> str | None:
    """Return `name` if it is a Keras activation, else raise a `UserError` listing the valid ones."""
    if name is None:
        return None
    valid = activation_names()
    if name not in valid:
        raise UserError(
            f"model `{model}`: unknown {field} `{name}`.{did_you_mean(name, valid)} "
            f"Valid activations: {', '.join(valid)}"
        )
    return name


def check_declared_shape(model: str, declared: Any, inp: InputSpec, field: str) -> None:
    """A stated `input_shape` must equal the data's; "auto" accepts any."""
    if declared == "auto" or declared is None:
        return
    if not shapes_match(tuple(declared), inp.shape):
        raise UserError(
            f"model `{model}` has {field}={list(declared)}; data input `{inp.name}` has shape "
            f"{fmt_shape(inp.shape)}"
        )


def single_input(cfg: Any, spec: DataSpec) -> InputSpec:
    """The one input of a single-input model, after checking the data has exactly one."""
    if len(spec.inputs) != 1:
        raise UserError(
            f"model `{cfg.name}` takes one input; data has {len(spec.inputs)} inputs: "
            f"{describe_inputs(spec)}. Use model `two_input` for two named inputs"
        )
    inp = spec.inputs[0]
    check_declared_shape(cfg.name, cfg.input_shape, inp, "input_shape")
    return inp


def check_rank(model: str, needs: str, rank: int, layout: str, inp: InputSpec) -> None:
    """The input must have `rank` axes (batch excluded)."""
    if len(inp.shape) != rank:
        raise UserError(
            f"model `{model}` {needs} needs inputs of rank {rank} {layout}; data input "
            f"`{inp.name}` has shape {fmt_shape(inp.shape)}"
        )


def check_known(model: str, why: str, inp: InputSpec, axes: Sequence[int]) -> None:
    """Sizes on `axes` of the input must be known (not None)."""
    unknown = [a for a in axes if inp.shape[a] is None]
    if unknown:
        raise UserError(
            f"model `{model}` {why} needs a known size on axis {unknown[0] + 1} of its input; "
            f"data input `{inp.name}` has shape {fmt_shape(inp.shape)}"
        )


def resolve_head(cfg: Any, spec: DataSpec) -> tuple[int, str]:
    """Units and activation of the output layer: "auto" takes them from the data spec.

    Raises:
        UserError: `outputs` does not fit the data's classes or label size, or the
            activation is unknown.
    """
    name = cfg.name
    if spec.task == "multiclass" and not spec.num_classes:
        raise UserError(
            f"model `{name}`: multiclass data must state its class count; data has "
            f"num_classes={spec.num_classes!r}"
        )
    units = spec.output_units if cfg.outputs == "auto" else int(cfg.outputs)
    if cfg.outputs != "auto":
        if spec.task == "multiclass" and units != spec.num_classes:
            raise UserError(
                f"model `{name}` has outputs={units}; data has {spec.num_classes} classes "
                f"(num_classes={spec.num_classes}, labels 0..{spec.num_classes - 1}). "
                f'Set outputs to {spec.num_classes} or "auto"'
            )
        if spec.task == "binary" and units not in (1, 2):
            raise UserError(
                f"model `{name}` has outputs={units}; data is binary (labels 0/1), which needs "
                f"outputs=1 (sigmoid) or 2 (softmax)"
            )
        if spec.task == "regression" and units != spec.output_units:
            raise UserError(
                f"model `{name}` has outputs={units}; data labels have shape "
                f"{fmt_shape(spec.label_shape)} ({spec.output_units} value(s) per example)"
            )
    if cfg.output_activation == "auto":
        activation = "softmax" if spec.task == "binary" and units == 2 else spec.output_activation
    else:
        activation = check_activation(name, "output_activation", cfg.output_activation)
    return units, activation


def dense_classifier_input(cfg: Any, spec: DataSpec) -> tuple[InputSpec, int, str]:
    """Checks shared by the dense single-input builders (`mlp`, `simple_ann`).

    Returns:
        The data's input, and the output layer's units and activation.

    Raises:
        UserError: several inputs, an unknown dimension, an unknown activation, or an
            output head that does not fit the labels.
    """
    inp = single_input(cfg, spec)
    check_known(cfg.name, "(dense layers)", inp, range(len(inp.shape)))
    units, activation = resolve_head(cfg, spec)
    check_activation(cfg.name, "activation", cfg.activation)
    check_labels(cfg.name, (units,), spec, f"with outputs={units}")
    return inp, units, activation


def check_labels(
    model: str, output_shape: tuple[int | None, ...], spec: DataSpec, what: str
) -> None:
    """The labels must fit the model's per-example output: the same shape, or one axis less
    (integer class labels, or scalars for a 1-unit output)."""
    label = tuple(spec.label_shape)
    if shapes_match(label, output_shape) or shapes_match(label, output_shape[:-1]):
        return
    raise UserError(
        f"model `{model}` {what} predicts shape {fmt_shape(output_shape)} per example; data "
        f"labels have shape {fmt_shape(label)}"
    )


def conv_output_size(size: int | None, kernel: int, strides: int, padding: str) -> int | None:
    """Length of one spatial axis after a convolution (or pooling) layer."""
    if size is None:
        return None
    if padding == "same":
        return math.ceil(size / strides)
    return (size - kernel) // strides + 1
