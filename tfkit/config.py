"""Experiment configuration: YAML files parsed into strict pydantic models.

One experiment file has the sections `name`, `data`, `model`, `train`, `runtime` (and, for
the later capabilities, `tune` and `gan`). Every model forbids unknown keys, so a typo is
an error that names the dotted key and lists the valid ones. `--set a.b=v` overrides are
applied to the raw YAML tree before validation, so they are type-checked like the file.

This module imports no TensorFlow: `tfkit config validate` stays instant.
"""

from __future__ import annotations

import copy
import difflib
import keyword
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tfkit.errors import UserError

# --------------------------------------------------------------------------------------
# input checks shared by every section (kept apart from the sections themselves)
# --------------------------------------------------------------------------------------

_INT64_MAX = 2**63 - 1


def _accepts(annotation: Any, kind: type) -> bool:
    """Whether a field annotation (through Optional/Union/Annotated/Literal) accepts `kind`."""
    import typing

    if annotation is kind:
        return True
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return any(type(a) is kind for a in typing.get_args(annotation))
    if origin in (list, tuple, dict):
        return False
    return any(_accepts(a, kind) for a in typing.get_args(annotation))


def _item_annotation(annotation: Any) -> Any:
    """The item type of a `list[...]` or homogeneous `tuple[...]` annotation, else None."""
    import typing

    if typing.get_origin(annotation) in (list, tuple):
        args = typing.get_args(annotation)
        return args[0] if args else None
    for arg in typing.get_args(annotation):
        found = _item_annotation(arg)
        if found is not None:
            return found
    return None


def check_number_kinds(annotation: Any, value: Any) -> None:
    """Refuse a boolean where a number is expected, and integers beyond 64 bits.

    YAML reads `true` as a boolean and pydantic would take it for 1: `epochs: true` is a
    mistake, not one epoch.

    Raises:
        ValueError: naming the value (pydantic puts the key in front).
    """
    if isinstance(value, bool):
        if not _accepts(annotation, bool) and (
            _accepts(annotation, int) or _accepts(annotation, float)
        ):
            raise ValueError(f"expected a number, not a boolean. Received: {value!r}")
    elif isinstance(value, int) and abs(value) > _INT64_MAX:
        raise ValueError(f"must fit in 64 bits (|value| <= {_INT64_MAX}). Received: {value}")
    elif isinstance(value, (list, tuple)):
        item = _item_annotation(annotation)
        if item is not None:
            for v in value:
                check_number_kinds(item, v)


# random seeds: NumPy's generators take [0, 2**32)
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated.

    Numbers are finite (`.inf` and `.nan` are refused); `validate` also refuses a
    boolean for a number (`epochs: true`) and integers beyond 64 bits (`number_problems`).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------


class DigitsSource(Strict):
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes); no download."""

    kind: Literal["digits"]
    layout: Literal["image", "flat"] = "image"  # (8, 8, 1) images or 64 features


class ShapesSource(Strict):
    """Procedurally drawn RGB circles, squares and triangles with class labels."""

    kind: Literal["shapes"]
    count: int = Field(2000, ge=1)
    resolution: int = Field(32, ge=4)
    seed: Seed = 0

    @field_validator("resolution")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        return check_power_of_two(v, "resolution")


class TabularBinarySource(Strict):
    """Synthetic binary classification table shaped like the seed's MLP (50 features)."""

    kind: Literal["tabular_binary"]
    count: int = Field(4000, ge=1)
    features: int = Field(50, ge=1)
    seed: Seed = 0


class TwoInputSource(Strict):
    """Synthetic two-input data for the seed's functional model (50 + 10 features, 5 classes)."""

    kind: Literal["two_input"]
    count: int = Field(4000, ge=1)
    seed: Seed = 0


class SequencesSource(Strict):
    """Synthetic sequences for recurrent models: the class is decided by a temporal pattern."""

    kind: Literal["sequences"]
    count: int = Field(2000, ge=1)
    length: int = Field(20, ge=2)
    features: int = Field(4, ge=1)
    classes: int = Field(3, ge=2)
    seed: Seed = 0


class RegressionSource(Strict):
    """Synthetic linear regression with heavy-tailed outliers (where a Huber loss pays off)."""

    kind: Literal["regression"]
    count: int = Field(4000, ge=1)
    features: int = Field(8, ge=1)
    noise: float = Field(0.1, ge=0)
    outlier_fraction: float = Field(0.05, ge=0, le=1)
    seed: Seed = 0


class NpzSource(Strict):
    """Arrays in a `.npz` (or `.npy` for features only) file.

    `x` names the feature array, or a list of arrays for a multi-input model; `y` the label
    array (null for unlabelled data).
    """

    kind: Literal["npz"]
    path: str
    x: str | list[str] = "x"
    y: str | None = "y"
    sample_weight: str | None = None


class TableSource(Strict):
    """A CSV or Parquet file read with pyarrow.

    `features` is a list of columns (one input) or a map of input name -> columns
    (multi-input model); null means every column but the label.
    """

    kind: Literal["csv", "parquet"]
    path: str
    features: list[str] | dict[str, list[str]] | None = None
    label: str | None = None
    sample_weight: str | None = None


class TFRecordFeature(Strict):
    """One feature of a TFRecord written without a tfkit schema file."""

    name: str
    dtype: Literal["float32", "int64", "string", "uint8"]
    shape: list[int] = Field(default_factory=list)
    varlen: bool = False
    encoded: Literal["raw", "png", "jpeg"] | None = None  # for string features holding images


