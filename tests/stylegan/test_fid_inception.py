"""The standard FID Inception network from a local `classify_image_graph_def.pb`.

The real file (95 MB, inception-2015-12-05.tgz) is never downloaded: each test writes a
small GraphDef of the same interface, built node by node as the 2015 file is (GraphDef
producer version 3, the `BatchNormWithGlobalNormalization` op TensorFlow removed at version
9, a batch-1 `ExpandDims` input), with the reference's pre-processing in the graph:
`ExpandDims` -> `ResizeBilinear` (TensorFlow 1: no half-pixel centres) -> `Sub` 128 ->
`Mul` 1/128 -> a 1x1 convolution -> batch norm -> ReLU -> `pool_3` (average pool to 1x1)
-> `pool_3/_reshape` (batch 1 only, as in the file).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfkit.errors import UserError
from tfkit.runs import create_run_dir
from tfkit.stylegan.features import (
    FID_INCEPTION,
    FID_INCEPTION_FILE,
    FID_INCEPTION_URL,
    feature_network,
    fid_inception,
    fid_inception_candidates,
)
from tfkit.stylegan.metrics import compute_features, real_statistics

from .test_metrics import gan_checkpoint, gan_config

ROOT = Path(__file__).resolve().parents[2]
SIZE = 13  # the graph's resize target (299 in the real file)
FEATURES = 8  # pool_3 channels (2048 in the real file)


def _const(graph_def, name: str, value, dtype=np.float32) -> str:
    node = graph_def.node.add(name=name, op="Const")
    node.attr["dtype"].type = tf.as_dtype(dtype).as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.asarray(value, dtype)))
    return name


def _op(graph_def, name: str, op: str, inputs: list[str], **attrs) -> str:
    node = graph_def.node.add(name=name, op=op)
    node.input.extend(inputs)
    node.attr["T"].type = tf.float32.as_datatype_enum
    for key, value in attrs.items():
        node.attr[key].CopyFrom(value)
    return name


def tiny_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "kernel": rng.normal(0, 0.5, (1, 1, 3, FEATURES)).astype(np.float32),
        "mean": rng.normal(0, 0.1, FEATURES).astype(np.float32),
        "var": rng.uniform(0.5, 2.0, FEATURES).astype(np.float32),
        "beta": rng.normal(0, 0.1, FEATURES).astype(np.float32),
        "gamma": rng.uniform(0.5, 1.5, FEATURES).astype(np.float32),
    }


def tiny_fid_graph(weights: dict[str, np.ndarray], epsilon: float = 1e-3):
    """A GraphDef with the FID Inception file's interface and pre-processing."""
    attr = tf.compat.v1.AttrValue
    g = tf.compat.v1.GraphDef()
    g.versions.producer = 3  # the 2015 file's version: the old batch norm op is allowed
    node = g.node.add(name="ExpandDims", op="Placeholder")  # fed by DecodeJpeg in the file
    node.attr["dtype"].type = tf.float32.as_datatype_enum
    node.attr["shape"].shape.CopyFrom(tf.TensorShape([1, None, None, 3]).as_proto())
    size = _const(g, "ResizeBilinear/size", [SIZE, SIZE], np.int32)
    resized = _op(g, "ResizeBilinear", "ResizeBilinear", ["ExpandDims", size])
    g.node[-1].attr["align_corners"].b = False
    centred = _op(g, "Sub", "Sub", [resized, _const(g, "Sub/y", 128.0)])
    scaled = _op(g, "Mul", "Mul", [centred, _const(g, "Mul/y", 1 / 128)])
    conv = _op(
        g,
        "conv/Conv2D",
        "Conv2D",
        [scaled, _const(g, "conv/conv2d_params", weights["kernel"])],
        strides=attr(list=attr.ListValue(i=[1, 1, 1, 1])),
        padding=attr(s=b"VALID"),
    )
    norm_inputs = [conv] + [
        _const(g, f"conv/{k}", weights[k]) for k in ("mean", "var", "beta", "gamma")
    ]
    norm = _op(
        g,
        "conv/batchnorm",
        "BatchNormWithGlobalNormalization",
        norm_inputs,
        variance_epsilon=attr(f=epsilon),
        scale_after_normalization=attr(b=True),
    )
    relu = _op(g, "conv", "Relu", [norm])
    _op(
        g,
        "pool_3",
        "AvgPool",
        [relu],
        ksize=attr(list=attr.ListValue(i=[1, SIZE, SIZE, 1])),
        strides=attr(list=attr.ListValue(i=[1, 1, 1, 1])),
        padding=attr(s=b"VALID"),
    )
    shape = _const(g, "pool_3/_reshape/shape", [1, FEATURES], np.int32)
    _op(g, "pool_3/_reshape", "Reshape", ["pool_3", shape])
    return g


