"""tfkit's custom Dense layer: shapes, config round trip, gradients, .keras round trip."""

import keras
import numpy as np
import pytest
from helpers import run_layer_test, run_serialization_test

from tfkit.models.layers import Dense, dense


def test_dense_layer_contract():
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    out = run_layer_test(
        Dense,
        {"units": 3, "activation": "relu", "use_bias": True},
        x,
        expected_output_shape=(4, 3),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=0,
    )
    assert np.all(keras.ops.convert_to_numpy(out) >= 0)  # relu


def test_dense_matches_keras_dense_with_same_weights():
    x = np.random.default_rng(1).normal(size=(5, 7)).astype("float32")
    ours, theirs = Dense(4, activation="tanh"), keras.layers.Dense(4, activation="tanh")
    ours(x), theirs(x)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours(x), theirs(x), atol=1e-6)


def test_dense_on_sequences_applies_to_last_axis():
    x = np.ones((2, 5, 3), "float32")
    run_layer_test(Dense, {"units": 4, "use_bias": False}, x, expected_output_shape=(2, 5, 4),
                   expected_num_trainable_weights=1)  # fmt: skip


def test_dense_round_trips_through_keras_file_in_safe_mode(tmp_path):
    x = np.random.default_rng(2).normal(size=(3, 6)).astype("float32")
    loaded = run_serialization_test(Dense(2, activation="sigmoid"), x, tmp_path)
    assert any(type(layer) is Dense for layer in loaded.layers)
    assert keras.saving.get_registered_name(Dense) == "tfkit>Dense"


def test_dense_rejects_bad_units():
    with pytest.raises(ValueError, match=r"`units` must be a positive integer. Received: units=0"):
        Dense(0)


def test_dense_factory_picks_the_implementation():
    assert type(dense(3, impl="custom")) is Dense
    assert type(dense(3, impl="keras")) is keras.layers.Dense
    with pytest.raises(ValueError, match="dense_impl"):
        dense(3, impl="fast")
