"""The custom loop calls the same callback hooks, in the same order, as `fit` (training and
validation) and `predict` (prediction), for the same epochs and batches."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfkit.training.loop import Loop

HOOKS = sorted(name for name in dir(keras.callbacks.Callback) if name.startswith("on_"))


class Recorder(keras.callbacks.Callback):
    """Records every hook call as `(hook, epoch or batch index)`."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple] = []


def _recording(hook: str):
    def record(self, *args, **kwargs):
        index = args[0] if args and isinstance(args[0], int) else None
        self.calls.append((hook, index))

    return record


for _hook in HOOKS:
    setattr(Recorder, _hook, _recording(_hook))


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)).astype("float32"), rng.integers(0, 3, size=(n,))


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(3)]
    )


TRAIN, VAL = _data(96, 0), _data(40, 1)  # 3 train batches, 2 validation batches of 32


def _dataset(arrays) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(arrays).batch(32)


@pytest.mark.parametrize(("epochs", "validation_freq"), [(2, 1), (3, 2)])
def test_train_and_validation_hooks_match_fit(epochs, validation_freq):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    fit_recorder, loop_recorder = Recorder(), Recorder()
    model = _model()
    model.compile(keras.optimizers.Adam(1e-2), loss, metrics=["accuracy"])
    model.fit(
        _dataset(TRAIN),
        validation_data=_dataset(VAL),
        epochs=epochs,
        validation_freq=validation_freq,
        callbacks=[fit_recorder],
        verbose=0,
    )
    loop = Loop(
        model=_model(),
        loss=loss,
        optimizer=keras.optimizers.Adam(1e-2),
        train_data=lambda ctx: _dataset(TRAIN),
        val_data=lambda ctx: _dataset(VAL),
        global_batch_size=32,
        steps_per_epoch=3,
        epochs=epochs,
        validation_freq=validation_freq,
        metrics=["accuracy"],
        callbacks=[loop_recorder],
        steps_per_loop=1,  # a batch hook per step, as fit's default steps_per_execution
        verbose=0,
    )
    loop.run(resume=False)
    assert ("on_test_batch_end", 1) in loop_recorder.calls
    assert loop_recorder.calls == fit_recorder.calls


def test_predict_hooks_and_outputs_match_keras_predict():
    keras_recorder, loop_recorder = Recorder(), Recorder()
    loop = Loop(
        model=_model(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=keras.optimizers.Adam(1e-2),
        train_data=lambda ctx: _dataset(TRAIN),
        global_batch_size=32,
        steps_per_epoch=3,
        verbose=0,
    )
    expected = loop.model.predict(_dataset(VAL), callbacks=[keras_recorder], verbose=0)
    got = loop.predict(_dataset(VAL), callbacks=[loop_recorder])
    assert loop_recorder.calls == keras_recorder.calls
    assert [c[0] for c in loop_recorder.calls][:2] == ["on_predict_begin", "on_predict_batch_begin"]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # a dataset function and (x, y) batches give the same outputs
    np.testing.assert_allclose(loop.predict(lambda ctx: _dataset(VAL[0])), expected, atol=1e-6)
