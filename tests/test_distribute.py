"""Strategies from the runtime config, TF_CONFIG validation, batch arithmetic, chief-only
writing, and an unreachable peer failing within runtime.collective_timeout_s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from tfkit import distribute
from tfkit.config import RuntimeConfig
from tfkit.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWO_WORKERS = {
    "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
    "task": {"type": "worker", "index": 1},
}


@pytest.fixture
def no_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)


def test_strategies_by_name(no_tf_config):
    assert distribute.strategy(RuntimeConfig(strategy="default")).num_replicas_in_sync == 1
    assert distribute.strategy(RuntimeConfig(strategy="auto")).num_replicas_in_sync == 1  # no GPU
    one = distribute.strategy(RuntimeConfig(strategy="one_device"))
    assert isinstance(one, tf.distribute.OneDeviceStrategy)
    if len(tf.config.list_logical_devices("CPU")) >= 2:
        mirrored = distribute.strategy(RuntimeConfig(strategy="mirrored"))
        assert mirrored.num_replicas_in_sync == 2  # the logical CPUs of conftest
        picked = distribute.strategy(RuntimeConfig(strategy="mirrored", devices=["/cpu:1"]))
        assert picked.num_replicas_in_sync == 1


def test_unknown_device_lists_the_available_ones(no_tf_config):
    with pytest.raises(UserError, match=r"unknown device '/gpu:7'. Available: .*CPU:0"):
        distribute.strategy(RuntimeConfig(strategy="one_device", devices=["/gpu:7"]))


def test_global_batch_check():
    class Fake:
        num_replicas_in_sync = 4

    assert distribute.global_batch_check(32, Fake()) == 8
    with pytest.raises(
        UserError,
        match=r"`data.batch_size` \(30\) must be divisible by the number of replicas \(4\)",
    ):
        distribute.global_batch_check(30, Fake())


def test_setup_runtime_seeds_and_refuses_a_different_cpu_split():
    distribute.setup_runtime(RuntimeConfig(seed=3))
    a = tf.random.uniform([3]).numpy()
    distribute.setup_runtime(RuntimeConfig(seed=3))
    assert (a == tf.random.uniform([3]).numpy()).all()
    current = len(tf.config.list_logical_devices("CPU"))
    with pytest.raises(
        UserError, match=rf"`runtime.logical_cpus` \(7\) cannot be applied.*{current} logical"
    ):
        distribute.setup_runtime(RuntimeConfig(logical_cpus=7))


@pytest.mark.parametrize(
    "text,native",
    [
        ("processor\t: 0\nflags\t\t: fpu avx2 fma avx512f avx512_bf16 amx_tile\n", True),
        ("flags\t\t: fpu avx2 amx_bf16 amx_tile\n", True),
        ("processor\t: 0\nflags\t\t: fpu avx2 fma\nbugs\t\t: avx512_bf16\n", False),
        ("processor\t: 0\nFeatures\t: fp asimd bf16\n", None),  # ARM: no flags line
        (None, None),  # no such file
    ],
)
def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path, text, native):
    path = tmp_path / "cpuinfo"
    if text is not None:
        path.write_text(text)
    assert distribute.cpu_has_native_bfloat16(str(path)) is native


@pytest.mark.parametrize("native,noted", [(False, True), (True, False), (None, False)])
def test_emulated_bfloat16_is_noted_once_on_stdout(monkeypatch, capsys, native, noted):
    """mixed_bfloat16 on a CPU without native bfloat16 trains, with one line saying it is
    emulated (several times slower than float32); float32 is never noted, stderr stays
    empty (it is for errors), and a dry run (stdout is the resolved config) says nothing."""
    import keras

    monkeypatch.setattr(distribute, "cpu_has_native_bfloat16", lambda: native)
    try:
        distribute.setup_runtime(RuntimeConfig(mixed_precision="mixed_bfloat16"))
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        out, err = capsys.readouterr()
        assert err == "" and out.count("\n") == (1 if noted else 0), out
        assert ("mixed_bfloat16 on a CPU without native bfloat16" in out) is noted
        distribute.setup_runtime(RuntimeConfig(mixed_precision="mixed_bfloat16"), quiet=True)
        assert capsys.readouterr() == ("", "")
        distribute.setup_runtime(RuntimeConfig(mixed_precision="float32"))
        assert capsys.readouterr() == ("", "")
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(
    "text,field",
    [
        ("{not json", "not valid JSON"),
        ('{"task": {"type": "worker", "index": 0}}', "field `cluster`"),
        (
            '{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}',
            r"`cluster.worker\[0\]` must be 'host:port'",
        ),
        (
            '{"cluster": {"workers": ["a:1"]}, "task": {"type": "worker", "index": 0}}',
            r"`cluster.workers`: unknown job",
        ),
        ('{"cluster": {"worker": ["a:1"]}}', "field `task`"),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}',
            r"`task.type`.*Received: 'chief'",
        ),
        (
            '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
            r"`task.index` must be an integer in \[0, 2\)",
        ),
    ],
)
def test_malformed_tf_config_names_the_field(monkeypatch, text, field):
    monkeypatch.setenv("TF_CONFIG", text)
    with pytest.raises(UserError, match=field):
        distribute.strategy(RuntimeConfig(strategy="multi_worker"))


def test_chief_and_worker_dirs(monkeypatch, tmp_path):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.is_chief()
    with distribute.worker_dir(tmp_path) as out:
        assert out == tmp_path
    monkeypatch.setenv("TF_CONFIG", json.dumps(TWO_WORKERS))
    assert not distribute.is_chief()
    assert distribute.wants_multi_worker(RuntimeConfig())  # auto + 2 workers
    with distribute.worker_dir(tmp_path) as out:
        assert out != tmp_path and out.exists()
        (out / "file").write_text("x")
    assert not out.exists()  # removed at the end
    assert list(tmp_path.iterdir()) == []


UNREACHABLE = """
import json, os, sys
os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [sys.argv[1], sys.argv[2]]},
                                      "task": {"type": "worker", "index": 0}})
