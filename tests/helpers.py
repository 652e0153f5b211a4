"""Reusable test helpers in the keras-hub manner: one call checks one property.

- `run_layer_test`: a layer builds, has the expected output shape and weights, survives a
  `get_config`/`from_config` round trip, and trains (gradients reach its weights).
- `run_serialization_test`: a model (or a layer, wrapped in a model) saved to `.keras` and
  loaded with `safe_mode=True` gives the same outputs.
- `run_model_test`: a model predicts the right shape on arrays and on a `tf.data` dataset,
  and one `fit` step gives a finite loss.
- `capture_summary`: the text `model.summary()` prints.

Import them as `from helpers import ...` (tests/ is on `sys.path` through conftest.py).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfkit.config import validate
from tfkit.data.spec import DataSpec, InputSpec


def model_cfg(**fields: Any):
    """A validated model section, as a YAML file would give it."""
    return validate({"model": fields}).model


def spec_of(task: str, *inputs: tuple, num_classes: int | None = None, label_shape=()) -> DataSpec:
    """A `DataSpec` from `(name, shape)` pairs."""
    return DataSpec(
        tuple(InputSpec(name, shape) for name, shape in inputs),
        task,
        num_classes=num_classes,
        label_shape=label_shape,
    )


def _structure_shape(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: _structure_shape(v) for k, v in x.items()}
    return tuple(np.shape(x))


def _first_dim(x: Any) -> int:
    if isinstance(x, Mapping):
        return int(np.shape(next(iter(x.values())))[0])
    return int(np.shape(x)[0])


def _assert_close(actual: Any, expected: Any, atol: float, what: str) -> None:
    if isinstance(expected, Mapping):
        assert set(actual) == set(expected), what
        for k in expected:
            _assert_close(actual[k], expected[k], atol, f"{what}[{k!r}]")
        return
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(actual),
        keras.ops.convert_to_numpy(expected),
        atol=atol,
        rtol=atol,
        err_msg=what,
    )


def _as_json(config: Any) -> Any:
    """A config as JSON data (tuples become lists), for comparisons."""
    return json.loads(json.dumps(config, default=repr))


def capture_summary(model: keras.Model, **kwargs: Any) -> str:
    """The text `model.summary(**kwargs)` prints."""
    lines: list[str] = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line), **kwargs)
    return "\n".join(lines)


def run_layer_test(
    layer_cls: type[keras.layers.Layer],
    init_kwargs: dict,
    input_data: Any,
    expected_output_shape: tuple | None = None,
    expected_num_trainable_weights: int | None = None,
    expected_num_non_trainable_weights: int | None = None,
    run_training_check: bool = True,
) -> Any:
    """Check a layer class end to end on `input_data`; return its output.

    Checks: the output shape; the weight counts; `from_config(get_config())` builds an equal
    config and, with the same weights, the same output; with `run_training_check`, the
    gradient of the output's mean square reaches every trainable weight.
    """
    layer = layer_cls(**init_kwargs)
    output = layer(input_data)
    if expected_output_shape is not None:
        assert tuple(output.shape) == tuple(expected_output_shape), (
            f"{layer_cls.__name__} output shape {tuple(output.shape)}, "
            f"expected {tuple(expected_output_shape)}"
        )
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights
    if expected_num_non_trainable_weights is not None:
        assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights

    config = layer.get_config()
    for key in init_kwargs:
        assert key in config, f"{layer_cls.__name__}.get_config() lacks `{key}`"
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config
    clone(input_data)
    clone.set_weights(layer.get_weights())
    _assert_close(clone(input_data), output, 1e-6, f"{layer_cls.__name__} from_config output")

    if run_training_check and layer.trainable_weights:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(tf.cast(layer(input_data), tf.float32)))
        grads = tape.gradient(loss, layer.trainable_weights)
        for weight, grad in zip(layer.trainable_weights, grads, strict=True):
            assert grad is not None, f"no gradient reaches `{weight.path}`"
            assert np.all(np.isfinite(keras.ops.convert_to_numpy(grad)))
    return output


def run_serialization_test(
    obj: keras.Model | keras.layers.Layer,
    input_data: Any,
    directory: str | os.PathLike | None = None,
    atol: float = 1e-6,
    call_kwargs: dict | None = None,
    y: Any = None,
) -> keras.Model:
    """Save `obj` to `.keras`, load it with `safe_mode=True`, and compare outputs.

    A bare layer is wrapped in a functional model over `input_data`'s shape first (a list of
    arrays makes a multi-input model; `call_kwargs` go to the layer's call). The trainable
    weights are moved off their initial values before saving, so equal outputs mean the
    weights were loaded, not re-initialized alike. A compiled model must come back with the
    same optimizer config and, given labels `y`, the same `evaluate` loss. Returns the
    loaded model.
    """
    call_kwargs = dict(call_kwargs or {})
    model = obj
    if not isinstance(obj, keras.Model):
        if isinstance(input_data, Mapping):
            raise TypeError("wrap dict-input layers in a model before calling this helper")
        if isinstance(input_data, (list, tuple)):
            inputs: Any = [keras.Input(shape=np.shape(x)[1:]) for x in input_data]
        else:
            inputs = keras.Input(shape=np.shape(input_data)[1:])
        model = keras.Model(inputs, obj(inputs, **call_kwargs))
        call_kwargs = {}
    rng = np.random.default_rng(0)
    for variable in model.trainable_variables:
        shape = tuple(variable.shape)
        variable.assign(variable + 0.05 * rng.standard_normal(shape).astype(variable.dtype))
    expected = model(input_data, training=False, **call_kwargs)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(model), f"loaded {type(loaded)}, saved {type(model)}"
    assert _as_json(loaded.get_config()) == _as_json(model.get_config()), "config changed"
    _assert_close(
        loaded(input_data, training=False, **call_kwargs),
        expected,
        atol,
        ".keras round trip output",
    )
    if model.compiled:
        assert loaded.optimizer.get_config() == model.optimizer.get_config()
        if y is not None:
            want = model.evaluate(input_data, y, verbose=0, return_dict=True)
            got = loaded.evaluate(input_data, y, verbose=0, return_dict=True)
            _assert_close(got, want, atol, "evaluate after the round trip")
    return loaded


def run_model_test(
    model: keras.Model,
    x: Any,
    y: Any,
    loss: Any,
    expected_output_shape: tuple | None = None,
    batch_size: int = 8,
    optimizer: Callable[[], keras.optimizers.Optimizer] | None = None,
    jit_compile: bool | str = False,
) -> float:
    """Predict on arrays and on a `tf.data` dataset, then fit one step; return that loss.

    `x` is an array or a dict of arrays keyed by input name. Checks: both predictions have
    `expected_output_shape` (batch axis included; default: batch rows by the model's output
    shape) and agree; the fit loss is finite. Compiles the model with `loss` (and, by
    default, without XLA: compiling is slower than the step on CPU).
    """
    n = _first_dim(x)
    from_arrays = model.predict(x, batch_size=batch_size, verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(batch_size)
    from_dataset = model.predict(dataset, verbose=0)
    if expected_output_shape is None:
        try:
            per_example = tuple(model.output_shape[1:])
        except (AttributeError, ValueError):  # subclassed models have no symbolic output
            per_example = tuple(model.compute_output_shape(_structure_shape(x))[1:])
        expected_output_shape = (n, *per_example)
    assert tuple(from_arrays.shape) == tuple(expected_output_shape), (
        f"predict shape {tuple(from_arrays.shape)}, expected {tuple(expected_output_shape)}"
    )
    np.testing.assert_allclose(from_dataset, from_arrays, atol=1e-5, rtol=1e-5)

    model.compile(
        optimizer=optimizer() if optimizer else "adam", loss=loss, jit_compile=jit_compile
    )
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).take(1)
    history = model.fit(train, epochs=1, verbose=0)
    value = float(history.history["loss"][-1])
    assert np.isfinite(value), f"fit loss is {value}"
    return value


def start_local_workers(args: list[str], out_dir, workers: int = 2, env=None):
    """Start `python -m tfkit.cli ARGS` as `workers` processes of one 127.0.0.1 cluster.

    Each worker's output goes to `out_dir/worker<i>.log`. Returns the processes and the
    log paths; the caller waits for (or kills) them.
    """
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tfkit.launch import free_ports, tf_configs

    root = Path(__file__).resolve().parents[1]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    procs, logs = [], []
    for i, conf in enumerate(tf_configs(free_ports(workers))):
        log = out_dir / f"worker{i}.log"
        with open(log, "w") as f:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tfkit.cli", *args],
                    env={**base, "TF_CONFIG": conf, "PYTHONUNBUFFERED": "1"},
                    cwd=root,
                    stdout=f,
                    stderr=subprocess.STDOUT,
                )
            )
        logs.append(log)
    return procs, logs


def wait_for_text(path, text: str, procs, timeout: float) -> None:
    """Wait until file `path` contains `text`; fail if a process ended or time ran out."""
    import time
    from pathlib import Path

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Path(path).exists() and text in Path(path).read_text():
            return
        ended = [p.returncode for p in procs if p.poll() is not None]
        if ended:
            raise AssertionError(f"a worker ended ({ended}) before {text!r} appeared in {path}")
        time.sleep(0.5)
    raise AssertionError(f"{text!r} did not appear in {path} within {timeout} s")


def sigterm_one_worker(procs, logs, ready_text: str, index: int, delay: float = 0.0):
    """Once `ready_text` is in worker 0's log (and `delay` seconds later), SIGTERM worker
    `index` alone; wait for every worker. Returns their exit codes and outputs (killing any
    worker still running at the end)."""
    import signal
    import time

    try:
        wait_for_text(logs[0], ready_text, procs, timeout=300)
        time.sleep(delay)
        procs[index].send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return codes, [log.read_text() for log in logs]


def run_launch(flags: list[str], command: list[str], timeout: float, env=None, cwd=None):
    """`python -m tfkit.cli launch FLAGS --timeout T -- COMMAND` on CPU, waited for (output
    captured); the subprocess gets `timeout` + 100 s before it is killed."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    base = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tfkit.cli", "launch", *flags, "--timeout", str(timeout), "--"]
        + command,
        env=base,
        cwd=cwd or Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=timeout + 100,
    )


