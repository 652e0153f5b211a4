"""`tfkit.cluster`: environment -> cluster (TF_CONFIG, SLURM), roles, GPUs and the errors
that name the missing variable or field. Pure Python: no process is started except the
CLI checks at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tfkit import cluster as cluster_lib
from tfkit.cluster import expand_hostlist, expand_tasks_per_node, resolve
from tfkit.config import validate
from tfkit.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def slurm_env(rank: int, nodelist: str, per_node: str, tasks: int, **extra: str) -> dict:
    """The variables `srun` sets for task `rank` of a step (block distribution)."""
    counts = expand_tasks_per_node(per_node)
    slots = [(n, local) for n, count in enumerate(counts) for local in range(count)]
    env = {
        "SLURM_PROCID": str(rank),
        "SLURM_STEP_NUM_TASKS": str(tasks),
        "SLURM_NTASKS": str(tasks),
        "SLURM_STEP_NODELIST": nodelist,
        "SLURM_STEP_TASKS_PER_NODE": per_node,
        "CUDA_VISIBLE_DEVICES": "",
    }
    if rank < len(slots):
        env["SLURM_NODEID"], env["SLURM_LOCALID"] = map(str, slots[rank])
    return {**env, **extra}


@pytest.fixture(autouse=True)
def no_scontrol(monkeypatch, tmp_path):
    """Tests run without SLURM's scontrol unless they put a stand-in on PATH."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))


# --------------------------------------------------------------------------------------
# SLURM
# --------------------------------------------------------------------------------------

CASES = [
    # nodelist, tasks per node, expected addresses (port 9000)
    ("n1", "1", ["n1:9000"]),
    ("localhost", "2", ["localhost:9000", "localhost:9001"]),
    ("n[1-2]", "1(x2)", ["n1:9000", "n2:9000"]),
    ("n[1-2]", "2(x2)", ["n1:9000", "n1:9001", "n2:9000", "n2:9001"]),
    ("gpu[08-10]", "1(x3)", ["gpu08:9000", "gpu09:9000", "gpu10:9000"]),
    ("node[9-10]", "1,1", ["node9:9000", "node10:9000"]),  # SLURM's order, not sorted
    ("a[1-2],b5", "3,1,2", ["a1:9000", "a1:9001", "a1:9002", "a2:9000", "b5:9000", "b5:9001"]),
]


@pytest.mark.parametrize("nodelist,per_node,expected", CASES)
def test_every_slurm_task_sees_the_same_cluster_and_its_own_place(nodelist, per_node, expected):
    tasks = len(expected)
    clusters = [
        resolve("slurm", port=9000, env=slurm_env(r, nodelist, per_node, tasks))
        for r in range(tasks)
    ]
    for rank, c in enumerate(clusters):
        assert c.kind == "slurm" and c.spec == {"worker": expected}
        assert (c.task_type, c.task_index, c.rank) == ("worker", rank, rank)
        assert c.address == expected[rank] and c.chief_address == expected[0]
        assert c.num_workers == tasks and c.multi_worker == (tasks > 1)
    assert [c.is_chief for c in clusters] == [True] + [False] * (tasks - 1)


@pytest.mark.parametrize("nodelist,per_node,expected", [c for c in CASES if c[0] != "node[9-10]"])
def test_slurm_cluster_equals_tensorflows_slurm_cluster_resolver(
    nodelist, per_node, expected, monkeypatch
):
    """Where TensorFlow's resolver is right (sorted node names, GPU nodes), tfkit's cluster
    is the same: same addresses, same task for every rank, same GPU per task."""
    import tensorflow as tf

    counts = expand_tasks_per_node(per_node)
    for rank in range(len(expected)):
        env = slurm_env(rank, nodelist, per_node, len(expected))
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in range(max(counts)))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        theirs = tf.distribute.cluster_resolver.SlurmClusterResolver(port_base=9000)
        their_spec = theirs.cluster_spec().as_dict()
        ours = resolve("slurm", port=9000, env=env)
        assert ours.spec == their_spec
        assert (ours.task_type, ours.task_index) == (theirs.task_type, theirs.task_id)
        expected_gpus = os.environ["CUDA_VISIBLE_DEVICES"]  # set by TensorFlow's resolver
        assert (ours.gpus or env["CUDA_VISIBLE_DEVICES"]) == expected_gpus


