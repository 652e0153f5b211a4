"""`tfkit launch`: local workers with TF_CONFIG, prefixed output, failure and timeout
handling; and a real 2-worker training on digits (slow)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from helpers import run_launch

from tfkit import launch as launch_mod
from tfkit.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# stands in for `python`: behaves by its TF_CONFIG task index, without TensorFlow
FAKE_PYTHON = """#!{python}
import json, os, sys, time
task = json.loads(os.environ["TF_CONFIG"])["task"]
print("hello from", task["index"], "args", " ".join(sys.argv[1:]), flush=True)
if os.environ.get("FAKE_MODE") == "fail" and task["index"] == 1:
    sys.exit(3)
if os.environ.get("FAKE_MODE") in ("fail", "hang"):
    time.sleep(60)
"""


@pytest.fixture
def fake_python(tmp_path, monkeypatch):
    from helpers import install_fake_python

    return install_fake_python(tmp_path, monkeypatch, FAKE_PYTHON, launch_mod)


def test_tf_configs_name_every_worker():
    confs = [json.loads(c) for c in launch_mod.tf_configs([5000, 5001, 5002])]
    assert confs[2]["cluster"]["worker"] == ["127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002"]
    assert [c["task"] for c in confs] == [{"type": "worker", "index": i} for i in range(3)]
    assert len(set(launch_mod.free_ports(4))) == 4


def test_workers_run_with_prefixed_output(fake_python, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_MODE", "ok")
    assert launch_mod.launch(["config", "show", "x.yaml"], workers=2) == 0
    out = capsys.readouterr().out
    assert "[worker 0] hello from 0 args -m tfkit.cli config show x.yaml" in out
    assert "[worker 1] hello from 1" in out
    assert "all 2 workers finished" in out


def test_a_failing_worker_stops_the_others(fake_python, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_MODE", "fail")
    start = time.monotonic()
    assert launch_mod.launch(["config", "show", "x.yaml"], workers=3) == 3
    assert time.monotonic() - start < 30  # the sleeping workers were stopped
    assert "worker 1 exited (status 3); stopping the others" in capsys.readouterr().err


def test_timeout_stops_every_worker(fake_python, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_MODE", "hang")
    start = time.monotonic()
    assert launch_mod.launch(["config", "show", "x.yaml"], workers=2, timeout=1) == 124
    assert time.monotonic() - start < 30
    assert "--timeout 1 s reached" in capsys.readouterr().err


def test_train_workers_print_one_line_per_epoch():
    """A progress bar in a pipe is a line per update: launched `train` commands log one
    line per epoch (train.verbose=2) unless the command sets train.verbose itself."""
    assert launch_mod._epoch_lines(["train", "c.yaml"]) == [
        "train", "c.yaml", "--set", "train.verbose=2",
    ]  # fmt: skip
    mine = ["train", "c.yaml", "--set", "train.verbose=1"]
    assert launch_mod._epoch_lines(mine) == mine
    assert launch_mod._epoch_lines(["gan", "train", "g.yaml"]) == ["gan", "train", "g.yaml"]


def test_bad_launch_arguments():
    with pytest.raises(UserError, match="needs a command after `--`"):
        launch_mod.launch([], workers=2)
    with pytest.raises(UserError, match="--workers must be >= 1. Received: --workers 0"):
        launch_mod.launch(["train", "x.yaml"], workers=0)


SMALL = [
    "--set",
    "data.source={kind: digits, layout: flat}",
    "--set",
    "data.split={train: 0.7, val: 0.1, test: 0.2, seed: 0}",
    "--set",
    "data.batch_size=32",
    "--set",
    "model={name: mlp, units: [64], batch_norm: true}",  # statistics equal on both workers
    "--set",
    "train.epochs=4",
    "--set",
    "train.optimizer={name: adam, learning_rate: 0.003}",
    "--set",
    "train.verbose=0",
    "--set",
    "train.tensorboard=false",
]


@pytest.mark.property
def test_two_workers_train_digits(tmp_path):
    config = tmp_path / "digits.yaml"
    config.write_text("name: mw_digits\n")
    run_dir = tmp_path / "run"
    start = time.monotonic()
    proc = run_launch(
        ["--workers", "2"], ["train", str(config), *SMALL, "--run-dir", str(run_dir)], timeout=500
    )
    wall = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert out.count("using the custom training loop") == 2
    assert len(out.splitlines()) < 40, out  # no line per progress-bar update
    assert not re.search(r"\] [IWEF]\d{4} |absl::|cuInit|oneDNN", out), out
    sums = dict(re.findall(r"\[worker (\d)\] final weights checksum: ([\d.]+)", out))
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"]  # identical weights
    assert list((run_dir / "checkpoints" / "loop").glob("ckpt-*.index"))
    result = json.loads((run_dir / "metrics.json").read_text())
    assert result["strategy"] == "CollectiveAllReduceStrategy" and result["replicas"] == 2

    single = tmp_path / "single"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    one = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfkit.cli",
            "train",
            str(config),
            *SMALL,
            "--set",
            "train.loop=custom",
            "--run-dir",
            str(single),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    alone = json.loads((single / "metrics.json").read_text())
    assert abs(alone["test"]["accuracy"] - result["test"]["accuracy"]) <= 0.04
    print(
        f"2-worker wall time {wall:.1f}s; accuracy {result['test']['accuracy']:.4f} "
        f"vs one process {alone['test']['accuracy']:.4f}"
    )


@pytest.mark.property
def test_sigterm_to_one_worker_stops_every_worker_at_the_same_step(tmp_path):
    """A SIGTERM to the non-chief worker alone: the chief stops at the same step (it would
    otherwise wait forever in the next collective) and writes the checkpoint."""

    from helpers import sigterm_one_worker, start_local_workers

    config = tmp_path / "digits.yaml"
    config.write_text("name: mw_digits\n")
    run_dir = tmp_path / "run"
    args = ["train", str(config), *SMALL, "--set", "train.epochs=500", "--run-dir", str(run_dir)]
    args += ["--set", "train.steps_per_loop=5"]
    procs, logs = start_local_workers(args, tmp_path / "logs")
    codes, out = sigterm_one_worker(procs, logs, "custom loop", index=1, delay=5)  # steps in
    # SIGTERM exits 143 (128 + 15); the chief, stopped by its peer's signal, exits the same
    assert codes == [143, 143], out
    stops = [re.search(r"stopped at epoch (\d+); continue with: (.+)$", o, re.M) for o in out]
    assert stops[0] and stops[1], out
    assert stops[0].group(1) == stops[1].group(1)  # the same epoch on both workers
    assert stops[0].group(2).strip() == f"tfkit train --resume {run_dir}"
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints" / "loop"))
    assert latest, out
    stopped_at = int(latest.rsplit("-", 1)[1])
    assert stopped_at > 0


TERM_WORKER = """#!{python}
import json, os, signal, sys, time
task = json.loads(os.environ["TF_CONFIG"])["task"]
pids = os.environ["FAKE_PIDS"]
open(os.path.join(pids, str(os.getpid())), "w").close()
def stop(signum, frame):
    time.sleep(0.3)  # saving takes a moment; the launcher keeps streaming meanwhile
    print("worker", task["index"], "got signal", signum, "; stopped at epoch 2", flush=True)
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
print("ready", task["index"], flush=True)
time.sleep(60)
"""


def test_sigterm_to_the_launcher_stops_every_worker_and_streams_their_output(tmp_path):
    """SIGTERM to `tfkit launch` forwards SIGTERM to each worker, streams what the workers
    print while they stop, leaves no worker running, and exits 143."""
    fake = tmp_path / "fakepython"
    fake.write_text(TERM_WORKER.format(python=sys.executable))
    fake.chmod(0o755)
    pids = tmp_path / "pids"
    pids.mkdir()
    driver = (
        f"import sys; sys.executable = {str(fake)!r}\n"
        "from tfkit.cli import main\n"
        "sys.exit(main(['launch', '--workers', '2', '--', 'config', 'show', 'x.yaml']))\n"
    )
    env = {**os.environ, "FAKE_PIDS": str(pids), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", driver],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # both workers have installed their handler
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, (out, err)
    for i in range(2):
        assert f"[worker {i}] worker {i} got signal {int(signal.SIGTERM)} ; stopped at" in out
    assert err.strip().splitlines() == ["tfkit launch: SIGTERM; stopping every process"]
    worker_pids = [int(p.name) for p in pids.iterdir()]
    assert len(worker_pids) == 2
    for pid in worker_pids:  # no orphan left running
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
