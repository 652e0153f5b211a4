"""The run directory: `runs/<name>/<NNNNN>/`, the only module that knows its files.

A run directory is created with its `config.yaml` written atomically before anything else,
so a directory that exists is always a run (never half-written). `Run` names every file
and folder of a run and offers what the commands need: create, open (refusing a failed or
untrained run where a model is needed), the effective config, the one resume policy, the
data spec, the model (checked, loaded in safe mode), the result (strict JSON), a lock (one
process per run) and failure marking.

Layout::

    config.yaml          the resolved config the run was started with (never rewritten)
    resumes.jsonl        one line per `--resume` that changed an allowed key
    spec.json            the data spec the model was built against (inputs, normalization)
    model.keras          the final model
    metrics.json         the final result (strict JSON)
    metrics.jsonl        one line per epoch (or GAN tick)
    checkpoints/         last.keras, best.keras, loop/ (custom loop), GAN checkpoints
    backup/              Keras BackupAndRestore (fit's resume state)
    tb/                  TensorBoard
    gan_options.json     resolved GAN options; G_ema.keras the EMA generator
    search/, trials.csv, best.yaml, best_model.keras   a `tfkit tune` run (see `kind`)
    failed.json          written when the run failed before it trained anything
    .lock                held (flock) by the process that trains the run

This module imports no TensorFlow at import time.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tfkit.config import (
    ExperimentConfig,
    diff_keys,
    load_config,
    read_yaml,
    save_config,
    to_dict,
    validate,
)
from tfkit.errors import NonFiniteLossError, Stopped, UserError, WorkerLost

# ---- every file and folder of a run (spelled here only) -------------------------------
CONFIG_FILE = "config.yaml"
RESUMES_FILE = "resumes.jsonl"
SPEC_FILE = "spec.json"
MODEL_FILE = "model.keras"
RESULT_FILE = "metrics.json"
METRICS_FILE = "metrics.jsonl"
# the `csv_logger` callback's default file
HISTORY_FILE = "history.csv"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT_FILE = "last.keras"
BEST_CHECKPOINT_FILE = "best.keras"
LOOP_CHECKPOINT_DIR = "checkpoints/loop"
BACKUP_DIR = "backup"
TENSORBOARD_DIR = "tb"
# the custom loop's own summaries (examples per second)
LOOP_TENSORBOARD_DIR = "tb/loop"
GAN_OPTIONS_FILE = "gan_options.json"
G_EMA_FILE = "G_ema.keras"
# a GAN run's image grids: `fakes_init.png` at the start, `fakes<nimg, 9 digits>.png` at
# each snapshot (`GAN_GRID_FILE.format(tag=...)`)
GAN_GRID_FILE = "fakes{tag}.png"
TUNE_DIR = "tune"
# a `tfkit tune` run directory (default runs/<name>/tune)
TUNE_SEARCH_DIR = "search"
TUNE_TRIALS_FILE = "trials.csv"
TUNE_BEST_CONFIG_FILE = "best.yaml"
TUNE_BEST_MODEL_FILE = "best_model.keras"
# in search/: Keras Tuner's project, the fingerprint of the search (space, objective and
# experiment) and each distributed worker's trials (workers/<tuner id>.json)
TUNE_PROJECT_DIR = "project"
TUNE_FINGERPRINT_FILE = "tfkit_search.json"
TUNE_WORKERS_DIR = "workers"
EXPORT_MANIFEST_FILE = "export.json"
# an export directory (`tfkit export --format saved_model`) holds a SavedModel
SAVED_MODEL_FILE = "saved_model.pb"
FAILED_FILE = "failed.json"
LOCK_FILE = ".lock"
# a TF CheckpointManager's state file (names the latest checkpoint of a folder)
TF_CHECKPOINT_STATE = "checkpoint"

_NUMBER = re.compile(r"^(\d{5})$")

# ---- the resume policy ----------------------------------------------------------------
# Keys `--resume` may change: they decide how long the run goes on and how it reports,
# never what has been trained so far. Any other change is refused, naming every key.
RESUMABLE_KEYS: tuple[str, ...] = (
    "train.epochs",
    "train.verbose",
    "train.tensorboard",
    "train.histogram_freq",
    "train.update_freq",
    "train.profile_batch",
    "train.checkpoint_every",
    "gan.kimg",
    "gan.max_minutes",
    "gan.tick_kimg",
    "gan.snapshot_ticks",
    "tune.max_trials",
    "tune.save_best_model",
    "runtime.collective_timeout_s",
)


def next_run_dir(root: str | Path, name: str) -> Path:
    """The next free numbered directory `root/name/NNNNN` (not created)."""
    parent = Path(root) / name
    numbers = [int(m.group(1)) for p in parent.glob("*") if (m := _NUMBER.match(p.name))]
    return parent / f"{(max(numbers) + 1 if numbers else 0):05d}"


def is_export_dir(path: str | Path) -> bool:
    """Whether `path` is a directory written by `tfkit export` (a SavedModel or a manifest),
    rather than a run directory."""
    return any((Path(path) / name).is_file() for name in (SAVED_MODEL_FILE, EXPORT_MANIFEST_FILE))


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ---- strict JSON and atomic writes ------------------------------------------------------


def strict_json(value: Any) -> Any:
    """`value` with every non-finite float replaced by its name (`"nan"`, `"inf"`, `"-inf"`),
    so `json.dumps(..., allow_nan=False)` accepts it and any JSON reader can read it."""
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        try:
            return strict_json(value.item())
        except (TypeError, ValueError):
            return str(value)
    return value


def _write_failed(path: Path, err: OSError) -> UserError:
    reason = err.strerror or str(err)
    if err.errno == errno.ENOSPC:
        reason = "no space left on device"
    return UserError(f"could not write {path}: {reason}")


_NO_SPACE = re.compile(r"(?:^|\s)(/[^\s;:,]+)[;:,]?\s+No space left on device")


def disk_full(err: BaseException) -> str | None:
    """The path a TensorFlow or h5py write failed on because the disk is full ("" when
    the message names none), or None when `err` is not a full disk."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return err.filename or ""
    text = str(err)
    if "No space left on device" not in text:
        return None
    match = _NO_SPACE.search(text)
    return match.group(1) if match else ""


