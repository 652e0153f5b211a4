"""Embedded datasets: deterministic by seed, right shapes, and learnable by a small model."""

import keras
import numpy as np
import pytest

from tfkit.data import datasets
from tfkit.errors import UserError


def test_shapes_deterministic_any_power_of_two():
    a, b = datasets.shapes(12, 16, seed=3), datasets.shapes(12, 16, seed=3)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, datasets.shapes(12, 16, seed=4).x)
    for r in (4, 64):
        s = datasets.shapes(5, r)
        assert s.x.shape == (5, r, r, 3) and s.x.dtype == np.float32
        assert 0.0 <= s.x.min() and s.x.max() <= 1.0
    assert set(datasets.shapes(60).y.tolist()) == {0, 1, 2}
    with pytest.raises(
        UserError, match="`resolution` must be a power of two >= 4. Received: resolution=48"
    ):
        datasets.shapes(4, 48)


def test_synthetic_sets_deterministic():
    for fn in (
        datasets.tabular_binary,
        datasets.two_input,
        datasets.sequences,
        datasets.regression,
    ):
        a, b = fn(count=50, seed=1), fn(count=50, seed=1)
        np.testing.assert_array_equal(a.y, b.y)
        xa = a.x["a"] if isinstance(a.x, dict) else a.x
        xb = b.x["a"] if isinstance(b.x, dict) else b.x
        np.testing.assert_array_equal(xa, xb)


def _fit(model, x, y, loss, epochs, metric="accuracy"):
    keras.utils.set_random_seed(0)
    n = int(len(y) * 0.8)
    split = (
        (lambda v: ({k: a[:n] for k, a in v.items()}, {k: a[n:] for k, a in v.items()}))
        if isinstance(x, dict)
        else (lambda v: (v[:n], v[n:]))
    )
    xtr, xte = split(x)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss, metrics=[metric])
    model.fit(xtr, y[:n], epochs=epochs, batch_size=64, verbose=0)
    return model.evaluate(xte, y[n:], verbose=0, return_dict=True)


def _dense(inputs, units, out, act):
    h = keras.layers.Flatten()(inputs)
    h = keras.layers.Dense(units, activation="relu")(h)
    return keras.Model(inputs, keras.layers.Dense(out, activation=act)(h))


def test_tabular_binary_learnable():
    d = datasets.tabular_binary(2000)
    m = _dense(keras.Input((50,)), 32, 1, "sigmoid")
    # 5 % label noise and an interaction term: a 32-unit MLP lands near 0.8 (chance 0.5)
    assert _fit(m, d.x, d.y, "binary_crossentropy", 10)["accuracy"] > 0.72


def test_two_input_learnable():
    d = datasets.two_input(2000)
    a, b = keras.Input((50,), name="a"), keras.Input((10,), name="b")
    h = keras.layers.Concatenate()([a, b])
    m = keras.Model({"a": a, "b": b}, keras.layers.Dense(5, activation="softmax")(h))
    assert _fit(m, d.x, d.y, "sparse_categorical_crossentropy", 10)["accuracy"] > 0.7  # chance 0.2


def test_sequences_learnable_by_rnn():
    d = datasets.sequences(1500)
    inputs = keras.Input((20, 4))
    m = keras.Model(
        inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.GRU(16)(inputs))
    )
    assert _fit(m, d.x, d.y, "sparse_categorical_crossentropy", 8)["accuracy"] > 0.7  # chance 0.33


def test_regression_with_outliers_learnable_with_huber():
    d = datasets.regression(2000)
    inputs = keras.Input((8,))
    m = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    _fit(m, d.x, d.y, keras.losses.Huber(1.0), 20, metric="mae")
    inliers = np.abs(d.y[1600:, 0] - m.predict(d.x[1600:], verbose=0)[:, 0])
    assert np.median(inliers) < 0.3  # the targets' spread is ~3


def test_shapes_learnable_by_small_cnn():
    d = datasets.shapes(900, 16, seed=0)
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(16, 3, activation="relu")(inputs)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(16, 3, activation="relu")(h)
    h = keras.layers.GlobalMaxPooling2D()(h)
    m = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(h))
    assert _fit(m, d.x, d.y, "sparse_categorical_crossentropy", 12)["accuracy"] > 0.6  # chance 0.33
