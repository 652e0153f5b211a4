"""Feature networks for FID/KID: the standard FID Inception graph, Keras' InceptionV3 or a
tfkit classifier, each read from a local file (tfkit never downloads one).

Range convention: every image handed to a `FeatureNetwork` is float NHWC in [-1, 1], the
range the generator produces (and the GAN's real-data pipeline serves). The network
converts grayscale to RGB when it needs 3 channels, resizes (bilinear) when it has a fixed
input size, and maps [-1, 1] to the range its model expects (the FID Inception graph:
uint8 levels 0..255; Keras' InceptionV3: [-1, 1] as `preprocess_input` gives; a classifier:
the range its training run's `data.normalize` gave it).

Each network has a `name`, recorded next to every distance it computes (`fid_network` in
`metrics.jsonl`). Only `inception_2015_12_05` gives FIDs comparable with published values.

Specs accepted by `feature_network`:

- `inception_2015_12_05` (default): the network behind published FIDs, the TensorFlow
  Inception graph of 2015-12-05 (`classify_image_graph_def.pb` inside
  `inception-2015-12-05.tgz`), as TTUR's `fid.py` and stylegan2-ada-pytorch use it: images
  are quantized to uint8 levels as the reference does for generated images
  (`x * 127.5 + 128`, clipped to [0, 255], truncated), fed at any size to `ExpandDims:0`,
  where the graph's own ops resize them to 299x299 (TensorFlow 1 bilinear: no half-pixel
  centres, no corner alignment) and map them to [-1, 1] (`Mul:0`); the features are
  `pool_3:0`, 2048 per image. The file comes from `path=` (`--fid-inception`,
  `gan.metrics_fid_inception`), the environment variable `TFKIT_FID_INCEPTION`, or the
  Keras cache (`$KERAS_HOME/models/` or `~/.keras/models/`, file name `FID_INCEPTION_FILE`).
- `inception_v3`: `keras.applications.InceptionV3(include_top=False, pooling="avg")`, 2048
  features at 299x299, with ImageNet weights read from a local `.h5` file only. tfkit never
  downloads: the file comes from `weights=` (`--inception-weights`), the environment
  variable `TFKIT_INCEPTION_WEIGHTS`, or the Keras cache
  (`$KERAS_HOME/models/` or `~/.keras/models/`, file name `INCEPTION_WEIGHTS_FILE`).
  Its weights are not those of the FID graph: its distances are not comparable with
  published FIDs (name `inception_v3_keras_imagenet`).
- `classifier:RUN_DIR`: the `model.keras` of a classifier trained by `tfkit train` (loaded
  in safe mode); the features are the input of its output layer (the penultimate layer's
  output), which makes the Fréchet distance a Fréchet classifier distance (name
  `classifier:<run directory>`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfkit.errors import UserError, unknown_name

INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
    + INCEPTION_WEIGHTS_FILE
)
INCEPTION_SIZE = 299
KERAS_INCEPTION_NAME = "inception_v3_keras_imagenet"

FID_INCEPTION = "inception_2015_12_05"  # spec and name of the standard FID network
FID_INCEPTION_FILE = "classify_image_graph_def.pb"
FID_INCEPTION_ARCHIVE = "inception-2015-12-05.tgz"
FID_INCEPTION_URL = "http://download.tensorflow.org/models/image/imagenet/" + FID_INCEPTION_ARCHIVE
FID_INCEPTION_ENV = "TFKIT_FID_INCEPTION"
FID_INPUT = "ExpandDims:0"  # float images (N, H, W, 3) in [0, 255], any size
FID_OUTPUT = "pool_3:0"  # (N, 1, 1, 2048)

DEFAULT_SPEC = FID_INCEPTION
SPECS = (FID_INCEPTION, "inception_v3", "classifier:RUN_DIR")


@dataclass
class FeatureNetwork:
    """A Keras model that maps images in [-1, 1] to one feature vector per image.

    Args:
        model: the Keras model (or a callable `model(images, training=False)` with a
            `num_features` attribute); it takes images of `image_size` x `channels` in its
            own input range and returns (batch, features).
        image_size: (height, width) the model expects; inputs are resized to it. None: the
            model takes any size (it resizes itself).
        channels: input channels the model expects (1 or 3).
        to_model_range: maps an image batch in [-1, 1] to the model's input range.
        spec: a stable description of the network (part of the real-statistics cache key);
            None disables caching.
        name: the network's name as reported next to each distance (`fid_network`).

    Call arguments:
        images: float tensor (batch, H, W, C) in [-1, 1].

    Example:
        >>> net = FeatureNetwork(keras.Sequential([...]), (32, 32), 3, spec="my-net-v1")
        >>> net(np.zeros((4, 32, 32, 3), "float32")).shape
    """

    model: keras.Model | Callable[..., tf.Tensor]
    image_size: tuple[int, int] | None
    channels: int = 3
    to_model_range: Callable[[tf.Tensor], tf.Tensor] = field(default=lambda x: x)
    spec: str | None = None
    name: str = "keras_model"

    def __post_init__(self) -> None:
        self._step = None

    @property
    def num_features(self) -> int:
        """Length of one feature vector."""
        known = getattr(self.model, "num_features", None)
        if known is not None:
            return int(known)
        return int(self.model.output.shape[-1])

    def preprocess(self, images: tf.Tensor) -> tf.Tensor:
        """Fix the channels, resize to the model's size and map [-1, 1] to its range."""
        images = tf.convert_to_tensor(images, tf.float32)
        if images.shape[-1] == 1 and self.channels == 3:
            images = tf.repeat(images, 3, axis=-1)
        elif images.shape[-1] == 3 and self.channels == 1:
            images = tf.reduce_mean(images, axis=-1, keepdims=True)
        if self.image_size is not None and tuple(images.shape[1:3]) != tuple(self.image_size):
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
        return FeatureNetwork(
            network, (shape[1], shape[2]), shape[3], spec=None, name=f"keras_model:{network.name}"
        )
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
        name=KERAS_INCEPTION_NAME,
    )