def write_graph(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tiny_fid_graph(tiny_weights(seed)).SerializeToString())
    return path


def legacy_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """TensorFlow 1's `resize_bilinear(align_corners=False)`: source = target * in / out,
    no half-pixel offset, the last row/column repeated past the edge."""

    def weights(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.arange(size) * (n_in / size)
        low = np.floor(src).astype(int)
        return low, np.minimum(low + 1, n_in - 1), (src - low).astype(np.float32)

    y0, y1, wy = weights(images.shape[1])
    x0, x1, wx = weights(images.shape[2])
    rows = images[:, y0] * (1 - wy)[None, :, None, None] + images[:, y1] * wy[None, :, None, None]
    return rows[:, :, x0] * (1 - wx)[None, None, :, None] + rows[:, :, x1] * wx[None, None, :, None]


def expected_features(images, weights, epsilon=1e-3, resize=legacy_bilinear) -> np.ndarray:
    """The reference computation in NumPy: images in [-1, 1] -> uint8 levels -> the graph."""
    levels = np.floor(np.clip(images * 127.5 + 128, 0, 255))
    x = (resize(levels, SIZE) - 128) / 128
    x = x @ weights["kernel"][0, 0]
    x = (x - weights["mean"]) / np.sqrt(weights["var"] + epsilon) * weights["gamma"] + weights[
        "beta"
    ]
    return np.maximum(x, 0).mean(axis=(1, 2))


def random_images(n: int, size: int = 16, seed: int = 0, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (n, size, size, channels)).astype(np.float32)


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras cache and no $TFKIT_FID_INCEPTION: only what a test puts there."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv("TFKIT_FID_INCEPTION", raising=False)
    return tmp_path / "keras_home"


# --------------------------------------------------------------------------------------
# the feature path
# --------------------------------------------------------------------------------------


def test_graph_features_equal_the_reference_computation(tmp_path, keras_home):
    weights = tiny_weights()
    write_graph(keras_home / "models" / FID_INCEPTION_FILE)  # the default location
    net = feature_network(FID_INCEPTION)
    assert net.name == FID_INCEPTION and net.num_features == FEATURES
    assert net.image_size is None  # tfkit does not resize: the graph's own op does
    images = random_images(5, size=16)
    images[0, 0, 0] = [-1.0, 1.0, 0.0]  # the ends of the range and a value between levels
    feats = compute_features(images, net, batch_size=4)  # 4 + 1 padded: batch > 1 works
    assert feats.shape == (5, FEATURES)
    np.testing.assert_allclose(feats, expected_features(images, weights), rtol=1e-4, atol=1e-5)
    # a different size goes through the same graph (resized by it to SIZE x SIZE)
    small = random_images(3, size=7, seed=1)
    np.testing.assert_allclose(
        compute_features(small, net, batch_size=3),
        expected_features(small, weights),
        rtol=1e-4,
        atol=1e-5,
    )


def test_the_resize_is_tensorflow_1_bilinear_not_half_pixel(tmp_path, keras_home):
    """The reference resizes with the graph's ResizeBilinear (TensorFlow 1 semantics), once;
    a half-pixel resize (tf.image.resize, PyTorch's interpolate) gives other features."""
    weights = tiny_weights()
    net = fid_inception(write_graph(tmp_path / "g.pb"))
    images = random_images(4, size=16, seed=2)
    feats = compute_features(images, net, batch_size=4)
    np.testing.assert_allclose(feats, expected_features(images, weights), rtol=1e-4, atol=1e-5)

    def half_pixel(levels, size):
        return tf.image.resize(levels, (size, size), method="bilinear").numpy()

    other = expected_features(images, weights, resize=half_pixel)
    assert np.abs(other - feats).max() > 100 * 1e-5  # far outside the tolerance above
    # images already at the graph's size: its resize is the identity, nothing else resizes
    at_size = random_images(3, size=SIZE, seed=9)
    np.testing.assert_allclose(
        compute_features(at_size, net, batch_size=3),
        expected_features(at_size, weights, resize=lambda levels, size: levels),
        rtol=1e-4,
        atol=1e-5,
    )


def test_images_are_quantized_to_uint8_levels_as_the_reference_does(tmp_path, keras_home):
    """Generated images become `(x * 127.5 + 128)` clipped and truncated; a real uint8 image
    served as u / 127.5 - 1 comes back as exactly u."""
    weights = tiny_weights()
    net = fid_inception(write_graph(tmp_path / "g.pb"))
    levels = np.random.default_rng(3).integers(0, 256, (3, 9, 9, 3))
    served = (levels / 127.5 - 1).astype(np.float32)
    np.testing.assert_array_equal(net.preprocess(served).numpy(), levels)
    # a shift smaller than one level changes nothing (float images are not fed as floats)
    nudged = served + np.float32(0.3 / 127.5)
    np.testing.assert_allclose(
        compute_features(nudged, net, batch_size=3),
        compute_features(served, net, batch_size=3),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        compute_features(served, net, batch_size=3),
        expected_features(served, weights),
        rtol=1e-4,
        atol=1e-5,
    )


def test_grayscale_images_are_repeated_to_rgb(tmp_path, keras_home):
    weights = tiny_weights()
    net = fid_inception(write_graph(tmp_path / "g.pb"))
    gray = random_images(2, size=12, seed=4, channels=1)
    np.testing.assert_allclose(
        compute_features(gray, net, batch_size=2),
        expected_features(np.repeat(gray, 3, axis=-1), weights),
        rtol=1e-4,
        atol=1e-5,
    )


def test_rewritten_batch_norm_equals_the_original_op_in_a_v1_session(tmp_path, keras_home):
    """The graph's removed `BatchNormWithGlobalNormalization` still runs in a TF1 session
    of the file's own version: tfkit's TF2 function gives the same pool_3 features."""
    graph_def = tiny_fid_graph(tiny_weights(seed=5), epsilon=0.25)
    path = tmp_path / "g.pb"
    path.write_bytes(graph_def.SerializeToString())
    net = fid_inception(path)
    images = random_images(3, size=10, seed=6)
    levels = net.preprocess(images).numpy()
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:  # batch 1: the file's static shape
            want = np.concatenate(
                [session.run("pool_3:0", {"ExpandDims:0": image[None]}) for image in levels]
            ).reshape(3, FEATURES)
    np.testing.assert_allclose(
        compute_features(images, net, batch_size=3), want, rtol=1e-5, atol=1e-6
    )


def test_recorded_batch_1_shapes_do_not_limit_the_batch(tmp_path, keras_home):
    """A graph written with its shapes (`_output_shapes`, batch 1 for one JPEG) still
    takes batches of any size."""
    weights = tiny_weights()
    graph_def = tiny_fid_graph(weights)
    feature_shape = [1, SIZE, SIZE, FEATURES]
    shapes = {"ExpandDims": [1, 16, 16, 3], "Mul": [1, SIZE, SIZE, 3], "conv": feature_shape}
    shapes.update({"conv/batchnorm": feature_shape, "pool_3": [1, 1, 1, FEATURES]})
    for node in graph_def.node:
        if node.name in shapes:
            recorded = tf.TensorShape(shapes[node.name]).as_proto()
            node.attr["_output_shapes"].list.shape.add().CopyFrom(recorded)
    path = tmp_path / "g.pb"
    path.write_bytes(graph_def.SerializeToString())
    images = random_images(3, size=16, seed=10)
    np.testing.assert_allclose(
        compute_features(images, fid_inception(path), batch_size=3),
        expected_features(images, weights),
        rtol=1e-4,
        atol=1e-5,
    )


def test_statistics_cache_key_follows_the_graph_file(tmp_path, keras_home):
    """Real statistics cached with one graph file are not reused with another one."""
    first = fid_inception(write_graph(tmp_path / "a" / FID_INCEPTION_FILE, seed=0))
    again = fid_inception(write_graph(tmp_path / "b" / FID_INCEPTION_FILE, seed=0))
    other = fid_inception(write_graph(tmp_path / "c" / FID_INCEPTION_FILE, seed=1))
    assert first.spec == again.spec != other.spec
    assert first.spec.startswith(f"{FID_INCEPTION}:")
    images = random_images(6, size=8, seed=7)
    kwargs = dict(num_images=6, batch_size=3, cache_dir=tmp_path / "cache", data_key={"d": 1})
    stats = real_statistics(images, first, **kwargs)
    stats_other = real_statistics(images, other, **kwargs)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    assert not np.allclose(stats.mu, stats_other.mu)


# --------------------------------------------------------------------------------------
# where the file is looked for, and the errors
# --------------------------------------------------------------------------------------


def test_candidates_are_the_environment_then_the_keras_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    monkeypatch.setenv("TFKIT_FID_INCEPTION", str(tmp_path / "mine.pb"))
    assert fid_inception_candidates() == [
        tmp_path / "mine.pb",
        tmp_path / "kh" / "models" / FID_INCEPTION_FILE,
    ]
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.delenv("TFKIT_FID_INCEPTION")
    assert fid_inception_candidates() == [Path("~/.keras/models").expanduser() / FID_INCEPTION_FILE]
    # the environment variable is used before the cache
    write_graph(tmp_path / "mine.pb")
    monkeypatch.setenv("TFKIT_FID_INCEPTION", str(tmp_path / "mine.pb"))
    assert fid_inception().name == FID_INCEPTION


def test_missing_graph_says_where_to_put_it(tmp_path, keras_home):
    with pytest.raises(UserError) as info:
        feature_network(FID_INCEPTION)
    message = str(info.value)
    assert "\n" not in message
    assert str(keras_home / "models" / FID_INCEPTION_FILE) in message  # looked there
    assert f"in {keras_home / 'models'}/" in message  # and says to put it there
    assert FID_INCEPTION_URL in message and "inception-2015-12-05.tgz" in message
    assert "--fid-inception PATH" in message and "TFKIT_FID_INCEPTION" in message
    with pytest.raises(UserError, match=r"^--fid-inception: no such file\. Received: .*nope\.pb"):
        fid_inception(tmp_path / "nope.pb")
    with pytest.raises(UserError, match=r"^gan\.metrics_fid_inception: no such file"):
        feature_network(
            FID_INCEPTION,
            fid_inception_path=tmp_path / "nope.pb",
            fid_inception_source="gan.metrics_fid_inception",
        )


def _graph_without(name: str) -> bytes:
    graph_def = tiny_fid_graph(tiny_weights())
    kept = [node for node in graph_def.node if node.name != name]
    del graph_def.node[:]
    graph_def.node.extend(kept)
    return graph_def.SerializeToString()


def _graph_with_unknown_op() -> bytes:
    graph_def = tiny_fid_graph(tiny_weights())
    next(node for node in graph_def.node if node.name == "conv").op = "FancyRelu"
    return graph_def.SerializeToString()


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"not a graph at all", "not a TensorFlow GraphDef"),
        (b"", "no node ExpandDims, pool_3 among its 0 nodes"),
        (_graph_without("pool_3"), "no node pool_3"),
        (_graph_without("ExpandDims"), "no node ExpandDims"),
        (_graph_with_unknown_op(), "op FancyRelu unknown to TensorFlow"),
    ],
    ids=["garbage", "empty", "no-pool_3", "no-input", "unknown-op"],
)
def test_invalid_graph_is_a_one_line_error(tmp_path, keras_home, content, reason):
    path = tmp_path / FID_INCEPTION_FILE
    path.write_bytes(content)
    with pytest.raises(UserError) as info:
        fid_inception(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"--fid-inception: {path} is not the FID Inception graph (")
    assert reason in message and FID_INCEPTION_URL in message
    # found in the default place, the error names the file alone
    write_graph(keras_home / "models" / FID_INCEPTION_FILE).write_bytes(content)
    with pytest.raises(UserError) as info:
        feature_network(FID_INCEPTION)
    found = keras_home / "models" / FID_INCEPTION_FILE
    assert str(info.value).startswith(f"{found} is not the FID Inception graph (")
    assert reason in str(info.value)


