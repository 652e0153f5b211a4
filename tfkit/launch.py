"""`tfkit launch`: run a tfkit command as N local workers of a multi-worker cluster.

Each worker is a `python -m tfkit.cli COMMAND...` process with its own TF_CONFIG naming
every worker on 127.0.0.1; their output is streamed with a `[worker i]` prefix. If any
worker fails, the others are stopped and the launcher exits with that worker's status, or,
with `--max-restarts N`, starts them all again to continue the run from its last checkpoint.
No TensorFlow is imported here.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tfkit.errors import UserError


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports that are free on 127.0.0.1 right now."""
    sockets, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in sockets:
            s.close()
    return ports


def tf_configs(ports: list[int]) -> list[str]:
    """The TF_CONFIG of each worker of a localhost cluster on `ports` (worker 0 is chief)."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    return [
        json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        for i in range(len(ports))
    ]


def _with_run_dir(command: list[str]) -> list[str]:
    """For `train CONFIG` (or `gan train CONFIG`) without --run-dir/--resume, add one run
    dir every worker shares."""
    if not command or (command[0] != "train" and command[:2] != ["gan", "train"]):
        return command
    if any(
        a in ("--run-dir", "--resume", "--dry-run") or a.startswith("--run-dir=") for a in command
    ):
        return command
    from tfkit.config import load_config
    from tfkit.runs import next_run_dir

    # the train arguments that name the run (a parser of their own: the CLI's is the CLI's)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("config", nargs="?")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--runs-root", default="runs")
    args, _ = parser.parse_known_args(command[2:] if command[0] == "gan" else command[1:])
    if not args.config:
        return command
    config = load_config(args.config, args.overrides)
    return [*command, "--run-dir", str(next_run_dir(args.runs_root, config.name))]


def _epoch_lines(command: list[str]) -> list[str]:
    """`train` prints one line per epoch in each worker (`train.verbose=2`) unless the
    command sets `train.verbose`: a progress bar in a pipe is a line per update."""
    if not command or command[0] != "train":
        return command
    if any("train.verbose" in a for a in command):
        return command
    return [*command, "--set", "train.verbose=2"]


def _stream(name: str, proc: subprocess.Popen, lock: threading.Lock) -> None:
    for line in proc.stdout:  # type: ignore[union-attr]
        with lock:
            sys.stdout.write(f"[{name}] {line}")
            sys.stdout.flush()


def _stop(procs: list[subprocess.Popen], grace_s: float = 10.0) -> None:
    """SIGTERM to every live process (each saves and exits), SIGKILL after `grace_s`."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class _Terminated(BaseException):
    """SIGTERM reached the supervisor (raised in the main thread by its handler)."""