class TFRecordSource(Strict):
    """Sharded TFRecord files: a directory written by `tfkit data convert`, a file, a glob,
    or a list of those.

    With a tfkit schema file (`schema.json` beside the shards) nothing else is needed;
    otherwise declare `features` (see `tfkit data inspect`). Feature names are any strings
    (`image/encoded`): the model's inputs get Keras-valid names (`image_encoded`), and the
    data spec keeps the feature each one reads.
    """

    kind: Literal["tfrecord"]
    path: str | list[str]  # a list of files, globs or directories is read as one source
    compression: Literal["", "GZIP", "ZLIB", "auto"] = "auto"
    features: list[TFRecordFeature] | None = None
    inputs: list[str] | None = None  # feature names fed to the model (default: all but label)
    label: str | None = "label"


class ImagesSource(Strict):
    """An image folder with one subfolder per class (or flat, unlabelled)."""

    kind: Literal["images"]
    path: str
    image_size: tuple[int, int] = (64, 64)
    color_mode: Literal["rgb", "grayscale"] = "rgb"
    labels: Literal["inferred", "none"] = "inferred"


class TfdsSource(Strict):
    """A tensorflow-datasets dataset read from `data_dir`; never downloads unless asked."""

    kind: Literal["tfds"]
    name: str
    data_dir: str | None = None
    split: str = "train"
    download: bool = False
    as_supervised: bool = True


SourceConfig = Annotated[
    Union[
        DigitsSource,
        ShapesSource,
        TabularBinarySource,
        TwoInputSource,
        SequencesSource,
        RegressionSource,
        NpzSource,
        TableSource,
        TFRecordSource,
        ImagesSource,
        TfdsSource,
    ],
    Field(discriminator="kind"),
]


class SplitConfig(Strict):
    """Fractions of the source for train/val/test, drawn with `seed`; must sum to 1."""

    train: float = Field(0.8, ge=0, le=1)
    val: float = Field(0.1, ge=0, le=1)
    test: float = Field(0.1, ge=0, le=1)
    seed: Seed = 0

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"split fractions must sum to 1. Received: train={self.train}, "
                f"val={self.val}, test={self.test} (sum {total:g})"
            )
        if self.train <= 0:
            raise ValueError(f"split.train must be > 0. Received: train={self.train}")
        return self


class AugmentConfig(Strict):
    """Image augmentation as Keras preprocessing layers, applied to the train split only."""

    flip: Literal["none", "horizontal", "vertical", "horizontal_and_vertical"] = "none"
    rotation: float = Field(0.0, ge=0, le=1)  # fraction of 2*pi
    zoom: float = Field(0.0, ge=0, lt=1)
    translation: float = Field(0.0, ge=0, lt=1)
    contrast: float = Field(0.0, ge=0, lt=1)


class DataConfig(Strict):
    """The data section: where examples come from and how the pipeline serves them."""

    source: SourceConfig = Field(default_factory=lambda: DigitsSource(kind="digits"))
    val_source: SourceConfig | None = None  # separate validation data instead of a split
    test_source: SourceConfig | None = None
    split: SplitConfig = Field(default_factory=SplitConfig)
    batch_size: int = Field(32, ge=1)
    drop_remainder: bool = False
    shuffle_buffer: int = Field(10_000, ge=0, le=2**31 - 1)  # 0 disables shuffling
    seed: Seed | None = None  # shuffling seed; default runtime.seed
    repeat: bool = False
    cache: str = "memory"  # "none", "memory" or a file path prefix
    prefetch: bool = True
    num_parallel_calls: Literal["autotune"] | int = "autotune"
    deterministic: bool = True
    normalize: Literal["none", "rescale", "standardize", "minus_one_one"] = "none"
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    xflip: bool = False  # random x-flip at read time (GAN augmentation)
    ignore_errors: bool = False  # skip corrupt records/images, report the count
    nan_policy: Literal["error", "drop"] = "error"  # examples with NaN/Inf: refuse or drop
    verify: bool = True  # read every TFRecord once at build: corrupt files fail at once, named
    one_hot: bool = False  # labels as one-hot vectors (for categorical cross-entropy)
    task: Literal["auto", "binary", "multiclass", "regression"] = "auto"  # auto: from labels
    num_classes: int | None = Field(None, ge=2)  # default: from the labels or the schema

    @field_validator("cache")
    @classmethod
    def _cache(cls, v: str) -> str:
        if not v:
            raise ValueError("must be 'none', 'memory' or a file path prefix. Received: ''")
        return v


# --------------------------------------------------------------------------------------
# user extensions by import path
# --------------------------------------------------------------------------------------

_CLASS_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


class ClassPathConfig(Strict):
    """A class of your own by import path, with its constructor arguments (as LightningCLI).

    `{class_path: mypkg.callbacks.MyCallback, args: {patience: 3}}` in `train.callbacks`,
    `train.loss`, `train.metrics` or `model.cell`: `tfkit train` imports `mypkg.callbacks`
    (from the working directory or `PYTHONPATH`), checks the class's kind and that `args`
    fit its signature, and calls `MyCallback(patience=3)`. Only the named module is
    imported; `tfkit config validate` checks the path's form without importing it.
    """

    class_path: str
    args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("class_path")
    @classmethod
    def _dotted(cls, v: str) -> str:
        if not _CLASS_PATH.match(v) or any(keyword.iskeyword(p) for p in v.split(".")):
            raise ValueError(f"must be an import path `package.module.ClassName`. Received: {v!r}")
        return v


# --------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------


class ScheduleConfig(Strict):
    """Learning-rate schedule; `warmup_steps` adds a linear warm-up before any of them."""

    name: Literal["constant", "cosine", "exponential", "piecewise"] = "constant"
    decay_steps: int = Field(1000, ge=1)
    decay_rate: float = Field(0.96, gt=0)  # exponential
    alpha: float = Field(0.0, ge=0)  # cosine: final lr fraction
    boundaries: list[int] = Field(default_factory=list)  # piecewise
    values: list[float] = Field(default_factory=list)  # piecewise
    warmup_steps: int = Field(0, ge=0)
    staircase: bool = False


