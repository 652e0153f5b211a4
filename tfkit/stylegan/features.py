"""Feature networks for FID/KID: InceptionV3 with local weights, or a tfkit classifier.

Range convention: every image handed to a `FeatureNetwork` is float NHWC in [-1, 1], the
range the generator produces (and the GAN's real-data pipeline serves). The network
resizes (bilinear), converts grayscale to RGB when it needs 3 channels, and maps [-1, 1]
to the range its model expects (InceptionV3: [-1, 1] as `preprocess_input` gives; a
classifier: the range its training run's `data.normalize` gave it).

Specs accepted by `feature_network`:

- `inception_v3`: `keras.applications.InceptionV3(include_top=False, pooling="avg")`, 2048
  features at 299x299, with ImageNet weights read from a local `.h5` file only. tfkit never
  downloads: the file comes from `weights=` (`--inception-weights`), the environment
  variable `TFKIT_INCEPTION_WEIGHTS`, or the Keras cache
  (`$KERAS_HOME/models/` or `~/.keras/models/`, file name `INCEPTION_WEIGHTS_FILE`).
- `classifier:RUN_DIR`: the `model.keras` of a classifier trained by `tfkit train` (loaded
  in safe mode); the features are the input of its output layer (the penultimate layer's
  output), which makes the Fréchet distance a Fréchet classifier distance.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from tfkit.errors import UserError, unknown_name

INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
    + INCEPTION_WEIGHTS_FILE
)
INCEPTION_SIZE = 299
SPECS = ("inception_v3", "classifier:RUN_DIR")


@dataclass
class FeatureNetwork:
    """A Keras model that maps images in [-1, 1] to one feature vector per image.

    Args:
        model: the Keras model; it takes images of `image_size` x `channels` in its own input
            range and returns (batch, features).
        image_size: (height, width) the model expects; inputs are resized to it.
        channels: input channels the model expects (1 or 3).
        to_model_range: maps an image batch in [-1, 1] to the model's input range.
        spec: a stable description of the network (part of the real-statistics cache key);
            None disables caching.

    Call arguments:
        images: float tensor (batch, H, W, C) in [-1, 1].

    Example:
        >>> net = FeatureNetwork(keras.Sequential([...]), (32, 32), 3, spec="my-net-v1")
        >>> net(np.zeros((4, 32, 32, 3), "float32")).shape
    """

    model: keras.Model
    image_size: tuple[int, int]
    channels: int = 3
    to_model_range: Callable[[tf.Tensor], tf.Tensor] = field(default=lambda x: x)
    spec: str | None = None

    def __post_init__(self) -> None:
        self._step = None

    @property
    def num_features(self) -> int:
        """Length of one feature vector."""
        return int(self.model.output.shape[-1])

    def preprocess(self, images: tf.Tensor) -> tf.Tensor:
        """Resize to the model's size, fix the channels and map [-1, 1] to its range."""
        images = tf.convert_to_tensor(images, tf.float32)
        if images.shape[-1] == 1 and self.channels == 3:
            images = tf.repeat(images, 3, axis=-1)
        elif images.shape[-1] == 3 and self.channels == 1:
            images = tf.reduce_mean(images, axis=-1, keepdims=True)
        if tuple(images.shape[1:3]) != tuple(self.image_size):
            images = tf.image.resize(images, self.image_size, method="bilinear")
        return self.to_model_range(images)

    def __call__(self, images: Any) -> tf.Tensor:
        if self._step is None:
            self._step = tf.function(
                lambda x: tf.cast(self.model(self.preprocess(x), training=False), tf.float32),
                reduce_retracing=True,
            )
        return self._step(tf.convert_to_tensor(images, tf.float32))