def _graph_rewired(node_name: str, inputs: list[str]) -> bytes:
    graph_def = tiny_fid_graph(tiny_weights())
    other = graph_def.node.add(name="other", op="Placeholder")
    other.attr["dtype"].type = tf.float32.as_datatype_enum
    node = next(node for node in graph_def.node if node.name == node_name)
    del node.input[:]
    node.input.extend(inputs)
    return graph_def.SerializeToString()


def _graph_failing_to_run() -> bytes:
    """Imports fine, fails when run: a numerics check (rsqrt of a negative level - 128)."""
    graph_def = tiny_fid_graph(tiny_weights())
    _op(graph_def, "bad/rsqrt", "Rsqrt", ["Sub"])
    _op(graph_def, "bad", "CheckNumerics", ["bad/rsqrt"], message=tf.compat.v1.AttrValue(s=b"x"))
    next(node for node in graph_def.node if node.name == "Mul").input[0] = "bad"
    return graph_def.SerializeToString()


@pytest.mark.parametrize(
    "content, reason",
    [
        (
            _graph_rewired("ResizeBilinear", ["other", "ResizeBilinear/size"]),
            "pool_3 does not depend on ExpandDims",
        ),
        (_graph_rewired("Sub", ["ResizeBilinear", "other"]), "pool_3 also needs the input other"),
        (_graph_failing_to_run(), "x : Tensor had NaN values"),
    ],
    ids=["input-unused", "second-input", "fails-to-run"],
)
def test_a_graph_of_another_interface_is_refused(tmp_path, keras_home, content, reason):
    path = tmp_path / "g.pb"
    path.write_bytes(content)
    with pytest.raises(UserError) as info:
        fid_inception(path)
    assert f"is not the FID Inception graph ({reason}). Expected" in str(info.value)