# --------------------------------------------------------------------------------------
# the standard FID Inception network (TensorFlow graph of 2015-12-05)
# --------------------------------------------------------------------------------------


def fid_inception_candidates() -> list[Path]:
    """Where tfkit looks for `classify_image_graph_def.pb`, in order (no download)."""
    out = []
    env = os.environ.get(FID_INCEPTION_ENV)
    if env:
        out.append(Path(env).expanduser())
    home = os.environ.get("KERAS_HOME")
    homes = [Path(home).expanduser()] if home else [Path("~/.keras").expanduser()]
    return out + [h / "models" / FID_INCEPTION_FILE for h in homes]


def _named_by(source: str | None) -> str:
    """`"--fid-inception: "` when the user named the file with that flag or key, else ``."""
    return f"{source}: " if source else ""


def _fid_inception_source() -> str:
    return (
        f"`{FID_INCEPTION_FILE}` from {FID_INCEPTION_ARCHIVE} ({FID_INCEPTION_URL}; "
        f"`tar -xzf {FID_INCEPTION_ARCHIVE} {FID_INCEPTION_FILE}`)"
    )


def find_fid_inception(
    path: str | os.PathLike | None = None, *, source: str = "--fid-inception"
) -> Path:
    """The local FID Inception graph: `path` if given, else the first candidate found.

    Args:
        path: the file, when the user named one.
        source: the flag or config key that named `path` (for the error message).

    Raises:
        UserError: the file is not there, saying where to put it and where it comes from
            (tfkit never downloads it).
    """
    if path is not None:
        found = Path(path).expanduser()
        if not found.is_file():
            raise UserError(
                f"{source}: no such file. Received: {path}. Expected the FID Inception graph "
                f"{_fid_inception_source()}"
            )
        return found
    candidates = fid_inception_candidates()
    for found in candidates:
        if found.is_file():
            return found
    keras_models = candidates[-1].parent
    raise UserError(
        f"FID Inception graph not found locally (tfkit never downloads it). Looked in: "
        f"{', '.join(str(p) for p in candidates)}. Put {_fid_inception_source()} in "
        f"{keras_models}/, or pass --fid-inception PATH (config: gan.metrics_fid_inception, "
        f"or ${FID_INCEPTION_ENV}); offline, use --features classifier:RUN_DIR (a classifier "
        "trained by `tfkit train`, e.g. configs/shapes_classifier.yaml)"
    )


