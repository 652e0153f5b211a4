"""Exact resume for `model.fit`: a step-level backup and a data stream that is a function of
the step.

`fit_phases` trains on `make_train().repeat().skip(start_step)`: the order of every batch is
a function of the data seed and its global step, not of how many epochs this process ran
(a `tf.data` shuffle reshuffles per iteration of one dataset object, so each phase builds a
fresh dataset). A run resumed in the middle of epoch `e` first trains the rest of that epoch
(`model.fit(initial_epoch=e, epochs=e + 1, steps_per_epoch=<the rest>)`), then the
remaining epochs.

`FitBackup` saves a `tf.train.Checkpoint` of the model, its optimizer, every model variable
(Keras seed generators of dropout and noise layers included), the compiled metrics' state,
the step and the other callbacks' state (`tfkit.training.callback_state`: EarlyStopping's
patience, the best value behind `best.keras`...): at each epoch end (after every callback's
epoch end), every `save_every` steps and when a stop signal arrives. It refuses to save
non-finite weights and stops the run on a non-finite loss (`NonFiniteLossError`), so the
last checkpoint is always a good one.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfkit.errors import NonFiniteLossError, Stopped, UserError
from tfkit.training.callback_state import CallbackStates
from tfkit.training.checkpointing import (
    UNREADABLE_CHECKPOINT_ERRORS,
    CheckpointWriter,
    raw_variable,
)
from tfkit.training.stop import StopSignals, end_progress_line


def saved_position(directory: str | os.PathLike) -> tuple[int, int] | None:
    """`(step, epoch)` of the latest backup in `directory` (None when there is none)."""
    directory = Path(directory)
    latest = tf.train.latest_checkpoint(str(directory))
    if latest is None:
        if directory.is_dir() and any(directory.iterdir()):  # Keras' BackupAndRestore files
            raise UserError(
                f"--resume: {directory} holds a backup written by an older tfkit, which cannot "
                "resume exactly; start a new run"
            )
        return None
    try:
        step = tf.train.load_variable(latest, "step/.ATTRIBUTES/VARIABLE_VALUE")
        epoch = tf.train.load_variable(latest, "epoch/.ATTRIBUTES/VARIABLE_VALUE")
    except UNREADABLE_CHECKPOINT_ERRORS as err:  # IndexError: a short read
        raise unreadable(latest, err) from None
    return int(step), int(epoch)


def unreadable(path: str, err: BaseException) -> UserError:
    """The error for a backup that cannot be read (e.g. truncated by a full disk)."""
    reason = str(getattr(err, "message", err)).splitlines()[0]
    return UserError(
        f"--resume: the backup {path} cannot be read ({reason}); it may be truncated (a full "
        "disk or a kill while writing). Nothing was loaded"
    )


def weights_finite(model: keras.Model) -> bool:
    """Whether every weight of `model` is finite."""
    return all(np.all(np.isfinite(np.asarray(w))) for w in model.get_weights())


class FitBackup(keras.callbacks.Callback):
    """Save what an exact `--resume` of `model.fit` needs; stop on NaN/Inf or a signal.

    Cheap enough to leave on for every run:

    - Its only batch-end hook compares the loss Keras already read (with the TensorFlow
      backend Keras converts every batch's logs to floats on the main thread, with or
      without callbacks) and records a non-finite one with its step; it is `async_safe`,
      so on backends where Keras runs batch hooks in a thread it keeps doing so. The main
      thread raises `NonFiniteLossError` at the next batch begin or epoch end.
    - Signals and `save_every` are handled at batch begins, on the main thread, between two
      training calls: no device value is read for them.
    - A save goes through `tfkit.training.checkpointing.CheckpointWriter`: the state is
      copied and written in a background thread while training goes on. An epoch end whose
      previous write is still running skips its save (the next one catches up); the last
      epoch, a stop and `save_every` steps always save, and `on_train_end` waits for the
      write. A kill at any moment leaves a readable backup, and resuming from any of them
      is exact.

    Args:
        directory: where the checkpoints go (`ckpt-<step>` files and a `checkpoint` state
            file, as `tf.train.CheckpointManager` writes them).
        steps_per_epoch: optimizer steps per epoch (None: unknown; saves at epoch ends only).
        start_step: the step training starts from (restored from `directory` when > 0).
        start_epoch: the epoch training starts from.
        save_every: also save every N steps (0: at epoch ends only).
        stop: the stop request of the surrounding `StopSignals` (None: signals not handled).
        max_to_keep: checkpoints kept.
    """

    async_safe = True  # see on_train_batch_end

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        steps_per_epoch: int | None,
        start_step: int = 0,
        start_epoch: int = 0,
        save_every: int = 0,
        stop: StopSignals | None = None,
        max_to_keep: int = 2,
        states: CallbackStates | None = None,
    ):
        super().__init__()
        self.directory = Path(directory)
        self.steps_per_epoch = steps_per_epoch
        self.start_step = int(start_step)
        self.save_every = int(save_every or 0)
        self.stop = stop
        self.max_to_keep = max_to_keep
        self.states = states
        if states is not None:  # the epoch-end save waits for every callback's epoch end
            states.after_epoch_end = self._save_epoch_end
        self._epoch_end_save: bool | None = None  # due at the end of this epoch (wait?)
        self.step = int(start_step)
        self.epoch = int(start_epoch)
        self._saved_step = int(start_step)
        self._epoch_first_step = int(start_step)  # global step before the epoch's first batch
        self._offset = 0
        self._stop_after_epoch = False
        self._writer: CheckpointWriter | None = None
        self._metric_values: list[np.ndarray] | None = None
        self._metric_vars: list[Any] = []
        self._step_var: tf.Variable | None = None
        self._epoch_var: tf.Variable | None = None
        self._states_var: tf.Variable | None = None
        self._lock = threading.Lock()
        self._bad: tuple[float, int, int] | None = None  # (loss, step, epoch) of a NaN/Inf
        self._batches_seen = 0  # batch hooks of this epoch (steps_per_epoch unknown)

    @property
    def latest(self) -> str | None:
        """The latest checkpoint fully written (or restored), None before the first."""
        return tf.train.latest_checkpoint(str(self.directory))

    def _make_checkpoint(self) -> None:
        model = self.model
        self._step_var = tf.Variable(self.start_step, dtype=tf.int64, trainable=False)
        self._epoch_var = tf.Variable(self.epoch, dtype=tf.int64, trainable=False)
        with tf.device("/cpu:0"):
            self._states_var = tf.Variable(b"", dtype=tf.string, trainable=False)
        self._metric_vars = [raw_variable(v) for v in model.metrics_variables]
        # one flat list: every model variable (Keras seed generators of dropout and noise
        # layers included), the optimizer's and the compiled metrics' state
        self._writer = CheckpointWriter(
            self.directory,
            {
                "variables": [*model.variables, *model.optimizer.variables, *self._metric_vars],
                "step": self._step_var,
                "epoch": self._epoch_var,
                "callbacks": self._states_var,
            },
            max_to_keep=self.max_to_keep,
        )
        if self.start_step or self.epoch:
            latest = self.latest
            if latest is None:
                raise FileNotFoundError(f"no backup in {self.directory} to resume from")
            try:
                # backups written before the callbacks' state was saved lack it
                self._writer.restore(latest, optional={"callbacks"})
            except UNREADABLE_CHECKPOINT_ERRORS as err:
                raise unreadable(latest, err) from None
            if self.states is not None:
                self.states.load(self._states_var.numpy())
            # fit resets the metrics at each epoch begin: keep the state of a cut epoch
            self._metric_values = [v.numpy() for v in self._metric_vars]

    def restore(self) -> None:
        """Create the checkpoint and restore the backup when resuming (idempotent); the
        model must be built with its metrics (`build_from_spec`). `fit` calls it at its
        start; call it first (outside any strategy scope) to load a backup without
        training."""
        if self._writer is None:
            self._make_checkpoint()

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.restore()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self._stop_after_epoch:  # asked during an epoch's last batches: that epoch is logged
            self.wait()
            end_progress_line(self.params.get("verbose"))
            # named as Keras' progress bar and the resume line name it: `epoch` + 1
            raise Stopped(self.stop.requested, epoch + 1, self.step)
        self.epoch = epoch
        self._offset = 0
        if self.steps_per_epoch:
            self._offset = max(self.start_step - epoch * self.steps_per_epoch, 0)
            self._epoch_first_step = epoch * self.steps_per_epoch + self._offset
        else:
            self._epoch_first_step = self.step
        self._batches_seen = 0
        if self._metric_values is not None:
            if self._offset:
                for variable, value in zip(self._metric_vars, self._metric_values, strict=True):
                    variable.assign(value)
            self._metric_values = None

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        # the main thread, between two training calls: `batch` steps of this epoch are done
        self._raise_if_bad()
        self.step = self._epoch_first_step + batch
        if self.stop is not None and self.stop.requested:
            if self.steps_per_epoch:  # a mid-epoch state resumes exactly only at known steps
                self._save(self.step, wait=True)
            else:
                self.wait()
            end_progress_line(self.params.get("verbose"))
            epoch = self.epoch + 1
            if self.steps_per_epoch:  # the epoch `--resume` continues (1-based, as Keras)
                epoch = self.step // self.steps_per_epoch + 1
            raise Stopped(self.stop.requested, epoch, self.step)
        if self.save_every and self.steps_per_epoch and self._due():
            self._save(self.step)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # may run in Keras' callback thread (`async_safe`): it only reads the loss and
        # records the first non-finite one with its step; the main thread raises
        with self._lock:
            self._batches_seen = max(self._batches_seen, batch + 1)
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        step = self._epoch_first_step + batch + 1
        with self._lock:
            if self._bad is None or step < self._bad[1]:
                self._bad = (float(loss), step, self.epoch + 1)

    def _raise_if_bad(self) -> None:
        if self._bad is not None:
            value, step, epoch = self._bad
            self.wait(raise_errors=False)
            raise NonFiniteLossError(value, step, epoch, self.latest)

    def _due(self) -> bool:
        return self.step // self.save_every > self._saved_step // self.save_every

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._raise_if_bad()  # every batch hook of the epoch has run (Keras waits for them)
        if self.steps_per_epoch:
            self.step = (epoch + 1) * self.steps_per_epoch
        else:
            self.step = self._epoch_first_step + self._batches_seen
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.wait(raise_errors=False)
            raise NonFiniteLossError(float(loss), self.step, epoch + 1, self.latest)
        self.epoch = epoch + 1
        stopping = self.stop is not None and self.stop.requested is not None
        if stopping:  # stop before the next epoch; this one validates and logs first
            self._stop_after_epoch = True
        last = epoch + 1 >= int(self.params.get("epochs") or 0)
        self._epoch_end_save = None
        if last or stopping or not self._writing():
            self._epoch_end_save = stopping
            if self.states is None:  # else after every callback's epoch end (their state)
                self._save_epoch_end()

    def _save_epoch_end(self) -> None:
        if self._epoch_end_save is not None:
            wait, self._epoch_end_save = self._epoch_end_save, None
            self._save(self.step, wait=wait)

    def on_train_end(self, logs: dict | None = None) -> None:
        self.wait()

    def _writing(self) -> bool:
        return self._writer is not None and self._writer.writing

    def wait(self, raise_errors: bool = True) -> None:
        """Wait for the background write; raise its error (unless `raise_errors` is False)."""
        if self._writer is not None:
            self._writer.wait(raise_errors)

    def _save(self, step: int, wait: bool = False) -> None:
        """Copy the state at `step` and write it in the background (`wait`: until written)."""
        if step == self._writer.saved_step:
            if wait:
                self.wait()
            return
        if not weights_finite(self.model):  # the last update overflowed
            deadline = time.monotonic() + 2.0  # let Keras' thread see the batches done
            while (
                self._epoch_first_step + self._batches_seen < step and time.monotonic() < deadline
            ):
                time.sleep(0.01)
            self._raise_if_bad()
            self.wait(raise_errors=False)
            raise NonFiniteLossError(float("nan"), step, self.epoch + 1, self.latest)
        self.wait()  # one write at a time; its error surfaces here
        self._step_var.assign(step)
        self._epoch_var.assign(self.epoch)
        self._states_var.assign(self.states.dump() if self.states is not None else b"")
        self._saved_step = step
        self._writer.save(step, wait=wait)


def build_from_spec(model: keras.Model, element_spec: Any) -> None:
    """Build a compiled model, its metrics and its optimizer from the data's shapes.

    `fit` would otherwise take a batch of the train stream to build them, which moves the
    shuffle of that dataset on by one iteration. Does nothing when all is built.
    """
    if hasattr(model, "_symbolic_build"):
        with model.distribute_strategy.scope():
            model._symbolic_build(data_batch=element_spec)


class StopOnSignal(keras.callbacks.Callback):
    """Raise `Stopped` before the next batch after a signal of `stop` (a tuner trial: the
    search keeps its completed trials and reruns the stopped one).

    A batch-begin hook: Keras calls it on the main thread without the logs, so it does not
    make Keras wait for each step's results as a batch-end hook does (a callback with
    `on_train_batch_end` turns off Keras' asynchronous dispatch)."""

    def __init__(self, stop: StopSignals):
        super().__init__()
        self.stop = stop
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.stop.requested:  # `batch` batches of this epoch are done
            end_progress_line(self.params.get("verbose"))
            raise Stopped(self.stop.requested, self._epoch + 1, batch)


