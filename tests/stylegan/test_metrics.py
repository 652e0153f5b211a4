"""FID/KID maths, feature networks (InceptionV3 from local weights, tfkit classifiers), caching."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import scipy.linalg

from tfkit.config import validate
from tfkit.errors import UserError
from tfkit.runs import create_run_dir
from tfkit.stylegan import features as features_module
from tfkit.stylegan.features import INCEPTION_WEIGHTS_FILE, FeatureNetwork, feature_network
from tfkit.stylegan.metrics import (
    SnapshotMetrics,
    compute_features,
    evaluate_generator,
    feature_statistics,
    fid_from_features,
    frechet_distance,
    kid_from_features,
    real_statistics,
)


def tiny_network(size: int = 8, channels: int = 3, dims: int = 16) -> FeatureNetwork:
    """A small conv net with fixed weights as a feature network."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((size, size, channels)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(dims, activation="tanh"),
        ]
    )
    return FeatureNetwork(model, (size, size), channels, spec="tiny-test-net")


def random_images(n: int, size: int = 8, seed: int = 0, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.uniform(-1, 1, (n, size, size, 3)) * 0.5 + shift, -1, 1).astype(np.float32)


# --------------------------------------------------------------------------------------
# FID
# --------------------------------------------------------------------------------------


def test_fid_of_a_set_against_itself_is_zero():
    feats = np.random.default_rng(0).normal(size=(400, 32))
    assert fid_from_features(feats, feats) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    s1, s2 = rng.uniform(0.1, 3, 10), rng.uniform(0.1, 3, 10)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_matches_scipy_sqrtm_for_full_covariances():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(20, 20)), rng.normal(size=(20, 20))
    s1, s2 = a @ a.T / 20, b @ b.T / 20
    mu1, mu2 = rng.normal(size=20), rng.normal(size=20)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_fid_of_gaussian_samples_approaches_closed_form():
    rng = np.random.default_rng(3)
    mu1, mu2 = np.zeros(4), np.array([1.0, 0.0, -0.5, 0.0])
    s1, s2 = np.array([1.0, 2.0, 0.5, 1.0]), np.array([1.0, 0.5, 0.5, 3.0])
    f1 = mu1 + rng.normal(size=(200_000, 4)) * np.sqrt(s1)
    f2 = mu2 + rng.normal(size=(200_000, 4)) * np.sqrt(s2)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert fid_from_features(f1, f2) == pytest.approx(expected, abs=0.02)


def test_frechet_distance_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="mu1"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# --------------------------------------------------------------------------------------
# KID
# --------------------------------------------------------------------------------------


def test_kid_is_unbiased_on_equal_distributions():
    values = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        f1, f2 = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
        values.append(kid_from_features(f1, f2, num_subsets=10, max_subset_size=200, seed=seed))
    values = np.array(values)
    assert (values > 0).any() and (values < 0).any()  # an unbiased estimate of 0 takes both signs
    shifted = np.random.default_rng(9).normal(size=(300, 16)) + 0.5
    different = kid_from_features(f1, shifted, num_subsets=10, max_subset_size=200)
    assert abs(values.mean()) < 0.05 * different
    assert np.abs(values).max() < 0.2 * different


def test_kid_matches_a_direct_unbiased_mmd():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(50, 6)), rng.normal(size=(50, 6)) + 0.3
    k = lambda a, b: (a @ b.T / 6 + 1) ** 3  # noqa: E731
    m = 50
    expected = (
        (k(x, x).sum() - np.trace(k(x, x))) / (m * (m - 1))
        + (k(y, y).sum() - np.trace(k(y, y))) / (m * (m - 1))
        - 2 * k(x, y).mean()
    )
    # one subset holding every vector is the full-sample estimate
    assert kid_from_features(x, y, num_subsets=1, max_subset_size=m) == pytest.approx(expected)


def test_kid_subsets_are_seeded():
    rng = np.random.default_rng(5)
    f1, f2 = rng.normal(size=(100, 8)), rng.normal(size=(120, 8))
    a = kid_from_features(f1, f2, num_subsets=5, max_subset_size=30, seed=1)
    assert a == kid_from_features(f1, f2, num_subsets=5, max_subset_size=30, seed=1)
    assert a != kid_from_features(f1, f2, num_subsets=5, max_subset_size=30, seed=2)