def test_tensorflow_sorts_node_names_tfkit_keeps_slurms_order(monkeypatch):
    """SLURM runs rank 0 on node9 (first in its list); TensorFlow's resolver would give
    rank 0 node10's address. tfkit keeps the list's order."""
    import tensorflow as tf

    env = slurm_env(0, "node[9-10]", "1(x2)", 2, CUDA_VISIBLE_DEVICES="0")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    theirs = tf.distribute.cluster_resolver.SlurmClusterResolver(port_base=9000)
    assert theirs.cluster_spec().as_dict()["worker"][0] == "node10:9000"
    assert resolve("slurm", port=9000, env=env).address == "node9:9000"


@pytest.mark.parametrize(
    "text,hosts",
    [
        ("n[1-2],m5,o[3-4,6,7-9]", "n1 n2 m5 o3 o4 o6 o7 o8 o9"),
        ("gpu[008-010]", "gpu008 gpu009 gpu010"),
        ("n[1-2]-ib", "n1-ib n2-ib"),
        ("rack[1-2]-n[1-2]", "rack1-n1 rack1-n2 rack2-n1 rack2-n2"),
        ("single", "single"),
        ("a,b,c", "a b c"),
    ],
)
def test_expand_hostlist(text, hosts):
    assert expand_hostlist(text) == hosts.split()


def test_expand_hostlist_agrees_with_tensorflow_where_tensorflow_parses():
    from tensorflow.python.distribute.cluster_resolver import slurm_cluster_resolver as tf_slurm

    for text in ("n[1-2],m5,o[3-4,6,7-9]", "gpu[008-010]", "a,b,c", "x[1,3-4]"):
        assert expand_hostlist(text) == tf_slurm.expand_hostlist(text)


@pytest.mark.parametrize("text", ["n[1-2", "n1-2]", "n[2-1]", "n[a-b]", "a,,b"])
def test_malformed_hostlists_are_refused(text):
    with pytest.raises(ValueError):
        expand_hostlist(text)


def test_expand_tasks_per_node():
    assert expand_tasks_per_node("3(x2),2,1") == [3, 3, 2, 1]
    assert expand_tasks_per_node("4") == [4]
    with pytest.raises(ValueError, match="malformed item"):
        expand_tasks_per_node("2(x),1")


