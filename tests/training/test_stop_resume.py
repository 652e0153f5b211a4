"""Both training paths (fit and the custom loop) stop and resume exactly.

Properties: a run interrupted at any step (a crash, SIGKILL, SIGTERM, Ctrl-C) and resumed
ends with the weights and metrics of the uninterrupted run; a signal saves, prints one line
and exits 143 / 130; a NaN loss exits 2 naming the step and leaves no NaN model; a run
killed after its last epoch finishes on `--resume` without training again.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tfkit.cli import main
from tfkit.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
STEPS = 23  # 1437 training digits / 64 per batch, rounded up
CONFIG = """
name: digits_small
data:
  source: {kind: digits, layout: flat}
  batch_size: 64
model: {name: mlp, units: [32], dropout: 0.2}
train:
  epochs: 3
  optimizer: {name: adam, learning_rate: 0.003}
  checkpoint_every: 6
  verbose: 1
  tensorboard: false
runtime:
  steps_per_execution: 1  # (and the custom loop's steps_per_loop, see _train) one batch
                          # hook per step: a crash or signal lands on any step
"""


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("config") / "digits_small.yaml"
    path.write_text(CONFIG)
    return str(path)


def _train(config_file: str, run_dir: Path, *sets: str) -> list[str]:
    """`tfkit train` arguments for a new run (the custom loop with steps_per_loop 1)."""
    if "train.loop=custom" in sets:
        sets = (*sets, "train.steps_per_loop=1")
    return [
        "train",
        config_file,
        "--run-dir",
        str(run_dir),
        *(a for s in sets for a in ("--set", s)),
    ]


class _AtStep(keras.callbacks.Callback):
    """Calls `action()` once this process has run `step` training batches."""

    def __init__(self, step: int, action):
        super().__init__()
        self.step, self.action, self.seen = step, action, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.step:
            self.action()


def _inject(monkeypatch, callback) -> None:
    """Add `callback` to the callbacks `tfkit train` builds (fit and custom loop)."""
    import tfkit.training.callbacks as callbacks_module

    session_module = importlib.import_module("tfkit.training.session")
    original = callbacks_module.build_callbacks

    def patched(*args, **kwargs):
        return [*original(*args, **kwargs), callback]

    monkeypatch.setattr(session_module, "build_callbacks", patched)
    monkeypatch.setattr(callbacks_module, "build_callbacks", patched)


class DieAtEnd(keras.callbacks.Callback):
    """Dies after the last epoch, before the results are written."""

    def on_train_end(self, logs=None):
        raise RuntimeError("killed before the results were written")


def _weights(run_dir: Path) -> list[np.ndarray]:
    return keras.saving.load_model(run_dir / "model.keras").get_weights()


def _max_diff(a: Path, b: Path) -> float:
    return max(float(np.abs(u - v).max()) for u, v in zip(_weights(a), _weights(b), strict=True))


def _epochs(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# the custom loop's own resume tests are in test_loop.py; here it runs with the slow tests
@pytest.fixture(scope="module", params=["fit", pytest.param("custom", marks=pytest.mark.property)])
def straight(request, tmp_path_factory, config_file):
    """The uninterrupted run of each loop: (loop, run dir, args for a new run)."""
    run_dir = tmp_path_factory.mktemp(request.param) / "straight"
    loop = f"train.loop={request.param}"
    assert main(_train(config_file, run_dir, loop)) == 0

    def args(run_dir: Path, *sets: str) -> list[str]:
        return _train(config_file, run_dir, loop, *sets)

    return args, run_dir


def _assert_same_run(resumed: Path, straight: Path) -> None:
    assert _max_diff(resumed, straight) <= 1e-6
    result = json.loads((resumed / "metrics.json").read_text())
    expected = json.loads((straight / "metrics.json").read_text())
    for split in ("val", "test"):
        for key, value in expected[split].items():
            assert result[split][key] == pytest.approx(value, abs=1e-6), (split, key)
    assert result["epochs"] == expected["epochs"] == 3
    by_epoch = {e["epoch"]: e for e in _epochs(resumed)}  # the last record of each epoch
    for record in _epochs(straight):
        assert by_epoch[record["epoch"]]["val_accuracy"] == pytest.approx(
            record["val_accuracy"], abs=1e-6
        )


@pytest.mark.parametrize(
    "crash_at", [pytest.param(7, marks=pytest.mark.property), 33]
)  # before the first epoch end; mid epoch 2
def test_crash_at_any_step_then_resume_equals_uninterrupted(
    straight, crash_at, tmp_path, monkeypatch
):
    args, straight_dir = straight
    run_dir = tmp_path / "run"

    def crash():
        raise RuntimeError("simulated crash")

    with monkeypatch.context() as patch:
        _inject(patch, _AtStep(crash_at, crash))
        assert main(args(run_dir)) == 1
    assert not (run_dir / "metrics.json").exists()
    assert main(["train", "--resume", str(run_dir)]) == 0
    _assert_same_run(run_dir, straight_dir)


@pytest.mark.parametrize("damage", ["truncate", "older_backup"])
def test_unreadable_backup_is_refused_naming_it(damage, config_file, tmp_path, capsys, monkeypatch):
    """A truncated backup (a full disk) or one tfkit cannot resume is refused with exit 2
    and one line naming it; nothing is half-loaded and training does not restart."""
    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        _inject(patch, DieAtEnd())
        assert main(_train(config_file, run_dir, "train.epochs=1", "train.verbose=0")) == 1
    backup = run_dir / "backup"
    if damage == "truncate":
        for data in backup.glob("ckpt-*.data-*"):
            data.write_bytes(data.read_bytes()[:100])
    else:
        for path in backup.iterdir():
            path.unlink()
        (backup / "latest.weights.h5").write_bytes(b"keras")
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("tfkit train: error: ") and str(backup) in line, line
    assert not (run_dir / "metrics.json").exists()


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGTERM, 143), pytest.param(signal.SIGINT, 130, marks=pytest.mark.property)],
)
def test_signal_saves_prints_one_line_and_resume_equals_uninterrupted(
    straight, signum, code, tmp_path, monkeypatch, capsys
):
    args, straight_dir = straight
    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        _inject(patch, _AtStep(25, lambda: os.kill(os.getpid(), signum)))
        capsys.readouterr()
        assert main(args(run_dir)) == code
    out, err = capsys.readouterr()
    line = f"tfkit train: stopped at epoch 2; continue with: tfkit train --resume {run_dir}"
    assert err.splitlines() == [line], err
    assert out.endswith("\n")  # the progress bar's line was closed first
    assert signal.getsignal(signum) in (signal.default_int_handler, signal.SIG_DFL)
    assert not (run_dir / "metrics.json").exists()
    assert main(["train", "--resume", str(run_dir)]) == 0
    _assert_same_run(run_dir, straight_dir)


def test_kill_after_the_last_epoch_finishes_without_training(straight, tmp_path, monkeypatch):
    args, straight_dir = straight
    run_dir = tmp_path / "run"

    with monkeypatch.context() as patch:
        _inject(patch, DieAtEnd())
        assert main(args(run_dir)) == 1
    assert not (run_dir / "metrics.json").exists()
    trained = len(_epochs(run_dir))
    assert main(["train", "--resume", str(run_dir)]) == 0
    assert len(_epochs(run_dir)) == trained == 3  # no epoch trained again
    result = json.loads((run_dir / "metrics.json").read_text())
    assert result["epochs_this_session"] == 0
    _assert_same_run(run_dir, straight_dir)


@pytest.mark.parametrize("loop", ["fit", "custom"])
@pytest.mark.parametrize("first_steps", [False, True])
def test_nan_loss_exits_2_naming_the_step_and_keeps_no_nan_model(
    loop, first_steps, config_file, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    # learning rate 1e12 overflows at step 3: before the first checkpoint (every 6 steps),
    # or after two (every step)
    sets = [f"train.loop={loop}", "train.optimizer={name: sgd, learning_rate: 1.0e12}"]
    every = "train.checkpoint_every=6" if first_steps else "train.checkpoint_every=1"
    code = main(_train(config_file, run_dir, *sets, every, "train.checkpoint=both"))
    err = capsys.readouterr().err
    assert code == 2
    (line,) = err.strip().splitlines()
    assert "became nan at step" in line or "became inf at step" in line, line
    assert "(epoch 1)" in line and "None" not in line, line
    if first_steps:
        step = int(line.split(" at step ")[1].split()[0])
        assert step < 6, line  # before the first checkpoint
        assert "No checkpoint was written yet" in line, line
        assert "the run is marked failed" in line or "the run is removed" in line, line
        if "marked failed" in line:
            assert (run_dir / "failed.json").is_file()
        else:
            assert not run_dir.exists()
    else:
        assert "The last good checkpoint is" in line, line
    assert not (run_dir / "model.keras").exists() and not (run_dir / "metrics.json").exists()
    for path in run_dir.rglob("*.keras"):  # last.keras / best.keras: never NaN
        weights = keras.saving.load_model(path).get_weights()
        assert all(np.isfinite(w).all() for w in weights), path


class FailMidEpoch(keras.callbacks.Callback):
    """A user error (e.g. a full disk) while the progress bar's line is open."""

    def on_train_batch_end(self, batch, logs=None):
        if batch == 4:
            raise UserError("could not write /full/disk/file: no space left on device")


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_user_error_mid_epoch_starts_its_own_line(loop, config_file, tmp_path, capsys, monkeypatch):
    _inject(monkeypatch, FailMidEpoch())
    assert main(_train(config_file, tmp_path / "run", f"train.loop={loop}")) == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "tfkit train: error: could not write /full/disk/file: no space left on device"
    ]
    assert out.endswith("\n") and not out.endswith("\n\n"), repr(out[-200:])
    assert "/step" in out.splitlines()[-1]  # the progress bar's line, ended once


