"""Callbacks from the `train` config, and tfkit's own `MetricsLogger`, `Throughput`,
`LastCheckpoint`, `BestCheckpoint` and `FirstEpochCheckpoint`.

`build_callbacks(train_cfg, run_dir)` returns the callbacks a run needs:

- always: `MetricsLogger` (run_dir/metrics.jsonl) and `BackupAndRestore` (run_dir/backup,
  which is what `--resume` continues from);
- per `train.checkpoint`: `BestCheckpoint` (run_dir/checkpoints/best.keras) and
  `LastCheckpoint` (run_dir/checkpoints/last.keras), written atomically at most every 30 s
  and at the end, so short epochs do not wait for `.keras` writes;
- per `train.tensorboard`: `TensorBoard` (run_dir/tb; without batch hooks when it logs per
  epoch) and `Throughput`;
- plus every entry of `train.callbacks: [{name, args}]`, whose `args` are checked against
  the callback's signature.

tfkit's callbacks only use the standard hooks and `self.model`, so the custom training
loop can drive them as `fit` does.
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tfkit.config import CallbackConfig, ClassPathConfig, TrainConfig
from tfkit.errors import UserError, unknown_name
from tfkit.runs import (
    BACKUP_DIR,
    BEST_CHECKPOINT_FILE,
    CHECKPOINT_DIR,
    HISTORY_FILE,
    LAST_CHECKPOINT_FILE,
    METRICS_FILE,
    TENSORBOARD_DIR,
    save_model_atomic,
)


def _jsonable(value: Any) -> Any:
    """A log value as a JSON number (NaN/inf as strings, tensors as floats)."""
    try:
        value = float(np.asarray(value))
    except (TypeError, ValueError):
        return str(value)
    return value if np.isfinite(value) else str(value)


class MetricsLogger(keras.callbacks.Callback):
    """Append one JSON line per epoch to `path`: `{"epoch": N, "loss": ..., ...}`.

    `epoch` counts from 1 (the number of epochs completed). Each line is flushed, so a
    killed run keeps every finished epoch (no fsync: ~2 ms an epoch, and it guards only
    against a machine crash, which the run's checkpoints are not synced for either).

    Args:
        path: the `.jsonl` file (created with its parent directory).
    """

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        self.path = Path(path)
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        record = {"epoch": epoch + 1, "time": time.time()}
        record["epoch_seconds"] = round(time.perf_counter() - self._start, 4)
        record.update({k: _jsonable(v) for k, v in (logs or {}).items()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


class Throughput(keras.callbacks.Callback):
    """Examples/s and step time of each epoch's training, from epoch-level hooks only.

    The steps of an epoch are the optimizer's `iterations` gained in it, so every step
    counts under any `steps_per_execution` (or the custom loop's `steps_per_loop`); without
    an optimizer, Keras' `steps` parameter. The time runs from the epoch's begin to the
    start of its validation (`on_test_begin`), or to its end without one. At each epoch end
    it adds `examples_per_sec` (steps x `batch_size` / seconds; a last partial batch counts
    as full) and `step_ms` to the epoch logs, so `MetricsLogger` records them and Keras'
    `TensorBoard` writes them as `epoch_examples_per_sec` and `epoch_step_ms`. It implements
    no batch hook: it costs nothing per batch.

    Args:
        batch_size: global examples per step.
        log_dir: also write `throughput/examples_per_sec` and `throughput/step_ms` to this
            TensorBoard directory (None: only the epoch logs carry them).
    """

    def __init__(self, batch_size: int, log_dir: str | os.PathLike | None = None):
        super().__init__()
        self.batch_size = int(batch_size)
        self.log_dir = None if log_dir is None else str(log_dir)
        self._writer = None
        self._start = 0.0
        self._train_end: float | None = None
        self._start_iterations: int | None = None
        self.history: list[dict[str, float]] = []

    def _iterations(self) -> int | None:
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None or not hasattr(optimizer, "iterations"):
            return None
        value = getattr(optimizer.iterations, "value", optimizer.iterations)  # tf.Variable,
        return int(value.numpy() if hasattr(value, "numpy") else value)  # mirrored or not

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start_iterations = self._iterations()
        self._train_end = None
        self._start = time.perf_counter()

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self._train_end is None:  # the epoch's validation starts: training is over
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = (self._train_end or time.perf_counter()) - self._start
        now = self._iterations()
        if now is not None and self._start_iterations is not None:
            steps = now - self._start_iterations
        else:
            steps = int(self.params.get("steps") or 0)
        if steps <= 0:
            return
        numbers = {
            "examples_per_sec": steps * self.batch_size / max(seconds, 1e-9),
            "step_ms": 1000.0 * seconds / steps,
        }
        self.history.append({**numbers, "steps": steps, "seconds": seconds})
        if logs is not None:
            logs.update(numbers)
        if self.log_dir is not None:
            import tensorflow as tf

            if self._writer is None:
                self._writer = tf.summary.create_file_writer(
                    os.path.join(self.log_dir, "throughput")
                )
            with self._writer.as_default(step=epoch):
                for key, value in numbers.items():
                    tf.summary.scalar(f"throughput/{key}", value)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class LastCheckpoint(keras.callbacks.Callback):
    """Save the whole model to `path` (`.keras`) every `min_interval_s` and at the end,
    atomically.

    The model is written to a temporary file beside `path` and renamed over it, so a kill
    in the middle of a save leaves the previous checkpoint intact. Saving a `.keras` file
    costs 0.1-0.3 s even for a small model, which would double the time of a short epoch:
    an epoch end saves only when `min_interval_s` seconds have passed since training began
    or since the last save; the end of training always saves (unless `save_at_end` is
    False: `tfkit train` copies its final `model.keras` instead). The exact per-step state
    for `--resume` is the backup's job.

    Args:
        path: the `.keras` file.
        min_interval_s: least seconds between two epoch-end saves (0: every epoch).
        save_at_end: save when training ends.
    """

    def __init__(
        self, path: str | os.PathLike, min_interval_s: float = 30.0, save_at_end: bool = True
    ):
        super().__init__()
        self.path = Path(path)
        self.min_interval_s = float(min_interval_s)
        self.save_at_end = save_at_end
        self._last_save = time.perf_counter()

    def _due(self) -> bool:
        return time.perf_counter() - self._last_save >= self.min_interval_s

    def _save(self) -> None:
        save_model_atomic(self.model, self.path)
        self._last_save = time.perf_counter()

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._last_save = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._due():
            self._save()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.save_at_end:
            self._save()


class FirstEpochCheckpoint(keras.callbacks.Callback):
    """Save the model to `path` (`.keras`, atomically) at the end of the first epoch when
    no file is there yet: `tfkit train`'s `checkpoints/last.keras` exists from the first
    finished epoch on, whatever `train.checkpoint` says, and nothing is written before the
    first step.

    Args:
        path: the `.keras` file.
    """

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        self.path = Path(path)
        self._checked = False

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not self._checked:
            self._checked = True
            if not self.path.exists():
                save_model_atomic(self.model, self.path)


class BestCheckpoint(LastCheckpoint):
    """Keep the model of the best epoch by `monitor` in `path` (`.keras`), atomically.

    An improving epoch only copies the weights in memory (milliseconds); the file is
    written when `min_interval_s` seconds have passed since the last write, and at the end
    of training, with the best weights swapped in for the write (the optimizer state saved
    with them is the current one). Epochs without `monitor` in their logs (no validation
    that epoch) are skipped.

    Args:
        path: the `.keras` file.
        monitor: the epoch-log key, e.g. `val_loss`.
        mode: `min`, `max`, or `auto` (`max` for accuracy-like keys, else `min`).
        min_interval_s: least seconds between two writes (0: at every improvement).
        save_at_end: False: when the last epoch trained is the best, the end of training
            leaves the write to the caller (`final_is_best` tells it), which saves that
            same model anyway (`tfkit train` copies its `model.keras`).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        monitor: str = "val_loss",
        mode: str = "auto",
        min_interval_s: float = 30.0,
        save_at_end: bool = True,
    ):
        super().__init__(path, min_interval_s, save_at_end)
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"`mode` must be 'auto', 'min' or 'max'. Received: mode={mode!r}")
        self.monitor = monitor
        if mode == "auto":
            name = monitor.removeprefix("val_")
            mode = "max" if "acc" in name or name.startswith(("auc", "f1", "precision")) else "min"
        self.mode = mode
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.final_is_best = False
        self._last_epoch: int | None = None
        self._pending: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._last_epoch = epoch + 1
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        value = float(value)
        better = self.best is None or (
            value > self.best if self.mode == "max" else value < self.best
        )
        if better and np.isfinite(value):
            self.best, self.best_epoch = value, epoch + 1
            self._pending = self.model.get_weights()
        if self._pending is not None and self._due():
            self._write()

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to go on choosing the best epoch (weights not yet
        written included)."""
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "last_epoch": self._last_epoch,
            "pending": self._pending,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Go on from `state_dict()`."""
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self._last_epoch = state["last_epoch"]
        pending = state["pending"]
        self._pending = None if pending is None else [np.asarray(w) for w in pending]

    def _write(self) -> None:
        current = self.model.get_weights()
        self.model.set_weights(self._pending)
        try:
            self._save()
        finally:
            self.model.set_weights(current)
        self._pending = None

    def on_train_end(self, logs: dict | None = None) -> None:
        self.final_is_best = False
        if self._pending is None:
            return
        if not self.save_at_end and self.best_epoch == self._last_epoch:
            self.final_is_best = True  # the model as it is now: the caller saves it
            self._pending = None
            return
        self._write()


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras' `TensorBoard` for `update_freq="epoch"` without profiling: its batch hooks
    (which only count batches then) are Keras' empty defaults, so it costs nothing per
    batch; and the scalars of an epoch end and a
    validation end (a few ms of eager summary ops each) are written by one background
    thread, in order, while training goes on (values are read at the hook; `on_train_end`
    waits for the writes). With weight histograms or embeddings an epoch end writes in
    place, as Keras does. Arguments are `TensorBoard`'s."""

    on_train_batch_begin = keras.callbacks.Callback.on_train_batch_begin
    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end
    on_test_batch_begin = keras.callbacks.Callback.on_test_batch_begin
    on_test_batch_end = keras.callbacks.Callback.on_test_batch_end

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._executor = None
        self._futures: list = []

    def _submit(self, writer: Any, scalars: dict[str, float], step: int) -> None:
        import concurrent.futures

        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        for future in self._futures:
            if future.done():
                future.result()  # a failed write raises here
        self._futures = [f for f in self._futures if not f.done()]

        def write() -> None:
            with writer.as_default():
                for name, value in scalars.items():
                    self.summary.scalar(name, value, step=step)

        self._futures.append(self._executor.submit(write))

    def on_test_end(self, logs: dict | None = None) -> None:
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and hasattr(optimizer, "iterations"):
            step = int(np.asarray(getattr(optimizer.iterations, "value", optimizer.iterations)))
            scalars = {f"evaluation_{k}_vs_iterations": float(v) for k, v in (logs or {}).items()}
            self._submit(self._val_writer, scalars, step)
        self._pop_writer()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.histogram_freq or self.embeddings_freq or not logs:
            super().on_epoch_end(epoch, logs)
            return
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        train = self._collect_learning_rate(train)
        if self.write_steps_per_second:
            train["steps_per_second"] = self._compute_steps_per_second()
        val = {k.removeprefix("val_"): v for k, v in logs.items() if k.startswith("val_")}
        for writer, scalars in ((self._train_writer, train), (self._val_writer, val)):
            if scalars:
                self._submit(writer, {f"epoch_{k}": float(v) for k, v in scalars.items()}, epoch)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
            futures, self._futures = self._futures, []
            for future in futures:
                future.result()  # a write's error
        super().on_train_end(logs)


