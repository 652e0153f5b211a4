"""The `data` section: where examples come from (one model per `source.kind`), how they
are split, augmented and served."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from tfkit.config.base import Seed, Strict, check_power_of_two


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