@contextlib.contextmanager
def _atomic(path: Path, tmp: Path) -> Iterator[Path]:
    """Write to `tmp` in the block, then rename it to `path`; on failure remove `tmp`, keep
    the previous `path` and raise a UserError naming `path`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except (OSError, UserError) as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError):
            raise _write_failed(path, err) from None
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` through a temporary file, fsync and a rename.

    Raises:
        UserError: the write failed (disk full, permissions), naming `path`; the previous
            file, if any, is kept.
    """
    path = Path(path)
    with _atomic(path, path.with_name(f".{path.name}.tmp")) as tmp, open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return path


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write `data` as strict JSON (NaN/Inf as strings, never bare `NaN`) atomically."""
    return write_text_atomic(path, json.dumps(strict_json(data), indent=2, allow_nan=False) + "\n")


def save_model_atomic(model: Any, path: str | os.PathLike) -> Path:
    """Save a Keras `model` as `.keras` through a temporary file and a rename.

    Raises:
        UserError: the write failed (disk full, ...), naming `path`; the previous file is kept.
    """
    path = Path(path)
    with _atomic(path, path.with_name(f".{path.stem}.tmp.keras")) as tmp:
        model.save(tmp)
        try:
            check_keras_file(tmp, shown_as=path)
        except UserError:
            raise UserError(
                f"could not write {path}: the saved file is incomplete (disk full?)"
            ) from None
    return path


def copy_atomic(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Copy the file `source` to `path` through a temporary file and a rename.

    Raises:
        UserError: the copy failed (disk full, ...), naming `path`; the previous file is kept.
    """
    path = Path(path)
    with _atomic(path, path.with_name(f".{path.name}.tmp")) as tmp:
        shutil.copyfile(source, tmp)
    return path


# ---- checks of model and checkpoint files ------------------------------------------------


def check_keras_file(path: str | os.PathLike, *, shown_as: str | os.PathLike | None = None) -> Path:
    """Refuse a truncated or corrupt `.keras` file (a zip archive: every member's CRC is read).

    Raises:
        UserError: naming the file.
    """
    import zipfile

    path = Path(path)
    name = shown_as or path
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            members = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise UserError(
            f"{name} is truncated or corrupt ({err}); it was not loaded. Resume the run or "
            "retrain it"
        ) from None
    if bad is not None or "config.json" not in members:
        raise UserError(f"{name} is corrupt (member {bad or 'config.json'}); it was not loaded")
    return path


def check_weights_file(path: str | os.PathLike) -> Path:
    """Refuse a truncated or corrupt `.weights.h5` file (every dataset is read).

    Raises:
        UserError: naming the file.
    """
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            f.visititems(lambda _, obj: obj[()] if isinstance(obj, h5py.Dataset) else None)
    except Exception as err:  # noqa: BLE001 - h5py raises OSError, KeyError, RuntimeError
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{path} is truncated or corrupt ({first}); it was not loaded") from None
    return path


