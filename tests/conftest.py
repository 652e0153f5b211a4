"""Shared test set-up: quiet TensorFlow, 2 logical CPU devices for strategy tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402


def _split_cpu():
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
        )
    except RuntimeError:
        pass  # already initialised by an earlier import; the tests that need 2 check


def pytest_configure(config):
    """Give the test session 2 logical CPU devices before any test runs a TF op."""
    _split_cpu()


@pytest.fixture
def run_root(tmp_path):
    """A fresh root for run directories."""
    return tmp_path / "runs"


@pytest.fixture
def two_replicas():
    """The process-wide MirroredStrategy over the 2 logical CPUs (see tfkit.distribute.mirrored)."""
    import tensorflow as tf

    from tfkit.distribute import mirrored

    cpus = tf.config.list_logical_devices("CPU")
    assert len(cpus) >= 2, "pytest_configure should have split the CPU into 2 logical devices"
    return mirrored(("CPU:0", "CPU:1"))