# --------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------


def test_features_are_batched_and_deterministic():
    import tensorflow as tf

    net = tiny_network()
    images = random_images(37)
    ref = compute_features(images, net, batch_size=64)
    assert ref.shape == (37, 16) and ref.dtype == np.float32
    for batch_size in (1, 5, 16):
        np.testing.assert_allclose(compute_features(images, net, batch_size), ref, atol=1e-5)
    np.testing.assert_array_equal(compute_features(images, net, 64), ref)
    labels = np.zeros(37, np.int32)
    as_batched_pairs = tf.data.Dataset.from_tensor_slices((images, labels)).batch(10)
    np.testing.assert_allclose(compute_features(as_batched_pairs, net, 8), ref, atol=1e-5)
    unbatched = tf.data.Dataset.from_tensor_slices(images)
    np.testing.assert_allclose(
        compute_features(unbatched, net, 8, num_images=20), ref[:20], atol=1e-5
    )


def test_features_resize_and_convert_grayscale():
    net = tiny_network(size=8)
    gray = random_images(4, size=16)[..., :1]
    feats = compute_features(gray, net, batch_size=4)
    assert feats.shape == (4, 16) and np.isfinite(feats).all()


def test_unknown_feature_network_lists_valid_ones():
    with pytest.raises(UserError) as info:
        feature_network("inceptionv3")
    assert str(info.value).endswith(
        "Valid feature networks: classifier:RUN_DIR, inception_2015_12_05, inception_v3"
    )


# --------------------------------------------------------------------------------------
# InceptionV3: local weights only
# --------------------------------------------------------------------------------------


