"""Functional-API builders: `two_input` (the seed's two-branch model), `cnn` and `rnn`."""

from __future__ import annotations

import keras

from tfkit.config import ClassPathConfig, CNNModel, RNNModel, TwoInputModel
from tfkit.data.spec import DataSpec, InputSpec
from tfkit.errors import UserError
from tfkit.models import checks
from tfkit.models.cells import MinimalRNNCell
from tfkit.models.layers import dense

# ----------------------------------------------------------------------------------------
# two_input
# ----------------------------------------------------------------------------------------


def _two_inputs(cfg: TwoInputModel, spec: DataSpec) -> tuple[InputSpec, InputSpec]:
    if len(spec.inputs) != 2:
        raise UserError(
            f"model `two_input` needs 2 named inputs; data has {len(spec.inputs)} input(s): "
            f"{checks.describe_inputs(spec)}"
        )
    if cfg.input_shapes != "auto":
        declared = {k: tuple(v) for k, v in cfg.input_shapes.items()}
        got = {i.name: i.shape for i in spec.inputs}
        if set(declared) != set(got) or not all(
            checks.shapes_match(declared[k], got[k]) for k in declared
        ):
            stated = ", ".join(f"`{k}` {checks.fmt_shape(v)}" for k, v in declared.items())
            raise UserError(
                f"model `two_input` has input_shapes {stated}; data has inputs "
                f"{checks.describe_inputs(spec)}"
            )
    for inp in spec.inputs:
        checks.check_known("two_input", "(dense branches)", inp, range(len(inp.shape)))
    return spec.inputs[0], spec.inputs[1]


def build_two_input(cfg: TwoInputModel, spec: DataSpec) -> keras.Model:
    """The seed's functional model: one dense branch per input, `concatenate`, dense head.

    Inputs are a dict keyed by `InputSpec.name` (`a` (50,) and `b` (10,) for the seed's
    data); with 5 classes the head is a 5-way softmax.

    Raises:
        UserError: the data does not have exactly two inputs, their shapes differ from
            `input_shapes`, or `outputs` does not fit the labels.
    """
    pair = _two_inputs(cfg, spec)
    units, activation = checks.resolve_head(cfg, spec)
    checks.check_activation(cfg.name, "activation", cfg.activation)
    checks.check_labels(cfg.name, (units,), spec, f"with outputs={units}")

    inputs = {i.name: keras.Input(shape=i.shape, dtype=i.dtype, name=i.name) for i in pair}
    branches = []
    for inp in pair:
        x = inputs[inp.name]
        if len(inp.shape) > 1:
            x = keras.layers.Flatten(name=f"{inp.name}_flatten")(x)
        for j, width in enumerate(cfg.branch_units):
            x = dense(width, cfg.activation, cfg.dense_impl, name=f"{inp.name}_dense_{j}")(x)
        branches.append(x)
    x = keras.layers.concatenate(branches, name="concatenate")
    for j, width in enumerate(cfg.head_units):
        x = dense(width, cfg.activation, cfg.dense_impl, name=f"head_dense_{j}")(x)
        if cfg.dropout:
            x = keras.layers.Dropout(cfg.dropout, name=f"head_dropout_{j}")(x)
    outputs = dense(units, activation, cfg.dense_impl, name="output", dtype="float32")(x)
    return keras.Model(inputs=inputs, outputs=outputs, name="two_input")


# ----------------------------------------------------------------------------------------
# cnn
# ----------------------------------------------------------------------------------------

_LAYOUT = {1: "(steps, C)", 2: "(H, W, C)", 3: "(D, H, W, C)"}


def _kernel_sizes(cfg: CNNModel) -> list[int]:
    if isinstance(cfg.kernel_size, list):
        return list(cfg.kernel_size)
    return [cfg.kernel_size] * len(cfg.filters)