def test_what_feeds_the_input_in_the_file_is_left_out(tmp_path, keras_home):
    """In the file, ExpandDims expands a decoded JPEG (a string placeholder): tfkit feeds
    ExpandDims itself, so that part is neither needed nor run."""
    graph_def = tiny_fid_graph(tiny_weights())
    contents = graph_def.node.add(name="DecodeJpeg/contents", op="Placeholder")
    contents.attr["dtype"].type = tf.string.as_datatype_enum
    decode = graph_def.node.add(name="DecodeJpeg", op="DecodeJpeg", input=["DecodeJpeg/contents"])
    decode.attr["channels"].i = 3
    cast = graph_def.node.add(name="Cast", op="Cast", input=["DecodeJpeg"])
    cast.attr["SrcT"].type = tf.uint8.as_datatype_enum
    cast.attr["DstT"].type = tf.float32.as_datatype_enum
    expand = next(node for node in graph_def.node if node.name == "ExpandDims")
    expand.Clear()
    expand.name, expand.op = "ExpandDims", "ExpandDims"
    expand.input.extend(["Cast", _const(graph_def, "ExpandDims/dim", 0, np.int32)])
    expand.attr["T"].type = tf.float32.as_datatype_enum
    expand.attr["Tdim"].type = tf.int32.as_datatype_enum
    path = tmp_path / "g.pb"
    path.write_bytes(graph_def.SerializeToString())
    images = random_images(2, size=11, seed=8)
    np.testing.assert_allclose(
        compute_features(images, fid_inception(path), batch_size=2),
        expected_features(images, tiny_weights()),
        rtol=1e-4,
        atol=1e-5,
    )