def check_tf_checkpoint(prefix: str | os.PathLike) -> str:
    """Refuse a truncated or corrupt TensorFlow checkpoint (index and data are read, with
    their checksums).

    Raises:
        UserError: naming the checkpoint.
    """
    import tensorflow as tf

    prefix = str(prefix)
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as err:  # noqa: BLE001 - DataLossError, OutOfRangeError, NotFoundError
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"checkpoint {prefix} is truncated or corrupt ({first[:200]}); it was not loaded"
        ) from None
    return prefix


def restore_tf_checkpoint(
    checkpoint: Any, items: dict[str, Any], prefix: str, optional: set[str]
) -> set[str]:
    """Restore `prefix` into `checkpoint` (a `tf.train.Checkpoint(**items)`), every saved
    object matched. The `optional` items that an older checkpoint lacks keep their values:
    a checkpoint of the other items is restored instead. Returns the names `prefix` holds."""
    import tensorflow as tf

    saved = {name.split("/")[0] for name, _ in tf.train.list_variables(prefix)}
    if optional & items.keys() - saved:
        kept = {k: v for k, v in items.items() if k in saved or k not in optional}
        checkpoint = tf.train.Checkpoint(**kept)
    checkpoint.restore(prefix).assert_existing_objects_matched()
    return saved


def latest_tf_checkpoint(folder: str | os.PathLike) -> str | None:
    """The latest checkpoint prefix a `tf.train.CheckpointManager` wrote in `folder`
    (None when there is none), checked as `check_tf_checkpoint` does."""
    folder = Path(folder)
    if not (folder / TF_CHECKPOINT_STATE).is_file():
        return None
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(str(folder))
    return None if latest is None else check_tf_checkpoint(latest)


# ---- the resume policy ------------------------------------------------------------------