def _check_cnn(cfg: CNNModel, spec: DataSpec, units: int) -> InputSpec:
    """Rank, channel axis, and that every block leaves at least one position per axis."""
    inp = checks.single_input(cfg, spec)
    checks.check_rank("cnn", f"with dims={cfg.dims}", cfg.dims + 1, _LAYOUT[cfg.dims], inp)
    checks.check_known("cnn", "(convolutions)", inp, [cfg.dims])
    checks.check_activation(cfg.name, "activation", cfg.activation)
    channels = inp.shape[-1]
    if channels % cfg.groups:
        raise UserError(
            f"model `cnn` has groups={cfg.groups}, which must divide the input channels; data "
            f"input `{inp.name}` has shape {checks.fmt_shape(inp.shape)} ({channels} channels)"
        )
    sizes = list(inp.shape[:-1])
    pool_strides = cfg.pool_strides or cfg.pool_size
    for b, kernel in enumerate(_kernel_sizes(cfg)):
        span = (kernel - 1) * cfg.dilation_rate + 1  # the dilated kernel's extent
        for c in range(cfg.convs_per_block):
            strides = cfg.strides if c == 0 else 1
            sizes = [checks.conv_output_size(s, span, strides, cfg.padding) for s in sizes]
        if cfg.pool != "none":
            sizes = [
                checks.conv_output_size(s, cfg.pool_size, pool_strides, cfg.pool_padding)
                for s in sizes
            ]
        if any(s is not None and s < 1 for s in sizes):
            raise UserError(
                f"model `cnn` with filters={cfg.filters}, kernel_size={cfg.kernel_size}, "
                f"strides={cfg.strides}, dilation_rate={cfg.dilation_rate}, "
                f"padding={cfg.padding}, pool={cfg.pool} (pool_size={cfg.pool_size}, "
                f"pool_strides={pool_strides}, pool_padding={cfg.pool_padding}) shrinks its "
                f"input to nothing at block {b + 1}; "
                f"data input `{inp.name}` has shape {checks.fmt_shape(inp.shape)}. Use fewer "
                f"blocks, padding=same or a smaller pool_size"
            )
    if cfg.transpose_filters:
        factor = cfg.transpose_strides ** len(cfg.transpose_filters)
        out = tuple(None if s is None else s * factor for s in sizes) + (units,)
        what = f"with transpose_filters={cfg.transpose_filters}"
    else:
        if cfg.global_pool == "none" and any(s is None for s in sizes):
            raise UserError(
                f"model `cnn` with global_pool=none flattens its features, which needs a fixed "
                f"input size; data input `{inp.name}` has shape {checks.fmt_shape(inp.shape)}. "
                f"Set global_pool to max or average"
            )
        out = (units,)
        what = f"with outputs={units}"
    checks.check_labels("cnn", out, spec, what)
    return inp


def _cnn_layer(kind: str, dims: int):
    """The Keras layer class `kind` of `dims` dimensions: `_cnn_layer("Conv{}D", 2)` is
    `keras.layers.Conv2D`."""
    return getattr(keras.layers, kind.format(dims))


def _conv_unit(cfg: CNNModel, x, layer, name: str):
    """`layer` [-> BatchNorm] -> activation."""
    x = layer(x)
    if cfg.batch_norm:
        x = keras.layers.BatchNormalization(
            momentum=cfg.batch_norm_momentum,
            epsilon=cfg.batch_norm_epsilon,
            synchronized=True,  # global-batch statistics: every replica stays equal
            name=f"{name}_bn",
        )(x)
    return keras.layers.Activation(cfg.activation, name=f"{name}_act")(x)


def _cnn_blocks(cfg: CNNModel, x):
    """The encoder: per entry of `filters`, `convs_per_block` conv units, pooling, dropout."""
    n = cfg.dims
    for b, (width, kernel) in enumerate(zip(cfg.filters, _kernel_sizes(cfg), strict=True)):
        for c in range(cfg.convs_per_block):
            name = f"block{b + 1}_conv{c + 1}"
            layer = _cnn_layer("Conv{}D", n)(
                width,
                kernel,
                strides=cfg.strides if c == 0 else 1,
                padding=cfg.padding,
                dilation_rate=cfg.dilation_rate,
                groups=cfg.groups,
                use_bias=not cfg.batch_norm,
                name=name,
            )
            x = _conv_unit(cfg, x, layer, name)
        if cfg.pool != "none":
            pool = {"max": "MaxPooling{}D", "average": "AveragePooling{}D"}[cfg.pool]
            x = _cnn_layer(pool, n)(
                cfg.pool_size,
                strides=cfg.pool_strides,
                padding=cfg.pool_padding,
                name=f"block{b + 1}_pool",
            )(x)
        if cfg.spatial_dropout:
            x = _cnn_layer("SpatialDropout{}D", n)(
                cfg.spatial_dropout, name=f"block{b + 1}_spatial_dropout"
            )(x)
        if cfg.dropout:
            x = keras.layers.Dropout(cfg.dropout, name=f"block{b + 1}_dropout")(x)
    return x