def _node_name(tensor_or_input: str) -> str:
    """`pool_3` from `pool_3:0`, `^pool_3` or `pool_3`."""
    return tensor_or_input.lstrip("^").split(":")[0]


def _between(graph_def: Any, input_name: str, output_name: str) -> Any:
    """The part of `graph_def` that `output_name` depends on, cut at `input_name`: that
    node becomes a float placeholder of any shape (what feeds it in the file, e.g.
    `DecodeJpeg`, is left out), and recorded `_output_shapes` (batch 1 in a graph written
    for one JPEG) are dropped so shapes follow the batch fed. A new GraphDef, nodes in
    their order.

    Raises:
        ValueError: the output does not depend on the input, or needs another placeholder.
    """
    nodes = {node.name: node for node in graph_def.node}
    cut = _node_name(input_name)
    keep, todo = set(), [_node_name(output_name)]
    while todo:
        name = todo.pop()
        if name in keep or name not in nodes:
            continue
        keep.add(name)
        if name != cut:
            todo.extend(_node_name(i) for i in nodes[name].input)
    if cut not in keep:
        raise ValueError(f"{_node_name(output_name)} does not depend on {cut}")
    others = sorted(n for n in keep if n != cut and nodes[n].op.startswith("Placeholder"))
    if others:
        raise ValueError(f"{_node_name(output_name)} also needs the input {', '.join(others)}")
    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        if node.name == cut:
            placeholder = out.node.add(name=cut, op="Placeholder")
            placeholder.attr["dtype"].type = tf.float32.as_datatype_enum
        elif node.name in keep:
            copy = out.node.add()
            copy.CopyFrom(node)
            if "_output_shapes" in copy.attr:
                del copy.attr["_output_shapes"]
    return out


def _global_normalization_nodes(node: Any) -> list[Any]:
    """Nodes of current ops computing what the `BatchNormWithGlobalNormalization` `node`
    computes: (t - mean) * rsqrt(var + eps) [* gamma] + beta, its kernel's expression. The
    last node keeps `node`'s name (and control inputs), so every consumer reads it unchanged.
    """
    data = [i for i in node.input if not i.startswith("^")]
    controls = [i for i in node.input if i.startswith("^")]
    if len(data) != 5:
        raise ValueError(f"node {node.name}: {len(data)} inputs, expected 5")
    t, mean, var, beta, gamma = data
    dtype = node.attr["T"]
    nodes = []

    def add(op: str, suffix: str | None, inputs: list[str], **attrs: Any) -> str:
        new = tf.compat.v1.NodeDef(name=f"{node.name}/{suffix}" if suffix else node.name, op=op)
        new.input.extend(inputs)
        new.device = node.device
        new.attr["dtype" if op == "Const" else "T"].CopyFrom(dtype)
        for key, value in attrs.items():
            new.attr[key].CopyFrom(value)
        nodes.append(new)
        return new.name

    epsilon = tf.make_tensor_proto(
        node.attr["variance_epsilon"].f, dtype=tf.as_dtype(dtype.type), shape=[]
    )
    eps = add("Const", "tfkit_epsilon", [], value=tf.compat.v1.AttrValue(tensor=epsilon))
    factor = add("Rsqrt", "tfkit_rsqrt", [add("AddV2", "tfkit_var_eps", [var, eps])])
    if node.attr["scale_after_normalization"].b:
        factor = add("Mul", "tfkit_factor", [factor, gamma])
    centered = add("Sub", "tfkit_centered", [t, mean])
    scaled = add("Mul", "tfkit_scaled", [centered, factor])
    add("AddV2", None, [scaled, beta, *controls])
    return nodes


