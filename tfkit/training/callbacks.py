"""Callbacks from the `train` config, and tfkit's own `MetricsLogger`, `Throughput` and
`LastCheckpoint`.

`build_callbacks(train_cfg, run_dir)` returns the callbacks a run needs:

- always: `MetricsLogger` (run_dir/metrics.jsonl) and `BackupAndRestore` (run_dir/backup,
  which is what `--resume` continues from);
- per `train.checkpoint`: `ModelCheckpoint` of the best model
  (run_dir/checkpoints/best.keras) and `LastCheckpoint` (run_dir/checkpoints/last.keras,
  written atomically each epoch);
- per `train.tensorboard`: `TensorBoard` (run_dir/tb) and `Throughput`;
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

    `epoch` counts from 1 (the number of epochs completed). Each line is flushed and
    synced, so a killed run keeps every finished epoch.

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
            f.flush()
            os.fsync(f.fileno())


class Throughput(keras.callbacks.Callback):
    """Measure examples/s and step time with the epoch and batch hooks.

    The step time is the mean interval between two `on_train_batch_begin` calls of an epoch
    (with `steps_per_execution` > 1, one interval covers that many steps).
    At each epoch end it adds `examples_per_sec` and `step_ms` (mean train step time) to the
    epoch logs (so `MetricsLogger` records them) and writes them to TensorBoard under
    `log_dir` as `throughput/examples_per_sec` and `throughput/step_ms`.

    Args:
        batch_size: global examples per step.
        log_dir: TensorBoard directory, or None to only add the numbers to the logs.
    """

    def __init__(self, batch_size: int, log_dir: str | os.PathLike | None = None):
        super().__init__()
        self.batch_size = int(batch_size)
        self.log_dir = None if log_dir is None else str(log_dir)
        self._writer = None
        self._epoch_start = 0.0
        self._batch_start: float | None = None
        self._step_seconds = 0.0
        self._steps = 0
        self.history: list[dict[str, float]] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.perf_counter()
        self._batch_start = None
        self._step_seconds = 0.0
        self._steps = 0

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        # a step lasts from one batch start to the next; timing only the begin hook keeps
        # `on_train_batch_end` unimplemented, so Keras may dispatch batch ends asynchronously
        now = time.perf_counter()
        if self._batch_start is not None:
            self._step_seconds += now - self._batch_start
            self._steps += 1
        self._batch_start = now

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not self._steps:
            return
        seconds = time.perf_counter() - self._epoch_start
        numbers = {
            "examples_per_sec": self._steps * self.batch_size / max(self._step_seconds, 1e-9),
            "step_ms": 1000.0 * self._step_seconds / self._steps,
            "epoch_examples_per_sec": self._steps * self.batch_size / max(seconds, 1e-9),
        }
        self.history.append(numbers)
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
            self._writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class LastCheckpoint(keras.callbacks.Callback):
    """Save the whole model to `path` (`.keras`) at epoch ends and at the end, atomically.

    The model is written to a temporary file beside `path` and renamed over it, so a kill
    in the middle of a save leaves the previous checkpoint intact. Saving a `.keras` file
    costs ~0.1 s for a small model, so by default an epoch end saves only when
    `min_interval_s` seconds have passed since the last save (the first epoch and the end of
    training always save); `BackupAndRestore` keeps the exact per-epoch state for `--resume`.

    Args:
        path: the `.keras` file.
        min_interval_s: least seconds between two epoch-end saves (0: every epoch).
    """

    def __init__(self, path: str | os.PathLike, min_interval_s: float = 30.0):
        super().__init__()
        self.path = Path(path)
        self.min_interval_s = float(min_interval_s)
        self._last_save: float | None = None

    def _save(self) -> None:
        save_model_atomic(self.model, self.path)
        self._last_save = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        due = (
            self._last_save is None or time.perf_counter() - self._last_save >= self.min_interval_s
        )
        if due:
            self._save()

    def on_train_end(self, logs: dict | None = None) -> None:
        self._save()


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
    "csv_logger": ("filename", "history.csv"),
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
        args.setdefault("log_dir", TENSORBOARD_DIR)
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
) -> list[keras.callbacks.Callback]:
    """The callbacks of a run, from the `train` section.

    Args:
        train_cfg: the `train` section.
        run_dir: where logs and checkpoints go; None writes them to a temporary directory.
        batch_size: global batch size (for `Throughput`).
        is_chief: False on non-chief workers of a multi-worker run: their files go to a
            temporary directory so only the chief writes into `run_dir`.
        backup: add `BackupAndRestore` (what `--resume` continues from).

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
        out.append(Throughput(batch_size or 1, run_dir / TENSORBOARD_DIR))
    out += user
    if train_cfg.tensorboard and "tensorboard" not in names:
        out.append(
            keras.callbacks.TensorBoard(
                log_dir=str(run_dir / TENSORBOARD_DIR),
                histogram_freq=train_cfg.histogram_freq,
                profile_batch=train_cfg.profile_batch,
                update_freq=train_cfg.update_freq,
                write_graph=False,
            )
        )
    if train_cfg.checkpoint in ("best", "both"):
        out.append(
            keras.callbacks.ModelCheckpoint(
                str(run_dir / CHECKPOINT_DIR / BEST_CHECKPOINT_FILE),
                monitor=train_cfg.monitor,
                save_best_only=True,
            )
        )
    if train_cfg.checkpoint in ("last", "both") and "last_checkpoint" not in names:
        out.append(LastCheckpoint(run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT_FILE))
    if backup and "backup_and_restore" not in names:
        out.append(
            keras.callbacks.BackupAndRestore(str(run_dir / BACKUP_DIR), double_checkpoint=True)
        )
    if "metrics_logger" not in names:
        out.append(MetricsLogger(run_dir / METRICS_FILE))
    return out
