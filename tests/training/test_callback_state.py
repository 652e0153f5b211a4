"""Stateful callbacks resume exactly: EarlyStopping, ReduceLROnPlateau and `best.keras` go on
after `--resume` (and after the cut epoch of a resumed `model.fit`) as if the run had never
stopped.

Property: for any stop point (an epoch end, the middle of an epoch) and both training
loops, a run with early stopping, learning-rate reduction and a best checkpoint, stopped
and resumed, trains the same epochs with the same learning rates and losses, stops at the
same epoch, and ends with the same model and the same `best.keras` as the uninterrupted
run. The monitored `val_loss` is scripted per epoch, so every callback has something to do:
the best epoch is the second, the learning rate halves from the third, and early stopping
ends the run after 5 of 8 epochs (a run whose callbacks restart on resume trains all 8).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import signal
from pathlib import Path

import keras
import numpy as np
import pytest

from tfkit.cli import main
from tfkit.training.callback_state import CallbackStates, apply, capture, decode, encode

STEPS = 23  # training batches per epoch (1437 digits / 64)
SCRIPT = [5.0, 1.0, 3.0, 4.0, 2.0, 6.0, 7.0, 8.0]  # val_loss per epoch, as the callbacks see it
CONFIG = """
name: digits_callbacks
data:
  source: {kind: digits, layout: flat}
  batch_size: 64
model: {name: mlp, units: [16]}
train:
  epochs: 8
  optimizer: {name: sgd, learning_rate: 0.05}
  checkpoint: both
  verbose: 0
  tensorboard: false
  callbacks:
    - {name: early_stopping, args: {monitor: val_loss, patience: 3, restore_best_weights: true}}
    - {name: reduce_lr_on_plateau, args: {monitor: val_loss, patience: 1, factor: 0.5}}
runtime:
  steps_per_execution: 1
"""


class Scripted(keras.callbacks.Callback):
    """Replaces the epoch's `val_loss` by `SCRIPT[epoch]` before the other callbacks see it;
    sends `signum` to this process after `stop_at` training batches (0: never)."""

    def __init__(self, stop_at: int = 0, signum: int = signal.SIGTERM):
        super().__init__()
        self.stop_at, self.signum, self.seen = stop_at, signum, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.stop_at:
            os.kill(os.getpid(), self.signum)

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = SCRIPT[epoch]


def _first(monkeypatch, callback) -> None:
    """Put `callback` before the callbacks `tfkit train` builds (fit and custom loop)."""
    import tfkit.training.callbacks as callbacks_module

    session_module = importlib.import_module("tfkit.training.session")
    original = callbacks_module.build_callbacks

    def patched(*args, **kwargs):
        return [callback, *original(*args, **kwargs)]

    monkeypatch.setattr(session_module, "build_callbacks", patched)
    monkeypatch.setattr(callbacks_module, "build_callbacks", patched)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("config") / "digits_callbacks.yaml"
    path.write_text(CONFIG)
    return str(path)


def _train(config_file: str, run_dir: Path, loop: str, monkeypatch, stop_at: int = 0) -> int:
    with monkeypatch.context() as patch:
        _first(patch, Scripted(stop_at))
        args = ["train", config_file, "--run-dir", str(run_dir), "--set", f"train.loop={loop}"]
        if loop == "custom":  # one batch hook per step, as fit's steps_per_execution 1
            args += ["--set", "train.steps_per_loop=1"]
        return main(args)


def _resume(run_dir: Path, monkeypatch) -> int:
    with monkeypatch.context() as patch:
        _first(patch, Scripted())
        return main(["train", "--resume", str(run_dir)])


def _records(run_dir: Path) -> dict[int, dict]:
    """The last `metrics.jsonl` record of each epoch."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {r["epoch"]: r for r in map(json.loads, lines)}


def _weights(path: Path) -> list[np.ndarray]:
    return keras.saving.load_model(path).get_weights()


def _max_diff(a: Path, b: Path) -> float:
    return max(float(np.abs(u - v).max()) for u, v in zip(_weights(a), _weights(b), strict=True))


@pytest.fixture(scope="module", params=["fit", "custom"])
def straight(request, tmp_path_factory, config_file):
    """The uninterrupted run of each loop: (loop, run dir)."""
    run_dir = tmp_path_factory.mktemp(request.param) / "straight"
    with pytest.MonkeyPatch.context() as patch:
        assert _train(config_file, run_dir, request.param, patch) == 0
    return request.param, run_dir


