"""A distributed search's roles: the chief serves Keras Tuner's oracle, workers reach it.

`tfkit launch --tune-workers N` (in `tfkit.launch`, the one process supervisor) starts the
chief and the workers on this machine. No TensorFlow is imported here.
"""

from __future__ import annotations

import os

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