def _without_global_normalization(graph_def: Any) -> Any:
    """`graph_def` with each `BatchNormWithGlobalNormalization` spelt in current ops.

    The 2015 graph normalizes with this op, removed from TensorFlow at GraphDef version 9:
    it runs only inside a graph of the file's own version (a v1 Session), not in a
    `tf.function`; `_global_normalization_nodes` writes the same expression.
    """
    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    # the removed op gone, the graph is one of this TensorFlow's version (importing an
    # older version into the function's graph logs a warning on stderr)
    out.versions.producer = max(out.versions.producer, tf.version.GRAPH_DEF_VERSION)
    out.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        if node.op == "BatchNormWithGlobalNormalization":
            out.node.extend(_global_normalization_nodes(node))
        else:
            out.node.add().CopyFrom(node)
    return out


class FrozenGraphFeatures:
    """Features of a frozen TensorFlow graph (a GraphDef) run as a TensorFlow 2 function.

    The graph is imported with its input tensor `input_name` replaced by a float
    (batch, H, W, 3) input of any batch and size, and the function returns `output_name`
    flattened to (batch, features). Call arguments: `images` float (batch, H, W, 3); the
    `training` argument is accepted (and ignored) so it is called like a Keras model.

    Raises:
        ValueError: the graph does not import with this interface, or its output has no
            known feature size.
    """

    def __init__(self, graph_def: Any, input_name: str = FID_INPUT, output_name: str = FID_OUTPUT):
        self.input_name = input_name
        self.output_name = output_name

        def run_graph(images):
            (output,) = tf.graph_util.import_graph_def(
                graph_def,
                input_map={input_name: images},
                return_elements=[output_name],
                name="frozen",
            )
            return output

        spec = tf.TensorSpec([None, None, None, 3], tf.float32)
        self._function = tf.compat.v1.wrap_function(run_graph, [spec])
        shape = self._function.outputs[0].shape
        if shape.rank is None or shape.rank < 2 or None in shape[1:]:
            raise ValueError(
                f"`{output_name}` has shape {shape}, expected (batch, ...) with known sizes"
            )
        self.output_shape = tuple(shape)
        self.num_features = int(np.prod(shape[1:]))

    def __call__(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        output = self._function(tf.convert_to_tensor(images, tf.float32))
        return tf.reshape(output, [-1, self.num_features])


def to_uint8_levels(images: tf.Tensor) -> tf.Tensor:
    """[-1, 1] to float uint8 levels as the reference quantizes generated images:
    `x * 127.5 + 128` clipped to [0, 255] and truncated (a real uint8 image served as
    `u / 127.5 - 1` comes back as `u`)."""
    return tf.floor(tf.clip_by_value(images * 127.5 + 128.0, 0.0, 255.0))


def load_frozen_graph(path: Path, *, source: str | None = None) -> tuple[Any, str]:
    """The GraphDef of the FID Inception file (the part `pool_3` depends on) and its digest.

    Raises:
        UserError: not a GraphDef, or one without the `ExpandDims` -> `pool_3` interface,
            or with an op this TensorFlow cannot run.
    """
    from google.protobuf.message import DecodeError

    def invalid(reason: str) -> UserError:
        return UserError(
            f"{_named_by(source)}{path} is not the FID Inception graph ({reason}). Expected "
            f"{_fid_inception_source()}"
        )

    data = path.read_bytes()
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as err:
        raise invalid(f"not a TensorFlow GraphDef: {err}") from None
    names = {node.name for node in graph_def.node}
    missing = [n for n in (_node_name(FID_INPUT), _node_name(FID_OUTPUT)) if n not in names]
    if missing:
        raise invalid(f"no node {', '.join(missing)} among its {len(names)} nodes")
    try:
        graph_def = _without_global_normalization(_between(graph_def, FID_INPUT, FID_OUTPUT))
    except ValueError as err:
        raise invalid(str(err)) from None
    from tensorflow.python.framework import op_def_registry

    for node in graph_def.node:
        op_def = op_def_registry.get(node.op)
        if op_def is None:
            raise invalid(f"node {node.name}: op {node.op} unknown to TensorFlow {tf.__version__}")
        if op_def.deprecation.version:
            raise invalid(f"node {node.name}: op {node.op} removed from TensorFlow")
    return graph_def, hashlib.sha1(data).hexdigest()[:16]


def _reason(err: Exception) -> str:
    """The line of a TensorFlow error that says what went wrong (not "Graph execution
    error:", the node trace or the op's stack)."""
    text = err.message if isinstance(err, tf.errors.OpError) else str(err)
    skip = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ")
    lines = [line.strip() for line in text.splitlines()]
    useful = [line for line in lines if line and not line.startswith(skip)]
    return useful[0] if useful else type(err).__name__


def fid_inception(
    path: str | os.PathLike | None = None, *, source: str = "--fid-inception"
) -> FeatureNetwork:
    """The standard FID network: `pool_3` features of the 2015-12-05 Inception graph.

    Args:
        path: the local `classify_image_graph_def.pb` (else `$TFKIT_FID_INCEPTION` or the
            Keras cache, see `fid_inception_candidates`).
        source: the flag or config key that named `path` (for error messages).

    Raises:
        UserError: the file is missing or is not that graph (never downloads).
    """
    found = find_fid_inception(path, source=source)
    named_by = source if path is not None else None  # else found in the default places
    graph_def, digest = load_frozen_graph(found, source=named_by)
    try:
        model = FrozenGraphFeatures(graph_def)
        model(tf.zeros([1, 8, 8, 3]))  # a graph that fails to run fails here, not mid-run
    except (ValueError, TypeError, tf.errors.OpError) as err:
        message = _reason(err)
        raise UserError(
            f"{_named_by(named_by)}{found} is not the FID Inception graph ({message}). "
            f"Expected {_fid_inception_source()}"
        ) from None
    return FeatureNetwork(
        model,
        None,  # any size: the graph resizes to 299x299 itself
        3,
        to_model_range=to_uint8_levels,
        spec=f"{FID_INCEPTION}:{digest}",
        name=FID_INCEPTION,
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
        name=f"classifier:{run.path}",
    )


def feature_network(
    spec: str | FeatureNetwork | keras.Model,
    *,
    inception_weights: str | os.PathLike | None = None,
    fid_inception_path: str | os.PathLike | None = None,
    fid_inception_source: str = "--fid-inception",
) -> FeatureNetwork:
    """The feature network named by `spec`.

    Args:
        spec: `inception_2015_12_05`, `inception_v3`, `classifier:RUN_DIR`, or a
            `FeatureNetwork`/Keras model.
        inception_weights: path of the InceptionV3 no-top `.h5` weights (else the Keras cache).
        fid_inception_path: path of `classify_image_graph_def.pb` (else
            `$TFKIT_FID_INCEPTION` or the Keras cache).
        fid_inception_source: the flag or config key that gave `fid_inception_path` (errors
            name it).

    Raises:
        UserError: an unknown spec (listing the valid ones), or a missing or invalid file.
    """
    if not isinstance(spec, str):
        return as_feature_network(spec)
    if spec == FID_INCEPTION:
        return fid_inception(fid_inception_path, source=fid_inception_source)
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
    return spec in (FID_INCEPTION, "inception_v3") or (
        spec.startswith("classifier:") and len(spec) > 11
    )


def comparable_with_published(name: str) -> bool:
    """Whether distances from the network named `name` compare with published FID/KID
    values (only the standard FID Inception graph's do)."""
    return name == FID_INCEPTION


__all__ = [
    "FeatureNetwork",
    "FrozenGraphFeatures",
    "as_feature_network",
    "classifier",
    "comparable_with_published",
    "feature_extractor",
    "feature_network",
    "fid_inception",
    "find_fid_inception",
    "find_inception_weights",
    "inception_v3",
    "load_frozen_graph",
    "to_uint8_levels",
]
