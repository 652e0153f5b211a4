"""Replicas stay equal: under a MirroredStrategy over 2 logical CPUs every replica ends with
the same weights, batch-norm moving statistics included, and they equal one replica's at the
same global batch (tfkit's batch norm uses the statistics of the global batch)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import model_cfg, spec_of
from sklearn.datasets import load_digits

import tfkit.models
from tfkit.training.loop import Loop

GLOBAL_BATCH = 32
CASES = {
    "mlp": (dict(name="mlp", units=[32, 16], batch_norm=True), (64,)),
    "cnn": (dict(name="cnn", filters=[4, 8], dense_units=[16], batch_norm=True), (8, 8, 1)),
}


def _data(shape):
    digits = load_digits()
    x = (digits.data[:320] / 16).astype("float32").reshape(-1, *shape)
    return x, digits.target[:320].astype("int32")


def _model(strategy, case):
    fields, shape = CASES[case]
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = tfkit.models.build(
            model_cfg(**fields), spec_of("multiclass", ("x", shape), num_classes=10)
        )
        assert any(
            isinstance(layer, keras.layers.BatchNormalization) and layer.synchronized
            for layer in model._flatten_layers()
        )
    return model, shape


def _train_fit(strategy, case):
    model, shape = _model(strategy, case)
    with strategy.scope():
        model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    x, y = _data(shape)
    model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=2, shuffle=False, verbose=0)
    return model


def _train_loop(strategy, case):
    model, shape = _model(strategy, case)
    with strategy.scope():
        optimizer = keras.optimizers.Adam(1e-2)
    x, y = _data(shape)

    def data(ctx):
        batch = ctx.get_per_replica_batch_size(GLOBAL_BATCH)
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
        # replica i of each global batch takes rows [i * batch, (i + 1) * batch)
        return (
            ds.unbatch()
            .skip(ctx.input_pipeline_id * batch)
            .batch(batch)
            .shard(ctx.num_input_pipelines, 0)
        )

    loop = Loop(
        model=model,
        loss=keras.losses.SparseCategoricalCrossentropy(),
        optimizer=optimizer,
        strategy=strategy,
        train_data=data,
        global_batch_size=GLOBAL_BATCH,
        steps_per_epoch=len(x) // GLOBAL_BATCH,
        epochs=2,
        verbose=0,
    )
    loop.run()
    return model


def _replica_values(model):
    """Each variable as held by each replica: [[replica 0, replica 1, ...], ...]."""
    strategy = model.distribute_strategy
    out = []
    for variable in model.weights:
        raw = getattr(variable, "value", variable)
        out.append([np.asarray(v) for v in strategy.experimental_local_results(raw)])
    return out


@pytest.mark.parametrize(
    "train",
    [_train_fit, pytest.param(_train_loop, marks=pytest.mark.property)],
    ids=["fit", "custom_loop"],
)
@pytest.mark.parametrize("case", ["cnn", pytest.param("mlp", marks=pytest.mark.property)])
def test_replicas_equal_each_other_and_one_replica_batch_norm_included(train, case, two_replicas):
    two = train(two_replicas, case)
    one = train(tf.distribute.get_strategy(), case)
    moving = [w.path for w in two.weights if "moving" in w.path]
    assert moving, "the model has batch-norm moving statistics"
    for variable, copies in zip(two.weights, _replica_values(two), strict=True):
        assert len(copies) == 2
        np.testing.assert_array_equal(copies[0], copies[1], err_msg=variable.path)
    for a, b, variable in zip(one.get_weights(), two.get_weights(), two.weights, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=0, err_msg=variable.path)
    assert max(float(np.abs(w).max()) for w in two.get_weights() if w.ndim) > 0