def train_stream(make_train: Callable[[], tf.data.Dataset], skip: int) -> tf.data.Dataset:
    """A fresh train dataset, repeated, from global step `skip` on."""
    data = make_train()
    if data.cardinality() != tf.data.INFINITE_CARDINALITY:
        data = data.repeat()
    return data.skip(skip) if skip else data


class _ProgbarOf(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, its `Epoch N/T` counting to `epochs` whatever `fit` was given."""

    def __init__(self, epochs: int):
        super().__init__()
        self.total_epochs = int(epochs)

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        self.epochs = max(self.epochs, self.total_epochs)


def fit_phases(
    model: keras.Model,
    make_train: Callable[[], tf.data.Dataset],
    *,
    epochs: int,
    steps_per_epoch: int | None,
    start_step: int = 0,
    start_epoch: int = 0,
    fresh_train: tf.data.Dataset | None = None,
    **fit_kwargs: Any,
) -> keras.callbacks.History:
    """`model.fit` from `start_step` to `epochs`, on a stream that depends only on the step.

    Args:
        model: a compiled model.
        make_train: builds a fresh train dataset (one pass, or infinite).
        epochs: the epoch to train up to.
        steps_per_epoch: steps per epoch; None when unknown (then the dataset is one epoch,
            training starts at `start_epoch`, and the order is not restored).
        start_step: global steps already done (a resumed run).
        start_epoch: epochs already done (used when `steps_per_epoch` is None).
        fresh_train: a dataset equal to `make_train()` that nothing has iterated yet (None:
            build one): the first phase uses it.
        **fit_kwargs: passed to every `model.fit` call (callbacks, validation, verbose...).

    Returns:
        A `History` whose `history` spans every epoch trained here and `epoch` lists them.
    """
    if steps_per_epoch is None:
        phases = [(start_epoch, epochs, None)]
    else:
        start_epoch, offset = divmod(start_step, steps_per_epoch)
        phases = []
        if offset:  # finish the cut epoch first
            phases.append((start_epoch, start_epoch + 1, steps_per_epoch - offset))
            start_epoch += 1
        phases.append((start_epoch, epochs, steps_per_epoch))
    merged = keras.callbacks.History()
    merged.history = {}
    merged.epoch = []
    step = start_step
    callbacks = list(fit_kwargs.pop("callbacks", None) or [])
    if fit_kwargs.get("verbose", "auto") and not any(
        isinstance(c, keras.callbacks.ProgbarLogger) for c in callbacks
    ):  # the cut epoch is a fit of its own: its bar still counts to `epochs`
        callbacks.append(_ProgbarOf(epochs))
    # EarlyStopping(restore_best_weights) sets the best weights at every fit's end: a phase
    # that is not the run's end must hand the next one the weights it trained
    ended = _WeightsAtTrainEnd()
    fit_kwargs["callbacks"] = [ended, *callbacks]
    for first, last, steps in phases:
        if first >= last:
            continue
        build = make_train
        if fresh_train is not None:  # the first phase takes the dataset already built
            build, fresh_train = (lambda data=fresh_train: data), None
        data = build() if steps is None else train_stream(build, step)
        build_from_spec(model, data.element_spec)  # (done once; then a no-op)
        history = model.fit(
            data,
            initial_epoch=first,
            epochs=last,
            steps_per_epoch=steps,
            shuffle=False,  # the tf.data pipeline shuffles, under the data seed
            **fit_kwargs,
        )
        merged.epoch += history.epoch
        for key, values in history.history.items():
            merged.history.setdefault(key, []).extend(values)
        if steps is not None:
            step += steps * (last - first)
        if model.stop_training:  # e.g. EarlyStopping in the cut epoch
            break
        if last < epochs and ended.weights is not None:
            model.set_weights(ended.weights)
    return merged


class _WeightsAtTrainEnd(keras.callbacks.Callback):
    """The model's weights when `fit` ends, before any other callback's `on_train_end`."""

    weights: list[np.ndarray] | None = None

    def on_train_end(self, logs: dict | None = None) -> None:
        self.weights = self.model.get_weights()
