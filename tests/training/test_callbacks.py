"""Callbacks from config: files they write, argument checks, tfkit's own callbacks."""

import json

import keras
import numpy as np
import pytest

from tfkit.config import CallbackConfig, TrainConfig
from tfkit.errors import UserError
from tfkit.training.callbacks import (
    BestCheckpoint,
    LastCheckpoint,
    MetricsLogger,
    Throughput,
    build_callback,
    build_callbacks,
)


def _event_tags(log_dir) -> set[str]:
    """Every summary tag written under `log_dir`."""
    import tensorflow as tf

    return {
        value.tag
        for path in log_dir.rglob("*tfevents*")
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
    }


def _model_and_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 4)).astype("float32")
    y = (x.sum(1) > 0).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model, x, y


def test_build_callbacks_writes_run_files(tmp_path):
    train = TrainConfig(
        epochs=3,
        histogram_freq=1,
        callbacks=[
            {"name": "early_stopping", "args": {"monitor": "val_loss", "patience": 5}},
            {"name": "csv_logger"},
            {"name": "reduce_lr_on_plateau", "args": {"factor": 0.5, "patience": 1}},
            {"name": "terminate_on_nan"},
        ],
    )
    callbacks = build_callbacks(train, tmp_path, batch_size=32)
    for kind in [
        keras.callbacks.EarlyStopping,
        keras.callbacks.CSVLogger,
        keras.callbacks.ReduceLROnPlateau,
        keras.callbacks.TerminateOnNaN,
        keras.callbacks.TensorBoard,
        BestCheckpoint,
        LastCheckpoint,
        keras.callbacks.BackupAndRestore,
        MetricsLogger,
        Throughput,
    ]:
        assert any(isinstance(c, kind) for c in callbacks), kind
    model, x, y = _model_and_data()
    model.fit(x, y, validation_split=0.25, epochs=3, batch_size=32, callbacks=callbacks, verbose=0)
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert {"loss", "val_loss", "accuracy", "examples_per_sec", "step_ms"} <= set(lines[0])
    assert lines[-1]["examples_per_sec"] > 0
    assert (tmp_path / "checkpoints" / "best.keras").exists()
    assert (tmp_path / "checkpoints" / "last.keras").exists()
    assert (tmp_path / "history.csv").read_text().count("\n") == 4
    tags = _event_tags(tmp_path / "tb" / "train")
    assert {"epoch_loss", "epoch_examples_per_sec", "epoch_step_ms"} <= tags, tags
    assert not any("epoch_epoch" in t or "throughput" in t for t in tags), tags
    assert not (tmp_path / "backup").exists()  # removed after a finished fit
    loaded = keras.saving.load_model(tmp_path / "checkpoints" / "last.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)


def test_callback_errors_list_valid_names_and_args(tmp_path):
    with pytest.raises(
        UserError, match=r"Unknown callback `early_stoping`.*Did you mean `early_stopping`"
    ):
        build_callback(CallbackConfig(name="early_stoping"), tmp_path)
    with pytest.raises(
        UserError,
        match=r"train.callbacks\[2\]` \(early_stopping\) does not take patiense.*Valid args: monitor.*patience.*Received: patiense=3",
    ):
        build_callback(
            CallbackConfig(name="early_stopping", args={"patiense": 3}), tmp_path, index=2
        )


def test_callbacks_run_with_plain_hooks(tmp_path):
    """tfkit's callbacks need only the standard hooks (as the custom loop calls them)."""
    model, _, _ = _model_and_data()
    logger, throughput = MetricsLogger(tmp_path / "m.jsonl"), Throughput(16, tmp_path / "tb")
    callbacks = keras.callbacks.CallbackList([throughput, logger], model=model)
    callbacks.on_train_begin()
    for epoch in range(2):
        callbacks.on_epoch_begin(epoch)
        for step in range(3):
            callbacks.on_train_batch_begin(step)
            model.optimizer.iterations.assign_add(1)  # what a training step does
            callbacks.on_train_batch_end(step, {"loss": 1.0})
        callbacks.on_epoch_end(epoch, {"loss": 0.5 - epoch * 0.1})
    callbacks.on_train_end()
    lines = [json.loads(s) for s in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert lines[1]["loss"] == pytest.approx(0.4)
    assert lines[0]["examples_per_sec"] > 0 and len(throughput.history) == 2
    assert [h["steps"] for h in throughput.history] == [3, 3]


@pytest.mark.parametrize("steps_per_execution,mirrored", [(1, False), (4, False), (8, True)])
def test_throughput_counts_every_step_it_trained(tmp_path, steps_per_execution, mirrored):
    """examples/s = every step's examples / the epoch's training time, whatever the number
    of steps per graph call (and under a strategy, whose step counter is mirrored); that
    time is within the epoch's (validation excluded)."""
    import tensorflow as tf

    strategy = (
        tf.distribute.MirroredStrategy(["/cpu:0"]) if mirrored else tf.distribute.get_strategy()
    )
    with strategy.scope():
        model, x, y = _model_and_data()
        model.compile(
            optimizer="adam", loss="binary_crossentropy", steps_per_execution=steps_per_execution
        )
    throughput, logger = Throughput(16), MetricsLogger(tmp_path / "m.jsonl")
    model.fit(
        x, y, batch_size=16, epochs=3, validation_split=0.25, callbacks=[throughput, logger],
        verbose=0,
    )  # fmt: skip
    records = [json.loads(s) for s in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert len(throughput.history) == len(records) == 3
    for measured, record in zip(throughput.history, records, strict=True):
        assert measured["steps"] == 96 // 16  # 96 training examples, batches of 16
        assert record["examples_per_sec"] == pytest.approx(96 / measured["seconds"], rel=1e-12)
        assert record["step_ms"] == pytest.approx(1000 * measured["seconds"] / 6, rel=1e-12)
        assert 0 < measured["seconds"] <= record["epoch_seconds"]
        assert record["examples_per_sec"] >= 96 / record["epoch_seconds"]


@pytest.mark.parametrize(
    ("values", "final_is_best"), [((0.5, 0.3, 0.2), True), ((0.5, 0.3, 0.4), False)]
)
def test_best_checkpoint_leaves_a_best_last_epoch_to_the_caller(tmp_path, values, final_is_best):
    """With `save_at_end=False` a best last epoch is not written twice: `final_is_best`
    tells the caller (which saves that model anyway); an earlier best epoch is written."""
    model, x, y = _model_and_data()
    values = iter(values)
    snapshots = []

    class Monitor(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = next(values)
            snapshots.append(self.model.get_weights())

    path = tmp_path / "best.keras"
    best = BestCheckpoint(path, "val_loss", min_interval_s=3600, save_at_end=False)
    model.fit(x, y, epochs=3, batch_size=32, callbacks=[Monitor(), best], verbose=0)
    assert best.final_is_best is final_is_best
    assert path.exists() is not final_is_best
    if not final_is_best:
        loaded = keras.saving.load_model(path, safe_mode=True)
        for saved, expected in zip(loaded.get_weights(), snapshots[1], strict=True):
            np.testing.assert_array_equal(saved, expected)


def test_best_checkpoint_holds_the_best_epoch(tmp_path):
    """best.keras holds the weights of the epoch with the best monitored value, also when
    writes are deferred (min_interval_s) past later, worse epochs."""
    model, x, y = _model_and_data()
    values = iter([0.5, 0.3, 0.4, 0.35])  # the best epoch is the second
    snapshots = []

    class Monitor(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = next(values)
            snapshots.append(self.model.get_weights())

    best = BestCheckpoint(tmp_path / "best.keras", "val_loss", min_interval_s=3600)
    model.fit(x, y, epochs=4, batch_size=32, callbacks=[Monitor(), best], verbose=0)
    assert best.best == 0.3 and best.best_epoch == 2
    loaded = keras.saving.load_model(tmp_path / "best.keras", safe_mode=True)
    for saved, expected in zip(loaded.get_weights(), snapshots[1], strict=True):
        np.testing.assert_array_equal(saved, expected)
    for current, last in zip(model.get_weights(), snapshots[-1], strict=True):
        np.testing.assert_array_equal(current, last)  # the write swapped the weights back


def test_file_callbacks_create_their_folder(tmp_path):
    from tfkit.config import CallbackConfig
    from tfkit.training.callbacks import build_callback

    run_dir = tmp_path / "not" / "yet"
    cb = build_callback(CallbackConfig(name="csv_logger", args={"filename": "logs/h.csv"}), run_dir)
    assert (run_dir / "logs").is_dir()
    cb.set_model(__import__("keras").Sequential())
    cb.on_train_begin()
    cb.on_epoch_end(0, {"loss": 1.0})
    cb.on_train_end()
    assert (run_dir / "logs" / "h.csv").read_text().startswith("epoch,loss")


def _event_values(log_dir) -> dict[tuple[str, int], float]:
    """`(tag, step) -> value` of every scalar summary written under `log_dir`."""
    import tensorflow as tf

    return {
        (value.tag, event.step): float(tf.make_ndarray(value.tensor))
        for path in log_dir.rglob("*tfevents*")
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
    }


@pytest.mark.parametrize("validation_freq", [1, 2])
def test_epoch_tensorboard_writes_each_epochs_logs_in_the_background(tmp_path, validation_freq):
    """The scalars written by the background thread are the epoch logs (and each
    validation's) at their epoch and step, all on disk when training ends."""
    from tfkit.training.callbacks import EpochTensorBoard

    model, x, y = _model_and_data()
    board = EpochTensorBoard(log_dir=str(tmp_path / "tb"), write_graph=False)
    history = model.fit(
        x, y, validation_split=0.25, validation_freq=validation_freq, epochs=4, batch_size=32,
        callbacks=[board], verbose=0,
    )  # fmt: skip
    train, val = (
        _event_values(tmp_path / "tb" / "train"),
        _event_values(tmp_path / "tb" / "validation"),
    )
    for epoch in range(4):
        for key in ("loss", "accuracy"):
            assert train[(f"epoch_{key}", epoch)] == pytest.approx(
                history.history[key][epoch], rel=1e-6
            )
    val_epochs = [e for e in range(4) if (e + 1) % validation_freq == 0]
    for i, epoch in enumerate(val_epochs):
        assert val[("epoch_loss", epoch)] == pytest.approx(history.history["val_loss"][i], rel=1e-6)
        step = (epoch + 1) * 3  # 96 training examples, batches of 32
        assert val[("evaluation_loss_vs_iterations", step)] == pytest.approx(
            history.history["val_loss"][i], rel=1e-6
        )
    assert {k for k in val if k[0] == "epoch_loss"} == {("epoch_loss", e) for e in val_epochs}
    assert board._executor is None  # shut down at the end of training