def test_metrics_json_is_strict_json(tmp_path):
    from tfkit.runs import write_json_atomic

    path = write_json_atomic(tmp_path / "m.json", {"a": float("nan"), "b": [1.0, float("-inf")]})
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert data == {"a": "nan", "b": [1.0, "-inf"]}
    assert math.isfinite(data["b"][0])


CHILD = """
import os, signal, sys, importlib
import keras
import tfkit.training.callbacks as callbacks_module
kill_at = int(os.environ["KILL_AT"])
original = callbacks_module.build_callbacks

class Kill(keras.callbacks.Callback):
    seen = 0
    def on_train_batch_end(self, batch, logs=None):
        Kill.seen += 1
        if Kill.seen == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

def patched(*args, **kwargs):
    return [*original(*args, **kwargs), Kill()]

importlib.import_module("tfkit.training.session").build_callbacks = patched
callbacks_module.build_callbacks = patched
from tfkit.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.property
@pytest.mark.parametrize("kill_at", [5, 26, 47])
def test_sigkill_at_any_step_then_resume_equals_uninterrupted(straight, kill_at, tmp_path):
    args, straight_dir = straight
    run_dir = tmp_path / "run"
    env = {**os.environ, "KILL_AT": str(kill_at), "PYTHONPATH": str(ROOT)}
    killed = subprocess.run(
        [sys.executable, "-c", CHILD, *args(run_dir, "train.verbose=0")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    # the resume runs in this process, as in the crash and signal tests above: the run dir
    # holds only what the killed process wrote to disk before SIGKILL
    assert main(["train", "--resume", str(run_dir)]) == 0
    _assert_same_run(run_dir, straight_dir)


@pytest.mark.parametrize(
    ("steps_per_epoch", "expected"),
    [(40, 10), (37, 1), (48, 16), (20, 10), (7, 7), (16, 16), (None, 16)],
)
def test_auto_steps_per_execution_divides_the_epoch(steps_per_epoch, expected):
    """`auto` never lets Keras run past an epoch's end on the repeated stream."""
    from tfkit.config import RuntimeConfig
    from tfkit.training.fit import steps_per_execution

    value = steps_per_execution(RuntimeConfig(), steps_per_epoch)
    assert value == expected
    assert steps_per_epoch is None or steps_per_epoch % value == 0


