"""The custom loop and `fit` agree on the same config (digits MLP and the two-input model),
and `run_loop` writes what the fit path writes; resuming with a changed model is refused."""

from __future__ import annotations

import json

import pytest

from tfkit.config import load_config
from tfkit.errors import UserError
from tfkit.runs import check_resume_compatible, create_run_dir
from tfkit.training.session import fit, run_loop

DIGITS = [
    "name=digits_mlp",
    "data.source={kind: digits, layout: flat}",
    "data.split={train: 0.7, val: 0.1, test: 0.2, seed: 0}",
    "data.batch_size=32",
    "model={name: mlp, units: [64]}",
    "train.epochs=6",
    "train.optimizer={name: adam, learning_rate: 0.003}",
    "train.verbose=0",
    "train.tensorboard=false",
]
TWO_INPUT = [
    "name=two_input",
    "data.source={kind: two_input, count: 1500, seed: 0}",
    "data.batch_size=50",
    "model={name: two_input, branch_units: [32, 16], head_units: [16]}",
    "train.epochs=6",
    "train.optimizer={name: adam, learning_rate: 0.003}",
    "train.verbose=0",
    "train.tensorboard=false",
]


def both(overrides, root):
    config = load_config(None, overrides)
    fit_result = fit(config, create_run_dir(config, root / "fit"))
    custom = load_config(None, [*overrides, "train.loop=custom"])
    run_dir = create_run_dir(custom, root / "loop")
    loop_result = run_loop(custom, run_dir, resume=False)
    return fit_result, loop_result, run_dir


@pytest.mark.parametrize(
    "overrides,min_acc", [(DIGITS, 0.9), (TWO_INPUT, 0.6)], ids=["digits", "two_input"]
)
def test_loop_matches_fit(overrides, min_acc, tmp_path):
    fit_result, loop_result, run_dir = both(overrides, tmp_path)
    f, c = fit_result["test"], loop_result["test"]
    print(f"fit test {f} | loop test {c}")
    assert c["accuracy"] >= min_acc
    assert abs(f["accuracy"] - c["accuracy"]) <= 0.03, (f, c)
    assert abs(f["loss"] - c["loss"]) <= 0.15 * f["loss"] + 0.02, (f, c)
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["loop"] == "custom" and saved["epochs"] == 6
    assert saved["test"]["accuracy"] == pytest.approx(c["accuracy"])
    assert (run_dir / "model.keras").exists()
    assert list((run_dir / "checkpoints" / "loop").glob("ckpt-*.index"))
    # `tfkit evaluate` on a custom-loop run (its model.keras is saved uncompiled)
    import argparse

    from tfkit.training.commands import evaluate_command

    assert evaluate_command(argparse.Namespace(run_dir=str(run_dir), split="test")) == 0


def test_resume_with_changed_model_is_refused(tmp_path):
    config = load_config(None, [*DIGITS, "train.loop=custom", "train.epochs=1"])
    run_dir = create_run_dir(config, tmp_path)
    changed = load_config(None, [*DIGITS, "train.loop=custom", "model.units=[32]"])
    with pytest.raises(UserError, match=r"changed at model\.units"):
        check_resume_compatible(run_dir, changed)


@pytest.mark.property
def test_cli_sigkill_then_resume_equals_uninterrupted(tmp_path):
    """`tfkit train` (custom loop) killed with SIGKILL mid-run, then `--resume`d, ends with
    the weights of an uninterrupted run (the weights checksum line of both)."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    config = tmp_path / "c.yaml"
    config.write_text("name: resume\n")
    sets = [
        *DIGITS,
        "model={name: mlp, units: [64], dropout: 0.2}",
        "train.loop=custom",
        "train.checkpoint_every=10",
        "train.epochs=3",
    ]
    args = [a for s in sets for a in ("--set", s)]

    def tfkit(*extra):
        return [sys.executable, "-m", "tfkit.cli", "train", *extra]

    straight = subprocess.run(
        tfkit(str(config), *args, "--run-dir", str(tmp_path / "a")),
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    run_dir = tmp_path / "b"
    proc = subprocess.Popen(
        tfkit(str(config), *args, "--run-dir", str(run_dir)),
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240

    def saved_step() -> int:  # the checkpoint the folder's state file names (complete)
        state = run_dir / "checkpoints" / "loop" / "checkpoint"
        found = re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', state.read_text(), re.M)
        return int(found.group(1)) if found else 0

    while not ((run_dir / "checkpoints" / "loop" / "checkpoint").exists() and saved_step() >= 50):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "metrics.json").exists()
    resumed = subprocess.run(
        tfkit("--resume", str(run_dir)),
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # the banner names where it continues: the checkpoint at step 50 or a later one
    at = re.search(r"resuming at epoch (\d+), step (\d+)\)", resumed.stdout)
    assert at, resumed.stdout[-2000:]
    assert int(at.group(2)) >= 50 and int(at.group(2)) % 10 == 0
    pattern = r"final weights checksum: ([\d.]+)"
    assert re.findall(pattern, resumed.stdout) == re.findall(pattern, straight.stdout) != []