class OptimizerConfig(Strict):
    """Optimizer by name with its hyperparameters, schedule, clipping and weight EMA."""

    name: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam"
    learning_rate: float = Field(1e-3, gt=0)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    momentum: float = Field(0.0, ge=0, lt=1)  # sgd, rmsprop
    nesterov: bool = False
    beta_1: float = Field(0.9, ge=0, lt=1)
    beta_2: float = Field(0.999, ge=0, lt=1)
    epsilon: float = Field(1e-7, gt=0)
    amsgrad: bool = False  # adam, adamw
    weight_decay: float | None = Field(None, ge=0)  # adamw default 0.004
    clipnorm: float | None = Field(None, gt=0)
    clipvalue: float | None = Field(None, gt=0)
    global_clipnorm: float | None = Field(None, gt=0)
    use_ema: bool = False
    ema_momentum: float = Field(0.99, gt=0, lt=1)

    @model_validator(mode="after")
    def _amsgrad(self) -> OptimizerConfig:
        if self.amsgrad and self.name not in ("adam", "adamw"):
            raise ValueError(f"`amsgrad` is for adam and adamw. Received: name={self.name}")
        return self


class LossConfig(Strict):
    """Loss by name with its arguments (those a name does not take are refused)."""

    name: str = "sparse_categorical_crossentropy"
    from_logits: bool = False
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    gamma: float = Field(2.0, ge=0)  # focal
    alpha: float = Field(0.25, ge=0, le=1)  # focal
    apply_class_balancing: bool = False  # focal
    delta: float = Field(1.0, gt=0)  # huber threshold
    reduction: Literal["sum_over_batch_size", "sum", "mean", "none"] = "sum_over_batch_size"


class CallbackConfig(Strict):
    """A callback by name; `args` are passed to it (validated by the callback builder).

    A callback of your own goes in as `{class_path: mypkg.callbacks.MyCallback, args: {}}`
    (see `ClassPathConfig`).
    """

    name: str
    args: dict[str, Any] = Field(default_factory=dict)


def _steps_or_auto(v: Any) -> Any:
    """A count of steps (an integer >= 1) or `auto` (steps per graph call)."""
    if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
        return v
    raise ValueError(f"must be an integer >= 1 or 'auto'. Received: {v!r}")