def test_scontrol_on_path_expands_the_node_list(tmp_path, monkeypatch):
    """With `scontrol` on PATH, node names are SLURM's own (`scontrol show hostnames`)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "scontrol"
    stub.write_text('#!/bin/sh\n[ "$1 $2" = "show hostnames" ] && echo 10.0.0.7 && echo 10.0.0.8\n')
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    c = resolve("slurm", port=7000, env=slurm_env(1, "anything[1-2]", "1(x2)", 2))
    assert c.spec == {"worker": ["10.0.0.7:7000", "10.0.0.8:7000"]}
    assert c.nodes == ("10.0.0.7", "10.0.0.8")


def test_batch_script_variables_are_used_when_the_step_ones_are_missing():
    env = {
        "SLURM_PROCID": "1",
        "SLURM_NTASKS": "2",
        "SLURM_JOB_NODELIST": "n[1-2]",
        "SLURM_TASKS_PER_NODE": "1(x2)",
    }
    c = resolve("slurm", port=9000, env=env)
    assert c.spec == {"worker": ["n1:9000", "n2:9000"]} and c.task_index == 1


@pytest.mark.parametrize(
    "drop,named",
    [
        ("SLURM_PROCID", "SLURM_PROCID is not set"),
        ("SLURM_STEP_NUM_TASKS", r"SLURM_STEP_NUM_TASKS \(or SLURM_NTASKS\) is not set"),
        ("SLURM_STEP_NODELIST", r"SLURM_STEP_NODELIST \(or SLURM_JOB_NODELIST\) is not set"),
        (
            "SLURM_STEP_TASKS_PER_NODE",
            r"SLURM_STEP_TASKS_PER_NODE \(or SLURM_TASKS_PER_NODE\) is not set",
        ),
    ],
)
def test_a_missing_slurm_variable_is_named(drop, named):
    env = slurm_env(0, "n[1-2]", "1(x2)", 2)
    del env[drop]
    env.pop("SLURM_NTASKS")
    with pytest.raises(UserError, match=f"runtime.cluster slurm: {named}.*srun"):
        resolve("slurm", env=env)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"SLURM_PROCID": "x"}, r"SLURM_PROCID must be a non-negative integer. Received: 'x'"),
        ({"SLURM_PROCID": "2"}, r"SLURM_PROCID must be in \[0, 2\).*Received: 2"),
        ({"SLURM_STEP_NUM_TASKS": "3"}, r"SLURM_STEP_TASKS_PER_NODE='1\(x2\)' gives 2 tasks"),
        ({"SLURM_STEP_TASKS_PER_NODE": "1(x3)"}, r"gives 3 node\(s\) but SLURM_STEP_NODELIST"),
        ({"SLURM_STEP_TASKS_PER_NODE": "one"}, "SLURM_STEP_TASKS_PER_NODE='one': malformed"),
        ({"SLURM_STEP_NODELIST": "n[1-2"}, r"SLURM_STEP_NODELIST='n\[1-2': unbalanced"),
        ({"SLURM_NODEID": "1"}, "SLURM_NODEID=1 but SLURM_PROCID=0.*--distribution=block"),
    ],
)
def test_inconsistent_slurm_variables_are_named(change, message):
    env = {**slurm_env(0, "n[1-2]", "1(x2)", 2), **change}
    with pytest.raises(UserError, match=message):
        resolve("slurm", env=env)


def test_ports_past_65535_are_refused():
    with pytest.raises(UserError, match=r"runtime.cluster_port \(65535\) \+ 2 tasks per node"):
        resolve("slurm", port=65535, env=slurm_env(0, "n1", "2", 2))


@pytest.mark.parametrize(
    "visible,per_task,tasks,local,gpus,count",
    [
        ("0,1,2,3", None, 2, 1, "2,3", 2),  # every task sees the node's GPUs: its share
        ("0,1,2,3", "1", 2, 1, "1", 1),  # --gpus-per-task=1 without binding
        ("4,6", None, 2, 1, "6", 1),  # the visible ids, not their positions
        ("3", "1", 2, 1, None, 1),  # SLURM bound one GPU per task already
        ("0", None, 2, 1, None, 1),  # fewer GPUs than tasks: as is
        ("0,1", None, 1, 0, None, 2),  # one task per node: all of them
        ("", None, 2, 1, None, 0),  # CPU nodes
        ("NoDevFiles", None, 2, 0, None, 0),
    ],
)
def test_gpus_of_a_slurm_task(visible, per_task, tasks, local, gpus, count):
    extra = {"CUDA_VISIBLE_DEVICES": visible}
    if per_task:
        extra["SLURM_GPUS_PER_TASK"] = per_task
    c = resolve("slurm", env=slurm_env(local, "n1", str(tasks), tasks, **extra))
    assert (c.gpus, c.gpus_per_task) == (gpus, count)


def test_apply_gives_the_task_its_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    resolve("slurm", env=slurm_env(1, "n1", "2", 2, CUDA_VISIBLE_DEVICES="0,1")).apply()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"


@pytest.mark.parametrize("visible,gpus,per_task", [("0,1", "1", 1), ("", None, 0)])
def test_the_strategy_gets_tensorflows_slurm_resolver_in_slurms_order(
    visible, gpus, per_task, monkeypatch
):
    import tensorflow as tf

    from tfkit import distribute

    env = slurm_env(1, "node[9-10]", "2(x2)", 4, CUDA_VISIBLE_DEVICES=visible)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    c = resolve("slurm", port=9000, env=env)
    resolver = distribute._slurm_resolver(c)
    assert isinstance(resolver, tf.distribute.cluster_resolver.SlurmClusterResolver)
    assert resolver.cluster_spec().as_dict() == c.spec
    assert c.spec["worker"][:2] == ["node9:9000", "node9:9001"]
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)
    assert resolver.num_accelerators() == {"GPU": per_task} and c.gpus == gpus


def test_runtime_cluster_decides_multi_worker(monkeypatch):
    from tfkit import distribute
    from tfkit.config import RuntimeConfig

    two = tf_config({"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "worker", 1)
    monkeypatch.setenv("TF_CONFIG", two)
    assert distribute.wants_multi_worker(RuntimeConfig())
    assert distribute.wants_multi_worker(RuntimeConfig(cluster="tf_config"))
    assert not distribute.wants_multi_worker(RuntimeConfig(cluster="local"))
    assert not distribute.is_chief()  # worker 1
    with pytest.raises(UserError, match="`runtime.strategy: multi_worker` needs a cluster"):
        distribute.strategy(RuntimeConfig(strategy="multi_worker", cluster="local"))
    for name, value in slurm_env(1, "n[1-2]", "1(x2)", 2).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TF_CONFIG")
    assert distribute.wants_multi_worker(RuntimeConfig())  # auto: the srun step
    assert not distribute.is_chief()


# --------------------------------------------------------------------------------------
# TF_CONFIG, auto, roles
# --------------------------------------------------------------------------------------


def tf_config(cluster: dict, task_type: str, index: int) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


def test_tf_config_as_tfjob_sets_it_with_a_chief():
    spec = {"chief": ["job-chief-0.ns.svc:2222"], "worker": ["job-worker-0.ns.svc:2222"] * 2}
    clusters = [resolve("tf_config", env={"TF_CONFIG": tf_config(spec, "chief", 0)})] + [
        resolve("tf_config", env={"TF_CONFIG": tf_config(spec, "worker", i)}) for i in range(2)
    ]
    assert [c.rank for c in clusters] == [0, 1, 2]
    assert [c.is_chief for c in clusters] == [True, False, False]
    assert all(c.num_workers == 3 and c.spec == spec for c in clusters)
    roles = [c.tuner_role() for c in clusters]
    oracle = "job-chief-0.ns.svc:2222"
    assert roles == [
        ("chief", "chief", oracle),
        ("worker", "worker0", oracle),
        ("worker", "worker1", oracle),
    ]


@pytest.mark.parametrize("job", ["ps", "evaluator"])
@pytest.mark.parametrize("task_type", ["worker", "JOB"])
def test_ps_and_evaluator_tasks_are_refused_on_every_task(job, task_type):
    spec = {"worker": ["w0:1", "w1:1"], job: ["x:1"]}
    text = tf_config(spec, job if task_type == "JOB" else task_type, 0)
    with pytest.raises(UserError, match=rf"TF_CONFIG field `cluster.{job}`: .*not supported"):
        resolve("auto", env={"TF_CONFIG": text})


def test_auto_picks_tf_config_then_an_srun_step_then_local():
    step = slurm_env(1, "n[1-2]", "1(x2)", 2)
    two = tf_config({"worker": ["a:1", "b:1"]}, "worker", 1)
    assert resolve(env={**step, "TF_CONFIG": two}).kind == "tf_config"  # `tfkit launch` in srun
    assert resolve(env=step).kind == "slurm"
    assert resolve(env=step).reason == "auto: srun step of 2 tasks"
    batch = {"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "n[1-2]"}
    assert resolve(env=batch).kind == "local"  # the batch script itself, not an srun step
    assert resolve(env=slurm_env(0, "n1", "1", 1)).kind == "local"  # a one-task step
    assert resolve(env={}).kind == "local"
    assert resolve("local", env={**step, "TF_CONFIG": two}).kind == "local"


def test_slurm_tuner_roles_come_from_the_same_cluster():
    roles = [
        resolve("slurm", port=8000, env=slurm_env(r, "n[1-2]", "2,1", 3)).tuner_role()
        for r in range(3)
    ]
    assert roles == [
        ("chief", "chief", "n1:8000"),
        ("worker", "worker0", "n1:8000"),
        ("worker", "worker1", "n1:8000"),
    ]


def test_explicit_kinds_need_their_environment():
    with pytest.raises(UserError, match="runtime.cluster: tf_config needs the TF_CONFIG"):
        resolve("tf_config", env={"SLURM_PROCID": "0"})
    with pytest.raises(UserError, match="SLURM_PROCID is not set"):
        resolve("slurm", env={"TF_CONFIG": tf_config({"worker": ["a:1"]}, "worker", 0)})
    with pytest.raises(UserError, match=r"`runtime.cluster` must be one of auto, local"):
        resolve("pbs", env={})


def test_describe_says_which_cluster_and_why():
    line = resolve("slurm", port=9000, env=slurm_env(1, "n1", "2", 2)).describe()
    assert line == (
        "cluster: slurm (runtime.cluster: slurm), worker 1 of 2 at n1:9001; chief n1:9000"
    )
    assert resolve(env={}).describe() == (
        "cluster: local (auto: no TF_CONFIG, no srun step of several tasks), one process"
    )


def test_runtime_cluster_is_validated_by_the_config():
    runtime = validate({"runtime": {"cluster": "slurm", "cluster_port": 20000}}).runtime
    assert (runtime.cluster, runtime.cluster_port) == ("slurm", 20000)
    with pytest.raises(UserError, match="runtime.cluster"):
        validate({"runtime": {"cluster": "pbs"}})
    with pytest.raises(UserError, match="runtime.cluster_port"):
        validate({"runtime": {"cluster_port": 70000}})


# --------------------------------------------------------------------------------------
# the CLI: one line, exit 2, before TensorFlow starts
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,env,named",
    [
        (
            ["train", "configs/digits_cnn.yaml", "--set", "runtime.cluster=slurm"],
            {},
            "SLURM_PROCID",
        ),
        (
            ["tune", "configs/tune_digits.yaml"],
            {"TF_CONFIG": tf_config({"worker": ["a:1"], "ps": ["p:1"]}, "ps", 0)},
            "TF_CONFIG field `cluster.ps`",
        ),
        (
            [
                "gan",
                "train",
                "configs/stylegan_shapes16.yaml",
                "--set",
                "runtime.cluster=tf_config",
            ],
            {},
            "needs the TF_CONFIG environment variable",
        ),
    ],
)
def test_cli_refuses_a_missing_cluster_in_one_line(args, env, named, tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TF_CONFIG"))}
    proc = subprocess.run(
        [sys.executable, "-m", "tfkit.cli", *args, "--run-dir", str(tmp_path / "run")],
        cwd=ROOT,
        env={**base, **env, "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert named in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "run").exists()
    assert "tensorflow" not in proc.stderr.lower()


def test_cluster_module_imports_no_tensorflow():
    code = "import sys, tfkit.cluster; print('tensorflow' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "False", out.stderr
    assert cluster_lib.DEFAULT_PORT == 8888  # SlurmClusterResolver's port_base


# --------------------------------------------------------------------------------------
# real runs: an srun step of 2-3 tasks on 127.0.0.1 (SLURM variables per process and a
# stand-in scontrol; see helpers.start_cluster_tasks)
# --------------------------------------------------------------------------------------


@pytest.mark.property
def test_two_slurm_tasks_train_to_identical_weights(tmp_path):
    import re

    from helpers import start_cluster_tasks, wait_all
    from test_launch import SMALL

    config = tmp_path / "digits.yaml"
    config.write_text("name: slurm_digits\n")
    run_dir = tmp_path / "run"
    args = ["train", str(config), *SMALL, "--run-dir", str(run_dir)]
    procs, logs, port = start_cluster_tasks(args, tmp_path / "logs", tasks=2)
    codes = wait_all(procs, timeout=500)
    out = [log.read_text() for log in logs]
    assert codes == [0, 0], out + [log.with_suffix(".err").read_text()[-3000:] for log in logs]
    for rank, text in enumerate(out):
        first = text.splitlines()[0]
        assert first.startswith(
            f"cluster: slurm (auto: srun step of 2 tasks), worker {rank} of 2 "
            f"at 127.0.0.1:{port + rank}"
        ), text[:2000]
    sums = [re.search(r"final weights checksum: ([\d.]+)", text) for text in out]
    assert sums[0] and sums[1] and sums[0].group(1) == sums[1].group(1), out
    result = json.loads((run_dir / "metrics.json").read_text())
    assert result["strategy"] == "CollectiveAllReduceStrategy" and result["replicas"] == 2
    assert list((run_dir / "checkpoints" / "loop").glob("ckpt-*.index"))


@pytest.mark.property
def test_two_slurm_tasks_train_a_gan_to_identical_weights(tmp_path):
    import re

    from helpers import start_cluster_tasks, wait_all
    from stylegan.test_commands import SMALL_MULTI_WORKER

    small = {**SMALL_MULTI_WORKER, "gan.kimg": 0.048}
    sets = [a for k, v in small.items() for a in ("--set", f"{k}={v}")]
    run_dir = tmp_path / "run"
    config = os.path.join(ROOT, "configs", "stylegan_shapes32.yaml")
    args = ["gan", "train", config, "--run-dir", str(run_dir), *sets]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    procs, logs, port = start_cluster_tasks(args, tmp_path / "logs", env={"TMPDIR": str(scratch)})
    codes = wait_all(procs, timeout=500)
    out = [log.read_text() for log in logs]
    assert codes == [0, 0], out + [log.with_suffix(".err").read_text()[-3000:] for log in logs]
    assert (
        out[1].splitlines()[0].startswith("cluster: slurm (auto: srun step of 2 tasks), worker 1")
    )
    sums = [re.search(r"final weights checksum: (.+)", text) for text in out]
    assert sums[0] and sums[1] and sums[0].group(1) == sums[1].group(1), out
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 3  # the chief's ticks
    assert not list(scratch.glob("tfkit-*"))  # task 1's temporary output was removed


@pytest.mark.property
@pytest.mark.parametrize("kind", ["slurm", "tf_config"])
def test_a_search_over_a_three_process_cluster_runs_every_trial_exactly_once(kind, tmp_path):
    """Under SLURM (an srun step of 3 tasks) and under a TFJob's TF_CONFIG (chief + 2
    workers): process 0 serves the oracle on its own port, the other two run the trials; no
    KERASTUNER_* variable and no --role/--oracle is given."""
    from helpers import check_distributed_search, start_cluster_tasks, wait_all

    run_dir = tmp_path / "run"
    args = [
        "tune",
        "configs/tune_binary_mlp_hyperband.yaml",
        *("--set", "tune.tuner=random", "--set", "tune.max_trials=4"),
        *("--set", "train.epochs=2", "--set", "data.source.count=600"),
        *("--run-dir", str(run_dir)),
    ]
    procs, logs, port = start_cluster_tasks(args, tmp_path / "logs", tasks=3, kind=kind)
    codes = wait_all(procs, timeout=500)
    out = [log.read_text() for log in logs]
    assert out[0].startswith(f"cluster: {kind} (auto: "), out[0][:500]
    assert codes == [0, 0, 0], out + [log.with_suffix(".err").read_text()[-3000:] for log in logs]
    assert f"chief: oracle serving at 0.0.0.0:{port}" in out[0]
    assert "as worker worker0" in out[1] and "as worker worker1" in out[2]
    check_distributed_search(run_dir, ["worker0", "worker1"], 4, "val_accuracy")


# --------------------------------------------------------------------------------------
# configs/cluster: the batch scripts and the TFJob run the intended tfkit command on the
# intended cluster
# --------------------------------------------------------------------------------------

FAKE_SRUN = """#!{python}
import json, os, sys
with open({out!r}, "w") as f:
    json.dump(sys.argv[1:], f)
