"""The `model` section: one model per `model.name` (mlp, two_input, simple_ann, cnn,
rnn), each with the options of its builder in `tfkit.models`."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from tfkit.config.base import Strict
from tfkit.config.class_path import ClassPathConfig


class LayerSpec(Strict):
    """A dense layer: units, activation, and which implementation (Keras or tfkit's own)."""

    units: int = Field(..., ge=1)
    activation: str | None = "relu"
    impl: Literal["keras", "custom"] = "keras"


PosInt = Annotated[int, Field(ge=1)]
Outputs = Union[Annotated[int, Field(ge=1)], Literal["auto"]]
InputShape = Union[list[Annotated[int, Field(ge=1)] | None], Literal["auto"]]


class MLPModel(Strict):
    """`keras.Sequential` MLP (the seed's binary classifier: 128 -> 64 -> 1 sigmoid).

    `input_shape` "auto" takes the shape from the data; a list states it, and the model
    then refuses data of another shape. Inputs of rank > 1 are flattened.
    """

    name: Literal["mlp"]
    input_shape: InputShape = "auto"
    units: list[PosInt] = Field(default_factory=lambda: [128, 64])
    activation: str = "relu"
    dropout: float = Field(0.0, ge=0, lt=1)
    batch_norm: bool = False
    batch_norm_momentum: float = Field(0.9, gt=0, lt=1)  # see CNNModel
    batch_norm_epsilon: float = Field(1e-3, gt=0)
    # the activation as its own `keras.layers.Activation` layer after a linear Dense
    # (always so with batch_norm, which sits between the two)
    activation_layer: bool = False
    outputs: Outputs = "auto"
    output_activation: str | Literal["auto"] = "auto"
    dense_impl: Literal["keras", "custom"] = "keras"


class TwoInputModel(Strict):
    """Functional two-input model: one dense branch per input, concatenate, softmax head.

    `input_shapes` "auto" takes both inputs from the data; a map `{name: shape}` states them.
    """

    name: Literal["two_input"]
    input_shapes: Union[dict[str, list[PosInt | None]], Literal["auto"]] = "auto"
    branch_units: list[PosInt] = Field(default_factory=lambda: [64, 32])
    head_units: list[PosInt] = Field(default_factory=lambda: [32])
    activation: str = "relu"
    dropout: float = Field(0.0, ge=0, lt=1)
    outputs: Outputs = "auto"
    output_activation: str | Literal["auto"] = "auto"
    dense_impl: Literal["keras", "custom"] = "keras"


class SimpleANNModel(Strict):
    """Subclassed `keras.Model` with `build_graph(input_shape)` for a readable summary."""

    name: Literal["simple_ann"]
    input_shape: InputShape = "auto"
    units: list[PosInt] = Field(default_factory=lambda: [64, 32])
    activation: str = "relu"
    dropout: float = Field(0.0, ge=0, lt=1)
    outputs: Outputs = "auto"
    output_activation: str | Literal["auto"] = "auto"
    dense_impl: Literal["keras", "custom"] = "keras"


class CNNModel(Strict):
    """Convolutional network: `filters` blocks (conv x N, batch-norm, pool, dropout), then dense.

    `kernel_size` is one size for every block or one per block. With `transpose_filters` the
    encoder is followed by a ConvTranspose decoder (each layer upsamples by
    `transpose_strides`) and a 1x1 conv head: one prediction per position.
    """

    name: Literal["cnn"]
    dims: Literal[1, 2, 3] = 2
    input_shape: InputShape = "auto"
    filters: list[PosInt] = Field(default_factory=lambda: [32, 64], min_length=1)
    convs_per_block: int = Field(1, ge=1)
    kernel_size: Union[PosInt, list[PosInt]] = 3
    strides: int = Field(1, ge=1)
    padding: Literal["same", "valid"] = "same"
    dilation_rate: int = Field(1, ge=1)  # atrous convolutions (needs strides 1)
    groups: int = Field(1, ge=1)  # grouped convolutions: must divide channels and filters
    activation: str = "relu"
    batch_norm: bool = True
    # 0.9 (PyTorch's 0.1): Keras' 0.99 needs ~500 steps before the moving variance forgets
    # its initial 1.0, so small data sets validate at chance for many epochs.
    batch_norm_momentum: float = Field(0.9, gt=0, lt=1)
    batch_norm_epsilon: float = Field(1e-3, gt=0)
    pool: Literal["max", "average", "none"] = "max"
    pool_size: int = Field(2, ge=1)
    pool_strides: int | None = Field(None, ge=1)  # default: pool_size
    pool_padding: Literal["valid", "same"] = "valid"
    dropout: float = Field(0.0, ge=0, lt=1)
    spatial_dropout: float = Field(0.0, ge=0, lt=1)
    global_pool: Literal["none", "max", "average"] = "none"
    dense_units: list[PosInt] = Field(default_factory=lambda: [128])
    dense_dropout: float = Field(0.0, ge=0, lt=1)
    transpose_filters: list[PosInt] = Field(default_factory=list)  # ConvTranspose decoder
    transpose_strides: int = Field(2, ge=1)
    outputs: Outputs = "auto"
    output_activation: str | Literal["auto"] = "auto"
    dense_impl: Literal["keras", "custom"] = "keras"

    @model_validator(mode="after")
    def _kernel_per_block(self) -> CNNModel:
        if isinstance(self.kernel_size, list) and len(self.kernel_size) != len(self.filters):
            raise ValueError(
                f"`kernel_size` as a list needs one size per block of `filters` "
                f"({len(self.filters)}). Received: kernel_size={self.kernel_size}, "
                f"filters={self.filters}"
            )
        if self.dilation_rate > 1 and self.strides > 1:
            raise ValueError(
                f"`dilation_rate` > 1 needs `strides` 1 (Keras refuses both). Received: "
                f"dilation_rate={self.dilation_rate}, strides={self.strides}"
            )
        uneven = [f for f in self.filters if f % self.groups]
        if uneven:
            raise ValueError(
                f"`groups` ({self.groups}) must divide every entry of `filters`. Received: "
                f"groups={self.groups}, filters={self.filters}"
            )
        return self


class RNNModel(Strict):
    """Recurrent network: stacked SimpleRNN/LSTM/GRU/ConvLSTM2D layers, optionally bidirectional.

    `return_sequences` applies to the last recurrent layer: the dense head then runs on every
    step through `TimeDistributed`. `conv_lstm2d` takes (time, H, W, C) inputs and uses
    `units` as filters and `kernel_size`.
    """

    name: Literal["rnn"]
    # `rnn`: the base keras.layers.RNN over tfkit's MinimalRNNCell; or a cell of your own,
    # {class_path: mypkg.cells.MyCell, args: {...}}, built as MyCell(units, **args)
    cell: Union[Literal["simple_rnn", "lstm", "gru", "conv_lstm2d", "rnn"], ClassPathConfig] = (
        "lstm"
    )
    input_shape: InputShape = "auto"
    units: list[PosInt] = Field(default_factory=lambda: [64], min_length=1)
    kernel_size: int = Field(3, ge=1)  # conv_lstm2d
    bidirectional: bool = False
    merge_mode: Literal["concat", "sum", "mul", "ave"] = "concat"
    return_sequences: bool = False  # of the last layer: per-step outputs via TimeDistributed
    dropout: float = Field(0.0, ge=0, lt=1)
    recurrent_dropout: float = Field(0.0, ge=0, lt=1)
    dense_units: list[PosInt] = Field(default_factory=list)
    activation: str = "relu"  # of the dense head
    outputs: Outputs = "auto"
    output_activation: str | Literal["auto"] = "auto"
    dense_impl: Literal["keras", "custom"] = "keras"

    @model_validator(mode="after")
    def _base_rnn_has_no_dropout(self) -> RNNModel:
        base = self.cell == "rnn" or isinstance(self.cell, ClassPathConfig)
        if base and (self.dropout or self.recurrent_dropout):
            raise ValueError(
                "`dropout` and `recurrent_dropout` are options of the built-in cells; the base "
                "keras.layers.RNN (cell: rnn or a class_path cell) has none. Received: "
                f"dropout={self.dropout}, recurrent_dropout={self.recurrent_dropout}"
            )
        return self


ModelConfig = Annotated[
    Union[MLPModel, TwoInputModel, SimpleANNModel, CNNModel, RNNModel],
    Field(discriminator="name"),
]