class TrainConfig(Strict):
    """The train section: loss, optimizer, metrics, callbacks and the loop that runs them."""

    loop: Literal["fit", "custom"] = "fit"
    epochs: int = Field(10, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1)
    validation_steps: int | None = Field(None, ge=1)
    validation_freq: int = Field(1, ge=1)
    # a name with its options, or a keras.losses.Loss of your own by `class_path`
    loss: LossConfig | ClassPathConfig | str = Field(default_factory=LossConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    # names, or keras.metrics.Metric classes of your own by `class_path`
    metrics: list[str | ClassPathConfig] = Field(default_factory=lambda: ["accuracy"])
    class_weight: dict[int, float] | Literal["balanced"] | None = None
    # names with args, or keras.callbacks.Callback classes of your own by `class_path`
    callbacks: list[CallbackConfig | ClassPathConfig] = Field(default_factory=list)
    checkpoint: Literal["best", "last", "both", "none"] = "both"
    monitor: str = "val_loss"
    tensorboard: bool = True
    histogram_freq: int = Field(0, ge=0)
    profile_batch: int | list[int] = 0
    update_freq: Literal["epoch", "batch"] | int = "epoch"
    verbose: Literal[0, 1, 2, "auto"] = "auto"
    # custom loop: optimizer steps per graph call. auto: 16 (at most an epoch; calls are
    # cut at epoch ends and checkpoint_every steps; batch hooks see each call)
    steps_per_loop: int | Literal["auto"] = "auto"
    checkpoint_every: int = Field(0, ge=0)  # steps; 0 = at each epoch end
    nan_policy: Literal["stop", "skip_step"] = "stop"

    @field_validator("loss", mode="before")
    @classmethod
    def _loss_name(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @field_validator("steps_per_loop", mode="before")
    @classmethod
    def _steps_per_loop(cls, v: Any) -> Any:
        return _steps_or_auto(v)


# options only the custom loop reads, with the default `train.loop: fit` accepts
CUSTOM_LOOP_OPTIONS: dict[str, Any] = {"steps_per_loop": "auto", "nan_policy": "stop"}


def check_loop_options(
    config: ExperimentConfig, where: str, multi_worker: Callable[[], bool]
) -> None:
    """Refuse a custom-loop option that `train.loop: fit` would ignore, naming the key.

    A multi-worker run trains with the custom loop whatever `train.loop` says, so
    `multi_worker()` (asked only when an option is set) lets such a run keep them. `tfkit
    train` and `tfkit config validate` both call this: validate accepts what train does.

    Raises:
        UserError: `where`: `train.<option>` is set while the fit path would run.
    """
    if config.gan is not None or config.train.loop != "fit":
        return
    for option, default in CUSTOM_LOOP_OPTIONS.items():
        value = getattr(config.train, option)
        if value != default and not multi_worker():
            raise UserError(
                f"{where}: `train.{option}: {value}` is read by the custom loop only; set "
                f"`train.loop: custom` to use it, or remove it (`train.loop: fit` ignores it)"
            )


# --------------------------------------------------------------------------------------
# runtime
# --------------------------------------------------------------------------------------


class RuntimeConfig(Strict):
    """Where and how the run executes: distribution strategy, seed, precision, compilation."""

    strategy: Literal["auto", "default", "one_device", "mirrored", "multi_worker"] = "auto"
    devices: list[str] | None = None  # for one_device / mirrored
    logical_cpus: int | None = Field(None, ge=1)  # split the CPU into N logical devices
    # CPU threads: within one op (intra) and across independent ops (inter); None: TensorFlow
    # picks (the number of cores); like torch.set_num_threads
    intra_op_threads: int | None = Field(None, ge=1)
    inter_op_threads: int | None = Field(None, ge=1)
    seed: Seed = 0
    deterministic: bool = False  # tf.config.experimental.enable_op_determinism
    mixed_precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = "float32"
    jit_compile: bool | Literal["auto"] = "auto"
    # training steps per graph call in `fit` (Keras' compile argument). auto: 16 on one
    # replica (takes Python's per-step dispatch out of the loop; batch hooks and the
    # progress bar then see every 16th step), 1 under a multi-replica strategy (Keras'
    # multi-step loop fails there); 1 is Keras' default
    steps_per_execution: int | Literal["auto"] = "auto"
    collective_timeout_s: float = Field(120.0, gt=0)
    # where the other workers are (tfkit.cluster): auto (TF_CONFIG when set, else an srun
    # step of several tasks, else this process alone) | local | tf_config (Kubernetes,
    # Kubeflow TFJob, `tfkit launch`) | slurm (one srun task per worker)
    cluster: Literal["auto", "local", "tf_config", "slurm"] = "auto"
    # slurm: task k of a node listens on cluster_port + k; a distributed search's oracle
    # listens on the chief's port
    cluster_port: int = Field(8888, ge=1, le=65535)

    @field_validator("steps_per_execution", mode="before")
    @classmethod
    def _steps_per_execution(cls, v: Any) -> Any:
        return _steps_or_auto(v)


# --------------------------------------------------------------------------------------
# tune
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# gan
# --------------------------------------------------------------------------------------


# adaptive discriminator augmentation: the transforms of each group and the reference's
# pipeline names (tfkit.stylegan.augment implements them; named here, without TensorFlow,
# for config validation)
AUGMENT_GROUPS: dict[str, tuple[str, ...]] = {
    "blit": ("xflip", "rotate90", "xint"),
    "geom": ("scale", "rotate", "aniso", "xfrac"),
    "color": ("brightness", "contrast", "lumaflip", "hue", "saturation"),
    "filter": ("imgfilter",),
    "noise": ("noise",),
    "cutout": ("cutout",),
}
AUGPIPES: dict[str, tuple[str, ...]] = {
    **{group: (group,) for group in AUGMENT_GROUPS},
    "bg": ("blit", "geom"),
    "bgc": ("blit", "geom", "color"),
    "bgcf": ("blit", "geom", "color", "filter"),
    "bgcfn": ("blit", "geom", "color", "filter", "noise"),
    "bgcfnc": ("blit", "geom", "color", "filter", "noise", "cutout"),
}


# the image sizes a GAN trains at (powers of two)
GAN_RESOLUTIONS = (8, 1024)


def check_power_of_two(value: int, name: str, low: int = 1, high: int | None = None) -> int:
    """`value`, or ValueError unless it is a power of two (from `low` to `high`), naming it:
    "must be a power of two from 8 to 1024. Received: resolution=48"."""
    if value < low or (high is not None and value > high) or value & (value - 1):
        bounds = f" from {low} to {high}" if high is not None else ""
        raise ValueError(f"must be a power of two{bounds}. Received: {name}={value}")
    return value


def parse_augpipe(name: str) -> tuple[str, ...]:
    """The transform groups of an augmentation pipeline name, in the pipeline's order: a
    reference name (`bgc`) or names joined by `+` (`blit+noise`).

    Raises:
        ValueError: an unknown name (the message lists the valid ones).
    """
    groups: set[str] = set()
    for part in str(name).split("+"):
        if part.strip() not in AUGPIPES:
            raise ValueError(
                f"unknown augmentation pipeline {part.strip()!r}. Valid: {', '.join(AUGPIPES)}, "
                "or names joined by '+' (e.g. blit+color)"
            )
        groups.update(AUGPIPES[part.strip()])
    return tuple(g for g in AUGMENT_GROUPS if g in groups)


# the presets of `tfkit.stylegan.presets` (their values live there; the names are here so
# validating a config imports nothing of the GAN code)
GAN_PRESET_NAMES = (
    "auto",
    "stylegan2",
    "paper256",
    "paper512",
    "paper1024",
    "cifar",
    "shapes16",
    "shapes32",
)


class GanConfig(Strict):
    """The gan section: StyleGAN training (`tfkit gan train`).

    `preset` supplies every hyperparameter (see `tfkit.stylegan.presets`); a key set here
    overrides the preset's value. Images come from `data` (use `normalize: minus_one_one`).
    """

    preset: str = "shapes32"
    arch: Literal["stylegan2", "stylegan"] = "stylegan2"
    resolution: int | None = None  # default: the data's image size
    conditional: bool = False  # class-conditional G and projection D (needs labels)
    kimg: float | None = Field(None, gt=0)  # training length in thousands of real images
    # or stop earlier, after this many minutes of training (counted across resumes), like
    # Lightning's max_time; the end is a normal one (snapshot, checkpoint, metrics)
    max_minutes: float | None = Field(None, gt=0)
    tick_kimg: float | None = Field(None, gt=0)  # progress line every tick
    snapshot_ticks: int | None = Field(None, ge=1)  # image grid + checkpoint every N ticks
    batch: int | None = Field(None, ge=1)  # global batch
    z_dim: int | None = Field(None, ge=1)
    w_dim: int | None = Field(None, ge=1)
    map_layers: int | None = Field(None, ge=1)  # mapping network depth
    channel_base: int | None = Field(None, ge=1)
    channel_max: int | None = Field(None, ge=1)
    mbstd_group: int | None = Field(None, ge=1)
    d_residual: bool | None = None  # residual discriminator (stylegan2 arch only)
    lr: float | None = Field(None, gt=0)  # G and D learning rate before lazy-reg scaling
    # learning-rate decay to 0 at gan.kimg (from the fraction lr_decay_start of it); the
    # reference keeps it constant (none)
    lr_decay: Literal["none", "linear", "cosine"] | None = None
    lr_decay_start: float | None = Field(None, ge=0, lt=1)
    gamma: float | None = Field(None, ge=0)  # R1 weight
    ema_kimg: float | None = Field(None, ge=0)  # G_ema half-life
    ema_rampup: float | None = Field(None, ge=0)  # 0: no ramp-up
    pl_weight: float | None = Field(None, ge=0)  # path-length regularization weight
    pl_batch_shrink: int = Field(2, ge=1)
    pl_decay: float = Field(0.01, gt=0, le=1)
    style_mixing: float | None = Field(None, ge=0, le=1)  # style-mixing probability
    g_reg_interval: int = Field(4, ge=1)
    d_reg_interval: int = Field(16, ge=1)
    noise_mode: Literal["random", "const", "none"] = "random"
    clamp: float | None = Field(None, gt=0)  # conv_clamp; default 256 with mixed precision
    # mixed precision in the top `num_fp16_res` resolutions of G and D (reference: 4);
    # auto: float16/bfloat16 when runtime.mixed_precision is mixed_float16/mixed_bfloat16
    mixed_precision: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    num_fp16_res: int | None = Field(None, ge=0)  # default: 4 with mixed precision, else 0
    # per-replica batch of one accumulation round (reference: batch_gpu); default: all of
    # it. Gradients accumulate over batch / (batch_per_replica * replicas) rounds.
    batch_per_replica: int | None = Field(None, ge=1)
    grid: tuple[int, int] = (8, 4)  # snapshot grid columns, rows
    grid_seed: Seed = 0
    metrics: list[Literal["fid", "kid"]] = []  # computed at every snapshot
    # feature network: inception_2015_12_05 (the standard FID Inception graph, the only
    # one comparable with published FIDs), inception_v3 (Keras' ImageNet weights) or
    # classifier:RUN_DIR (a tfkit classifier, offline)
    metrics_features: str = "inception_2015_12_05"
    # classify_image_graph_def.pb (from inception-2015-12-05.tgz); default:
    # $TFKIT_FID_INCEPTION or ~/.keras/models/classify_image_graph_def.pb
    metrics_fid_inception: str | None = None
    metrics_num_images: int = Field(50000, ge=2)  # real and generated images per metric
    # adaptive discriminator augmentation (see tfkit.stylegan.augment): every image D sees
    # goes through the `augpipe` transforms, each with probability p. ada: p adapts so the
    # mean sign of D(real) stays at ada_target; fixed: p = augment_p; none: off.
    # Default: the preset's (ada for the reference presets).
    augment: Literal["ada", "fixed", "none"] | None = None
    augpipe: str = "bgc"  # blit, geom, color, filter, noise, cutout, bg, bgc, ... or a+b
    augment_p: float | None = Field(None, ge=0, le=1)  # p with augment: fixed
    ada_target: float = Field(0.6, ge=-1, le=1)  # target of mean sign(D(real))
    ada_kimg: float = Field(500, gt=0)  # p can go from 0 to 1 in this many kimg
    ada_interval: int = Field(4, ge=1)  # adjust p every this many iterations

    @field_validator("preset")
    @classmethod
    def _preset(cls, v: str) -> str:
        if v not in GAN_PRESET_NAMES:
            raise ValueError(f"unknown preset {v!r}. Valid presets: {', '.join(GAN_PRESET_NAMES)}")
        return v

    @field_validator("resolution")
    @classmethod
    def _resolution(cls, v: int | None) -> int | None:
        return v if v is None else check_power_of_two(v, "resolution", *GAN_RESOLUTIONS)

    @field_validator("augpipe")
    @classmethod
    def _augpipe(cls, v: str) -> str:
        parse_augpipe(v)  # ValueError naming the valid pipelines
        return v

    @model_validator(mode="after")
    def _augment_p(self) -> GanConfig:
        if self.augment is not None and (message := augment_p_error(self.augment, self.augment_p)):
            raise ValueError(message)
        return self


def gan_default(name: str) -> Any:
    """The default of `gan.<name>`: GanConfig defines every GAN default once (presets,
    `GanOptions` and `AugmentPipe` read it here)."""
    return GanConfig.model_fields[name].default


def augment_p_error(augment: str, augment_p: float | None, preset: str | None = None) -> str:
    """The fixed-p rule: `gan.augment_p` is given exactly when the augmentation is `fixed`.

    Args:
        augment: `gan.augment`, or the preset's when `preset` names it.
        augment_p: `gan.augment_p`.
        preset: the preset whose `augment` applies (`gan.augment` was not set).

    Returns:
        The message of the broken rule, or "" when it holds.
    """
    if augment == "fixed" and augment_p is None:
        return "`gan.augment: fixed` needs `gan.augment_p` (the probability)"
    if augment != "fixed" and augment_p is not None:
        source = f" (preset {preset})" if preset else ""
        return (
            "`gan.augment_p` is used with `gan.augment: fixed` only. "
            f"Received: augment={augment}{source}"
        )
    return ""


# --------------------------------------------------------------------------------------
# experiment
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# loading, overrides, errors
# --------------------------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    """Parse an override value as YAML (`3`, `1e-3`, `true`, `[1, 2]`, `{a: 1}`, `adam`)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(tree: dict, overrides: list[str] | None, source: str = "--set") -> dict:
    """Return a copy of `tree` with `a.b.c=value` overrides applied (values parsed as YAML).

    Raises:
        UserError: an override without `=` or that walks through a non-mapping.
    """
    tree = copy.deepcopy(tree)
    for item in overrides or []:
        if "=" not in item:
            raise UserError(f"{source} expects KEY=VALUE (e.g. train.epochs=3). Received: {item!r}")
        key, _, text = item.partition("=")
        parts = key.strip().split(".")
        if not any(parts):
            raise UserError(
                f"{source} has an empty key; write KEY=VALUE (e.g. train.epochs=3). Received: {item!r}"
            )
        if not all(parts):
            fixed = ".".join(p for p in parts if p)
            raise UserError(
                f"{source} {key.strip()}: the dotted key has an empty part (a leading, trailing "
                f"or doubled dot); write {fixed}={text}. Received: {item!r}"
            )
        parts = _space_entry_path(parts, tree, text, f"{source} {key.strip()}")
        node = tree
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise UserError(
                    f"{source} {key}: `{where}` is {child!r}, not a section, so it has no `{parts[i + 1]}`"
                )
            node = child
        node[parts[-1]] = _parse_value(text)
    return tree


def _space_entry_path(parts: list[str], tree: dict, text: str, named: str) -> list[str]:
    """The path an override walks. A `tune.space` entry is named by a dotted config key, so
    `tune.space.model.units.choice` means the field `choice` of the entry `model.units`, and
    `tune.space.model.units` the whole entry (a mapping such as `{choice: [[8], [16]]}`).

    Raises:
        UserError: an override below an entry that names no field of it, or a whole entry
            that is not a mapping; naming the key and the accepted forms.
    """
    if parts[:2] != ["tune", "space"] or len(parts) < 3:
        return parts
    rest = parts[2:]
    fields = list(_field_names(HyperParameterConfig))
    forms = (
        f"tune.space.KEY.FIELD=VALUE (FIELD: {', '.join(fields)}) or "
        "'tune.space.KEY={choice: [...]}', KEY a dotted config key such as model.units"
    )
    if len(rest) >= 2 and rest[-1] in fields:
        return ["tune", "space", ".".join(rest[:-1]), rest[-1]]
    entry = ".".join(rest)
    space = tree.get("tune", {}).get("space") if isinstance(tree.get("tune"), dict) else None
    for existing in space if isinstance(space, dict) else ():
        if entry.startswith(f"{existing}."):
            raise UserError(
                f"{named}: `{entry[len(existing) + 1 :]}` is not a field of the search-space "
                f"entry `{existing}`; expected {forms}"
            )
    if not isinstance(_parse_value(text), dict):
        raise UserError(f"{named}: a search-space entry is a mapping; expected {forms}")
    return ["tune", "space", entry]


def _resolve_loc(loc: tuple) -> tuple[list[str], type[BaseModel] | None]:
    """Turn a pydantic error location into the user's dotted path and the owning model.

    Discriminated unions add the tag to the location (`model.cnn.filters`) while the user
    wrote `model.filters`, so tags are dropped; dict-valued fields (`tune.space`) take any
    key. The owner is the model class that holds the last key (for listing valid keys).
    """
    import typing

    path: list[str] = []
    current: Any = ExperimentConfig
    owner: type[BaseModel] | None = None
    for part in loc:
        if isinstance(part, int):
            path.append(f"[{part}]")
            continue
        members = _union_members(current, typing)
        holder = next((m for m in members if part in _field_names(m)), None)
        if holder is not None:
            owner = holder
            path.append(part)
            current = holder.model_fields[_field_names(holder)[part]].annotation
            continue
        tagged = next((m for m in members if part in _tags_of(m) or m.__name__ == part), None)
        if tagged is not None:
            current = tagged
            continue
        value_type = _dict_value_type(current, typing)
        if value_type is not None:
            path.append(part)
            current = value_type
            continue
        path.append(part)  # a key no model knows: the leaf of an extra_forbidden error
        owner = members[0] if len(members) == 1 else owner
        current = None
    return path, owner


def _field_names(model: type[BaseModel]) -> dict[str, str]:
    """The keys a model accepts in YAML (aliases where set) -> its field names."""
    return {(f.alias or name): name for name, f in model.model_fields.items()}


def _dict_value_type(annotation, typing) -> Any:
    """The value type of a `dict[...]` annotation (inside Optional/Annotated), else None."""
    if typing.get_origin(annotation) is dict:
        return typing.get_args(annotation)[1]
    for arg in typing.get_args(annotation):
        found = _dict_value_type(arg, typing)
        if found is not None:
            return found
    return None


def _union_members(annotation, typing) -> list[type[BaseModel]]:
    out = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    for arg in typing.get_args(annotation):
        out.extend(_union_members(arg, typing))
    return out


def _tags_of(model: type[BaseModel]) -> tuple[str, ...]:
    """The discriminator values (`kind` or `name` literals) a union member accepts."""
    for key in ("kind", "name"):
        field = model.model_fields.get(key)
        if field is not None:
            args = getattr(field.annotation, "__args__", None) or ()
            if args and all(isinstance(a, str) for a in args):
                return tuple(args)
    return ()


def _member_for(annotation: Any, value: dict) -> type[BaseModel] | None:
    """The config model a mapping `value` is validated as (a union member picked by its tag)."""
    import typing

    members = _union_members(annotation, typing)
    if ClassPathConfig in members:  # `{class_path, args}` or the section it stands for
        if "class_path" in value:
            return ClassPathConfig
        members = [m for m in members if m is not ClassPathConfig]
    if len(members) == 1:
        return members[0]
    for member in members:
        for key in ("kind", "name"):
            if key in value and value[key] in _tags_of(member):
                return member
    return None


def number_problems(raw: Any, model: type[BaseModel], where: str, prefix: str = "") -> list[str]:
    """Booleans given for numbers and integers beyond 64 bits anywhere in a raw YAML tree.

    pydantic takes `true` for 1; YAML writes `epochs: true` for a mistake. One message per
    problem, naming the dotted key.
    """
    import typing

    if not isinstance(raw, dict):
        return []
    fields = _field_names(model)
    out = []
    for key, value in raw.items():
        if key not in fields:
            continue  # pydantic reports unknown keys
        annotation = model.model_fields[fields[key]].annotation
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            member = _member_for(annotation, value)
            if member is not None:
                out += number_problems(value, member, where, f"{dotted}.")
                continue
            value_type = _dict_value_type(annotation, typing)
            if value_type is not None and _union_members(value_type, typing):
                for k, v in value.items():
                    sub = _member_for(value_type, v) if isinstance(v, dict) else None
                    if sub is not None:
                        out += number_problems(v, sub, where, f"{dotted}.{k}.")
                continue
        if isinstance(value, list):
            item = _item_annotation(annotation)
            if item is not None and _union_members(item, typing):
                for i, v in enumerate(value):
                    sub = _member_for(item, v) if isinstance(v, dict) else None
                    if sub is not None:
                        out += number_problems(v, sub, where, f"{dotted}[{i}].")
                continue
        try:
            check_number_kinds(annotation, value)
        except ValueError as err:
            out.append(f"{where}: `{dotted}`: {err}")
    return out


def format_validation_error(err: ValidationError, raw: dict, where: str) -> str:
    """One readable message per problem: file, dotted key, expected and received."""
    lines = []
    for e in err.errors():
        path, owner = _resolve_loc(tuple(e["loc"]))
        key = ".".join(path).replace(".[", "[") or "(top level)"
        received = e.get("input")
        if e["type"] == "extra_forbidden":
            valid = sorted(_field_names(owner)) if owner else []
            leaf = path[-1] if path else ""
            hint = ""
            close = difflib.get_close_matches(leaf, valid, n=1, cutoff=0.6)
            if close:
                hint = f" Did you mean `{close[0]}`?"
            lines.append(f"{where}: unknown key `{key}`.{hint} Valid keys here: {', '.join(valid)}")
        elif e["type"] == "union_tag_invalid":
            ctx = e.get("ctx", {})
            tag_key = str(ctx.get("discriminator", "tag")).strip("'")
            lines.append(
                f"{where}: unknown {key}.{tag_key} {ctx.get('tag')!r}. "
                f"Expected one of: {ctx.get('expected_tags')}"
            )
        elif e["type"] == "union_tag_not_found":
            ctx = e.get("ctx", {})
            lines.append(f"{where}: `{key}` needs a {ctx.get('discriminator', 'tag')} key")
        elif e["type"] == "missing":
            lines.append(f"{where}: `{key}` is required but missing")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            tail = "" if "Received" in msg else f". Received: {received!r}"
            lines.append(f"{where}: `{key}`: {msg}{tail}")
    return "\n".join(lines)


def name_problems(config: ExperimentConfig, where: str) -> list[str]:
    """Names the config gives that `train`/`tune` would refuse, without importing Keras.

    Loss, metric, activation and callback names (and callback arguments) are checked against
    `tfkit.keras_names`, the tables the training code builds from; `monitor` keys against
    the logs the configured metrics produce; a tune section needs a search space.
    """
    from tfkit import keras_names as kn

    out: list[str] = []

    def check(key: str, fn, value) -> None:
        try:
            fn(value)
        except ValueError as err:
            out.append(f"{where}: `{key}`: {err}")

    train = config.train
    if isinstance(train.loss, LossConfig):
        check("train.loss.name", kn.check_loss_name, train.loss.name)
    if isinstance(train.loss, LossConfig) and train.loss.name.lower() in kn.LOSS_NAMES:
        takes = set(kn.loss_arguments(train.loss.name))
        given = sorted(
            k
            for k in train.loss.model_fields_set - {"name", "reduction"}
            if getattr(train.loss, k) != LossConfig.model_fields[k].default and k not in takes
        )
        if given:
            out.append(
                f"{where}: `train.loss`: {train.loss.name} does not take {', '.join(given)}. "
                f"It accepts: {', '.join(['reduction', *sorted(takes)])}"
            )
    metric_names = []
    for i, name in enumerate(train.metrics):
        if isinstance(name, ClassPathConfig):  # logged under its `name` argument, if given
            metric_names.append(name.args.get("name"))
        else:
            check(f"train.metrics[{i}]", kn.check_metric_name, name)
            metric_names.append(name)
    shown = [m.class_path if isinstance(m, ClassPathConfig) else m for m in train.metrics]
    # a class_path metric without a `name` argument logs under a name only its class knows
    logs_known = all(isinstance(n, str) for n in metric_names)
    logs = kn.log_keys([n for n in metric_names if isinstance(n, str)])
    monitors = [("train.monitor", train.monitor)]
    for i, cb in enumerate(train.callbacks):
        if isinstance(cb, CallbackConfig):
            out += [
                f"{where}: `train.callbacks[{i}]`: {p}"
                for p in kn.callback_problems(cb.name, cb.args)
            ]
        if isinstance(cb.args.get("monitor"), str):
            monitors.append((f"train.callbacks[{i}].args.monitor", cb.args["monitor"]))
    for key, monitor in monitors:
        if logs_known and monitor not in logs:
            out.append(
                f"{where}: `{key}`: no metric `{monitor}` is logged by this config "
                f"(train.metrics: {shown}). Logged: {', '.join(logs)}"
            )
    for field_name in type(config.model).model_fields:
        if field_name.endswith("activation"):
            value = getattr(config.model, field_name)
            if isinstance(value, str):
                check(f"model.{field_name}", kn.check_activation_name, value)
    out += [f"{where}: {p}" for p in combination_problems(config)]
    if config.tune is not None:
        if not config.tune.space:
            out.append(
                f"{where}: `tune.space` is empty: a search needs at least one key, e.g. "
                "`model.dropout: {float: [0.0, 0.5]}`"
            )
        objective = config.tune.objective.name
        if logs_known and objective not in logs and "train.metrics" not in config.tune.space:
            out.append(
                f"{where}: `tune.objective.name`: no metric `{objective}` is logged by this "
                f"config (train.metrics: {shown}). Logged: {', '.join(logs)}"
            )
    return out


def combination_problems(config: ExperimentConfig) -> list[str]:
    """Settings that are each valid but cannot work together."""
    out = []
    data, train = config.data, config.train
    if data.repeat and train.steps_per_epoch is None and config.gan is None:
        out.append(
            "`data.repeat: true` makes the train split endless, so an epoch never ends; set "
            "`train.steps_per_epoch` too (or repeat: false)"
        )
    weighted = [
        f"data.{key}.sample_weight"
        for key in ("source", "val_source", "test_source")
        if getattr(getattr(data, key), "sample_weight", None)
    ]
    if train.class_weight is not None and weighted:
        out.append(
            f"`train.class_weight` and `{weighted[0]}` cannot be combined (Keras refuses "
            "both at once); fold the class weights into the sample weights"
        )
    return out


def validate(raw: Any, where: str = "config") -> ExperimentConfig:
    """Validate a raw YAML tree into an `ExperimentConfig`, or raise a `UserError`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(
            f"{where}: the top level must be a mapping of sections. Received: {type(raw).__name__}"
        )
    problems = number_problems(raw, ExperimentConfig, where)
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        problems.append(format_validation_error(err, raw, where))
    else:
        problems += name_problems(config, where)
    if problems:
        raise UserError("\n".join(problems))
    return config


_MAX_CONFIG_BYTES = 10 * 2**20


class _DuplicateKey(yaml.YAMLError):
    """A mapping of a YAML file names one key twice."""

    def __init__(self, key: Any, first_line: int, second_line: int):
        super().__init__(key, first_line, second_line)
        self.key, self.first_line, self.second_line = key, first_line, second_line


class _UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice in one mapping (PyYAML silently keeps
    the last one: `name: x` then `name: y`, or two `train:` blocks). Keys brought in by a
    `<<:` merge may still be overridden, as YAML intends."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise _DuplicateKey(key, seen[key], line)
                    seen[key] = line
                except TypeError:  # an unhashable key: construct_mapping reports it
                    continue
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict:
    """Read a YAML file into a dict, with one-line errors that name the file and line.

    Raises:
        UserError: invalid YAML, a key given twice in one mapping (naming both lines), or
            an empty file.
    """
    text = read_config_text(path)
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except _DuplicateKey as err:
        raise UserError(
            f"{path}: key `{err.key}` is given twice, at lines {err.first_line} and "
            f"{err.second_line}; keep one (YAML would silently use the last)"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        if isinstance(err, yaml.reader.ReaderError):  # a control character such as NUL
            line = text.count("\n", 0, err.position) + 1
            column = err.position - (text.rfind("\n", 0, err.position) + 1) + 1
            at = f" (line {line}, column {column})"
            problem = f"unacceptable character #x{err.character:04x} ({err.reason})"
        else:
            problem = getattr(err, "problem", None) or str(err)
        problem = " ".join(str(problem).split())  # one line
        raise UserError(f"{path}{at}: invalid YAML: {problem}") from None
    if raw is None:
        raise UserError(
            f"{path}: the config file is empty (no sections); write at least `name:` and "
            "`data:`, or copy one of configs/*.yaml"
        )
    return raw


def read_config_text(path: str | Path) -> str:
    """The text of a config file: a regular UTF-8 file, never a FIFO, device or directory.

    Raises:
        UserError: missing, a directory, a special file (reading a FIFO would wait forever),
            unreadable, too large, or not UTF-8 text; naming the path.
    """
    import stat

    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UserError(f"Config file not found: {path}") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read the config file: {err.strerror}") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"Config path is a directory, expected a YAML file: {path}")
    if not stat.S_ISREG(mode):
        raise UserError(
            f"{path}: not a regular file (a pipe, socket or device); expected a YAML file"
        )
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise UserError(
            f"{path}: {path.stat().st_size} bytes is too large for a config file "
            f"(at most {_MAX_CONFIG_BYTES}); is it a data file?"
        )
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot read the config file: {err.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "save the config as UTF-8"
        ) from None


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> ExperimentConfig:
    """Load an experiment from YAML (or defaults when `path` is None) with `--set` overrides.

    Args:
        path: the YAML file.
        overrides: `a.b.c=value` strings, applied before validation.

    Returns:
        The validated `ExperimentConfig`.

    Raises:
        UserError: the file is missing or invalid, naming the file and dotted key.
    """
    raw = read_yaml(path) if path is not None else {}
    raw = apply_overrides(raw, overrides)
    where = str(path) if path is not None else "config"
    if overrides:
        where += " (with --set overrides)"
    return validate(raw, where)


def to_dict(config: BaseModel) -> dict:
    """The config as plain data, every default filled in (what `config.yaml` holds)."""
    return config.model_dump(mode="json")


def dump_yaml(config: BaseModel) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=None)


def save_config(config: BaseModel, path: str | Path) -> Path:
    """Write the resolved config to `path` atomically (write a temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(dump_yaml(config))
    tmp.replace(path)
    return path


def diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += diff_keys(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]
