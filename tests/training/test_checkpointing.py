"""The run engine's checkpoint writer: what a save copies is what a restore gives back, the
write happens in the background, errors surface on the caller's thread, old ones rotate
out; and the custom loop still resumes checkpoints written before the engine."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.training.test_loop import make_loop
from tfkit.training.checkpointing import CheckpointWriter, read_checkpoint


def _state():
    with tf.device("/cpu:0"):
        text = tf.Variable(b"", dtype=tf.string)
    return {
        "weights": [tf.Variable(np.arange(6.0).reshape(2, 3)), tf.Variable([1, 2], tf.int64)],
        "step": tf.Variable(0, dtype=tf.int64),
        "text": text,
    }


def _values(state):
    return [
        np.array(v.numpy())
        for value in state.values()
        for v in (value if isinstance(value, list) else [value])
    ]


def test_a_save_holds_the_values_at_the_save_not_at_the_write(tmp_path):
    state = _state()
    writer = CheckpointWriter(tmp_path, state)
    state["step"].assign(7)
    state["text"].assign(b"callbacks")
    saved = _values(state)
    writer.save(7)
    # training goes on while the copy is written
    state["weights"][0].assign_add(tf.ones((2, 3), tf.float64) * 100)
    state["step"].assign(8)
    state["text"].assign(b"later")
    writer.wait()
    assert os.path.basename(writer.latest) == "ckpt-7"
    fresh = _state()
    assert {"weights", "step", "text"} <= read_checkpoint(writer.latest, fresh)
    for got, want in zip(_values(fresh), saved, strict=True):
        np.testing.assert_array_equal(got, want)


def test_old_checkpoints_rotate_out_and_a_new_writer_continues_the_directory(tmp_path):
    state = _state()
    writer = CheckpointWriter(tmp_path, state, max_to_keep=2)
    for step in (1, 2, 3):
        writer.save(step)
    writer.wait()
    names = sorted(p.name for p in tmp_path.glob("ckpt-*.index"))
    assert names == ["ckpt-2.index", "ckpt-3.index"]
    again = CheckpointWriter(tmp_path, state, max_to_keep=2, background=False)
    again.save(4)
    assert sorted(p.name for p in tmp_path.glob("ckpt-*.index")) == ["ckpt-3.index", "ckpt-4.index"]
    assert (
        tf.train.get_checkpoint_state(str(tmp_path))
        .all_model_checkpoint_paths[-1]
        .endswith("ckpt-4")
    )


def test_a_failed_write_is_raised_on_the_callers_thread_and_keeps_the_last_checkpoint(tmp_path):
    state = _state()
    writer = CheckpointWriter(tmp_path / "ckpt", state)
    writer.save(1, wait=True)
    (tmp_path / "ckpt" / "ckpt-2.index").mkdir()  # the next write cannot create its file
    writer.save(2)
    with pytest.raises(Exception):  # noqa: B017 - TensorFlow's own error type for the OS's
        writer.wait()
    assert os.path.basename(writer.latest) == "ckpt-1"
    writer.wait()  # raised once


def test_the_loop_resumes_a_checkpoint_written_before_the_run_engine(tmp_path):
    """tfkit before the run engine saved the loop's model and optimizer as Keras objects
    and the generator as itself; such a checkpoint still resumes exactly."""
    old = make_loop(steps=5, epochs=1)
    old.run()
    old._states_var.assign(old.callback_states.dump())
    raw = lambda vs: [getattr(v, "value", v) for v in vs]  # noqa: E731
    legacy = tf.train.Checkpoint(
        model=old.model,
        optimizer=old.optimizer,
        step=old.step,
        epoch=old.epoch,
        rng=old.rng,
        model_variables=raw(old.model.variables),
        metric_variables=raw([v for m in old.metrics for v in m.variables]),
        epoch_loss=old._loss_sums,
        callbacks=old._states_var,
    )
    path = tf.train.CheckpointManager(legacy, str(tmp_path / "old"), 3).save(5)
    new = make_loop(steps=5, epochs=1, checkpoint_dir=tmp_path / "new")
    new.restore_checkpoint(path)
    assert int(new.step.numpy()) == 5
    np.testing.assert_array_equal(new.rng.state.numpy(), old.rng.state.numpy())
    for a, b in zip(new.optimizer.variables, old.optimizer.variables, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    for a, b in zip(new.model.get_weights(), old.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_loop_writes_its_checkpoint_in_the_background_and_waits_at_the_end(tmp_path):
    loop = make_loop(steps=5, epochs=2, checkpoint_dir=tmp_path)
    loop.run()
    assert not loop.writer.writing
    assert os.path.basename(loop.latest_checkpoint) == "ckpt-10"
    fresh = make_loop(steps=5, epochs=2, checkpoint_dir=tmp_path)
    assert fresh.restore() == 10
    for a, b in zip(fresh.model.get_weights(), loop.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
