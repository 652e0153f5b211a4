"""A lost worker is a handled event: the survivors print one line naming it and the resume
command and exit 75; `tfkit launch --max-restarts N` restarts the cluster, which continues
from the last checkpoint and ends equal to the uninterrupted run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tfkit import launch as launch_mod
from tfkit.config import RuntimeConfig
from tfkit.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


# ---- which errors mean a lost peer ----------------------------------------------------


def _tf_config(monkeypatch, index: int, workers: int = 2) -> None:
    cluster = {"worker": [f"127.0.0.1:{5000 + i}" for i in range(workers)]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))  # fmt: skip


RESET = (
    "Collective ops is aborted by: recvmsg:Connection reset by peer\n"
    "Additional GRPC error information from remote target /job:worker/replica:0/task:1 "
    "while calling /tensorflow.WorkerService/RecvBuf"
)


@pytest.mark.parametrize(
    "kind,text,me,lost,reason",
    [
        ("Unavailable", RESET, 0, "worker 1", "connection reset by peer"),
        ("Unavailable", RESET.replace("task:1", "task:0"), 1, "worker 0", "connection reset"),
        ("Internal", "/job:worker/replica:0/task:1 heartbeat timeout", 0, "worker 1", "heartbeat"),
        ("Aborted", "Collective ops is aborted by: something", 0, "a peer worker", "Aborted"),
    ],
)
def test_peer_errors_become_worker_lost(monkeypatch, kind, text, me, lost, reason):
    import tensorflow as tf

    from tfkit.distribute import lost_worker

    _tf_config(monkeypatch, me)
    err = lost_worker(getattr(tf.errors, f"{kind}Error")(None, None, text), RuntimeConfig())
    assert err is not None and err.lost == lost and reason in err.reason
    assert err.exit_code == 75
    err.resume_hint = "tfkit train --resume runs/x/00000"
    line = str(err)
    assert "\n" not in line
    assert line.startswith(f"lost {lost} (") and "`tfkit train --resume runs/x/00000`" in line


def test_other_errors_are_not_a_lost_worker(monkeypatch):
    import tensorflow as tf

    from tfkit.distribute import lost_worker

    _tf_config(monkeypatch, 0)
    # not a peer error type, or a peer error type without a sign of a peer
    assert lost_worker(tf.errors.InvalidArgumentError(None, None, RESET), RuntimeConfig()) is None
    assert (
        lost_worker(tf.errors.InternalError(None, None, "Blas GEMM failed"), RuntimeConfig())
        is None
    )
    assert lost_worker(ValueError(RESET), RuntimeConfig()) is None
    # the same error in a single-process run: no cluster, no lost worker
    monkeypatch.delenv("TF_CONFIG")
    assert lost_worker(tf.errors.UnavailableError(None, None, RESET), RuntimeConfig()) is None


# ---- the stderr filter -----------------------------------------------------------------

FILTERED = r"""
import os, sys
from tfkit.quiet import flush_stderr, hide_peer_loss_logs
hide_peer_loss_logs()
os.write(2, b"E0000 00:00:1796667462.007122   26680 ring_alg.cc:291] Aborting RingReduce with "
            b"UNAVAILABLE: recvmsg:Connection reset by peer\n"
            b"Additional GRPC error information from remote target /job:worker/replica:0/task:1\n"
            b":UNKNOWN:Error received from peer  {grpc_status:14}\n")
os.write(2, b"E0000 00:00:1796667462.1   26680 coordination_service_agent.cc:1] lost\n"
            b"/job:worker/replica:0/task:1\nThe tasks have crashed.\n")
os.write(2, b"E0000 00:00:1796667462.2   26680 cuda_driver.cc:9] a real error\nits detail\n")
print("tfkit train: error: lost worker 1", file=sys.stderr, flush=True)
print("a line of the user's own", file=sys.stderr, flush=True)
flush_stderr()
os._exit(0)
"""


def test_peer_loss_lines_are_dropped_and_everything_else_kept():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    proc = subprocess.run(
        [sys.executable, "-c", FILTERED], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0
    assert proc.stderr.splitlines() == [
        "E0000 00:00:1796667462.2   26680 cuda_driver.cc:9] a real error",
        "its detail",
        "tfkit train: error: lost worker 1",
        "a line of the user's own",
    ]
    # the user asked for TensorFlow's logs: nothing is dropped
    proc = subprocess.run(
        [sys.executable, "-c", FILTERED],
        capture_output=True,
        text=True,
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "0"},
        timeout=60,
    )
    assert "ring_alg.cc:291] Aborting RingReduce" in proc.stderr
    assert "The tasks have crashed." in proc.stderr


def test_stderr_written_just_before_a_normal_exit_is_not_lost():
    """The filter's reader is a daemon thread: an exit right after the last line (as the
    CLI's `stopped at ...` line before exit 143) must still show that line."""
    script = (
        "import sys\n"
        "from tfkit.quiet import hide_peer_loss_logs\n"
        "hide_peer_loss_logs()\n"
        "print('tfkit train: stopped at epoch 2', file=sys.stderr, flush=True)\n"
        "sys.exit(143)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    for _ in range(5):  # a race, when it exists, shows within a few runs
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
        )
        assert (proc.returncode, proc.stderr) == (143, "tfkit train: stopped at epoch 2\n")