def _set_key(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    for part in parts[:-1]:
        tree = tree.setdefault(part, {})
    tree[parts[-1]] = value


def _get_key(tree: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(tree, dict):
            return None
        tree = tree.get(part)
    return tree


def resume_changes(
    saved: ExperimentConfig, new: ExperimentConfig, effective: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The changes from `saved` to `new`, each `{"key", "old", "new"}`, if the resume policy
    allows every one.

    Args:
        saved: the config the run has now.
        new: the config to continue with.
        effective: values the run actually used for keys `saved` leaves unset (`None`),
            by dotted key (a GAN run's preset values); shown as the old value.

    Raises:
        UserError: naming every changed key outside `RESUMABLE_KEYS`.
    """
    old_tree, new_tree = to_dict(saved), to_dict(new)
    changed = diff_keys(old_tree, new_tree)

    def old(key: str) -> Any:
        value = _get_key(old_tree, key)
        return (effective or {}).get(key) if value is None else value

    refused = [k for k in changed if k not in RESUMABLE_KEYS]
    if refused:
        detail = ", ".join(f"{k} ({old(k)!r} -> {_get_key(new_tree, k)!r})" for k in refused)
        raise UserError(
            f"cannot resume: the config changed at {detail}; a resumed run keeps the config "
            f"it was started with, and only {', '.join(RESUMABLE_KEYS)} may change. Start a "
            "new run instead"
        )
    return [{"key": k, "old": old(k), "new": _get_key(new_tree, k)} for k in changed]


def check_config_kind(config: ExperimentConfig, expected: str, path: str | os.PathLike) -> None:
    """Refuse a config made for the other trainer: `tfkit train` (`expected="fit"`) takes no
    `gan` section, `tfkit gan train` (`expected="gan"`) needs one.

    Raises:
        UserError: naming the config file and the command that trains it.
    """
    if expected == "fit" and config.gan is not None:
        raise UserError(
            f"{path} has a `gan` section: it is a GAN experiment; train it with "
            f"`tfkit gan train {path}`"
        )
    if expected == "gan" and config.gan is None:
        raise UserError(
            f"{path} has no `gan` section; add one (e.g. `gan: {{preset: shapes32}}`), or "
            f"train a model with `tfkit train {path}`"
        )


# ---- the run ------------------------------------------------------------------------------


class Run:
    """One run directory: its files, its config, its model, its lock.

    Create one with `Run.create(config)` (a new numbered directory holding `config.yaml`)
    or `Run.open(path)` (an existing run, checked for what the caller needs).

    Args:
        path: the run directory.

    Example:
        >>> run = Run.create(config, root="runs")
        >>> with run.training():
        ...     fit(run.config, run.path)
        >>> Run.open(run.path, purpose="evaluate").load_model()
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock_file: Any = None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # ---- files and folders --------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        """`config.yaml`: the resolved config the run was started with."""
        return self.path / CONFIG_FILE

    @property
    def resumes_file(self) -> Path:
        """`resumes.jsonl`: what each `--resume` changed (key, old, new, time)."""
        return self.path / RESUMES_FILE

    @property
    def spec_file(self) -> Path:
        """`spec.json`: the data spec the model was built against."""
        return self.path / SPEC_FILE

    @property
    def model_file(self) -> Path:
        """`model.keras`: the final model."""
        return self.path / MODEL_FILE

    @property
    def result_file(self) -> Path:
        """`metrics.json`: the final result."""
        return self.path / RESULT_FILE

    @property
    def metrics_file(self) -> Path:
        """`metrics.jsonl`: one line per epoch (or GAN tick)."""
        return self.path / METRICS_FILE

    @property
    def checkpoints_dir(self) -> Path:
        """`checkpoints/`: Keras checkpoints, and the GAN trainer's TF checkpoints."""
        return self.path / CHECKPOINT_DIR

    @property
    def last_checkpoint(self) -> Path:
        """`checkpoints/last.keras`: the model after the last finished epoch."""
        return self.checkpoints_dir / LAST_CHECKPOINT_FILE

    @property
    def best_checkpoint(self) -> Path:
        """`checkpoints/best.keras`: the model at its best `train.monitor` value."""
        return self.checkpoints_dir / BEST_CHECKPOINT_FILE

    @property
    def loop_checkpoints_dir(self) -> Path:
        """`checkpoints/loop/`: the custom loop's TF checkpoints (its resume state)."""
        return self.path / LOOP_CHECKPOINT_DIR

    @property
    def backup_dir(self) -> Path:
        """`backup/`: Keras BackupAndRestore (fit's resume state)."""
        return self.path / BACKUP_DIR

    @property
    def tensorboard_dir(self) -> Path:
        """`tb/`: TensorBoard logs."""
        return self.path / TENSORBOARD_DIR

    @property
    def gan_options_file(self) -> Path:
        """`gan_options.json`: the resolved GAN options."""
        return self.path / GAN_OPTIONS_FILE

    @property
    def g_ema_file(self) -> Path:
        """`G_ema.keras`: the EMA generator of a GAN run."""
        return self.path / G_EMA_FILE

    @property
    def tune_dir(self) -> Path:
        """`tune/`: a search run's folder."""
        return self.path / TUNE_DIR

    @property
    def failed_file(self) -> Path:
        """`failed.json`: present when the run failed before it trained anything."""
        return self.path / FAILED_FILE

    @property
    def lock_file(self) -> Path:
        """`.lock`: held by the process training the run."""
        return self.path / LOCK_FILE

    # ---- create / open -------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        config: ExperimentConfig,
        run_dir: str | os.PathLike | None = None,
        root: str | os.PathLike = "runs",
        *,
        lock: bool = False,
    ) -> Run:
        """Create a run directory holding `config.yaml` (locked when `lock`; commands lock
        it with `training`).

        Args:
            config: the resolved experiment config, saved as `config.yaml`.
            run_dir: an explicit directory (`--run-dir`); it must not already hold a run.
            root: where numbered run directories go when `run_dir` is None.
            lock: take the run's lock (see `lock`).

        Raises:
            UserError: `run_dir` already holds a run or is a file; a failed write.
        """
        if run_dir is not None:
            path = Path(run_dir)
            if path.is_file():
                raise UserError(f"--run-dir {path} is a file, expected a directory")
            if (path / CONFIG_FILE).exists():
                raise UserError(
                    f"--run-dir {path} already holds a run; use --resume {path} to continue it "
                    "or choose another directory"
                )
        else:
            path = next_run_dir(root, config.name)
        try:
            for _attempt in range(100):  # another process may take the same number
                try:
                    path.mkdir(parents=True, exist_ok=run_dir is not None)
                    break
                except FileExistsError:
                    path = next_run_dir(root, config.name)
            run = cls(path)
            if lock:
                run.lock()
            save_config(config, run.config_file)
        except OSError as err:
            raise _write_failed(path / CONFIG_FILE, err) from None
        return run

    @classmethod
    def for_worker(
        cls,
        config: ExperimentConfig,
        run_dir: str | os.PathLike | None,
        root: str | os.PathLike = "runs",
        *,
        chief: bool = True,
        wait_s: float | None = None,
    ) -> Run:
        """The run of this process: the chief creates it as `create` does; the
        other workers of a multi-worker run wait for the chief's `config.yaml` in `run_dir`
        and take no lock (they write to temporary directories, see `worker_temp_dir`).

        Raises:
            UserError: a non-chief worker without `run_dir`, or the chief did not create the
                run within the wait (`runtime.collective_timeout_s`).
        """
        if chief:
            return cls.create(config, run_dir, root)  # locked by `training`
        if run_dir is None:
            raise UserError(
                "multi-worker training needs --run-dir on every worker (the same path, on "
                "storage the chief writes); `tfkit launch` adds it for local workers"
            )
        path = Path(run_dir)
        wait = wait_s or config.runtime.collective_timeout_s
        deadline = time.monotonic() + wait
        while not (path / CONFIG_FILE).exists():
            if time.monotonic() > deadline:
                raise UserError(
                    f"--run-dir {path}: the chief did not create the run (no {CONFIG_FILE}) "
                    f"within {wait:g} s"
                )
            time.sleep(0.2)
        return cls(path)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        purpose: str = "read",
        *,
        flag: str = "",
        kind: str | tuple[str, ...] | None = None,
    ) -> Run:
        """An existing run, checked for `purpose`.

        Args:
            path: the run directory.
            purpose: `read` (any run), `resume` (to continue training it), or a command
                that needs its trained model (`evaluate`, `predict`, `export`, ...): such a
                run must not have failed before training and must have trained something.
            flag: how the user named the path (e.g. `--resume`), for messages.
            kind: the kind(s) of run the caller needs (`fit`, `gan`, see `kind`); None: any.

        Raises:
            UserError: naming the path: missing, not a run, the wrong kind of run (with the
                command that serves it), failed or not trained.
        """
        run = cls(path)
        named = f"{flag} {run.path}" if flag else str(run.path)
        if not run.path.exists():
            raise UserError(f"Run directory not found: {named}")
        if not run.config_file.is_file():
            raise UserError(
                f"{named}: not a tfkit run directory (no {CONFIG_FILE} in it); pass the "
                "directory `tfkit train` printed, e.g. runs/<name>/00000"
            )
        if kind is not None:
            run.check_kind(kind, purpose, named)
        if purpose in ("read", "resume"):
            return run
        failure = run.failure()
        if failure is not None:
            raise UserError(
                f"{named}: this run failed before it trained anything "
                f"({failure.get('error', 'see ' + str(run.failed_file))}); there is no model to "
                f"{purpose}. Fix the cause and continue it with --resume {run.path}"
            )
        if not run.is_trained:
            if run.kind == "gan":
                raise UserError(
                    f"{named} holds no trained generator to {purpose}: no snapshot has been "
                    f"written (no {run.g_ema_file} or checkpoint). Train it with "
                    f"tfkit gan train --resume {run.path}"
                )
            raise UserError(
                f"{named} holds no trained model to {purpose}: no epoch has finished (no "
                f"{run.model_file}). Train it with --resume {run.path}"
            )
        return run

    # ---- kind ---------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """What made this run: `gan` (`tfkit gan train`: its config has a `gan` section),
        `tune` (a `tfkit tune` search directory) or `fit` (`tfkit train`). Reads no model."""
        if any(
            (self.path / name).exists()
            for name in (TUNE_SEARCH_DIR, TUNE_TRIALS_FILE, TUNE_BEST_CONFIG_FILE)
        ):
            return "tune"
        tree = read_yaml(self.config_file)
        return "gan" if isinstance(tree, dict) and tree.get("gan") is not None else "fit"

    def check_kind(
        self, expected: str | tuple[str, ...], purpose: str = "read", named: str = ""
    ) -> None:
        """Refuse a run of another kind than `expected` (`fit`, `gan` or a tuple of kinds),
        naming the command that serves it.

        Raises:
            UserError: e.g. `tfkit evaluate` given a GAN run, or `--resume` of a GAN run
                given to `tfkit train`.
        """
        kind = self.kind
        if kind in ((expected,) if isinstance(expected, str) else expected):
            return
        named = named or str(self.path)
        doing = "continue" if purpose == "resume" else purpose
        if kind == "tune":
            best = self.path / TUNE_BEST_CONFIG_FILE
            raise UserError(
                f"{named} is a `tfkit tune` search directory, not a run to {doing}; continue "
                f"the search with `tfkit tune CONFIG --run-dir {self.path}`, or train its best "
                f"trial with `tfkit train {best}`"
            )
        if kind == "gan":
            hint = {
                "resume": f"tfkit gan train --resume {self.path}",
                "evaluate": f"tfkit gan metrics {self.path}",
                "predict": f"tfkit gan generate {self.path} --out images.png",
            }.get(purpose, f"tfkit gan generate {self.path} --out images.png")
            raise UserError(f"{named} is a GAN run (made by `tfkit gan train`); use `{hint}`")
        hint = {
            "resume": f"tfkit train --resume {self.path}",
            "measure": f"tfkit evaluate {self.path}",
        }.get(purpose, f"tfkit predict {self.path} --input FILE --output FILE")
        raise UserError(
            f"{named} is a `tfkit train` run, not a GAN run (its {CONFIG_FILE} has no `gan` "
            f"section); use `{hint}`"
        )

    # ---- config and the resume policy -------------------------------------------------------
    def resumes(self) -> list[dict[str, Any]]:
        """The resume records, oldest first: `{"time", "changes": [{"key", "old", "new"}]}`."""
        if not self.resumes_file.is_file():
            return []
        records = []
        for number, line in enumerate(self.resumes_file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise UserError(f"{self.resumes_file}:{number}: not a JSON line") from None
        return records

    def load_config(self) -> ExperimentConfig:
        """The effective config: `config.yaml` plus the changes every resume recorded.

        Raises:
            UserError: not a run, or a saved config that no longer validates (naming it).
        """
        if not self.config_file.is_file():
            raise UserError(f"{self.path} is not a tfkit run directory (no {CONFIG_FILE} in it)")
        tree = read_yaml(self.config_file)
        records = self.resumes()
        for record in records:
            for change in record.get("changes", []):
                _set_key(tree, change["key"], change["new"])
        where = str(self.config_file) + (f" (with {RESUMES_FILE})" if records else "")
        return validate(tree, where)

    @property
    def config(self) -> ExperimentConfig:
        """The effective config (see `load_config`)."""
        return self.load_config()

    def plan_resume(
        self, overrides: list[str] | None = None, config_path: str | os.PathLike | None = None
    ) -> tuple[ExperimentConfig, list[dict[str, Any]]]:
        """The config to continue this run with and what it changes: the run's effective
        config plus `--set` `overrides` (or a CONFIG file given with `--resume`), under the
        resume policy (every change must be in `RESUMABLE_KEYS`). Writes nothing.

        Raises:
            UserError: naming every changed key the policy refuses.
        """
        from tfkit.config import apply_overrides

        saved = self.load_config()
        if config_path is not None:
            new = load_config(config_path, overrides)
        else:
            tree = apply_overrides(to_dict(saved), overrides)
            new = validate(tree, f"{self.config_file} (with --set overrides)")
        effective = self.effective_values()
        try:
            changes = resume_changes(saved, new, effective)
        except UserError as err:
            source = f" with {config_path}" if config_path is not None else ""
            raise UserError(f"--resume {self.path}{source}: {err}") from None
        if effective and "gan.augment" not in effective and new.gan and new.gan.augment is None:
            # started before ADA existed, it trained without: it goes on so (its preset's
            # default may be `ada` now)
            new = new.model_copy(update={"gan": new.gan.model_copy(update={"augment": "none"})})
        return new, changes

    def effective_values(self) -> dict[str, Any]:
        """The values a GAN run resolved for its `gan` keys (its preset's, where the config
        leaves a key unset), by dotted key (`gan.lr`); `{}` for other runs."""
        if not self.gan_options_file.is_file():
            return {}
        try:
            options = json.loads(self.gan_options_file.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return {f"gan.{k}": v for k, v in options.items()} if isinstance(options, dict) else {}

    def record_resume(self, changes: list[dict[str, Any]]) -> str | None:
        """Append what a resume changed to `resumes.jsonl` (`config.yaml` stays as the run
        was started); nothing is written when nothing changed.

        Returns:
            One line saying what changed (for the command to print), or None.
        """
        if not changes:
            return None
        line = json.dumps(strict_json({"time": _now(), "changes": changes}), allow_nan=False)
        try:
            with open(self.resumes_file, "a") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise _write_failed(self.resumes_file, err) from None
        changed = ", ".join(f"{c['key']} {c['old']!r} -> {c['new']!r}" for c in changes)
        return f"resuming with {changed} (recorded in {self.resumes_file})"

    def resume_config(
        self,
        overrides: list[str] | None = None,
        config_path: str | os.PathLike | None = None,
    ) -> ExperimentConfig:
        """`plan_resume`, then `record_resume`: the config to continue with, recorded."""
        config, changes = self.plan_resume(overrides, config_path)
        self.record_resume(changes)
        return config

    # ---- state ------------------------------------------------------------------------------
    @property
    def is_finished(self) -> bool:
        """Whether the run wrote its final result."""
        return self.result_file.is_file()

    def refuse_finished(self, flag: str = "--resume") -> None:
        """Refuse to continue a finished `tfkit train` run (its backup is removed when it
        finishes, so nothing is left to continue from exactly).

        Raises:
            UserError: the run wrote its result and keeps no backup.
        """
        if self.is_finished and not self.backup_dir.exists():
            raise UserError(
                f"{flag} {self.path}: this run already finished (see {self.result_file})"
            )

    def epochs_logged(self) -> int:
        """Number of epoch lines in `metrics.jsonl` (finished epochs)."""
        if not self.metrics_file.is_file():
            return 0
        count = 0
        for line in self.metrics_file.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                if "epoch" in json.loads(line):
                    count += 1
        return count

    @property
    def is_trained(self) -> bool:
        """Whether the run holds something trained: a final model or result, a finished
        epoch, or a GAN checkpoint."""
        return (
            self.model_file.is_file()
            or self.is_finished
            or self.g_ema_file.is_file()
            or (self.checkpoints_dir / TF_CHECKPOINT_STATE).is_file()
            or self.epochs_logged() > 0
        )

    def failure(self) -> dict[str, Any] | None:
        """The failure record (`failed.json`), or None."""
        if not self.failed_file.is_file():
            return None
        try:
            return json.loads(self.failed_file.read_text())
        except (OSError, json.JSONDecodeError):
            return {"error": "unknown"}

    @property
    def is_failed(self) -> bool:
        """Whether the run failed before it trained anything."""
        return self.failed_file.is_file()

    def mark_failed(self, error: BaseException | str) -> bool:
        """Record that the run failed before training: the directory is removed when it
        holds nothing but its config (and lock), else `failed.json` names the error.

        Returns:
            True when the directory was removed.
        """
        kept = {CONFIG_FILE, LOCK_FILE, RESUMES_FILE}
        if not self.resumes_file.exists() and all(p.name in kept for p in self.path.iterdir()):
            self.unlock()
            shutil.rmtree(self.path, ignore_errors=True)
            return True
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        with contextlib.suppress(UserError):  # a full disk must not hide the original error
            write_json_atomic(
                self.failed_file,
                {"time": _now(), "error": f"{type(error).__name__}: {message}"[:500]},
            )
        return False

    def clear_failed(self) -> None:
        """Forget an earlier failure (the run trained since)."""
        with contextlib.suppress(FileNotFoundError):
            self.failed_file.unlink()

    @contextlib.contextmanager
    def training(self, *, chief: bool = True) -> Iterator[Run]:
        """Context for training this run: the chief holds the run's lock (see `lock`); a
        failure before anything was trained marks the run failed (or removes a directory
        that holds only its config); a failed write (disk full) becomes a `UserError`
        naming the path.

        Args:
            chief: False on non-chief workers of a multi-worker run (they take no lock and
                change nothing in the run directory).

        Raises:
            UserError: another process holds the run.
        """
        with self.locked(chief):
            try:
                yield self
            except BaseException as err:
                stopped = isinstance(
                    err, (KeyboardInterrupt, SystemExit, GeneratorExit, Stopped, WorkerLost)
                )
                if chief and not stopped and self.path.exists() and not self.is_trained:
                    removed = self.mark_failed(err)
                    if isinstance(err, NonFiniteLossError):
                        err.run_outcome = (
                            "removed (it held only its config)" if removed else "marked failed"
                        )
                if isinstance(err, OSError) and not stopped:
                    raise _write_failed(Path(err.filename or self.path), err) from err
                full = disk_full(err)
                if full is not None:
                    raise UserError(
                        f"could not write {full or self.path}: no space left on device"
                    ) from err
                raise
            if chief and self.is_trained:
                self.clear_failed()

    @contextlib.contextmanager
    def locked(self, lock: bool = True) -> Iterator[Run]:
        """Hold the run's lock for the block (nothing when `lock` is False); released at
        the end however the block ends."""
        held = self._lock_file is not None
        if lock and not held:
            self.lock()
        try:
            yield self
        finally:
            if lock and not held:
                self.unlock()

    # ---- lock ----------------------------------------------------------------------------
    def lock(self) -> Run:
        """Take the run's lock: one process trains a run at a time. The OS releases it when
        the process ends, however it ends (kill -9 included).

        Raises:
            UserError: another process holds it (naming the run and that process).
        """
        import fcntl

        if self._lock_file is not None:
            return self
        handle = open(self.lock_file, "a+")  # noqa: SIM115 - held for the run's lifetime
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            who = f" (pid {holder})" if holder else ""
            raise UserError(
                f"{self.path} is in use by another tfkit process{who}; wait for it to end, "
                "or stop it, then try again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock_file = handle
        return self

    def unlock(self) -> None:
        """Release the run's lock (a no-op when not held)."""
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                self._lock_file.close()
            self._lock_file = None

    # ---- spec, model, result ------------------------------------------------------------------
    def read_spec(self) -> dict[str, Any] | None:
        """The data spec saved by training (None for runs that predate it)."""
        if not self.spec_file.is_file():
            return None
        try:
            return json.loads(self.spec_file.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"{self.spec_file} is not valid JSON ({err})") from None

    def write_spec(self, spec: dict[str, Any]) -> Path:
        """Write the data spec (strict JSON, atomically)."""
        return write_json_atomic(self.spec_file, spec)

    def spec_inputs(self) -> list[tuple[str, tuple, str]] | None:
        """(name, shape with batch axis, dtype) of each model input from `spec.json`."""
        spec = self.read_spec()
        if spec is None:
            return None
        return [(i["name"], (None, *i["shape"]), i.get("dtype", "float32")) for i in spec["inputs"]]

    def normalization(self) -> dict[str, dict] | None:
        """The `normalization` the run's `spec.json` records (None for older runs)."""
        spec = self.read_spec()
        return None if spec is None else spec.get("normalization")

    def model_path(self) -> Path:
        """The trained model file: `model.keras`, else `checkpoints/last.keras`.

        Raises:
            UserError: neither exists.
        """
        for path in (self.model_file, self.last_checkpoint):
            if path.is_file():
                return path
        raise UserError(
            f"{self.path} holds no trained model (no {MODEL_FILE} or "
            f"{CHECKPOINT_DIR}/{LAST_CHECKPOINT_FILE}); train it first with `tfkit train`"
        )

    def load_model(self, custom_objects: dict[str, Any] | None = None) -> Any:
        """The run's trained model (see `model_path`), checked and loaded in safe mode.

        Args:
            custom_objects: the tfkit objects a model may hold, by registered name; callers
                pass `tfkit.saving.registered_objects()` (the run directory is below the
                modules that define them, so it does not import them). None: the objects
                registered so far.

        Raises:
            UserError: no model, or a truncated/corrupt model file (named).
        """
        import keras

        path = check_keras_file(self.model_path())
        return keras.saving.load_model(path, custom_objects=custom_objects, safe_mode=True)

    def save_model(self, model: Any, path: str | os.PathLike | None = None) -> Path:
        """Save `model` atomically as `model.keras` (or `path`)."""
        return save_model_atomic(model, path or self.model_file)

    def write_result(self, result: dict[str, Any]) -> Path:
        """Write the final result `metrics.json` as strict JSON (NaN/Inf as strings)."""
        return write_json_atomic(self.result_file, result)

    def read_result(self) -> dict[str, Any] | None:
        """The final result, or None when the run has not finished."""
        if not self.is_finished:
            return None
        return json.loads(self.result_file.read_text())

    # ---- resume state --------------------------------------------------------------------------
    def check_resume_state(self) -> None:
        """Refuse to resume from a truncated or corrupt checkpoint, naming it: the latest
        TF checkpoint of fit's `backup/`, of the custom loop and of the GAN trainer (and
        Keras BackupAndRestore weights, unless Keras' previous copy is intact).

        Raises:
            UserError: naming the damaged file.
        """
        weights = self.backup_dir / "latest.weights.h5"
        if weights.is_file():
            try:
                check_weights_file(weights)
            except UserError:
                previous = weights.with_name(weights.name + ".bkp")
                if not previous.is_file():
                    raise
                check_weights_file(previous)  # Keras falls back to it
        for folder in (self.backup_dir, self.loop_checkpoints_dir, self.checkpoints_dir):
            latest_tf_checkpoint(folder)

    # ---- worker files ---------------------------------------------------------------------------
    @staticmethod
    @contextlib.contextmanager
    def worker_temp_dir(prefix: str) -> Iterator[Path]:
        """A temporary directory for a non-chief worker's files, removed at exit."""
        tmp = Path(tempfile.mkdtemp(prefix=f"tfkit-{prefix}-"))
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# ---- module-level helpers kept for callers and tests --------------------------------------------


def create_run_dir(
    config: ExperimentConfig, run_dir: str | Path | None = None, root: str | Path = "runs"
) -> Path:
    """Create a run directory holding `config.yaml` (no lock) and return its path."""
    return Run.create(config, run_dir, root, lock=False).path


def is_run_dir(path: str | Path) -> bool:
    """Whether `path` is a tfkit run directory (it holds `config.yaml`)."""
    return (Path(path) / CONFIG_FILE).is_file()


def load_run_config(run_dir: str | Path) -> ExperimentConfig:
    """The effective config of a run directory (see `Run.load_config`).

    Raises:
        UserError: `run_dir` is missing or is not a tfkit run directory.
    """
    return Run.open(run_dir).load_config()


def check_resume_compatible(run_dir: str | Path, config: ExperimentConfig) -> None:
    """Refuse to resume `run_dir` with `config` unless the resume policy allows every
    change (see `RESUMABLE_KEYS`), naming every refused key."""
    resume_changes(Run.open(run_dir).load_config(), config)
