"""The custom GradientTape loop: learning, 2 replicas == 1 replica, exact resume after
SIGKILL, NaN handling, callbacks, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from tfkit.errors import UserError
from tfkit.training.loop import Loop, NonFiniteLossError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def digits_arrays():
    d = load_digits()
    return (d.data / 16).astype("float32"), d.target.astype("int32")


def dataset_fn(x, y, global_batch, shuffle=True, seed=1):
    """A dataset function batching per replica (what `tfkit.data.build` does)."""

    def fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if shuffle:
            ds = ds.shuffle(len(x), seed=seed)
        return ds.batch(ctx.get_per_replica_batch_size(global_batch))

    return fn


def mlp(dropout=0.0):
    layers = [keras.Input((64,)), keras.layers.Dense(32, activation="relu")]
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    return keras.Sequential([*layers, keras.layers.Dense(10, activation="softmax")])


def make_loop(strategy=None, *, lr=1e-2, steps=20, epochs=2, batch=32, dropout=0.0, **kw):
    strategy = strategy or tf.distribute.get_strategy()
    x, y = digits_arrays()
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = mlp(dropout)
        optimizer = keras.optimizers.Adam(lr)
    return Loop(
        model=model,
        loss=keras.losses.SparseCategoricalCrossentropy(),
        optimizer=optimizer,
        strategy=strategy,
        train_data=dataset_fn(x[:1500], y[:1500], batch),
        val_data=dataset_fn(x[1500:], y[1500:], batch, shuffle=False),
        global_batch_size=batch,
        steps_per_epoch=steps,
        epochs=epochs,
        metrics=["accuracy"],
        verbose=0,
        **kw,
    )


def max_diff(a: keras.Model, b: keras.Model) -> float:
    return max(
        float(np.abs(u - v).max()) for u, v in zip(a.get_weights(), b.get_weights(), strict=True)
    )


def mirrored_2cpu():
    from tfkit.distribute import mirrored

    assert len(tf.config.list_logical_devices("CPU")) >= 2, "conftest gives 2 logical CPUs"
    return mirrored(("CPU:0", "CPU:1"))


def test_loop_learns_and_reports_keras_logs():
    loop = make_loop(epochs=3)
    history = loop.run()
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history["loss"][-1] < history["loss"][0] * 0.5
    assert history["val_accuracy"][-1] > 0.75
    assert int(loop.step.numpy()) == 60 and int(loop.epoch.numpy()) == 3


def test_two_replicas_equal_one_replica_loop():
    one = make_loop(steps=15, epochs=2)
    one.run()
    two = make_loop(mirrored_2cpu(), steps=15, epochs=2)
    two.run()
    assert two.strategy.num_replicas_in_sync == 2
    assert max_diff(one.model, two.model) <= 1e-5


def test_two_replicas_equal_one_replica_fit():
    x, y = digits_arrays()
    x, y = x[:480], y[:480]  # 15 batches of 32

    def train(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = mlp()
            model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
        return model

    assert max_diff(train(tf.distribute.get_strategy()), train(mirrored_2cpu())) <= 1e-5


@pytest.mark.parametrize(
    "class_weight", [{0: 5.0}, {1: 0.1, 3: 9.0}, {k: k + 1.0 for k in range(10)}]
)
def test_class_weight_weighs_the_training_loss_never_the_metrics(class_weight):
    """Evaluation loss and metrics are those of the unweighted model, as `fit` reports them;
    training with class weights differs from training without."""
    plain = make_loop(steps=5, epochs=1)
    plain.run()
    weighted = make_loop(steps=5, epochs=1, class_weight=class_weight)
    weighted.run()
    assert max_diff(plain.model, weighted.model) > 1e-3  # the loss is weighted
    x, y = digits_arrays()
    x, y = x[1500:], y[1500:]
    logs = weighted.evaluate(dataset_fn(x, y, 32, shuffle=False))
    probs = weighted.model.predict(x, verbose=0)
    expected_loss = float(keras.losses.SparseCategoricalCrossentropy()(y, probs))
    assert logs["accuracy"] == pytest.approx(float(np.mean(probs.argmax(-1) == y)), abs=1e-6)
    assert logs["loss"] == pytest.approx(expected_loss, rel=1e-5)


@pytest.mark.parametrize("steps_per_loop", [5, "auto"])
def test_steps_per_loop_does_not_change_training(steps_per_loop):
    a = make_loop(steps=12, epochs=2, steps_per_loop=1)
    a.run()
    b = make_loop(steps=12, epochs=2, steps_per_loop=steps_per_loop)
    b.run()
    assert max_diff(a.model, b.model) == 0.0
    assert int(b.step.numpy()) == 24


@pytest.mark.parametrize(("steps_per_epoch", "expected"), [(20, 16), (23, 16), (7, 7), (1, 1)])
def test_auto_steps_per_loop_is_16_steps_at_most_an_epoch(steps_per_epoch, expected):
    from tfkit.training.loop import resolve_steps_per_loop

    assert resolve_steps_per_loop("auto", steps_per_epoch) == expected
    assert resolve_steps_per_loop(5, steps_per_epoch) == 5
    for bad in (0, -1, 2.5, True, "fast"):
        with pytest.raises(UserError, match="`train.steps_per_loop`"):
            resolve_steps_per_loop(bad, steps_per_epoch)


@pytest.mark.parametrize("steps_per_loop", [1, "auto"])
def test_examples_per_sec_counts_every_step_of_the_epoch(tmp_path, steps_per_loop):
    """Throughput's examples/s = every step's examples / the epoch's training time, whether
    a call runs one step or 16 (`auto`, cut at 20-step epoch ends); that time is within
    the epoch's (validation excluded)."""
    import json

    from tfkit.training.callbacks import MetricsLogger, Throughput

    throughput, logger = Throughput(32), MetricsLogger(tmp_path / "m.jsonl")
    loop = make_loop(
        steps=20, epochs=3, steps_per_loop=steps_per_loop, callbacks=[throughput, logger]
    )
    assert loop.steps_per_loop == (16 if steps_per_loop == "auto" else 1)
    loop.run()
    assert int(loop.step.numpy()) == 60
    records = [json.loads(s) for s in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert len(throughput.history) == len(records) == 3
    for measured, record in zip(throughput.history, records, strict=True):
        assert measured["steps"] == 20
        assert record["examples_per_sec"] == pytest.approx(20 * 32 / measured["seconds"], rel=1e-12)
        assert 0 < measured["seconds"] <= record["epoch_seconds"]
        assert record["examples_per_sec"] >= 20 * 32 / record["epoch_seconds"]


def test_callbacks_receive_hooks_and_early_stopping_stops():
    calls = []

    class Recorder(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            calls.append("train_begin")

        def on_epoch_begin(self, epoch, logs=None):
            calls.append(f"epoch_begin{epoch}")

        def on_train_batch_end(self, batch, logs=None):
            calls.append("batch")
            assert "loss" in logs

        def on_epoch_end(self, epoch, logs=None):
            calls.append(f"epoch_end{epoch}")
            assert {"loss", "accuracy", "val_loss"} <= set(logs)

        def on_train_end(self, logs=None):
            calls.append("train_end")

    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=100.0)
    loop = make_loop(steps=5, epochs=10, callbacks=[Recorder(), stop], steps_per_loop=1)
    history = loop.run()
    assert len(history["loss"]) == 2  # stopped after patience ran out
    assert calls[:2] == ["train_begin", "epoch_begin0"] and calls[-1] == "train_end"
    assert calls.count("batch") == 10


def nan_loop(policy, ckpt=None):
    x, y = digits_arrays()
    x = x[:320].copy()
    x[160:192] = np.nan  # batch 6 of the unshuffled stream gives a NaN loss
    keras.utils.set_random_seed(0)
    return Loop(
        model=mlp(),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        optimizer=keras.optimizers.SGD(0.1),
        train_data=dataset_fn(x, y[:320], 32, shuffle=False),
        global_batch_size=32,
        steps_per_epoch=10,
        epochs=1,
        nan_policy=policy,
        checkpoint_dir=ckpt,
        checkpoint_every=2,
        verbose=0,
    )


def test_nan_loss_stops_naming_the_step_and_keeps_last_good_checkpoint(tmp_path):
    loop = nan_loop("stop", tmp_path / "ckpt")
    with pytest.raises(NonFiniteLossError, match=r"became nan at step 6 \(epoch 1\)") as info:
        loop.run()
    assert "ckpt-4" in str(info.value)
    assert os.path.basename(loop.latest_checkpoint) == "ckpt-4"
    fresh = nan_loop("stop", tmp_path / "ckpt")
    assert fresh.restore() == 4
    assert all(np.isfinite(w).all() for w in fresh.model.get_weights())


def test_nan_policy_skip_step_skips_the_update():
    loop = nan_loop("skip_step")
    history = loop.run()
    assert all(np.isfinite(w).all() for w in loop.model.get_weights())
    assert np.isfinite(history["loss"][0])
    assert int(loop.step.numpy()) == 10


def test_sigterm_saves_a_checkpoint_and_stops(tmp_path):
    class Term(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(loop.step.numpy()) == 7:
                os.kill(os.getpid(), signal.SIGTERM)

    loop = make_loop(
        steps=10, epochs=3, checkpoint_dir=tmp_path, callbacks=[Term()], steps_per_loop=1
    )
    loop.run()
    assert loop.stopped_by_signal
    assert int(loop.step.numpy()) == 7
    assert os.path.basename(loop.latest_checkpoint) == "ckpt-7"
    assert signal.getsignal(signal.SIGTERM) != loop._stop._handle  # handler restored
    assert loop.stop_signal == signal.SIGTERM


def test_mixed_precision_uses_loss_scaling_and_learns():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        loop = make_loop(steps=15, epochs=2)
        assert isinstance(loop.optimizer, keras.optimizers.LossScaleOptimizer)
        history = loop.run()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert history["loss"][-1] < history["loss"][0]
    assert np.isfinite(history["loss"]).all()


def test_global_batch_not_divisible_by_replicas():
    with pytest.raises(
        UserError,
        match=r"`data.batch_size` \(31\) must be divisible by the number of replicas \(2\)",
    ):
        make_loop(mirrored_2cpu(), batch=31)


def test_bad_nan_policy():
    with pytest.raises(UserError, match="nan_policy.*Received: 'ignore'"):
        make_loop(nan_policy="ignore")


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.path.insert(0, {tests!r})
    import keras, numpy as np
    from test_loop import make_loop
    ckpt, out, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class Killer(keras.callbacks.Callback):
        def __init__(self, loop):
            super().__init__()
            self.loop = loop
        def on_train_batch_end(self, batch, logs=None):
            if kill_at and int(self.loop.step.numpy()) >= kill_at:
                # the checkpoint of step 16 is complete (a write still in flight at a kill
                # is lost by design: the one before it is kept); then kill -9
                self.loop.wait_for_checkpoint()
                os.kill(os.getpid(), signal.SIGKILL)

    loop = make_loop(steps=12, epochs=3, dropout=0.3, checkpoint_dir=ckpt, checkpoint_every=4,
                     steps_per_loop=2)
    loop.callbacks.append(Killer(loop))
    loop.run(resume=True)
    np.savez(out, *loop.model.get_weights())
    """
)


def test_exact_resume_after_crash_in_process(tmp_path):
    """A run that dies mid-epoch and resumes from its checkpoint ends with the same weights."""

    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(crashing.step.numpy()) >= 18:
                raise KeyboardInterrupt

    crashing = make_loop(
        steps=12,
        epochs=3,
        dropout=0.3,
        checkpoint_dir=tmp_path,
        checkpoint_every=4,
        steps_per_loop=2,
    )
    crashing.callbacks.append(Crash())
    with pytest.raises(KeyboardInterrupt):
        crashing.run()
    resumed = make_loop(
        steps=12,
        epochs=3,
        dropout=0.3,
        checkpoint_dir=tmp_path,
        checkpoint_every=4,
        steps_per_loop=2,
    )
    assert resumed.restore() == 16
    resumed.run()
    straight = make_loop(steps=12, epochs=3, dropout=0.3, steps_per_loop=2)
    straight.run()
    assert max_diff(resumed.model, straight.model) <= 1e-6


@pytest.mark.property
def test_exact_resume_after_sigkill(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=os.path.join(ROOT, "tests", "training")))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}

    def child(ckpt, out, kill_at):
        return subprocess.run(
            [sys.executable, str(script), str(tmp_path / ckpt), str(tmp_path / out), str(kill_at)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )

    killed = child("ckpt", "never.npz", 18)  # dies at step 18; last checkpoint at 16
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (tmp_path / "never.npz").exists()
    # resumed in this process from what the killed one left on disk
    resumed = make_loop(
        steps=12,
        epochs=3,
        dropout=0.3,
        checkpoint_dir=tmp_path / "ckpt",
        checkpoint_every=4,
        steps_per_loop=2,
    )
    assert resumed.restore() == 16
    resumed.run()

    loop = make_loop(steps=12, epochs=3, dropout=0.3, steps_per_loop=2)  # uninterrupted
    loop.run()
    for u, v in zip(loop.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_allclose(u, v, atol=1e-6, rtol=0)