def test_the_script_exercises_every_callback(straight):
    """What the property below compares: early stopping after 5 epochs, the learning rate
    halved at the end of the third epoch and after, the best epoch (the second) in best.keras."""
    _, run_dir = straight
    records = _records(run_dir)
    assert sorted(records) == [1, 2, 3, 4, 5]
    rates = [records[e]["learning_rate"] for e in sorted(records)]
    assert rates == pytest.approx([0.05, 0.05, 0.05, 0.025, 0.0125])  # before its reduction
    # restore_best_weights: the final model is the best epoch's, as is best.keras
    assert _max_diff(run_dir / "model.keras", run_dir / "checkpoints" / "best.keras") == 0.0
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 5


@pytest.mark.parametrize("stop_at", [2 * STEPS, 3 * STEPS + 5], ids=["epoch-end", "mid-epoch"])
def test_stopped_and_resumed_run_equals_uninterrupted(
    straight, stop_at, config_file, tmp_path, monkeypatch
):
    loop, straight_dir = straight
    run_dir = tmp_path / "run"
    assert _train(config_file, run_dir, loop, monkeypatch, stop_at=stop_at) == 143
    assert _resume(run_dir, monkeypatch) == 0
    expected, got = _records(straight_dir), _records(run_dir)
    assert sorted(got) == sorted(expected)  # early stopping at the same epoch
    for epoch, record in expected.items():
        assert got[epoch]["learning_rate"] == pytest.approx(record["learning_rate"], rel=1e-7)
        assert got[epoch]["loss"] == pytest.approx(record["loss"], abs=1e-6), epoch
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 5
    assert _max_diff(run_dir / "model.keras", straight_dir / "model.keras") <= 1e-6
    best = Path("checkpoints") / "best.keras"
    assert _max_diff(run_dir / best, straight_dir / best) <= 1e-6


# --------------------------------------------------------------------------------------
# the state itself
# --------------------------------------------------------------------------------------

STATES = [
    {},
    {"EarlyStopping#0": {"wait": 2, "best": np.float32(0.25), "best_weights": None}},
    {
        "EarlyStopping#0": {
            "wait": 0,
            "best": math.inf,
            "stopped_epoch": 0,
            "best_weights": [np.arange(6, dtype="float32").reshape(2, 3), np.ones(3, "float64")],
        },
        "ReduceLROnPlateau#0": {"wait": 1, "best": -math.inf, "cooldown_counter": 3},
        "Custom#1": {"name": "ünïcode", "nested": {"a": [1, 2.5, None]}, "flag": True},
        "Empty#0": {"arrays": [np.zeros((0, 4), "int8")], "bf": np.int64(7)},
    },
]


@pytest.mark.parametrize("states", STATES)
def test_encode_decode_round_trip(states):
    back = decode(encode(states))
    assert back.keys() == states.keys()

    def same(a, b):
        if isinstance(a, (list, tuple)):
            assert isinstance(b, list) and len(a) == len(b)
            for u, v in zip(a, b, strict=True):
                same(u, v)
        elif isinstance(a, dict):
            assert a.keys() == b.keys()
            for k in a:
                same(a[k], b[k])
        elif isinstance(a, np.ndarray):
            assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)
        else:
            assert b == a and type(b) in (type(a), float, int, bool, type(None)), (a, b)

    same(states, back)


def test_keras_callbacks_reset_by_a_new_fit_get_their_state_back():
    """`on_train_begin` of EarlyStopping and ReduceLROnPlateau resets them (Keras lets a
    callback be reused across fits); the states callback, last, puts the state back."""
    early = keras.callbacks.EarlyStopping(patience=4)
    plateau = keras.callbacks.ReduceLROnPlateau(patience=2)
    early.on_train_begin()
    plateau.on_train_begin()
    early.wait, early.best, early.best_epoch = 3, 0.5, 7
    plateau.wait, plateau.best, plateau.cooldown_counter = 1, 0.25, 2
    states = CallbackStates([early, plateau])
    states.load(states.dump())
    for callback in (early, plateau, states):  # the order of a CallbackList
        callback.on_train_begin()
    assert (early.wait, early.best, early.best_epoch) == (3, 0.5, 7)
    assert (plateau.wait, plateau.best, plateau.cooldown_counter) == (1, 0.25, 2)


def test_a_callback_added_on_resume_keeps_its_own_state():
    saved = capture([keras.callbacks.EarlyStopping()])
    first, added = keras.callbacks.EarlyStopping(), keras.callbacks.EarlyStopping()
    first.wait = added.wait = 9
    apply([first, added], decode(encode(saved)))
    assert (first.wait, added.wait) == (0, 9)