@pytest.fixture
def no_download(monkeypatch):
    """Fail the test if Keras tries to fetch a file."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args}")

    import keras.src.utils.file_utils as file_utils

    monkeypatch.setattr(file_utils, "get_file", refuse)
    monkeypatch.setattr(keras.utils, "get_file", refuse)


@pytest.mark.timeout(20)
def test_missing_inception_weights_is_a_clear_immediate_error(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv("TFKIT_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(UserError) as info:
        feature_network("inception_v3")
    message = str(info.value)
    assert INCEPTION_WEIGHTS_FILE in message
    assert str(tmp_path / "keras_home" / "models") in message
    assert "--inception-weights" in message and "classifier:RUN_DIR" in message
    with pytest.raises(UserError, match="--inception-weights: no such file"):
        feature_network("inception_v3", inception_weights=tmp_path / "nope.h5")


def test_inception_candidates_follow_keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("TFKIT_INCEPTION_WEIGHTS", str(tmp_path / "w.h5"))
    paths = features_module.inception_weights_candidates()
    assert paths[0] == tmp_path / "w.h5"
    assert paths[1] == tmp_path / "models" / INCEPTION_WEIGHTS_FILE


@pytest.mark.property  # ~15-30 s: builds InceptionV3 twice and runs it at 299x299
def test_inception_loads_local_weights_without_network(tmp_path, monkeypatch, no_download):
    model = keras.applications.InceptionV3(
        include_top=False, weights=None, input_shape=(299, 299, 3), pooling="avg"
    )
    path = tmp_path / "models" / INCEPTION_WEIGHTS_FILE
    path.parent.mkdir()
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:  # the Keras 2 layout of the published file
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv("TFKIT_INCEPTION_WEIGHTS", raising=False)
    net = feature_network("inception_v3")
    assert net.name == "inception_v3_keras_imagenet"  # not the FID network: named apart
    for got, want in zip(net.model.weights, model.weights, strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    feats = compute_features(random_images(2, size=32), net, batch_size=2)
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not weights")
    with pytest.raises(UserError, match="does not hold InceptionV3 no-top weights"):
        feature_network("inception_v3", inception_weights=garbage)


# --------------------------------------------------------------------------------------
# classifier features
# --------------------------------------------------------------------------------------


def saved_classifier(root, normalize: str = "minus_one_one", head_activation_layer: bool = False):
    config = validate(
        {
            "name": "clf",
            "data": {
                "source": {"kind": "shapes", "count": 8, "resolution": 8},
                "normalize": normalize,
            },
        }
    )
    run_dir = create_run_dir(config, root=root)
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(12, activation="relu", name="penultimate")(x)
    if head_activation_layer:
        x = keras.layers.Dense(3, name="logits")(x)
        outputs = keras.layers.Activation("softmax")(x)
    else:
        outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Dropout(0.5)(x))
    model = keras.Model(inputs, outputs)
    model.save(run_dir / "model.keras")
    return run_dir, model


@pytest.mark.parametrize("head_activation_layer", [False, True])
def test_classifier_features_are_the_penultimate_layer(tmp_path, head_activation_layer):
    run_dir, model = saved_classifier(tmp_path, head_activation_layer=head_activation_layer)
    net = feature_network(f"classifier:{run_dir}")
    images = random_images(6)
    feats = compute_features(images, net, batch_size=4)
    assert feats.shape == (6, 12)
    penultimate = keras.Model(model.inputs, model.get_layer("penultimate").output)
    np.testing.assert_allclose(feats, penultimate.predict(images, verbose=0), atol=1e-5)


def test_classifier_trained_on_zero_one_gets_rescaled_images(tmp_path):
    run_dir, model = saved_classifier(tmp_path, normalize="rescale")
    net = feature_network(f"classifier:{run_dir}")
    images = random_images(3)
    penultimate = keras.Model(model.inputs, model.get_layer("penultimate").output)
    expected = penultimate.predict((images + 1) / 2, verbose=0)
    np.testing.assert_allclose(compute_features(images, net, 3), expected, atol=1e-5)


def test_classifier_spec_errors(tmp_path):
    with pytest.raises(UserError, match="not a tfkit run directory"):
        feature_network(f"classifier:{tmp_path}")
    with pytest.raises(UserError, match="needs a run directory"):
        feature_network("classifier:")


# --------------------------------------------------------------------------------------
# cached real statistics and generator evaluation
# --------------------------------------------------------------------------------------


def test_real_statistics_are_cached_per_dataset_network_and_count(tmp_path):
    net = tiny_network()
    images = random_images(40)
    first = real_statistics(images, net, 30, 16, cache_dir=tmp_path, data_key={"d": 1})
    assert first.num_images == 30
    assert len(list(tmp_path.glob("*.npz"))) == 1
    # a cache hit never touches the dataset (None would fail if it did)
    again = real_statistics(None, net, 30, 16, cache_dir=tmp_path, data_key={"d": 1})
    np.testing.assert_array_equal(again.features, first.features)
    np.testing.assert_array_equal(again.sigma, first.sigma)
    mu, sigma = feature_statistics(first.features)
    np.testing.assert_allclose(again.mu, mu)
    real_statistics(images, net, 20, 16, cache_dir=tmp_path, data_key={"d": 1})
    real_statistics(images, net, 20, 16, cache_dir=tmp_path, data_key={"d": 2})
    assert len(list(tmp_path.glob("*.npz"))) == 3


def test_evaluate_generator_ranks_a_good_generator_above_a_bad_one(tmp_path):
    net = tiny_network()
    real = random_images(300, seed=0)

    def good(z):  # fresh images from the real distribution, one per latent
        out = [np.random.default_rng(int(abs(v) * 1e6)).uniform(-1, 1, (8, 8, 3)) for v in z[:, 0]]
        return np.stack(out) * 0.5

    def bad(z):
        return np.full((len(z), 8, 8, 3), 0.8, np.float32) + 0.01 * z[:, :1, None, None]

    kwargs = dict(num_images=200, batch_size=50, cache_dir=tmp_path, data_key="uniform", z_dim=4)
    good_scores = evaluate_generator(good, real, net, ("fid", "kid"), **kwargs)
    bad_scores = evaluate_generator(bad, real, net, ("fid", "kid"), **kwargs)
    assert good_scores["num_fake"] == 200 and good_scores["num_real"] == 200
    assert bad_scores["fid"] > 20 * good_scores["fid"]
    assert bad_scores["kid"] > 20 * abs(good_scores["kid"])
    real_stats = real_statistics(real, net, 200, 50)
    again = evaluate_generator(bad, real_stats, net, ("fid",), **kwargs)
    assert again["fid"] == pytest.approx(bad_scores["fid"])
    # the same latents whatever the batch size (64 here, 50 above)
    snapshot = SnapshotMetrics(real, metrics=("fid", "kid"), features=net, num_images=200)
    assert snapshot(bad, z_dim=4)["fid"] == pytest.approx(bad_scores["fid"])
    assert snapshot(good, z_dim=4)["fid"] == pytest.approx(good_scores["fid"])
    with pytest.raises(UserError, match="Unknown metric `is`"):
        evaluate_generator(good, real, net, ("fid", "is"), **kwargs)


@pytest.mark.property
def test_shapes_classifier_config_gives_a_frechet_classifier_distance(tmp_path):
    """configs/shapes_classifier.yaml trains (~45 s) into a feature network that separates
    real shapes from degraded ones."""
    import json
    from pathlib import Path

    from tfkit.cli import main
    from tfkit.data.datasets import shapes

    config = Path(__file__).parents[2] / "configs" / "shapes_classifier.yaml"
    run_dir = tmp_path / "clf"
    assert main(["train", str(config), "--run-dir", str(run_dir), "--set", "train.verbose=0"]) == 0
    assert json.loads((run_dir / "metrics.json").read_text())["test"]["accuracy"] >= 0.97
    net = feature_network(f"classifier:{run_dir}")
    real = shapes(1000, 32, seed=0).x * 2 - 1
    other = shapes(1000, 32, seed=1).x * 2 - 1
    blurred = (real + np.roll(real, 1, 1) + np.roll(real, 1, 2) + np.roll(real, (1, 1), (1, 2))) / 4
    f_real, f_other, f_blur = (compute_features(x, net, 100) for x in (real, other, blurred))
    assert f_real.shape == (1000, 128)
    same, degraded = fid_from_features(f_real, f_other), fid_from_features(f_real, f_blur)
    assert degraded > 20 * same


def gan_config():
    return validate(
        {
            "name": "gan",
            "data": {
                "source": {"kind": "shapes", "count": 64, "resolution": 16},
                "normalize": "minus_one_one",
                "split": {"train": 1.0, "val": 0.0, "test": 0.0},
            },
            "gan": {"preset": "shapes16"},
        }
    )


def gan_checkpoint(config, run_dir):
    """Write a G_ema checkpoint (variables by path, 1.5 kimg) as the trainer's layout."""
    import tensorflow as tf

    from tfkit.config import GanConfig
    from tfkit.stylegan.presets import resolve_options
    from tfkit.stylegan.trainer import build_networks

    keras.utils.set_random_seed(3)
    G_ema, _ = build_networks(resolve_options(config.gan or GanConfig(), 16, 1, 0))
    nimg = tf.Variable(1500, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(G_ema={v.path: v for v in G_ema.variables}, nimg=nimg)
    checkpoint.save(str(run_dir / "checkpoints" / "ckpt"))
    return G_ema, nimg


def test_g_ema_loads_from_a_trainer_checkpoint(tmp_path):
    import tensorflow as tf

    from tfkit.stylegan.checkpoints import load_g_ema
    from tfkit.stylegan.trainer import Trainer

    config = gan_config()
    run_dir = create_run_dir(config, root=tmp_path)
    trainer = Trainer(config, run_dir, log=lambda line: None)
    trainer.G_ema.weights[0].assign_add(tf.ones_like(trainer.G_ema.weights[0]))  # G_ema != G
    trainer.nimg.assign(1500)
    trainer.save(wait=True)
    loaded = load_g_ema(run_dir, config, 16, 0)
    assert loaded.kimg == 1.5
    assert len(loaded.G.weights) == len(trainer.G_ema.weights)
    for got, want in zip(loaded.G.weights, trainer.G_ema.weights, strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_gan_metrics_command_measures_a_run_checkpoint(tmp_path, capsys):
    import argparse
    import json

    from tfkit.stylegan.checkpoints import load_g_ema
    from tfkit.stylegan.commands import metrics_command

    clf_dir, _ = saved_classifier(tmp_path / "clf")
    config = gan_config()
    run_dir = create_run_dir(config, root=tmp_path / "runs")
    G_ema, nimg = gan_checkpoint(config, run_dir)
    loaded = load_g_ema(run_dir, config, 16, 0)
    assert loaded.kimg == 1.5 and loaded.z_dim == G_ema.z_dim
    for got, want in zip(loaded.G.weights, G_ema.weights, strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    z = np.random.default_rng(0).normal(size=(4, loaded.z_dim)).astype(np.float32)
    assert loaded.generate(z).shape == (4, 16, 16, 3)
    args = argparse.Namespace(
        run_dir=str(run_dir),
        metrics="fid,kid",
        features=f"classifier:{clf_dir}",
        num_images=32,
        batch_size=16,
        cache_dir=str(tmp_path / "cache"),
        inception_weights=None,
        seed=0,
    )
    assert metrics_command(args) == 0
    out = capsys.readouterr().out
    # classifier features: the Fréchet distance is named FCD, not FID (InceptionV3's)
    assert "fcd (Fréchet classifier distance): " in out and "fid: " not in out
    assert "kid: " in out and "32 generated vs 32 real" in out
    # the network is named, and said not to give published-comparable values
    assert f"network: classifier:{clf_dir}: fcd and kid NOT comparable with published" in out
    record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["fid"] > 0 and record["kimg"] == 1.5 and record["num_fake"] == 32
    assert record["fid_network"] == record["kid_network"] == f"classifier:{clf_dir}"
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    args.run_dir = str(tmp_path / "clf" / "missing")
    with pytest.raises(UserError, match="Run directory not found"):
        metrics_command(args)


@pytest.mark.timeout(30)
def test_cli_gan_metrics_without_inception_weights_exits_2(tmp_path, monkeypatch, capsys):
    from tfkit.cli import main

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv("TFKIT_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.delenv("TFKIT_FID_INCEPTION", raising=False)
    run_dir = create_run_dir(gan_config(), root=tmp_path / "runs")
    # a GAN run with no snapshot yet is refused as such (before TensorFlow loads)
    assert main(["gan", "metrics", str(run_dir), "--num-images", "16"]) == 2
    err = capsys.readouterr().err
    assert "holds no trained generator to measure" in err
    assert f"tfkit gan train --resume {run_dir}" in err
    # with a checkpoint (its state file is what the check reads) the weights are missing
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    assert main(["gan", "metrics", str(run_dir), "--num-images", "16"]) == 2
    err = capsys.readouterr().err
    # the default network is the standard FID Inception graph (tests/stylegan/test_fid_inception.py)
    assert "tfkit gan metrics: error: FID Inception graph not found locally" in err
    keras_v3 = ["--features", "inception_v3", "--num-images", "16"]
    assert main(["gan", "metrics", str(run_dir), *keras_v3]) == 2
    err = capsys.readouterr().err
    assert "tfkit gan metrics: error: InceptionV3 weights not found locally" in err
    assert main(["gan", "metrics", str(run_dir), "--metrics", "fid,lpips"]) == 2
    assert "Unknown metric `lpips`" in capsys.readouterr().err


def test_partial_g_ema_checkpoint_is_refused(tmp_path):
    import tensorflow as tf

    from tfkit.stylegan.checkpoints import load_g_ema

    config = gan_config()
    run_dir = create_run_dir(config, root=tmp_path)
    G_ema, _ = gan_checkpoint(config, tmp_path / "full")
    partial = {v.path: v for v in G_ema.variables[:3]}
    tf.train.Checkpoint(G_ema=partial).save(str(run_dir / "checkpoints" / "ckpt"))
    with pytest.raises(RuntimeError, match="holds 3 values under G_ema/"):
        load_g_ema(run_dir, config, 16, 0)
