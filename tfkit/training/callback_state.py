"""The state of stateful callbacks, carried across `--resume` and across the `model.fit`
calls of one run.

EarlyStopping's patience counter and best value, ReduceLROnPlateau's wait and cooldown,
the best value of `BestCheckpoint` or `ModelCheckpoint(save_best_only=True)`: Keras keeps
them in Python attributes, resets some at every `on_train_begin` and no checkpoint holds
them. So a resumed run (or the second `model.fit` call that follows a cut epoch) would
wait `patience` epochs anew, or overwrite `best.keras` with a worse epoch. `CallbackStates`
takes the state after every epoch end, `encode` turns it into bytes that the run's
checkpoint stores (a string variable written with the weights), and the next
`on_train_begin` puts it back.

A callback of your own takes part by defining `state_dict() -> dict` and
`load_state_dict(state: dict)` (PyTorch Lightning's names): values JSON-serializable, or
NumPy arrays, or lists of NumPy arrays (e.g. weights).
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

# the attributes that make up the state of Keras' stateful callbacks (keras 3)
KERAS_STATE: tuple[tuple[type, tuple[str, ...]], ...] = (
    (
        keras.callbacks.EarlyStopping,
        ("wait", "stopped_epoch", "best", "best_epoch", "best_weights"),
    ),
    (keras.callbacks.ReduceLROnPlateau, ("wait", "best", "cooldown_counter")),
    (keras.callbacks.ModelCheckpoint, ("best",)),
)


def state_of(callback: keras.callbacks.Callback) -> dict[str, Any] | None:
    """The resumable state of `callback` (None: it has none)."""
    if hasattr(callback, "state_dict") and hasattr(callback, "load_state_dict"):
        return dict(callback.state_dict())
    for cls, names in KERAS_STATE:
        if isinstance(callback, cls):
            return {name: getattr(callback, name, None) for name in names}
    return None


def load_state(callback: keras.callbacks.Callback, state: dict[str, Any]) -> None:
    """Put `state` (from `state_of`) back into `callback`."""
    if hasattr(callback, "load_state_dict"):
        callback.load_state_dict(state)
        return
    for name, value in state.items():
        setattr(callback, name, value)


def _keys(callbacks: Sequence[keras.callbacks.Callback]) -> list[str]:
    """A name per callback that survives a new process: class name and occurrence."""
    seen: dict[str, int] = {}
    keys = []
    for callback in callbacks:
        name = type(callback).__qualname__
        keys.append(f"{name}#{seen.get(name, 0)}")
        seen[name] = seen.get(name, 0) + 1
    return keys


def capture(callbacks: Sequence[keras.callbacks.Callback]) -> dict[str, dict[str, Any]]:
    """`{key: state}` of every stateful callback in `callbacks`."""
    out = {}
    for key, callback in zip(_keys(callbacks), callbacks, strict=True):
        state = state_of(callback)
        if state is not None:
            out[key] = state
    return out


def apply(callbacks: Sequence[keras.callbacks.Callback], states: dict[str, dict[str, Any]]) -> None:
    """Load `states` (from `capture`) into the callbacks with the same keys; callbacks
    without a saved state (added on resume) keep theirs."""
    for key, callback in zip(_keys(callbacks), callbacks, strict=True):
        if key in states and state_of(callback) is not None:
            load_state(callback, states[key])


def encode(states: dict[str, dict[str, Any]]) -> bytes:
    """`states` as bytes: a JSON document (NumPy scalars as numbers, arrays by reference)
    followed by an `.npz` of the arrays. No pickle."""
    arrays: dict[str, np.ndarray] = {}

    def plain(value: Any) -> Any:
        if isinstance(value, np.ndarray) or hasattr(value, "__array__") and not np.isscalar(value):
            key = f"a{len(arrays)}"
            arrays[key] = np.asarray(value)
            return {"__array__": key}
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        return value

    document = json.dumps({key: plain(state) for key, state in states.items()}).encode()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return struct.pack("<Q", len(document)) + document + buffer.getvalue()


def decode(data: bytes) -> dict[str, dict[str, Any]]:
    """The states `encode` wrote (`{}` for empty bytes)."""
    if not data:
        return {}
    (size,) = struct.unpack("<Q", data[:8])
    document = json.loads(data[8 : 8 + size])
    arrays = np.load(io.BytesIO(data[8 + size :]), allow_pickle=False)

    def rich(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"__array__"}:
                return arrays[value["__array__"]]
            return {k: rich(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rich(v) for v in value]
        return value

    return {key: rich(state) for key, state in document.items()}


class CallbackStates(keras.callbacks.Callback):
    """Keeps the state of the other callbacks of a run; put it LAST in the callback list.

    Its `on_train_begin` runs after theirs (which reset some of it) and loads the state
    given by `load` (a resumed run) or kept at the end of the previous `fit` call of this
    run. `dump()` is what a checkpoint stores: the state after the last epoch end (the
    callbacks change it only there).

    Args:
        callbacks: the run's other callbacks.

    Attributes:
        after_epoch_end: called after every other callback's `on_epoch_end` (the run's
            checkpoint writer sets it: its epoch-end checkpoint then holds their new state).
    """

    def __init__(self, callbacks: Sequence[keras.callbacks.Callback]):
        super().__init__()
        self.callbacks = [c for c in callbacks if c is not self]
        self._pending: dict[str, dict[str, Any]] | None = None
        self.after_epoch_end: Callable[[], None] | None = None

    def load(self, data: bytes) -> None:
        """Load `data` (from `dump`) into the callbacks at the next `on_train_begin`."""
        self._pending = decode(data) or None

    def dump(self) -> bytes:
        """The callbacks' state now, as bytes."""
        return encode(capture(self.callbacks))

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self._pending is not None:
            apply(self.callbacks, self._pending)
            self._pending = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.after_epoch_end is not None:
            self.after_epoch_end()

    def on_train_end(self, logs: dict | None = None) -> None:
        # the next fit call of this run (after a cut epoch) resets them: keep the state
        self._pending = capture(self.callbacks)