# ---- tfkit launch --max-restarts (stand-in workers) ------------------------------------


def test_resume_command_continues_the_run(tmp_path):
    run = tmp_path / "runs" / "x" / "00000"
    command = ["train", "c.yaml", "--set", "train.epochs=5", "--run-dir", str(run), "--set=a.b=1"]
    assert launch_mod.resume_command(command) == command  # the run dir does not exist yet
    run.mkdir(parents=True)
    assert launch_mod.resume_command(command) == [
        "train", "--resume", str(run), "--set", "train.epochs=5", "--set=a.b=1",
    ]  # fmt: skip
    gan = ["gan", "train", "g.yaml", f"--run-dir={run}"]
    assert launch_mod.resume_command(gan) == ["gan", "train", "--resume", str(run)]
    resumed = ["train", "--resume", str(run)]
    assert launch_mod.resume_command(resumed) == resumed
    assert launch_mod.resume_command(["config", "show", "c.yaml"]) == ["config", "show", "c.yaml"]


# fails (as a killed process) the first time it runs as worker 1, then succeeds
FLAKY_WORKER = """#!{python}
import json, os, signal, sys, time
task = json.loads(os.environ["TF_CONFIG"])["task"]
marker = os.path.join(os.environ["FAKE_DIR"], "failed-once")
print("args", " ".join(sys.argv[3:]), flush=True)
if task["index"] == 1 and not os.path.exists(marker):
    open(marker, "w").close()
    os.kill(os.getpid(), signal.SIGKILL)
if os.environ.get("FAKE_MODE") == "always" and task["index"] == 1:
    sys.exit(int(os.environ.get("FAKE_STATUS", "1")))
time.sleep(0.5)
"""


@pytest.fixture
def flaky(tmp_path, monkeypatch):
    from helpers import install_fake_python

    install_fake_python(tmp_path, monkeypatch, FLAKY_WORKER, launch_mod)
    monkeypatch.setenv("FAKE_DIR", str(tmp_path))
    run = tmp_path / "run"
    run.mkdir()
    return ["train", "c.yaml", "--run-dir", str(run), "--set", "train.verbose=0"], run


def test_max_restarts_restarts_every_worker_with_resume(flaky, capsys):
    command, run = flaky
    assert launch_mod.launch(command, workers=2, max_restarts=1) == 0
    out, err = capsys.readouterr()
    assert "worker 1 exited (killed by SIGKILL); stopping the others" in err
    assert "restarting all 2 workers from the last checkpoint (restart 1 of 1)" in err
    resumed = f"args train --resume {run} --set train.verbose=0"
    assert out.count(f"] {resumed}") == 2  # both workers of the second attempt resume
    assert "all 2 workers finished" in out


def test_without_restarts_the_launcher_says_how_to_continue(flaky, capsys):
    command, run = flaky
    assert launch_mod.launch(command, workers=2) == 1
    err = capsys.readouterr().err
    assert (
        f"tfkit launch: continue with: tfkit launch --workers 2 -- train --resume {run} "
        "--set train.verbose=0"
    ) in err


@pytest.mark.parametrize("status,restarted", [(2, False), (75, True)])
def test_restarts_stop_at_the_limit_and_never_follow_a_user_error(
    flaky, capsys, monkeypatch, tmp_path, status, restarted
):
    command, _ = flaky
    (tmp_path / "failed-once").touch()  # no SIGKILL: worker 1 exits with `status` each time
    monkeypatch.setenv("FAKE_MODE", "always")
    monkeypatch.setenv("FAKE_STATUS", str(status))
    assert launch_mod.launch(command, workers=2, max_restarts=2) == status
    err = capsys.readouterr().err
    assert err.count("restarting all 2 workers") == (2 if restarted else 0)
    with pytest.raises(UserError, match="--max-restarts must be >= 0"):
        launch_mod.launch(command, workers=2, max_restarts=-1)


# ---- real workers: kill -9 of one of two workers mid-epoch -----------------------------

SMALL = [
    "--set", "data.source={kind: digits, layout: flat}",
    "--set", "data.split={train: 0.7, val: 0.1, test: 0.2, seed: 0}",
    "--set", "data.batch_size=32",
    "--set", "model={name: mlp, units: [64], batch_norm: true}",
    "--set", "train.epochs=5",
    "--set", "train.optimizer={name: adam, learning_rate: 0.003}",
    "--set", "train.tensorboard=false",
    "--set", "train.steps_per_loop=4",
]  # fmt: skip


