"""The one checkpoint writer of tfkit's training loops: each loop declares WHAT it saves (named
variables), this module owns HOW a checkpoint is written and read back.

A save copies every declared variable into a shadow copy on the CPU (one `assign` each, on
the caller's thread, between two training calls) and a background thread writes the copy
with TensorFlow's own `tf.train.CheckpointManager` while training goes on. TensorFlow
points the directory's `checkpoint` state file at a checkpoint only once its files are
complete (the state file is replaced atomically), so a kill at any moment leaves the
previous checkpoint readable. One write at a time: a save first waits for the write before
it. `wait()` joins the write and raises its error on the caller's thread.

The declared state maps a name to a `tf.Variable` (a Keras variable is unwrapped), to a list
of them (matched by position) or to a dict of them (matched by key, e.g. a model's variables
by their paths); the checkpoint's keys are these names, so a checkpoint is read back into
any object declaring the same names.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tensorflow as tf

from tfkit.runs import restore_tf_checkpoint

# what reading a checkpoint can raise when its files are truncated or do not match
UNREADABLE_CHECKPOINT_ERRORS = (tf.errors.OpError, ValueError, IndexError, AssertionError)


def raw_variable(variable: Any) -> Any:
    """The `tf.Variable` behind a Keras variable (anything else as is)."""
    import keras

    return variable.value if isinstance(variable, keras.Variable) else variable


def by_path(variables: Sequence[Any], key: str = "path") -> dict[str, Any]:
    """`{variable.path: variable}` of a model's variables (or keyed by another attribute,
    e.g. `name`); the keys must be unique."""
    out = {getattr(v, key): v for v in variables}
    if len(out) != len(variables):
        raise ValueError(f"two variables share a {key}: declare them as a list instead")
    return out


def declared(state: Mapping[str, Any]) -> dict[str, Any]:
    """`state` with every Keras variable unwrapped and each list of variables deduplicated
    (a variable listed twice in one list is saved once)."""
    out: dict[str, Any] = {}
    for name, value in state.items():
        if isinstance(value, Mapping):
            out[name] = {key: raw_variable(v) for key, v in value.items()}
        elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
            seen: set[int] = set()
            items = []
            for variable in value:
                variable = raw_variable(variable)
                if id(variable) not in seen:
                    seen.add(id(variable))
                    items.append(variable)
            out[name] = items
        else:
            out[name] = raw_variable(value)
    return out


def _flat(state: dict[str, Any]) -> list[Any]:
    flat = []
    for value in state.values():
        if isinstance(value, dict):
            flat += [value[key] for key in sorted(value)]
        elif isinstance(value, list):
            flat += value
        else:
            flat.append(value)
    return flat


def _map(state: dict[str, Any], fn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in state.items():
        if isinstance(value, dict):
            out[name] = {key: fn(v) for key, v in value.items()}
        elif isinstance(value, list):
            out[name] = [fn(v) for v in value]
        else:
            out[name] = fn(value)
    return out


def _shadow_of(variable: Any) -> tf.Variable:
    """A CPU variable of `variable`'s shape and dtype (its value copied at each save)."""
    return tf.Variable(tf.zeros(variable.shape, variable.dtype), trainable=False)


def read_checkpoint(
    path: str, state: Mapping[str, Any], optional: set[str] = frozenset()
) -> set[str]:
    """Put the values of checkpoint `path` into the variables `state` declares (as a
    `CheckpointWriter` of the same names wrote it); every saved name must be declared and
    match. Declared names in `optional` that an older checkpoint lacks keep their values.
    Returns the names `path` holds."""
    state = declared(state)
    return restore_tf_checkpoint(tf.train.Checkpoint(**state), state, path, set(optional))


class CheckpointWriter:
    """Write checkpoints of declared variables in the background; read them back.

    Args:
        directory: where `ckpt-<step>` files and TensorFlow's `checkpoint` state file go.
        state: name -> variable or list of variables: what every checkpoint holds. Create
            the writer outside any strategy scope, once every variable exists.
        max_to_keep: checkpoints kept (older ones are deleted after each write).
        background: write in a background thread (False: `save` returns once written).

    Example:
        writer = CheckpointWriter(run_dir / "ckpt", {"model": model.variables, "step": step})
        writer.save(step=100)          # copies now, writes while training goes on
        writer.wait()                  # before reading the directory, or at the end
        writer.restore(writer.latest)  # puts the values back into the live variables
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        state: Mapping[str, Any],
        *,
        max_to_keep: int = 2,
        background: bool = True,
    ):
        self.directory = Path(directory)
        self.state = declared(state)
        self.max_to_keep = max_to_keep
        self.background = background
        self._live = _flat(self.state)
        with tf.device("/cpu:0"):
            shadow = _map(self.state, _shadow_of)
        self._shadow = _flat(shadow)
        self._shadow_checkpoint = tf.train.Checkpoint(**shadow)
        self._manager: tf.train.CheckpointManager | None = None  # made by the first write
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.saved_step: int | None = None  # the step of the last save handed to the writer

    @property
    def latest(self) -> str | None:
        """The newest checkpoint fully written in `directory` (None before the first)."""
        return tf.train.latest_checkpoint(str(self.directory))

    @property
    def writing(self) -> bool:
        """Whether a background write is still running."""
        return self._thread is not None and self._thread.is_alive()

    def save(self, step: int, *, wait: bool = False) -> None:
        """Copy the declared state now and write it as `ckpt-<step>` (in the background
        unless `wait` or `background=False`); waits for the previous write first."""
        self.wait()
        for shadow, variable in zip(self._shadow, self._live, strict=True):
            shadow.assign(variable)
        self.saved_step = int(step)
        if not self.background:
            self._write(int(step))
            return
        self._thread = threading.Thread(
            target=self._write_in_thread, args=(int(step),), name="tfkit-checkpoint"
        )
        self._thread.start()
        if wait:
            self.wait()

    def wait(self, raise_errors: bool = True) -> None:
        """Wait for the write in progress; raise its error (unless `raise_errors` is False)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None and raise_errors:
            raise error

    def restore(self, path: str, optional: set[str] = frozenset()) -> set[str]:
        """Put the values of checkpoint `path` back into the live variables; every saved
        name must be declared and match. Declared names in `optional` that an older
        checkpoint lacks keep their values. Returns the names `path` holds."""
        self.wait(raise_errors=False)
        return read_checkpoint(path, self.state, optional)

    def _write_in_thread(self, step: int) -> None:
        try:
            self._write(step)
        except BaseException as err:  # noqa: BLE001 - raised on the caller's thread by wait()
            self._error = err

    def _write(self, step: int) -> None:
        if self._manager is None:  # reads the directory's state: older checkpoints rotate out
            self._manager = tf.train.CheckpointManager(
                self._shadow_checkpoint, str(self.directory), max_to_keep=self.max_to_keep
            )
        self._manager.save(checkpoint_number=step)