def as_feature_network(network: FeatureNetwork | keras.Model) -> FeatureNetwork:
    """A `FeatureNetwork` as is, or a bare Keras model wrapped as one (inputs in [-1, 1])."""
    if isinstance(network, FeatureNetwork):
        return network
    if isinstance(network, keras.Model):
        shape = network.input_shape
        if isinstance(shape, list) or len(shape) != 4 or None in shape[1:3]:
            raise UserError(
                "A feature network must take one image input of known size (batch, H, W, C). "
                f"Received: input_shape={shape}"
            )
        return FeatureNetwork(network, (shape[1], shape[2]), shape[3], spec=None)
    raise UserError(
        f"`network` must be a FeatureNetwork or a keras.Model. Received: {type(network).__name__}"
    )


# --------------------------------------------------------------------------------------
# InceptionV3
# --------------------------------------------------------------------------------------


def inception_weights_candidates() -> list[Path]:
    """Where tfkit looks for the InceptionV3 no-top weights, in order (no download)."""
    out = []
    env = os.environ.get("TFKIT_INCEPTION_WEIGHTS")
    if env:
        out.append(Path(env).expanduser())
    home = os.environ.get("KERAS_HOME")
    if home:
        homes = [Path(home).expanduser()]
    else:  # Keras caches in /tmp/.keras when ~ is not writable
        homes = [Path("~/.keras").expanduser(), Path("/tmp/.keras")]
    out += [h / "models" / INCEPTION_WEIGHTS_FILE for h in homes]
    return out


def keras_cache_weights_path() -> Path:
    """Where the Keras cache keeps the InceptionV3 no-top weights (`$KERAS_HOME` or ~/.keras)."""
    home = os.environ.get("KERAS_HOME") or "~/.keras"
    return Path(home).expanduser() / "models" / INCEPTION_WEIGHTS_FILE