def test_snapshot_metrics_take_the_graph_from_the_config_key(tmp_path, keras_home):
    """What the trainer builds from `gan.metrics*`: errors name the config key, results
    name the network."""
    from tfkit.stylegan.metrics import SnapshotMetrics

    reals = random_images(16, size=8, seed=11)
    with pytest.raises(UserError, match=r"^gan\.metrics_fid_inception: no such file"):
        SnapshotMetrics(reals, features=FID_INCEPTION, fid_inception=tmp_path / "nope.pb")
    metrics = SnapshotMetrics(
        reals,
        metrics=("fid", "kid"),
        features=FID_INCEPTION,
        fid_inception=write_graph(tmp_path / "g.pb"),
        num_images=16,
        batch_size=8,
    )
    results = metrics(lambda z: np.tanh(z[:, :192].reshape(-1, 8, 8, 3)), z_dim=192)
    assert results["fid_network"] == results["kid_network"] == FID_INCEPTION
    assert results["fid"] > 0 and results["num_fake"] == 16


# --------------------------------------------------------------------------------------
# the CLI names the network; errors exit 2 with one line
# --------------------------------------------------------------------------------------


def test_gan_metrics_names_the_standard_network(tmp_path, keras_home, capsys):
    from tfkit.cli import main

    write_graph(keras_home / "models" / FID_INCEPTION_FILE)
    config = gan_config()
    run_dir = create_run_dir(config, root=tmp_path / "runs")
    gan_checkpoint(config, run_dir)
    argv = ["gan", "metrics", str(run_dir), "--num-images", "24", "--batch-size", "8"]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert f"with {FID_INCEPTION} features" in out
    assert "fid: " in out and "kid: " in out and "fcd" not in out
    assert (
        f"network: {FID_INCEPTION}, the standard FID Inception network (pool_3 features): fid "
        "and kid comparable with published values at the same number of images only "
        "(published: 50000; fewer images give a larger FID)"
    ) in out
    record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["fid_network"] == FID_INCEPTION and record["kid_network"] == FID_INCEPTION
    assert record["fid"] > 0 and record["num_fake"] == 24
    # the same run measured by Keras' InceptionV3 or a classifier says it is not comparable
    from tfkit.stylegan.metrics import comparability

    assert comparability(("fid",), FID_INCEPTION, 50_000).endswith(
        "(pool_3 features): fid comparable with published values"
    )
    line = comparability(("fid",), "inception_v3_keras_imagenet", 50_000)
    assert line.startswith("network: inception_v3_keras_imagenet: fid NOT comparable")
    assert f"--features {FID_INCEPTION}" in line