def _cnn_decoder(cfg: CNNModel, x, units: int, activation: str | None):
    """The ConvTranspose decoder of `transpose_filters`, then a 1x1 conv per position."""
    for t, width in enumerate(cfg.transpose_filters):
        name = f"decoder{t + 1}"
        layer = _cnn_layer("Conv{}DTranspose", cfg.dims)(
            width,
            _kernel_sizes(cfg)[-1],
            strides=cfg.transpose_strides,
            padding="same",
            use_bias=not cfg.batch_norm,
            name=name,
        )
        x = _conv_unit(cfg, x, layer, name)
    conv = _cnn_layer("Conv{}D", cfg.dims)
    return conv(units, 1, activation=activation, dtype="float32", name="output")(x)


def _cnn_head(cfg: CNNModel, x, units: int, activation: str | None):
    """Flatten (or global-pool) the features, then the dense head."""
    if cfg.global_pool == "max":
        x = _cnn_layer("GlobalMaxPooling{}D", cfg.dims)(name="global_pool")(x)
    elif cfg.global_pool == "average":
        x = _cnn_layer("GlobalAveragePooling{}D", cfg.dims)(name="global_pool")(x)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
    for j, width in enumerate(cfg.dense_units):
        x = dense(width, cfg.activation, cfg.dense_impl, name=f"dense_{j}")(x)
        if cfg.dense_dropout:
            x = keras.layers.Dropout(cfg.dense_dropout, name=f"dense_dropout_{j}")(x)
    return dense(units, activation, cfg.dense_impl, name="output", dtype="float32")(x)


def build_cnn(cfg: CNNModel, spec: DataSpec) -> keras.Model:
    """A convolutional network for 1-D, 2-D or 3-D inputs (channels last).

    Each entry of `filters` is a block: `convs_per_block` x (Conv [-> BatchNorm] ->
    activation), then pooling, then SpatialDropout and/or Dropout. A classifier then
    flattens (or global-pools) into the dense head; with `transpose_filters` a ConvTranspose
    decoder upsamples instead and a 1x1 conv predicts every position.

    Raises:
        UserError: the input rank does not match `dims`, the blocks shrink the input to
            nothing, or `outputs` does not fit the labels.
    """
    units, activation = checks.resolve_head(cfg, spec)
    inp = _check_cnn(cfg, spec, units)
    inputs = keras.Input(shape=inp.shape, dtype=inp.dtype, name=inp.name)
    x = _cnn_blocks(cfg, inputs)
    if cfg.transpose_filters:
        outputs = _cnn_decoder(cfg, x, units, activation)
    else:
        outputs = _cnn_head(cfg, x, units, activation)
    return keras.Model(inputs, outputs, name="cnn")


# ----------------------------------------------------------------------------------------
# rnn
# ----------------------------------------------------------------------------------------


def _cell_name(cfg: RNNModel) -> str:
    return cfg.cell.class_path if isinstance(cfg.cell, ClassPathConfig) else cfg.cell


def _base_rnn_cell(cfg: RNNModel, units: int, name: str) -> keras.layers.Layer:
    """The cell that `keras.layers.RNN` runs: tfkit's MinimalRNNCell, or the user's class."""
    if not isinstance(cfg.cell, ClassPathConfig):
        return MinimalRNNCell(units, name=name)
    from tfkit.extensions import instantiate

    cell = instantiate(
        cfg.cell, "model.cell", keras.layers.Layer, "Keras layer (an RNN cell)", units
    )
    if not hasattr(cell, "state_size"):
        raise UserError(
            f"`model.cell.class_path` {cfg.cell.class_path} is not an RNN cell: "
            "keras.layers.RNN needs a `state_size` attribute (and call(inputs, states))"
        )
    return cell