# --------------------------------------------------------------------------------------
# callbacks by name
# --------------------------------------------------------------------------------------

_CALLBACKS: dict[str, Any] = {
    "early_stopping": keras.callbacks.EarlyStopping,
    "model_checkpoint": keras.callbacks.ModelCheckpoint,
    "tensorboard": keras.callbacks.TensorBoard,
    "backup_and_restore": keras.callbacks.BackupAndRestore,
    "reduce_lr_on_plateau": keras.callbacks.ReduceLROnPlateau,
    "csv_logger": keras.callbacks.CSVLogger,
    "terminate_on_nan": keras.callbacks.TerminateOnNaN,
    "metrics_logger": MetricsLogger,
    "throughput": Throughput,
    "last_checkpoint": LastCheckpoint,
}
CALLBACK_NAMES: tuple[str, ...] = tuple(sorted(_CALLBACKS))

# path arguments filled in (relative to the run dir) when not given
_DEFAULT_PATHS = {
    "model_checkpoint": ("filepath", f"{CHECKPOINT_DIR}/model_{{epoch:03d}}.keras"),
    "tensorboard": ("log_dir", TENSORBOARD_DIR),
    "backup_and_restore": ("backup_dir", BACKUP_DIR),
    "csv_logger": ("filename", HISTORY_FILE),
    "metrics_logger": ("path", METRICS_FILE),
    "last_checkpoint": ("path", f"{CHECKPOINT_DIR}/{LAST_CHECKPOINT_FILE}"),
}
_PATH_ARGS = {"filepath", "log_dir", "backup_dir", "filename", "path"}