def test_cli_missing_graph_exits_2_with_one_line(tmp_path, keras_home, capsys):
    from tfkit.cli import main

    run_dir = create_run_dir(gan_config(), root=tmp_path / "runs")
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    assert main(["gan", "metrics", str(run_dir), "--num-images", "16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("tfkit gan metrics: error: FID Inception graph not found locally")
    assert str(keras_home / "models" / FID_INCEPTION_FILE) in err and FID_INCEPTION_URL in err


@pytest.mark.timeout(120)
def test_cli_corrupt_graph_exits_2_with_one_line_and_no_framework_log(tmp_path):
    """In a fresh process, as users run it: stderr holds the one error line only."""
    run_dir = create_run_dir(gan_config(), root=tmp_path / "runs")
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    bad = tmp_path / FID_INCEPTION_FILE
    bad.write_bytes(b"<html>403 Forbidden</html>")  # a failed download saved as the file
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "tfkit.cli", "gan", "metrics", str(run_dir)]
        + ["--fid-inception", str(bad), "--num-images", "16"],
        capture_output=True,
        text=True,
        env=env,
        timeout=110,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(
        f"tfkit gan metrics: error: --fid-inception: {bad} is not the FID Inception graph "
        "(not a TensorFlow GraphDef"
    )
    assert FID_INCEPTION_URL in proc.stderr


@pytest.mark.timeout(120)
def test_loading_the_graph_logs_nothing_from_the_python_api(tmp_path):
    """The 2015 graph's old version is not imported as such (TensorFlow would warn that
    shapes were inferred with two versions): Python API users see a clean stderr too."""
    path = write_graph(tmp_path / FID_INCEPTION_FILE)
    code = (
        "import numpy as np, sys\n"
        "from tfkit.stylegan.features import fid_inception\n"
        "from tfkit.stylegan.metrics import compute_features\n"
        f"net = fid_inception({str(path)!r})\n"
        "print(compute_features(np.zeros((2, 16, 16, 3), 'float32'), net, 2).shape)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=110
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"(2, {FEATURES})"
    warnings = re.findall(r"^W\d{4} .*$", proc.stderr, re.MULTILINE)  # absl's warning lines
    assert warnings == [], proc.stderr
