"""A distributed search on 127.0.0.1: one chief serving the oracle, two workers running trials."""

import os
import subprocess
import sys
import time

import pytest
from helpers import check_distributed_search, run_launch

from tfkit.launch import free_ports, launch_tune

ARGS = [
    "tune",
    "configs/tune_binary_mlp_hyperband.yaml",
    "--set",
    "tune.tuner=random",
    "--set",
    "tune.max_trials=4",
    "--set",
    "train.epochs=2",
    "--set",
    "data.source.count=600",
]


@pytest.mark.property
def test_chief_and_two_workers_complete_every_trial_exactly_once(tmp_path):
    run_dir = tmp_path / "run"
    start = time.perf_counter()
    proc = run_launch(["--tune-workers", "2"], [*ARGS, "--run-dir", str(run_dir)], timeout=500)
    wall = time.perf_counter() - start
    out = proc.stdout
    print(f"distributed search wall time: {wall:.1f}s")
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert "[chief] chief: oracle serving at 127.0.0.1:" in out
    reports = check_distributed_search(run_dir, ["worker0", "worker1"], 4, "val_accuracy")
    for name, report in reports.items():
        assert f"[{name}] worker {name}: ran {len(report)} trials" in out


def test_launch_refuses_a_command_that_is_not_tune():
    from tfkit.errors import UserError

    with pytest.raises(UserError, match="--tune-workers runs a `tune` command"):
        launch_tune(2, ["train", "x.yaml"])
    with pytest.raises(UserError, match="--tune-workers must be >= 1"):
        launch_tune(0, ARGS)


def test_worker_cli_reports_an_unreachable_oracle(tmp_path):
    (port,) = free_ports(1)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfkit.cli",
            *ARGS,
            "--run-dir",
            str(tmp_path),
            "--role",
            "worker",
            "--oracle",
            f"127.0.0.1:{port}",
            "--oracle-timeout",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 2
    assert f"Could not reach the tuning oracle at 127.0.0.1:{port} within 1s" in proc.stderr