def _parameters(cls) -> dict[str, inspect.Parameter]:
    params = dict(inspect.signature(cls.__init__).parameters)
    params.pop("self", None)
    return {k: p for k, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def build_callback(
    cfg: CallbackConfig | ClassPathConfig,
    run_dir: str | os.PathLike,
    *,
    index: int = 0,
    batch_size: int | None = None,
) -> keras.callbacks.Callback:
    """One callback from a `{name, args}` entry (relative paths are under `run_dir`), or
    from a `{class_path, args}` entry naming a callback class of your own.

    Raises:
        UserError: unknown callback (listing the valid ones), an argument the callback does
            not take (listing those it does), missing required arguments, or a class path
            that does not give a Keras callback.
    """
    if isinstance(cfg, ClassPathConfig):
        from tfkit.extensions import instantiate

        return instantiate(
            cfg, f"train.callbacks[{index}]", keras.callbacks.Callback, "Keras callback"
        )
    name = cfg.name.lower()
    if name not in _CALLBACKS:
        raise unknown_name("callback", cfg.name, CALLBACK_NAMES)
    cls = _CALLBACKS[name]
    params = _parameters(cls)
    args = dict(cfg.args)
    where = f"`train.callbacks[{index}]` ({name})"
    unknown = sorted(set(args) - set(params))
    if unknown:
        raise UserError(
            f"{where} does not take {', '.join(unknown)}. Valid args: {', '.join(params)}. "
            f"Received: {', '.join(f'{k}={args[k]!r}' for k in unknown)}"
        )
    if name in _DEFAULT_PATHS:
        key, default = _DEFAULT_PATHS[name]
        args.setdefault(key, default)
    if name == "throughput":
        args.setdefault("batch_size", batch_size or 1)
    for key in _PATH_ARGS & set(args):
        if args[key] is not None and not os.path.isabs(str(args[key])):
            args[key] = str(Path(run_dir) / str(args[key]))
        if args[key] is not None and key in ("filename", "filepath", "path"):
            Path(str(args[key])).parent.mkdir(parents=True, exist_ok=True)
    missing = [k for k, p in params.items() if p.default is p.empty and k not in args]
    if missing:
        raise UserError(f"{where} needs {', '.join(missing)}. Valid args: {', '.join(params)}")
    try:
        return cls(**args)
    except (TypeError, ValueError) as err:
        raise UserError(f"{where}: {err}. Received: args={cfg.args}") from None


def build_callbacks(
    train_cfg: TrainConfig,
    run_dir: str | os.PathLike | None,
    *,
    batch_size: int | None = None,
    is_chief: bool = True,
    backup: bool = True,
    last_at_end: bool = True,
) -> list[keras.callbacks.Callback]:
    """The callbacks of a run, from the `train` section.

    Args:
        train_cfg: the `train` section.
        run_dir: where logs and checkpoints go; None writes them to a temporary directory.
        batch_size: global batch size (for `Throughput`).
        is_chief: False on non-chief workers of a multi-worker run: their files go to a
            temporary directory so only the chief writes into `run_dir`.
        backup: add `BackupAndRestore` (what `--resume` continues from).
        last_at_end: `LastCheckpoint` saves when training ends, and so does
            `BestCheckpoint` when the last epoch is the best (False when the caller writes
            the final model there itself: see `BestCheckpoint.final_is_best`).

    Returns:
        A list of Keras callbacks, usable with `model.fit` and tfkit's custom loop.
    """
    if run_dir is None or not is_chief:
        run_dir = tempfile.mkdtemp(prefix="tfkit-worker-")
    run_dir = Path(run_dir)
    names = {c.name.lower() for c in train_cfg.callbacks if isinstance(c, CallbackConfig)}
    out: list[keras.callbacks.Callback] = []
    # user callbacks first: Throughput adds keys to the logs that later ones record
    user = [
        build_callback(c, run_dir, index=i, batch_size=batch_size)
        for i, c in enumerate(train_cfg.callbacks)
    ]
    if train_cfg.tensorboard and "throughput" not in names:
        out.append(Throughput(batch_size or 1))  # TensorBoard writes its epoch-log keys
    out += user
    if train_cfg.tensorboard and "tensorboard" not in names:
        per_epoch = train_cfg.update_freq == "epoch" and not train_cfg.profile_batch
        board = EpochTensorBoard if per_epoch else keras.callbacks.TensorBoard
        out.append(
            board(
                log_dir=str(run_dir / TENSORBOARD_DIR),
                histogram_freq=train_cfg.histogram_freq,
                profile_batch=train_cfg.profile_batch,
                update_freq=train_cfg.update_freq,
                write_graph=False,
            )
        )
    if train_cfg.checkpoint in ("best", "both"):
        path = run_dir / CHECKPOINT_DIR / BEST_CHECKPOINT_FILE
        out.append(BestCheckpoint(path, train_cfg.monitor, save_at_end=last_at_end))
    if train_cfg.checkpoint in ("last", "both") and "last_checkpoint" not in names:
        out.append(
            LastCheckpoint(run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT_FILE, save_at_end=last_at_end)
        )
    if backup and "backup_and_restore" not in names:
        out.append(
            keras.callbacks.BackupAndRestore(str(run_dir / BACKUP_DIR), double_checkpoint=True)
        )
    if "metrics_logger" not in names:
        out.append(MetricsLogger(run_dir / METRICS_FILE))
    return out
