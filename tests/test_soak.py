"""The soak tier: each long-lived mode runs for minutes, not seconds, and its threads, open
files and resident memory stay flat.

Property: once the run is under way (its warm-up done: start-up, tracing, the first
epochs, ticks or trials), the last third of `TFKIT_SOAK_SECONDS` (default 120) grows by at
most `MAX_THREADS` threads, `MAX_FDS` open files and `MAX_RSS` of the resident memory (each
level the median over a tenth of the run, at the start of that third and at its end), in
every process of the run (launcher, workers, tuner chief and workers). A thread leak of a
few threads a step, as multi-worker collectives with a per-op timeout had, grows by
thousands.

The clock starts when the run shows it is under way (a line in its output, or trials on
disk), so a slow start-up on a busy machine does not count as growth; the run then goes on
for `TFKIT_SOAK_SECONDS` and gets SIGTERM (which saves and exits 143, as designed). With `TFKIT_SOAK_REPORT=FILE` each case appends one JSON line
with its figures (threads, fds, RSS at start, middle and end of every process).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
SECONDS = float(os.environ.get("TFKIT_SOAK_SECONDS", "120"))
EVERY = 2.0
MAX_THREADS = 5
MAX_FDS = 5
MAX_RSS = 0.05

pytestmark = pytest.mark.soak


def _sample(procs: list[psutil.Process]) -> dict[int, tuple[int, int, float]]:
    """pid -> (threads, open fds, RSS in MiB) of `procs` and all their descendants."""
    found: dict[int, tuple[int, int, float]] = {}
    everyone = list(procs)
    for p in procs:
        try:
            everyone += p.children(recursive=True)
        except psutil.NoSuchProcess:
            pass
    for p in everyone:
        try:
            with p.oneshot():
                found[p.pid] = (p.num_threads(), p.num_fds(), p.memory_info().rss / 2**20)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def _median_level(points, start: float, stop: float) -> tuple[float, float, float]:
    """Median threads, fds and RSS of the samples taken in [start, stop)."""
    window = [v for t, v in points if start <= t < stop] or [points[-1][1]]
    return tuple(float(statistics.median(v[i] for v in window)) for i in range(3))


def soak(
    name: str, procs: list[subprocess.Popen], ready, seconds: float = SECONDS, wait_s=900
) -> dict:
    """Once `ready()` holds (the run is under way), sample `procs` (and their children)
    every `EVERY` s for `seconds`, then SIGTERM them and wait. Returns the case's figures;
    fails when a process ended early or when the last third grew beyond the bounds."""
    handles = [psutil.Process(p.pid) for p in procs]
    series: dict[int, list[tuple[float, tuple[int, int, float]]]] = {}
    deadline = time.monotonic() + wait_s
    try:
        while not ready():
            ended = [p.returncode for p in procs if p.poll() is not None]
            assert not ended, f"{name}: a process ended before the run was under way: {ended}"
            assert time.monotonic() < deadline, f"{name}: not under way after {wait_s} s"
            time.sleep(1)
        start = time.monotonic()
        while (now := time.monotonic() - start) < seconds:
            ended = [p.returncode for p in procs if p.poll() is not None]
            assert not ended, f"{name}: a process ended after {now:.0f} s with {ended}"
            for pid, values in _sample(handles).items():
                series.setdefault(pid, []).append((now, values))
            time.sleep(EVERY)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = []
        for p in procs:
            try:
                codes.append(p.wait(timeout=120))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait())
    assert all(c in (0, 143) for c in codes), f"{name}: exit codes {codes}"

    figures, problems = [], []
    for pid, points in series.items():
        times = [t for t, _ in points]
        if times[0] > seconds / 3 or times[-1] < seconds * 0.9:
            continue  # a short-lived helper process, not one of the run's own
        # the level at the start of the last third and at the end, each the median of a
        # tenth of the run: a thread pool that briefly grows at an epoch end or a
        # checkpoint is no leak; a leak raises the level itself
        base = _median_level(points, seconds * 2 / 3, seconds * (2 / 3 + 0.1))
        level = _median_level(points, seconds * 0.9, seconds + EVERY)
        first, middle, end = points[0][1], points[len(points) // 2][1], points[-1][1]
        growth = (level[0] - base[0], level[1] - base[1], level[2] / base[2] - 1)
        figures.append(
            {
                "pid": pid,
                "threads": [first[0], middle[0], end[0]],
                "fds": [first[1], middle[1], end[1]],
                "rss_mib": [round(first[2]), round(middle[2]), round(end[2])],
                "last_third_growth": [growth[0], growth[1], round(growth[2], 4)],
            }
        )
        if growth[0] > MAX_THREADS or growth[1] > MAX_FDS or growth[2] > MAX_RSS:
            problems.append(f"pid {pid}: last third grew by {growth} ({figures[-1]})")
    report = {"case": name, "seconds": seconds, "processes": figures}
    print(json.dumps(report))
    if os.environ.get("TFKIT_SOAK_REPORT"):
        with open(os.environ["TFKIT_SOAK_REPORT"], "a") as f:
            f.write(json.dumps(report) + "\n")
    assert figures, f"{name}: no process lived through the run"
    assert not problems, f"{name}: " + "; ".join(problems)
    return report


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    log = open(cwd / "out.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "tfkit.cli", *args],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _shows(path: Path, text: str):
    """A `ready` condition: `text` is in file `path`."""
    return lambda: path.is_file() and text in path.read_text(errors="replace")


def _trials(folder: Path, count: int):
    """A `ready` condition: `count` tuner trials exist under `folder`."""
    return lambda: len(list(folder.rglob("trial.json"))) >= count


DIGITS = [str(ROOT / "configs" / "digits_cnn.yaml"), "--set", "train.epochs=100000"]
DIGITS += ["--set", "train.verbose=2"]
GAN = ["gan", "train", str(ROOT / "configs" / "stylegan_shapes16.yaml")]
GAN += ["--set", "gan.kimg=100000", "--set", "gan.tick_kimg=0.5"]
TUNE = ["tune", str(ROOT / "configs" / "tune_digits.yaml"), "--set", "tune.max_trials=10000"]
TUNE += ["--set", "train.epochs=1"]


@pytest.mark.parametrize(
    "name,args,ready",
    [
        ("fit", ["train", *DIGITS], "Epoch 3/"),
        ("custom_loop", ["train", *DIGITS, "--set", "train.loop=custom"], "Epoch 3/"),
        (
            "mirrored_logical_cpus",
            ["train", *DIGITS, "--set", "runtime.logical_cpus=2", "--set", "runtime.strategy=mirrored"],
            "Epoch 3/",
        ),
        ("launch_train", ["launch", "--workers", "2", "--", "train", *DIGITS], "Epoch 3/"),
        ("launch_gan_train", ["launch", "--workers", "2", "--", *GAN], "tick 2 "),
        ("launch_tune", ["launch", "--tune-workers", "2", "--", *TUNE], 4),
    ],
)  # fmt: skip
def test_long_run_keeps_threads_files_and_memory_flat(tmp_path, name, args, ready):
    proc = _start(args, tmp_path)
    if isinstance(ready, int):
        soak(name, [proc], _trials(tmp_path, ready))
    else:
        soak(name, [proc], _shows(tmp_path / "out.log", ready))


def test_slurm_job_keeps_threads_files_and_memory_flat(tmp_path):
    from helpers import start_cluster_tasks

    run = tmp_path / "run"
    procs, logs, _ = start_cluster_tasks(
        ["train", *DIGITS, "--run-dir", str(run)], tmp_path / "logs", kind="slurm"
    )
    soak("slurm_train", procs, _shows(logs[0], "Epoch 3/"))