def test_explicit_steps_per_execution_must_divide_the_epoch():
    from tfkit.config import RuntimeConfig
    from tfkit.training.fit import steps_per_execution

    assert steps_per_execution(RuntimeConfig(steps_per_execution=8), 40) == 8
    with pytest.raises(UserError, match=r"`runtime.steps_per_execution` \(16\).*\(40\).*48"):
        steps_per_execution(RuntimeConfig(steps_per_execution=16), 40)


def test_default_settings_train_exact_epochs_and_resume_exactly(
    config_file, tmp_path, monkeypatch, capsys
):
    """With the default `steps_per_execution: auto` (15 steps a call for 30-step epochs) an
    epoch trains exactly its steps, and SIGTERM mid-epoch then resume equals the
    uninterrupted run (an outside review found 48-step epochs of 40 and a 0.8 weight gap)."""
    sets = ("runtime.steps_per_execution=auto", "data.batch_size=48")  # 30 steps an epoch
    straight_dir, run_dir = tmp_path / "straight", tmp_path / "run"
    assert main(_train(config_file, straight_dir, *sets)) == 0
    model = keras.saving.load_model(straight_dir / "model.keras")
    assert int(model.optimizer.iterations.numpy()) == 3 * 30
    with monkeypatch.context() as patch:  # the 4th batch hook: epoch 2's last step
        _inject(patch, _AtStep(4, lambda: os.kill(os.getpid(), signal.SIGTERM)))
        assert main(_train(config_file, run_dir, *sets)) == 143
    # a stop on an epoch's last batch lets that epoch validate and log before stopping
    assert [e["epoch"] for e in _epochs(run_dir)] == [1, 2]
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir)]) == 0
    _assert_same_run(run_dir, straight_dir)