# stands in for SLURM's `scontrol show hostnames NODELIST`: every node is this machine
FAKE_SCONTROL = """#!{python}
import sys
if sys.argv[1:3] != ["show", "hostnames"]:
    sys.exit(1)
for _ in sys.argv[3].split(","):
    print("127.0.0.1")
"""


def free_port_range(count: int) -> int:
    """A base port such that `base, ..., base + count - 1` are all free on 127.0.0.1."""
    import random
    import socket

    for _ in range(100):
        base = random.randint(20000, 60000 - count)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no {count} consecutive free ports")


def start_cluster_tasks(args: list[str], out_dir, tasks: int = 2, env=None, kind="slurm"):
    """Start `python -m tfkit.cli ARGS` as the `tasks` processes of one cluster on 127.0.0.1,
    each with the environment its scheduler would give it, and no other cluster variable.

    `kind="slurm"`: the tasks of one srun step on one node (`fakenode`, which a stand-in
    `scontrol` on PATH maps to 127.0.0.1), with `--set runtime.cluster_port=P`.
    `kind="tf_config"`: the TF_CONFIG Kubeflow's TFJob sets: a chief (process 0) and
    `tasks - 1` workers, on ports P, P+1, ...

    P..P+tasks-1 are free ports. Returns the processes, the paths of their stdout (stderr
    goes beside it, `.err`) and P.
    """
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out_dir = Path(out_dir)
    bin_dir = out_dir / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "scontrol").write_text(FAKE_SCONTROL.format(python=sys.executable))
    (bin_dir / "scontrol").chmod(0o755)
    port = free_port_range(tasks)
    base = {k: v for k, v in os.environ.items() if k != "TF_CONFIG" and not k.startswith("SLURM")}
    base.update(CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    base["PATH"] = f"{bin_dir}{os.pathsep}{base.get('PATH', '')}"
    step = {
        "SLURM_JOB_ID": "4242",
        "SLURM_STEP_ID": "0",
        "SLURM_NTASKS": str(tasks),
        "SLURM_STEP_NUM_TASKS": str(tasks),
        "SLURM_JOB_NODELIST": "fakenode",
        "SLURM_STEP_NODELIST": "fakenode",
        "SLURM_TASKS_PER_NODE": str(tasks),
        "SLURM_STEP_TASKS_PER_NODE": str(tasks),
        "SLURM_NODEID": "0",
    }
    addresses = [f"127.0.0.1:{port + i}" for i in range(tasks)]
    cluster = {"chief": addresses[:1], "worker": addresses[1:]}
    procs, logs = [], []
    for rank in range(tasks):
        log = out_dir / f"task{rank}.log"
        if kind == "slurm":
            task_env = {**base, **step, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)}
            extra = ["--set", f"runtime.cluster_port={port}"]
        else:
            task = {"type": "worker", "index": rank - 1} if rank else {"type": "chief", "index": 0}
            task_env = {**base, "TF_CONFIG": json.dumps({"cluster": cluster, "task": task})}
            extra = []
        with open(log, "w") as f, open(log.with_suffix(".err"), "w") as err:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tfkit.cli", *args, *extra],
                    env={**task_env, **(env or {})},
                    cwd=root,
                    stdout=f,
                    stderr=err,
                )
            )
        logs.append(log)
    return procs, logs, port


