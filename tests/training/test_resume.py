"""`tfkit train --resume`: a run killed with SIGKILL continues where its backup left off."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 6
SMALL = [
    f"train.epochs={EPOCHS}",
    "model.filters=[8,16]",
    "model.dense_units=[32]",
    "train.tensorboard=false",
]


def _tfkit(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    return subprocess.Popen(
        [sys.executable, "-m", "tfkit.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def _epochs(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines() if line.strip()]


def test_killed_run_resumes_to_the_configured_epoch(tmp_path):
    run_dir = tmp_path / "run"
    sets = [arg for s in SMALL for arg in ("--set", s)]
    proc = _tfkit("train", "configs/digits_cnn.yaml", "--run-dir", str(run_dir), *sets)
    deadline = time.time() + 240
    while len(_epochs(run_dir)) < 2:
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "training did not reach epoch 2"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _epochs(run_dir)
    assert 2 <= len(killed_at) < EPOCHS
    # what a crash leaves behind: the config, the last checkpoint and the backup
    assert (run_dir / "config.yaml").exists()
    assert (run_dir / "checkpoints" / "last.keras").exists()
    assert (run_dir / "backup").exists()
    assert not (run_dir / "metrics.json").exists()

    resumed = _tfkit("train", "--resume", str(run_dir))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    epochs = _epochs(run_dir)
    after = epochs[len(killed_at) :]
    assert after[0] > killed_at[-1] - 1 and after[0] > 1, epochs  # no restart from epoch 1
    assert after[-1] == EPOCHS
    result = json.loads((run_dir / "metrics.json").read_text())
    assert result["epochs"] == EPOCHS
    assert result["epochs_this_session"] == EPOCHS - after[0] + 1
    losses = [
        json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert losses[len(killed_at)] < losses[0], losses  # weights and optimizer state restored
    assert losses[-1] < losses[0]
    assert not (run_dir / "backup").exists()

    # a finished run cannot be resumed again
    again = _tfkit("train", "--resume", str(run_dir))
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 2 and "already finished" in out