@pytest.mark.parametrize("loop", ["fit", "custom"])
@pytest.mark.parametrize("stop_at", [STEPS + 2, STEPS], ids=["mid-epoch", "epoch-end"])
def test_stop_and_resume_lines_name_the_epoch_the_progress_bar_shows(
    loop, stop_at, config_file, tmp_path, monkeypatch, capsys
):
    """The epoch N in `stopped at epoch N`, in `resuming at epoch N, step S` and in the first
    `Epoch N/T` of the resumed run are one number, 1-based as Keras counts; T is
    `train.epochs`; S is the step the run stopped at."""
    import re

    run_dir = tmp_path / "run"
    args = _train(config_file, run_dir, f"train.loop={loop}", "train.checkpoint_every=1")
    with monkeypatch.context() as patch:
        _inject(patch, _AtStep(stop_at, lambda: os.kill(os.getpid(), signal.SIGTERM)))
        capsys.readouterr()
        assert main(args) == 143
    stopped = re.fullmatch(
        r"tfkit train: stopped at epoch (\d+); continue with: .*\n", capsys.readouterr().err
    )
    assert stopped, capsys.readouterr()
    assert main(["train", "--resume", str(run_dir)]) == 0
    out = capsys.readouterr().out.replace("\r", "\n")
    resumed = re.search(r"resuming at epoch (\d+), step (\d+)\)", out)
    bar = re.search(r"^Epoch (\d+)/(\d+)", out, re.MULTILINE)
    assert resumed and bar, out
    expected = stop_at // STEPS + 1  # the epoch the stop falls in, or the next one
    assert int(stopped.group(1)) == int(resumed.group(1)) == int(bar.group(1)) == expected
    assert int(resumed.group(2)) == stop_at
    assert int(bar.group(2)) == 3  # train.epochs