def _check_rnn(cfg: RNNModel, spec: DataSpec, units: int) -> InputSpec:
    inp = checks.single_input(cfg, spec)
    if cfg.cell == "conv_lstm2d":
        checks.check_rank("rnn", "with cell=conv_lstm2d", 4, "(time, H, W, C)", inp)
        checks.check_known("rnn", "(ConvLSTM2D)", inp, [3])
    else:
        cell = _cell_name(cfg)
        checks.check_rank("rnn", f"with cell={cell}", 2, "(time, features)", inp)
        checks.check_known("rnn", f"({cell})", inp, [1])
    if cfg.return_sequences:
        out = (inp.shape[0], units)
        what = "with return_sequences=true"
    else:
        out = (units,)
        what = "with return_sequences=false"
    checks.check_labels("rnn", out, spec, what)
    return inp


def build_rnn(cfg: RNNModel, spec: DataSpec) -> keras.Model:
    """Stacked recurrent layers (SimpleRNN, LSTM, GRU, ConvLSTM2D, or the base
    `keras.layers.RNN` over tfkit's `MinimalRNNCell` or a cell class of your own), then a
    dense head.

    Every recurrent layer but the last returns sequences; the last does when
    `return_sequences` is set, and the head then runs on every step through
    `TimeDistributed`. `bidirectional` wraps each layer in `Bidirectional(merge_mode=...)`.

    Raises:
        UserError: the input rank does not fit the cell, or the labels do not fit one
            prediction per sequence (or per step with `return_sequences`).
    """
    units, activation = checks.resolve_head(cfg, spec)
    inp = _check_rnn(cfg, spec, units)
    checks.check_activation(cfg.name, "activation", cfg.activation)
    inputs = keras.Input(shape=inp.shape, dtype=inp.dtype, name=inp.name)
    x = inputs
    last = len(cfg.units) - 1
    for i, width in enumerate(cfg.units):
        sequences = i < last or cfg.return_sequences
        common = dict(
            return_sequences=sequences,
            dropout=cfg.dropout,
            recurrent_dropout=cfg.recurrent_dropout,
        )
        if cfg.cell == "conv_lstm2d":
            layer = keras.layers.ConvLSTM2D(
                width, cfg.kernel_size, padding="same", name=f"conv_lstm2d_{i}", **common
            )
        elif cfg.cell == "rnn" or isinstance(cfg.cell, ClassPathConfig):
            # the base RNN layer runs any cell over the time axis (no dropout options)
            layer = keras.layers.RNN(
                _base_rnn_cell(cfg, width, f"cell_{i}"),
                return_sequences=sequences,
                name=f"rnn_{i}",
            )
        else:
            cell = {
                "simple_rnn": keras.layers.SimpleRNN,
                "lstm": keras.layers.LSTM,
                "gru": keras.layers.GRU,
            }[cfg.cell]
            layer = cell(width, name=f"{cfg.cell}_{i}", **common)
        if cfg.bidirectional:
            layer = keras.layers.Bidirectional(
                layer, merge_mode=cfg.merge_mode, name=f"bidirectional_{i}"
            )
        x = layer(x)

    def head(make, name):
        """The layer `make(name)`, wrapped in TimeDistributed when predicting every step."""
        if cfg.return_sequences:
            return keras.layers.TimeDistributed(make(f"{name}_step"), name=name)
        return make(name)

    if cfg.cell == "conv_lstm2d":
        x = head(lambda name: keras.layers.GlobalAveragePooling2D(name=name), "global_pool")(x)
    for j, width in enumerate(cfg.dense_units):
        x = head(
            lambda name, w=width: dense(w, cfg.activation, cfg.dense_impl, name=name), f"dense_{j}"
        )(x)
    outputs = head(
        lambda name: dense(units, activation, cfg.dense_impl, name=name, dtype="float32"), "output"
    )(x)
    return keras.Model(inputs, outputs, name="rnn")
