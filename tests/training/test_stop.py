"""`StopSignals`, the one stop-signal handler of fit, the custom loop, the GAN trainer and
the tuner: the first signal asks, a second of the same kind stops at once."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tfkit.training.stop import StopSignals

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import signal
from tfkit.training.stop import StopSignals

with StopSignals() as stop:
    signal.raise_signal(signal.SIGINT)  # Ctrl-C: a request
    signal.raise_signal(signal.SIGTERM)  # then SIGTERM (tfkit launch passes Ctrl-C on)
    print("requested", int(stop.requested), flush=True)
    signal.raise_signal(signal.SIGTERM)  # a second SIGTERM: the process ends here
    print("went on after a second SIGTERM", flush=True)
"""


def test_a_second_sigterm_ends_the_process_and_another_kind_only_replaces_the_request():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300
    )
    # killed by SIGTERM (a shell reports 128 + 15 = 143), after one request line
    assert (proc.returncode, proc.stdout) == (-signal.SIGTERM, "requested 15\n"), proc.stderr


def test_a_second_ctrl_c_raises_keyboard_interrupt_and_the_handlers_come_back():
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    requested = []
    with pytest.raises(KeyboardInterrupt):
        with StopSignals() as stop:
            assert stop.requested is None
            signal.raise_signal(signal.SIGINT)
            requested.append(stop.requested)
            signal.raise_signal(signal.SIGINT)
    assert requested == [signal.SIGINT]
    assert {signum: signal.getsignal(signum) for signum in before} == before
    # entering again starts without a request
    with StopSignals() as stop:
        assert stop.requested is None
