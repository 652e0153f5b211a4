"""`tfkit launch --tune-workers N -- tune CONFIG ...`: a distributed search on this machine.

Starts one chief (`--role chief`, serving Keras Tuner's oracle on 127.0.0.1) and N workers
(`--role worker --tuner-id workerI`), each a `tfkit` process, prints their output line by
line with a `[chief]`/`[workerI]` prefix, and returns the first non-zero exit status (0 when
all succeed). No TensorFlow is imported here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

from tfkit.errors import UserError


def parse_oracle(address: str) -> tuple[str, int]:
    """Split `HOST:PORT` (`--oracle`), or raise a `UserError` naming the flag."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--oracle expects HOST:PORT (e.g. 127.0.0.1:8000). Received: {address!r}")
    return host, int(port)


def set_distributed_env(role: str, oracle: str, tuner_id: str | None = None) -> str:
    """Set Keras Tuner's KERASTUNER_* variables for a chief or worker; return the tuner id."""
    if role not in ("chief", "worker"):
        raise UserError(f"--role must be chief or worker. Received: {role!r}")
    host, port = parse_oracle(oracle)
    if role == "chief":
        tuner_id = "chief"
    else:
        tuner_id = tuner_id or f"worker{os.getpid()}"
        if "chief" in tuner_id:
            raise UserError(
                f"--tuner-id of a worker must not contain 'chief'. Received: {tuner_id!r}"
            )
    os.environ["KERASTUNER_TUNER_ID"] = tuner_id
    os.environ["KERASTUNER_ORACLE_IP"] = host
    os.environ["KERASTUNER_ORACLE_PORT"] = str(port)
    return tuner_id


def wait_for_oracle(oracle: str, timeout: float) -> None:
    """Wait until the chief's oracle answers at `oracle`, or raise a clear `UserError`."""
    import grpc

    channel = grpc.insecure_channel(oracle)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise UserError(
            f"Could not reach the tuning oracle at {oracle} within {timeout:g}s. Start the "
            f"chief first (`tfkit tune CONFIG --role chief --oracle {oracle}`), check the "
            "host and port, or raise --oracle-timeout"
        ) from None
    finally:
        channel.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pump(prefix: str, stream, lock: threading.Lock) -> None:
    for line in iter(stream.readline, ""):
        with lock:
            sys.stdout.write(f"[{prefix}] {line}")
            sys.stdout.flush()
    stream.close()


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
    oracle = f"127.0.0.1:{port or free_port()}"
    base = [sys.executable, "-m", "tfkit.cli", *rest, "--oracle", oracle]
    roles = [("chief", ["--role", "chief"])] + [
        (f"worker{i}", ["--role", "worker", "--tuner-id", f"worker{i}"]) for i in range(workers)
    ]
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    lock = threading.Lock()
    procs, pumps = [], []
    print(f"tfkit launch: chief + {workers} tune workers, oracle at {oracle}", flush=True)
    for name, extra in roles:
        proc = subprocess.Popen(
            base + extra,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=child_env,
        )
        procs.append((name, proc))
        pump = threading.Thread(target=_pump, args=(name, proc.stdout, lock), daemon=True)
        pump.start()
        pumps.append(pump)
    deadline = time.monotonic() + timeout if timeout else None
    status = 0
    try:
        while any(p.poll() is None for _, p in procs):
            if deadline and time.monotonic() > deadline:
                print(f"tfkit launch: timeout after {timeout:g}s; stopping", flush=True)
                status = 124
                break
            failed = [(n, p.returncode) for n, p in procs if p.returncode not in (None, 0)]
            if failed:
                name, code = failed[0]
                print(f"tfkit launch: {name} exited with status {code}; stopping", flush=True)
                status = code
                break
            time.sleep(0.2)
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for _, proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pump in pumps:
            pump.join(timeout=5)
    if status == 0:
        codes = [(n, p.returncode) for n, p in procs if p.returncode != 0]
        if codes:
            status = codes[0][1]
    return status