def _raise_terminated(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the stop
    raise _Terminated()


def _status_text(status: int) -> str:
    """`-9` -> 'killed by SIGKILL', `75` -> 'status 75'."""
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"status {status}"


def supervise(
    processes: list[tuple[str, list[str], dict[str, str]]],
    *,
    timeout: float = 0,
    grace_s: float = 30.0,
    failures: list[tuple[str, int]] | None = None,
) -> int:
    """Run local processes together: the one supervisor of `tfkit launch` (training, GAN)
    and of a distributed search (`--tune-workers`).

    Each process's output (stdout and stderr) is streamed to stdout line by line with a
    `[name]` prefix; the supervisor's own problem lines go to stderr. When one process
    fails, on `timeout`, on Ctrl-C or on SIGTERM to the supervisor, every other process
    gets SIGTERM (they save, print their `stopped at ...` line and exit; their output is
    still streamed) and SIGKILL after `grace_s` seconds.

    Args:
        processes: `(name, argv, environment)` of each process.
        timeout: stop every process after this many seconds (0: no limit).
        grace_s: seconds between SIGTERM and SIGKILL.
        failures: if given, receives `(name, status)` of the process whose failure stopped
            the others (`status` < 0: killed by that signal).

    Returns:
        0 when every process succeeded, else the first failing status (124 on timeout,
        130 on Ctrl-C, 143 on SIGTERM).
    """
    lock = threading.Lock()
    procs: list[subprocess.Popen] = []
    threads = []
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main else None
    try:
        for name, argv, env in processes:
            proc = subprocess.Popen(
                argv,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
            procs.append(proc)
            thread = threading.Thread(target=_stream, args=(name, proc, lock), daemon=True)
            thread.start()
            threads.append(thread)
        names = [name for name, _, _ in processes]
        start = time.monotonic()
        status = 0
        while True:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i, status = failed[0]
                if failures is not None:
                    failures.append((names[i], status))
                print(
                    f"tfkit launch: {names[i]} exited ({_status_text(status)}); "
                    "stopping the others",
                    file=sys.stderr,
                    flush=True,
                )
                break
            if all(c == 0 for c in codes):
                break
            if timeout and time.monotonic() - start > timeout:
                print(
                    f"tfkit launch: --timeout {timeout:g} s reached; stopping every process",
                    file=sys.stderr,
                    flush=True,
                )
                status = 124
                break
            time.sleep(0.1)
    except (KeyboardInterrupt, _Terminated) as err:
        status = 130 if isinstance(err, KeyboardInterrupt) else 143
        what = "Ctrl-C" if status == 130 else "SIGTERM"
        print(f"tfkit launch: {what}; stopping every process", file=sys.stderr, flush=True)
    finally:
        try:
            if in_main:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            _stop(procs, grace_s)
            for t in threads:
                t.join(timeout=5)
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous)
    return status if status > 0 else (1 if status else 0)


def _training_run(command: list[str]) -> tuple[list[str], str | None]:
    """`(["train"] or ["gan", "train"], RUN)` of a training command with `--run-dir RUN` or
    `--resume RUN`; `([], None)` for other commands."""
    prefix = command[:1] if command[:1] == ["train"] else command[:2]
    if prefix not in (["train"], ["gan", "train"]):
        return [], None
    rest = command[len(prefix) :]
    for i, arg in enumerate(rest):
        for flag in ("--run-dir", "--resume"):
            if arg == flag and i + 1 < len(rest):
                return prefix, rest[i + 1]
            if arg.startswith(flag + "="):
                return prefix, arg.split("=", 1)[1]
    return prefix, None


def resume_command(command: list[str]) -> list[str]:
    """The command that continues `command`'s run from its last checkpoint: `train
    --resume RUN` (or `gan train --resume RUN`) with the same `--set` overrides (a resume
    accepts those whose values it already has); `command` itself when its run directory
    does not exist yet (nothing to resume) or it is not a training command."""
    prefix, run = _training_run(command)
    if run is None or not Path(run).is_dir():
        return command
    sets: list[str] = []
    rest = command[len(prefix) :]
    for i, arg in enumerate(rest):
        if arg == "--set" and i + 1 < len(rest):
            sets += ["--set", rest[i + 1]]
        elif arg.startswith("--set="):
            sets.append(arg)
    return [*prefix, "--resume", run, *sets]


# a worker that exits 2 met a user error (a bad config or file): a restart fails the same way
_NOT_RESTARTED = (2,)


def launch(
    command: list[str],
    workers: int = 2,
    base_port: int = 0,
    timeout: float = 0,
    max_restarts: int = 0,
) -> int:
    """Run `tfkit COMMAND...` as `workers` local processes of one cluster.

    When a worker fails (it died, or it lost a peer), every worker is stopped; with
    `max_restarts` the whole cluster is then started again, continuing the run from its
    last checkpoint (`--resume RUN`), as `torchrun --max-restarts` does. A worker's user
    error (status 2) is not restarted.

    Args:
        command: the tfkit command and its arguments, e.g. `["train", "cfg.yaml"]`.
        workers: number of worker processes (worker 0 is the chief).
        base_port: first port (worker i listens on base_port + i); 0 picks free ports.
        timeout: stop every worker after this many seconds (0: no limit; per attempt).
        max_restarts: how many times the cluster is restarted after a worker fails.

    Returns:
        0 when every worker succeeded, else the first failing worker's exit status
        (124 on timeout).
    """
    if workers < 1:
        raise UserError(f"--workers must be >= 1. Received: --workers {workers}")
    if max_restarts < 0:
        raise UserError(
            f"--max-restarts must be >= 0 (0: no restart). Received: --max-restarts {max_restarts}"
        )
    if not command:
        raise UserError(
            "tfkit launch needs a command after `--`, e.g. tfkit launch --workers 2 -- train cfg.yaml"
        )
    if command[0] == "launch":
        raise UserError("tfkit launch cannot launch `launch`")
    command = _epoch_lines(_with_run_dir(command))
    if base_port and base_port + workers - 1 > 65535:
        raise UserError(
            f"--base-port {base_port} with --workers {workers} needs ports up to "
            f"{base_port + workers - 1}, beyond 65535"
        )
    root = str(Path(__file__).resolve().parent.parent)
    restarts = 0
    while True:
        if base_port and not restarts:
            ports = list(range(base_port, base_port + workers))
        else:  # a restart takes fresh ports: the old ones may still be held by the OS
            ports = free_ports(workers)
        print(
            f"tfkit launch: {workers} workers on 127.0.0.1:{','.join(map(str, ports))}: "
            f"tfkit {' '.join(command)}",
            flush=True,
        )
        processes = []
        for i, conf in enumerate(tf_configs(ports)):
            env = {**os.environ, "TF_CONFIG": conf, "PYTHONUNBUFFERED": "1"}
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
            processes.append((f"worker {i}", [sys.executable, "-m", "tfkit.cli", *command], env))
        failures: list[tuple[str, int]] = []
        status = supervise(processes, timeout=timeout, failures=failures)
        if status == 0:
            print(f"tfkit launch: all {workers} workers finished", flush=True)
            return 0
        if not failures or failures[0][1] in _NOT_RESTARTED:
            return status  # timeout, Ctrl-C or SIGTERM to the launcher, or a user error
        command = resume_command(command)
        flags = f"--workers {workers}" + (f" --timeout {timeout:g}" if timeout else "")
        if restarts >= max_restarts:
            if _training_run(command)[1] is not None and "--resume" in command:
                print(
                    f"tfkit launch: continue with: tfkit launch {flags} -- {' '.join(command)}",
                    file=sys.stderr,
                    flush=True,
                )
            return status
        restarts += 1
        name, code = failures[0]
        print(
            f"tfkit launch: {name} failed ({_status_text(code)}); restarting all {workers} "
            f"workers from the last checkpoint (restart {restarts} of {max_restarts})",
            file=sys.stderr,
            flush=True,
        )


def launch_tune(
    workers: int, rest: list[str], *, port: int = 0, timeout: float = 0, env: dict | None = None
) -> int:
    """Run `tfkit <rest>` (a `tune` command) as a chief plus `workers` workers on 127.0.0.1.

    Args:
        workers: number of worker processes (>= 1).
        rest: the tfkit command after `--`, starting with `tune`.
        port: the oracle's port (0 picks a free one).
        timeout: stop every process after this many seconds (0: no limit).
        env: extra environment variables for every process.

    Returns:
        0 when every process succeeded, else the first non-zero exit status (124 on timeout).

    Raises:
        UserError: fewer than one worker, or the command is not `tune`.
    """
    rest = [a for a in rest if a != "--"] if rest and rest[0] == "--" else list(rest)
    if workers < 1:
        raise UserError(f"--tune-workers must be >= 1. Received: --tune-workers {workers}")
    if not rest or rest[0] != "tune":
        raise UserError(
            "--tune-workers runs a `tune` command: tfkit launch --tune-workers 2 -- tune CONFIG. "
            f"Received: {' '.join(rest) or '(nothing)'}"
        )
    if any(a in ("--role", "--oracle", "--tuner-id") for a in rest):
        raise UserError("--tune-workers sets --role, --oracle and --tuner-id itself; remove them")
    oracle = f"127.0.0.1:{port or free_ports(1)[0]}"
    base = [sys.executable, "-m", "tfkit.cli", *rest, "--oracle", oracle]
    roles = [("chief", ["--role", "chief"])] + [
        (f"worker{i}", ["--role", "worker", "--tuner-id", f"worker{i}"]) for i in range(workers)
    ]
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    print(f"tfkit launch: chief + {workers} tune workers, oracle at {oracle}", flush=True)
    return supervise([(name, base + extra, child_env) for name, extra in roles], timeout=timeout)


def launch_command(args: argparse.Namespace) -> int:
    """`tfkit launch --workers N [--base-port P] [--timeout S] -- COMMAND ...`.

    With `--tune-workers N` it runs a distributed Keras Tuner search instead: a `tune` chief
    plus N tune workers on 127.0.0.1.
    """
    rest = list(args.rest)
    if rest and rest[0] == "--":
        rest = rest[1:]
    if getattr(args, "tune_workers", 0):
        return launch_tune(
            args.tune_workers, rest, port=args.base_port or 0, timeout=args.timeout or 0
        )
    return launch(
        rest,
        workers=args.workers,
        base_port=args.base_port,
        timeout=args.timeout,
        max_restarts=getattr(args, "max_restarts", 0) or 0,
    )