def find_inception_weights(weights: str | os.PathLike | None = None) -> Path:
    """The local InceptionV3 weights file: `weights` if given, else the first candidate found.

    Raises:
        UserError: the file is not there, saying where to put it (never downloads).
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UserError(
                f"--inception-weights: no such file. Received: {weights}. Expected the Keras "
                f"InceptionV3 no-top weights `{INCEPTION_WEIGHTS_FILE}` "
                f"(from {INCEPTION_WEIGHTS_URL})"
            )
        return path
    candidates = inception_weights_candidates()
    for path in candidates:
        if path.is_file():
            return path
    raise UserError(
        f"InceptionV3 weights not found locally (tfkit never downloads them). Looked in: "
        f"{', '.join(str(p) for p in candidates)}. Copy `{INCEPTION_WEIGHTS_FILE}` (from "
        f"{INCEPTION_WEIGHTS_URL}) to {keras_cache_weights_path()} or pass --inception-weights PATH; "
        "offline, use --features classifier:RUN_DIR (a classifier trained by `tfkit train`, "
        "e.g. configs/shapes_classifier.yaml)"
    )


def inception_v3(weights: str | os.PathLike | None = None) -> FeatureNetwork:
    """InceptionV3 pool features (2048) with ImageNet weights from a local file.

    The model is built with `weights=None` and the local file is loaded into it, so no
    network access is ever attempted.

    Raises:
        UserError: no local weights file (see `find_inception_weights`), or a file that does
            not hold InceptionV3 no-top weights.
    """
    path = find_inception_weights(weights)
    model = keras.applications.InceptionV3(
        include_top=False,
        weights=None,
        input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3),
        pooling="avg",
    )
    try:
        model.load_weights(str(path))
    except Exception as err:  # a truncated or wrong file
        raise UserError(
            f"{path} does not hold InceptionV3 no-top weights ({type(err).__name__}: {err}). "
            f"Expected `{INCEPTION_WEIGHTS_FILE}` from {INCEPTION_WEIGHTS_URL}"
        ) from None
    stat = path.stat()
    return FeatureNetwork(
        model,
        (INCEPTION_SIZE, INCEPTION_SIZE),
        3,
        to_model_range=lambda x: x,  # preprocess_input("tf") maps to [-1, 1]: already there
        spec=f"inception_v3:{path.name}:{stat.st_size}",
    )


# --------------------------------------------------------------------------------------
# classifier trained by tfkit
# --------------------------------------------------------------------------------------


def _range_from_minus_one_one(normalize: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """Map [-1, 1] to what a classifier trained with `data.normalize` saw.

    tfkit's pipeline turns uint8 images into [0, 1] floats before normalization and the
    embedded image sets are [0, 1], so `none` and `rescale` both mean [0, 1].
    """
    if normalize == "minus_one_one":
        return lambda x: x
    if normalize in ("rescale", "none"):
        return lambda x: (x + 1.0) * 0.5
    raise UserError(
        "classifier features need a classifier trained with `data.normalize` minus_one_one, "
        f"rescale or none (a known image range). Received: normalize={normalize!r}"
    )


def feature_extractor(model: keras.Model) -> keras.Model:
    """A model that outputs the input of `model`'s output layer (its penultimate features).

    The output layer is the last layer with weights (an activation or dropout after it is
    skipped), so `Dense -> Activation` heads give the features before the dense layer.

    Raises:
        UserError: a subclassed model (no layer graph to cut).
    """
    layers = [layer for layer in model.layers if layer.weights]
    try:
        features = layers[-1].input
        inputs = model.inputs
    except (AttributeError, IndexError, ValueError):
        features = inputs = None
    if features is None or not inputs or isinstance(features, (list, tuple, dict)):
        raise UserError(
            f"Cannot take penultimate features from model `{model.name}`: expected a "
            "Sequential or functional image classifier (e.g. model.name: cnn)"
        )
    if len(features.shape) != 2:
        features = keras.layers.Flatten()(features)
    return keras.Model(inputs, features, name=f"{model.name}_features")


def classifier(run_dir: str | os.PathLike) -> FeatureNetwork:
    """Penultimate-layer features of the classifier in a `tfkit train` run directory.

    Raises:
        UserError: not a run directory, no model in it, or a model that does not take images.
    """
    from tfkit.runs import Run

    run = Run.open(run_dir, "measure features with", flag="--features classifier:")
    config = run.load_config()
    from tfkit.saving import registered_objects

    model = run.load_model(registered_objects())
    shape = model.input_shape
    if isinstance(shape, list) or len(shape) != 4 or None in shape[1:]:
        raise UserError(
            f"--features classifier:{run_dir}: the model must take one image input "
            f"(batch, H, W, C). Received: input_shape={shape}"
        )
    to_range = _range_from_minus_one_one(config.data.normalize)
    digest = hashlib.sha1(run.model_path().read_bytes()).hexdigest()[:16]
    return FeatureNetwork(
        feature_extractor(model),
        (shape[1], shape[2]),
        shape[3],
        to_model_range=to_range,
        spec=f"classifier:{digest}",
    )


def feature_network(
    spec: str | FeatureNetwork | keras.Model, *, inception_weights: str | os.PathLike | None = None
) -> FeatureNetwork:
    """The feature network named by `spec`.

    Args:
        spec: `inception_v3`, `classifier:RUN_DIR`, or a `FeatureNetwork`/Keras model.
        inception_weights: path of the InceptionV3 no-top `.h5` weights (else the Keras cache).

    Raises:
        UserError: an unknown spec (listing the valid ones), or missing weights/model.
    """
    if not isinstance(spec, str):
        return as_feature_network(spec)
    if spec == "inception_v3":
        return inception_v3(inception_weights)
    if spec.startswith("classifier:"):
        run_dir = spec.partition(":")[2]
        if not run_dir:
            raise UserError(
                "--features classifier:RUN_DIR needs a run directory. Received: 'classifier:'"
            )
        return classifier(run_dir)
    raise unknown_name("feature network", spec, SPECS)


def feature_spec_is_valid(spec: str) -> bool:
    """Whether `spec` names a feature network (without building it)."""
    return spec == "inception_v3" or (spec.startswith("classifier:") and len(spec) > 11)


__all__ = [
    "FeatureNetwork",
    "as_feature_network",
    "classifier",
    "feature_extractor",
    "feature_network",
    "find_inception_weights",
    "inception_v3",
]
