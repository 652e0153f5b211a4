"""Callbacks from config: files they write, argument checks, tfkit's own callbacks."""

import json

import keras
import numpy as np
import pytest

from tfkit.config import CallbackConfig, TrainConfig
from tfkit.errors import UserError
from tfkit.training.callbacks import MetricsLogger, Throughput, build_callback, build_callbacks


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
    kinds = [type(c).__name__ for c in callbacks]
    for kind in [
        "EarlyStopping",
        "CSVLogger",
        "ReduceLROnPlateau",
        "TerminateOnNaN",
        "TensorBoard",
        "ModelCheckpoint",
        "LastCheckpoint",
        "BackupAndRestore",
        "MetricsLogger",
        "Throughput",
    ]:
        assert kind in kinds
    model, x, y = _model_and_data()
    model.fit(x, y, validation_split=0.25, epochs=3, batch_size=32, callbacks=callbacks, verbose=0)
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert {"loss", "val_loss", "accuracy", "examples_per_sec", "step_ms"} <= set(lines[0])
    assert lines[-1]["examples_per_sec"] > 0
    assert (tmp_path / "checkpoints" / "best.keras").exists()
    assert (tmp_path / "checkpoints" / "last.keras").exists()
    assert (tmp_path / "history.csv").read_text().count("\n") == 4
    assert any((tmp_path / "tb").rglob("*tfevents*"))
    assert any((tmp_path / "tb" / "throughput").rglob("*tfevents*"))
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
            callbacks.on_train_batch_end(step, {"loss": 1.0})
        callbacks.on_epoch_end(epoch, {"loss": 0.5 - epoch * 0.1})
    callbacks.on_train_end()
    lines = [json.loads(s) for s in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert lines[1]["loss"] == pytest.approx(0.4)
    assert lines[0]["examples_per_sec"] > 0 and len(throughput.history) == 2


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