sys.exit(int(os.environ.get("FAKE_SRUN_STATUS", "0")))
"""
FAKE_SCONTROL_REQUEUE = """#!{python}
import sys
with open({out!r}, "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
"""


def run_sbatch_script(name: str, tmp_path, **env: str) -> tuple[dict, list[str], list[str]]:
    """Run configs/cluster/NAME with bash and a stand-in `srun` recording its arguments.

    Returns the #SBATCH options, srun's own options and the tfkit arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / "srun.json"
    (bin_dir / "srun").write_text(FAKE_SRUN.format(python=sys.executable, out=str(record)))
    (bin_dir / "srun").chmod(0o755)
    scontrol = tmp_path / "scontrol.log"
    (bin_dir / "scontrol").write_text(
        FAKE_SCONTROL_REQUEUE.format(python=sys.executable, out=str(scontrol))
    )
    (bin_dir / "scontrol").chmod(0o755)
    script = os.path.join(ROOT, "configs", "cluster", name)
    proc = subprocess.run(
        ["/bin/bash", script],
        cwd=ROOT,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_ID": "1234", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == int(env.get("FAKE_SRUN_STATUS", "0")), proc.stderr
    options = {}
    for line in open(script):
        if line.startswith("#SBATCH "):
            key, _, value = line.split()[1].partition("=")
            options[key] = value
    argv = json.loads(record.read_text())
    at = argv.index("tfkit")
    return options, argv[:at], argv[at + 1 :]


@pytest.mark.parametrize(
    "script,run", [("train.sbatch", "digits_cnn"), ("gan_train.sbatch", "stylegan_shapes32")]
)
def test_sbatch_scripts_requeue_a_failed_job_which_then_resumes(script, run, tmp_path):
    """A lost worker (75) or a killed one requeues the job (up to MAX_RESTARTS); the
    requeued job (SLURM_RESTART_COUNT > 0) resumes its own run; a user error (2) does not
    requeue."""
    options = run_sbatch_script(script, tmp_path)[0]
    assert "--requeue" in options
    requeues = tmp_path / "scontrol.log"
    assert not requeues.exists()  # success: nothing requeued
    run_sbatch_script(script, tmp_path, FAKE_SRUN_STATUS="75")
    assert requeues.read_text() == "requeue 1234\n"
    argv = run_sbatch_script(script, tmp_path, SLURM_RESTART_COUNT="1")[2]
    assert parse_tfkit(argv)[0].resume == f"runs/{run}/slurm-1234"
    requeues.unlink()
    run_sbatch_script(script, tmp_path, FAKE_SRUN_STATUS="2")  # a user error fails again
    run_sbatch_script(script, tmp_path, FAKE_SRUN_STATUS="137", SLURM_RESTART_COUNT="3")
    assert not requeues.exists()  # nor past MAX_RESTARTS (3)


def parse_tfkit(argv: list[str]):
    """The parsed arguments and the validated config of a tfkit command line."""
    from tfkit.cli import build_parser
    from tfkit.config import load_config

    args = build_parser().parse_args(argv)
    old = os.getcwd()
    os.chdir(ROOT)
    try:
        return args, load_config(args.config, args.overrides) if args.config else None
    finally:
        os.chdir(old)


@pytest.mark.parametrize(
    "script,command,config,nodes",
    [
        ("train.sbatch", ["train"], "configs/digits_cnn.yaml", 2),
        ("gan_train.sbatch", ["gan", "train"], "configs/stylegan_shapes32.yaml", 2),
        ("tune.sbatch", ["tune"], "configs/tune_digits.yaml", None),
    ],
)
def test_sbatch_scripts_run_tfkit_under_srun_on_the_slurm_cluster(
    script, command, config, nodes, tmp_path
):
    options, srun, argv = run_sbatch_script(script, tmp_path)
    assert "--distribution=block" in srun and "--kill-on-bad-exit=1" in srun
    assert argv[: len(command)] == command
    args, cfg = parse_tfkit(argv)
    assert args.config == config
    assert (cfg.runtime.cluster, cfg.runtime.cluster_port) == ("slurm", 20000 + 1234)
    if command != ["tune"]:
        assert args.run_dir.endswith("/slurm-1234")  # one run dir per job, on shared storage
        _, resumed = run_sbatch_script(script, tmp_path, RESUME="runs/x/slurm-1")[1:]
        assert parse_tfkit(resumed)[0].resume == "runs/x/slurm-1"
    # the step SLURM would start: every task resolves the same cluster, task 0 the chief
    tasks = int(
        options.get("--ntasks") or int(options["--nodes"]) * int(options["--ntasks-per-node"])
    )
    if nodes:
        assert int(options["--nodes"]) == nodes
        nodelist, per_node = f"n[1-{nodes}]", f"{tasks // nodes}(x{nodes})"
    else:
        nodelist, per_node = "n1", str(tasks)
    clusters = [
        cluster_lib.for_runtime(cfg.runtime, env=slurm_env(r, nodelist, per_node, tasks))
        for r in range(tasks)
    ]
    assert [c.rank for c in clusters] == list(range(tasks))
    assert [c.is_chief for c in clusters] == [True] + [False] * (tasks - 1)
    assert clusters[0].chief_address == "n1:21234"


def operator_tf_config(name: str, replicas: dict[str, int], kind: str, index: int) -> str:
    """The TF_CONFIG Kubeflow's training operator gives replica `kind` `index` of TFJob `name`."""
    cluster = {
        k.lower(): [f"{name}-{k.lower()}-{i}.default.svc:2222" for i in range(n)]
        for k, n in replicas.items()
    }
    return json.dumps({"cluster": cluster, "task": {"type": kind.lower(), "index": index}})


def test_tfjob_manifest_runs_tfkit_train_on_one_chief_and_two_workers():
    import yaml

    with open(os.path.join(ROOT, "configs", "cluster", "tfjob.yaml")) as f:
        job = yaml.safe_load(f)
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "TFJob")
    specs = job["spec"]["tfReplicaSpecs"]
    assert set(specs) == {"Chief", "Worker"}  # no PS, no Evaluator
    replicas = {kind: spec["replicas"] for kind, spec in specs.items()}
    ranks = []
    for kind, spec in specs.items():
        container = spec["template"]["spec"]["containers"][0]
        assert container["name"] == "tensorflow"
        assert container["ports"][0] == {"name": "tfjob-port", "containerPort": 2222}
        args, cfg = parse_tfkit(container["args"])
        assert args.command == "train" and args.run_dir.startswith("/shared/")
        mounts = [m["mountPath"] for m in container["volumeMounts"]]
        assert "/shared" in mounts  # the run dir is on the shared volume
        for index in range(spec["replicas"]):
            env = {"TF_CONFIG": operator_tf_config("tfkit-digits", replicas, kind, index)}
            c = cluster_lib.for_runtime(cfg.runtime, env=env)
            ranks.append((c.rank, c.is_chief))
    assert sorted(ranks) == [(0, True), (1, False), (2, False)]