def _launch(tmp_path, name: str, flags: list[str], kill: int | None = None):
    """`tfkit launch --workers 2 FLAGS -- train` of SMALL; with `kill`, SIGKILL that worker
    once the second epoch is under way. Returns (status, stdout, stderr, run dir)."""
    config = tmp_path / "digits.yaml"
    config.write_text("name: lost_worker\n")
    run = tmp_path / name
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "tfkit.cli", "launch", "--workers", "2", *flags, "--"]
    argv += ["train", str(config), *SMALL, "--run-dir", str(run)]
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen(argv, stdout=o, stderr=e, env=env, cwd=tmp_path)
    try:
        if kill is not None:
            deadline = time.monotonic() + 400
            while "Epoch 1/5" not in out.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
                time.sleep(0.2)
            time.sleep(0.5)  # into the second epoch
            workers = sorted(
                psutil.Process(proc.pid).children(),
                key=lambda p: json.loads(p.environ()["TF_CONFIG"])["task"]["index"],
            )
            os.kill(workers[kill].pid, signal.SIGKILL)
        status = proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    return status, out.read_text(), err.read_text(), run


def _checksums(text: str) -> dict[str, str]:
    return dict(re.findall(r"\[worker (\d)\] final weights checksum: ([\d.]+)", text))


@pytest.mark.property
def test_kill_one_worker_then_restart_equals_uninterrupted(tmp_path):
    status, out, err, run = _launch(tmp_path, "straight", [])
    assert status == 0, out[-3000:] + err
    straight = _checksums(out)
    assert set(straight) == {"0", "1"} and straight["0"] == straight["1"]
    result = json.loads((run / "metrics.json").read_text())

    status, out, err, run = _launch(tmp_path, "killed", ["--max-restarts", "1"], kill=1)
    assert status == 0, out[-3000:] + err
    assert "worker 1 exited (killed by SIGKILL)" in err
    assert "restarting all 2 workers from the last checkpoint (restart 1 of 1)" in err
    assert "resuming at epoch" in out  # it went on from a checkpoint, not from scratch
    assert _checksums(out) == straight  # weights: the uninterrupted run's, on both workers
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["steps"] == result["steps"] and resumed["epochs"] == result["epochs"]
    assert resumed["test"] == pytest.approx(result["test"], abs=1e-6)
    assert "Traceback" not in out + err


@pytest.mark.property
@pytest.mark.parametrize("killed", [0, 1])
def test_the_survivor_of_a_lost_worker_says_how_to_continue(tmp_path, killed):
    """No supervisor: the survivor notices the loss itself, prints one line and exits 75
    (it does not wait for the dead peer at TensorFlow's shutdown barrier)."""
    from helpers import start_local_workers, wait_for_text

    config = tmp_path / "digits.yaml"
    config.write_text("name: lost_worker\n")
    run = tmp_path / "run"
    args = ["train", str(config), *SMALL, "--set", "train.epochs=50", "--set", "train.verbose=2"]
    procs, logs = start_local_workers(
        [*args, "--run-dir", str(run)], tmp_path / "logs", env={"TF_CPP_MIN_LOG_LEVEL": "2"}
    )
    survivor = 1 - killed
    try:
        wait_for_text(logs[survivor], "Epoch 1/50", procs, timeout=400)
        deadline = time.monotonic() + 120  # the chief writes the epoch's checkpoint
        while not (kept := list((run / "checkpoints" / "loop").glob("ckpt-*.index"))):
            assert time.monotonic() < deadline and procs[0].poll() is None
            time.sleep(0.2)
        procs[killed].kill()
        assert procs[survivor].wait(timeout=120) == 75
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    out = logs[survivor].read_text()
    # how the loss shows depends on what the survivor was doing: a reset or refused
    # connection in a collective, or (at worst) the coordination service's heartbeat
    reason = "(connection reset by peer|connection refused|connection closed|its heartbeat stopped)"
    line = (
        f"tfkit train: error: lost worker {killed} \\({reason}\\); stopped, the run keeps its "
        f"last checkpoint; continue with `tfkit train --resume {re.escape(str(run))}` on every "
        "worker"
    )
    assert re.fullmatch(line, out.splitlines()[-1]), out[-2000:]
    assert "Traceback" not in out
    assert not re.search(r"^[IWEF]\d{4} ", out, re.M), out  # no C++ log line of the abort
    assert set(kept) <= set((run / "checkpoints" / "loop").glob("ckpt-*.index"))  # kept
    assert not (run / "failed.json").exists()