from tfkit import distribute
from tfkit.config import RuntimeConfig
distribute.strategy(RuntimeConfig(strategy="multi_worker", collective_timeout_s=3))
print("unexpected: strategy created")
"""


def test_unreachable_worker_fails_within_the_timeout(tmp_path):
    from tfkit.launch import free_ports

    ports = free_ports(2)
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", UNREACHABLE, *(f"127.0.0.1:{p}" for p in ports)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode != 0
    assert "could not reach the other workers" in proc.stderr
    assert "collective_timeout_s=3 s" in proc.stderr
    assert "unexpected" not in proc.stdout
    assert time.monotonic() - start < 90  # TF start-up plus the 3 s timeout, never a hang


def test_mirrored_strategy_is_reused_so_successive_models_train():
    """A new MirroredStrategy per model made the second model's all-reduce fail
    ("Shape mismatch in the collective instance"); tfkit reuses one per device set."""
    import keras
    import numpy as np

    from tfkit.config import RuntimeConfig
    from tfkit.distribute import strategy

    cfg = RuntimeConfig(strategy="mirrored", devices=["/cpu:0", "/cpu:1"])
    first, second = strategy(cfg), strategy(cfg)
    assert first is second and first.num_replicas_in_sync == 2
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    for units in (7, 13):  # different variable shapes in the collectives
        with strategy(cfg).scope():
            model = keras.Sequential(
                [keras.Input((6,)), keras.layers.Dense(units), keras.layers.Dense(1)]
            )
            model.compile(optimizer="adam", loss="mse")
        history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][-1])


def test_stop_agreement_in_one_process_is_the_local_request(two_replicas):
    from tfkit.distribute import StopAgreement, spans_workers

    for strategy in (tf.distribute.get_strategy(), two_replicas):
        agreement = StopAgreement(strategy)
        assert not spans_workers(strategy) and not agreement.enabled
        assert agreement.should_stop(True) is True
        assert agreement.should_stop(False) is False


def test_thread_counts_apply_before_tensorflow_starts_and_fail_clearly_after():
    from tfkit.distribute import set_threads

    code = (
        "import tensorflow as tf; from tfkit.distribute import set_threads; set_threads(1, 3); "
        "tf.constant(1.0) + 1; t = tf.config.threading; "
        "print(t.get_intra_op_parallelism_threads(), t.get_inter_op_parallelism_threads())"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1", "3"]
    # this process runs TensorFlow already: the same counts are fine, others are refused
    tf.reduce_sum(tf.ones([2])).numpy()  # make sure the runtime is initialised
    current = tf.config.threading.get_intra_op_parallelism_threads()
    set_threads(current, None)
    with pytest.raises(UserError, match=r"runtime\.intra_op_threads.*already initialised"):
        set_threads(current + 7, None)