def wait_all(procs, timeout: float) -> list[int]:
    """Wait for every process (killing all of them if `timeout` seconds pass); exit codes."""
    import subprocess
    import time

    deadline = time.monotonic() + timeout
    try:
        return [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    except subprocess.TimeoutExpired:
        return [p.returncode if p.poll() is not None else -9 for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def check_distributed_search(run_dir, workers: list[str], trials: int, objective: str) -> dict:
    """A finished distributed search in `run_dir`: `trials` completed trials in trials.csv,
    the workers' reports (search/workers/<id>.json) together name every trial exactly once
    with the chief's score, and the best trial was written. Returns {worker: its report}."""
    import csv
    import json
    from pathlib import Path

    import pytest

    run_dir = Path(run_dir)
    rows = list(csv.DictReader(open(run_dir / "trials.csv")))
    assert len(rows) == trials and all(r["status"] == "COMPLETED" for r in rows)
    chief = {r["trial"]: float(r[objective]) for r in rows}
    reports = {
        name: json.loads((run_dir / "search" / "workers" / f"{name}.json").read_text())
        for name in workers
    }
    ran = [(t["trial_id"], t["score"]) for report in reports.values() for t in report]
    assert sorted(trial for trial, _ in ran) == sorted(chief)  # every trial, exactly once
    for trial, score in ran:
        assert chief[trial] == pytest.approx(score)  # the chief's results = the workers'
    assert (run_dir / "best.yaml").exists() and (run_dir / "best_model.keras").exists()
    return reports


def install_fake_python(tmp_path, monkeypatch, source: str, module) -> str:
    """Write `source` (a script; `{python}` stands for this interpreter) as an executable
    stand-in for `python` and make `module.sys.executable` point at it. Returns its path."""
    import sys

    path = tmp_path / "fakepython"
    path.write_text(source.format(python=sys.executable))
    path.chmod(0o755)
    monkeypatch.setattr(module.sys, "executable", str(path))
    return str(path)
