"""`train_on_batch` stepping on a tfkit-built, tfkit-compiled model: N steps on a batch give
the same weights as `fit` over the same N batches, and the loss falls."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import model_cfg, spec_of

from tfkit.config import TrainConfig
from tfkit.models import build
from tfkit.training import compile_model

DIGITS = spec_of("multiclass", ("x", (8, 8, 1)), num_classes=10)
SEQUENCES = spec_of("multiclass", ("x", (6, 4)), num_classes=10)

CASES = {
    "mlp_batch_norm": ({"name": "mlp", "units": [16], "batch_norm": True}, DIGITS),
    "cnn": ({"name": "cnn", "filters": [4], "dense_units": [8]}, DIGITS),
    "simple_ann": ({"name": "simple_ann", "units": [16]}, DIGITS),
    "base_rnn": ({"name": "rnn", "cell": "rnn", "units": [8]}, SEQUENCES),
}


def _compiled(fields, spec):
    keras.utils.set_random_seed(0)
    model = build(model_cfg(**fields), spec)
    train = TrainConfig.model_validate({"optimizer": {"name": "adam", "learning_rate": 1e-2}})
    return compile_model(model, train, spec)


@pytest.mark.parametrize("case", list(CASES))
def test_train_on_batch_steps_like_fit(case):
    fields, spec = CASES[case]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, *spec.inputs[0].shape)).astype("float32")
    y = rng.integers(0, 10, size=(16,))
    stepped, fitted = _compiled(fields, spec), _compiled(fields, spec)
    # each call resets the metrics: the logs are that step's own
    losses = [stepped.train_on_batch(x, y, return_dict=True)["loss"] for _ in range(4)]
    batches = tf.data.Dataset.from_tensors((x, y)).repeat(4)
    fitted.fit(batches, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(stepped.get_weights(), fitted.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert losses[-1] < losses[0]
    logs = stepped.test_on_batch(x, y, return_dict=True)
    assert set(logs) == {"loss", "accuracy"} and np.isfinite(logs["loss"])
