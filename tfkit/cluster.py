"""Which cluster this process is part of: `local`, `tf_config` (Kubernetes) or `slurm`.

`resolve(kind)` reads the environment only (no TensorFlow is imported), so a missing
variable is reported before TensorFlow starts, the first line of a run can say where it
runs, and a SLURM task's GPUs are chosen before TensorFlow sees them.

- `tf_config`: TF_CONFIG as Kubeflow's TFJob (and `tfkit launch`) set it. tfkit trains
  with MultiWorkerMirroredStrategy, so it supports `chief` and `worker` tasks; a cluster
  with `ps` or `evaluator` tasks is refused (naming the field).
- `slurm`: one task per worker, started by `srun` (block distribution, SLURM's default).
  As TensorFlow's `SlurmClusterResolver`, worker i is SLURM task i (SLURM_PROCID), and the
  tasks of one node listen on `port`, `port + 1`, ... Unlike it, nodes keep the order of
  the step's node list (where SLURM places the ranks; TensorFlow sorts the names, so
  `node10` would come before `node9`), node names come from `scontrol show hostnames`
  when `scontrol` is on PATH, and nodes without GPUs work.
- `auto`: `tf_config` when TF_CONFIG is set, else `slurm` inside an `srun` step of more
  than one task, else `local` (this process alone).

The chief of a cluster is task `chief` 0, or `worker` 0 when there is no chief (SLURM task
0); the oracle of a distributed Keras Tuner search listens on the chief's address.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tfkit.errors import UserError

KINDS = ("auto", "local", "tf_config", "slurm")
DEFAULT_PORT = 8888  # as tf.distribute.cluster_resolver.SlurmClusterResolver's port_base
TRAINING_JOBS = ("chief", "worker")


@dataclass(frozen=True)
class Cluster:
    """This process's place in a cluster.

    Attributes:
        kind: `local`, `tf_config` or `slurm`.
        spec: job name -> task addresses (`host:port`); empty for `local`.
        task_type: this process's job (`chief` or `worker`), None for `local`.
        task_index: this process's index in its job, None for `local`.
        reason: how it was chosen (`runtime.cluster: slurm`, `auto: TF_CONFIG is set`, ...).
        gpus: the CUDA_VISIBLE_DEVICES this task should use (a SLURM task sharing a node's
            GPUs with other tasks), None to leave the environment as it is.
        gpus_per_task: GPUs each task uses (SLURM; 0 on CPU nodes), None when unknown.
        nodes: the SLURM step's nodes, in SLURM's order.
    """

    kind: str
    spec: dict[str, list[str]] = field(default_factory=dict)
    task_type: str | None = None
    task_index: int | None = None
    reason: str = ""
    gpus: str | None = None
    gpus_per_task: int | None = None
    nodes: tuple[str, ...] = ()

    @property
    def num_workers(self) -> int:
        """Training processes (chief + workers); 1 for `local`."""
        return sum(len(self.spec.get(job, [])) for job in TRAINING_JOBS) or 1

    @property
    def multi_worker(self) -> bool:
        """Whether the cluster has more than one training process."""
        return self.num_workers > 1

    @property
    def rank(self) -> int:
        """This process's position among the training processes (the chief is 0)."""
        if self.task_type is None:
            return 0
        if self.task_type == "chief":
            return 0
        return len(self.spec.get("chief", [])) + int(self.task_index or 0)

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run directory (and serves a search's oracle)."""
        return self.rank == 0

    @property
    def chief_address(self) -> str | None:
        """`host:port` of the chief (None for `local`)."""
        for job in TRAINING_JOBS:
            if self.spec.get(job):
                return self.spec[job][0]
        return None

    @property
    def address(self) -> str | None:
        """`host:port` of this process (None for `local`)."""
        if self.task_type is None:
            return None
        return self.spec[self.task_type][int(self.task_index or 0)]

    def tuner_role(self) -> tuple[str, str, str]:
        """(role, tuner id, oracle `host:port`) of this process in a distributed search.

        The chief serves Keras Tuner's oracle on its own address (no TensorFlow server
        runs during a search, so the port is free); every other process is a worker
        `worker<k>`, k counting the non-chief processes from 0.
        """
        oracle = str(self.chief_address)
        if self.is_chief:
            return "chief", "chief", oracle
        return "worker", f"worker{self.rank - 1}", oracle

    def describe(self) -> str:
        """One line saying where this process runs, e.g.
        `cluster: slurm (auto: srun step of 2 tasks), worker 1 of 2 at n1:8889; chief n1:8888`."""
        if self.kind == "local":
            return f"cluster: local ({self.reason}), one process"
        where = f"{self.task_type} {self.task_index}"
        text = (
            f"cluster: {self.kind} ({self.reason}), {where} of {self.num_workers} at {self.address}"
        )
        text += "; this is the chief" if self.is_chief else f"; chief {self.chief_address}"
        if self.gpus is not None:
            text += f"; GPUs {self.gpus}"
        return text

    def apply(self) -> None:
        """Give this task its GPUs (CUDA_VISIBLE_DEVICES); call it before TensorFlow starts."""
        if self.gpus is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = self.gpus


# --------------------------------------------------------------------------------------
# resolution
# --------------------------------------------------------------------------------------


def resolve(
    kind: str = "auto", *, port: int = DEFAULT_PORT, env: Mapping[str, str] | None = None
) -> Cluster:
    """The cluster named by `runtime.cluster` (`kind`), from the environment.

    Args:
        kind: `auto`, `local`, `tf_config` or `slurm`.
        port: SLURM only: the first port of the tasks of a node (task k listens on
            `port + k`).
        env: the environment (default `os.environ`).

    Raises:
        UserError: naming the missing or malformed variable (or TF_CONFIG field).
    """
    env = os.environ if env is None else env
    if kind not in KINDS:
        raise UserError(f"`runtime.cluster` must be one of {', '.join(KINDS)}. Received: {kind!r}")
    if kind == "local":
        return Cluster("local", reason="runtime.cluster: local")
    if kind == "tf_config":
        if not env.get("TF_CONFIG", "").strip():
            raise UserError(
                "runtime.cluster: tf_config needs the TF_CONFIG environment variable (set by "
                "the Kubernetes operator, e.g. Kubeflow's TFJob, or by `tfkit launch`)"
            )
        return _from_tf_config(env["TF_CONFIG"], "runtime.cluster: tf_config")
    if kind == "slurm":
        return _from_slurm(env, port, "runtime.cluster: slurm")
    if env.get("TF_CONFIG", "").strip():
        return _from_tf_config(env["TF_CONFIG"], "auto: TF_CONFIG is set")
    steps = env.get("SLURM_STEP_NUM_TASKS", "")
    if steps.isdigit() and int(steps) > 1 and "SLURM_PROCID" in env:
        return _from_slurm(env, port, f"auto: srun step of {int(steps)} tasks")
    return Cluster("local", reason="auto: no TF_CONFIG, no srun step of several tasks")


def for_runtime(runtime_cfg: Any, env: Mapping[str, str] | None = None) -> Cluster:
    """The cluster of a `runtime` config section (`runtime.cluster`, `runtime.cluster_port`)."""
    return resolve(runtime_cfg.cluster, port=runtime_cfg.cluster_port, env=env)


def announce(runtime_cfg: Any) -> Cluster:
    """Resolve the cluster, give this task its GPUs and print the run's first line."""
    cluster = for_runtime(runtime_cfg)
    cluster.apply()
    print(cluster.describe(), flush=True)
    return cluster


# --------------------------------------------------------------------------------------
# TF_CONFIG
# --------------------------------------------------------------------------------------


def read_tf_config(text: str | None = None) -> dict[str, Any] | None:
    """Parse and validate TF_CONFIG (from the environment when `text` is None).

    Returns:
        The parsed dict, or None when TF_CONFIG is unset or empty.

    Raises:
        UserError: malformed JSON or fields, naming the field.
    """
    if text is None:
        text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        return None
    try:
        conf = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"TF_CONFIG is not valid JSON: {err.msg} at position {err.pos}") from None
    if not isinstance(conf, dict):
        raise UserError(f"TF_CONFIG must be a JSON object. Received: {type(conf).__name__}")
    cluster = conf.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise UserError(
            "TF_CONFIG field `cluster` must be a mapping of job name -> list of 'host:port'. "
            f"Received: cluster={cluster!r}"
        )
    for job, addrs in cluster.items():
        if job not in ("chief", "worker", "evaluator", "ps"):
            raise UserError(
                f"TF_CONFIG field `cluster.{job}`: unknown job name. "
                "Valid jobs: chief, evaluator, ps, worker"
            )
        if not isinstance(addrs, list) or not addrs:
            raise UserError(
                f"TF_CONFIG field `cluster.{job}` must be a non-empty list of 'host:port'. "
                f"Received: {addrs!r}"
            )
        for i, addr in enumerate(addrs):
            host, sep, port = str(addr).rpartition(":")
            if not isinstance(addr, str) or not sep or not host or not port.isdigit():
                raise UserError(
                    f"TF_CONFIG field `cluster.{job}[{i}]` must be 'host:port'. Received: {addr!r}"
                )
    if "chief" in cluster and len(cluster["chief"]) != 1:
        raise UserError(
            f"TF_CONFIG field `cluster.chief` must list exactly one address. "
            f"Received: {cluster['chief']!r}"
        )
    task = conf.get("task")
    if not isinstance(task, dict):
        raise UserError(
            "TF_CONFIG field `task` must be a mapping with `type` and `index`. "
            f"Received: task={task!r}"
        )
    task_type, index = task.get("type"), task.get("index")
    if task_type not in cluster:
        raise UserError(
            f"TF_CONFIG field `task.type` must be one of the cluster's jobs "
            f"({', '.join(sorted(cluster))}). Received: {task_type!r}"
        )
    if (
        not isinstance(index, int)
        or isinstance(index, bool)
        or not 0 <= index < len(cluster[task_type])
    ):
        raise UserError(
            f"TF_CONFIG field `task.index` must be an integer in [0, {len(cluster[task_type])}) "
            f"for job `{task_type}`. Received: {index!r}"
        )
    return conf


UNSUPPORTED_JOBS = {
    "ps": (
        "parameter servers are not supported: tfkit trains with MultiWorkerMirroredStrategy "
        "(chief and worker tasks only); remove the PS replicas"
    ),
    "evaluator": (
        "a side-car evaluator is not supported: the chief evaluates at the end of training "
        "(and `tfkit evaluate RUN_DIR` later); remove the Evaluator replicas"
    ),
}


def _from_tf_config(text: str, reason: str) -> Cluster:
    conf = read_tf_config(text)
    assert conf is not None
    for job, why in UNSUPPORTED_JOBS.items():
        if job in conf["cluster"]:
            raise UserError(f"TF_CONFIG field `cluster.{job}`: {why}")
    spec = {job: list(conf["cluster"][job]) for job in TRAINING_JOBS if job in conf["cluster"]}
    return Cluster("tf_config", spec, conf["task"]["type"], conf["task"]["index"], reason=reason)


# --------------------------------------------------------------------------------------
# SLURM
# --------------------------------------------------------------------------------------


def _slurm_var(env: Mapping[str, str], *names: str) -> tuple[str, str]:
    """(name, value) of the first of `names` that is set, or a UserError naming them."""
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return name, value
    alternatives = " (or ".join(names) + ")" * (len(names) - 1)
    raise UserError(
        f"runtime.cluster slurm: {alternatives} is not set; start tfkit with `srun` inside "
        "the allocation, one task per worker (see configs/cluster/)"
    )


def _slurm_int(env: Mapping[str, str], *names: str) -> tuple[str, int]:
    name, value = _slurm_var(env, *names)
    if not value.isdigit():
        raise UserError(
            f"runtime.cluster slurm: {name} must be a non-negative integer. Received: {value!r}"
        )
    return name, int(value)


def expand_hostlist(hostlist: str) -> list[str]:
    """SLURM's compressed host list in order, without `scontrol`.

    Example: `expand_hostlist("n[1-2],m5,rack[1-2]-gpu[08-09]")` gives `n1 n2 m5 rack1-gpu08
    rack1-gpu09 rack2-gpu08 rack2-gpu09`; numbers keep their zero padding.

    Raises:
        ValueError: an unbalanced bracket or a malformed range.
    """
    parts, depth, current = [], 0, ""
    for char in hostlist.strip():
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if depth < 0 or depth > 1:
            raise ValueError(f"unbalanced brackets in {hostlist!r}")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if depth:
        raise ValueError(f"unbalanced brackets in {hostlist!r}")
    parts.append(current)
    hosts: list[str] = []
    for part in parts:
        if not part:
            raise ValueError(f"empty host name in {hostlist!r}")
        hosts.extend(_expand_part(part))
    return hosts


def _expand_part(part: str) -> list[str]:
    match = re.match(r"^([^\[]*)\[([^\]]*)\](.*)$", part)
    if not match:
        return [part]
    prefix, ranges, rest = match.groups()
    values = []
    for item in ranges.split(","):
        low, _, high = item.partition("-")
        high = high or low
        if not (low.isdigit() and high.isdigit()) or int(high) < int(low):
            raise ValueError(f"malformed range [{ranges}] in {part!r}")
        values += [str(i).zfill(len(low)) for i in range(int(low), int(high) + 1)]
    tails = _expand_part(rest)
    return [f"{prefix}{value}{tail}" for value in values for tail in tails]


@functools.cache
def _scontrol_hostnames(scontrol: str, nodelist: str) -> tuple[str, ...] | None:
    """`scontrol show hostnames NODELIST` (SLURM's own expansion), None if it fails."""
    try:
        out = subprocess.run(
            [scontrol, "show", "hostnames", nodelist],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    hosts = tuple(line.strip() for line in out.splitlines() if line.strip())
    return hosts or None


def hostnames(nodelist: str) -> list[str]:
    """The nodes of a SLURM node list, in order: `scontrol show hostnames` when available,
    else tfkit's own expansion."""
    scontrol = shutil.which("scontrol")
    hosts = _scontrol_hostnames(scontrol, nodelist) if scontrol else None
    return list(hosts) if hosts is not None else expand_hostlist(nodelist)


def expand_tasks_per_node(text: str) -> list[int]:
    """SLURM's tasks-per-node list, e.g. `2(x3),1` -> [2, 2, 2, 1].

    Raises:
        ValueError: a malformed item.
    """
    counts: list[int] = []
    for item in text.split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", item.strip())
        if not match:
            raise ValueError(f"malformed item {item!r}")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts


def _visible_gpus(env: Mapping[str, str]) -> list[str]:
    """The GPU ids this task sees: CUDA_VISIBLE_DEVICES, else `nvidia-smi --list-gpus`."""
    if "CUDA_VISIBLE_DEVICES" in env:
        ids = [g.strip() for g in env["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
        return [] if any(g in ("-1", "NoDevFiles") for g in ids) else ids
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--list-gpus"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, _ in enumerate(x for x in out.splitlines() if x.startswith("GPU "))]


def _task_gpus(
    env: Mapping[str, str], max_tasks_per_node: int, local: int
) -> tuple[str | None, int]:
    """(CUDA_VISIBLE_DEVICES for this task or None to keep it, GPUs this task uses).

    As SlurmClusterResolver: every task uses the same number of GPUs (SLURM_GPUS_PER_TASK,
    else the visible GPUs / the most tasks on one node), and when a task sees more than
    that (`srun --gres=gpu:4 --ntasks-per-node=4`), task k of a node takes the k-th share.
    When SLURM bound GPUs per task already (`--gpus-per-task` with `--gpu-bind`), or there
    are fewer GPUs than tasks, nothing changes.
    """
    visible = _visible_gpus(env)
    if not visible:
        return None, 0
    per_task_text = env.get("SLURM_GPUS_PER_TASK", "").rpartition(":")[2]
    if per_task_text.isdigit():
        per_task = int(per_task_text)
    else:
        per_task = len(visible) // max_tasks_per_node
    share = visible[local * per_task : (local + 1) * per_task]
    if per_task == 0 or len(visible) <= per_task or len(share) < per_task:
        return None, len(visible)
    return ",".join(share), per_task


def _from_slurm(env: Mapping[str, str], port: int, reason: str) -> Cluster:
    _, rank = _slurm_int(env, "SLURM_PROCID")
    tasks_var, tasks = _slurm_int(env, "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS")
    nodes_var, nodelist = _slurm_var(env, "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST")
    per_node_var, per_node = _slurm_var(env, "SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE")
    try:
        nodes = hostnames(nodelist)
    except ValueError as err:
        raise UserError(f"runtime.cluster slurm: {nodes_var}={nodelist!r}: {err}") from None
    try:
        counts = expand_tasks_per_node(per_node)
    except ValueError as err:
        raise UserError(f"runtime.cluster slurm: {per_node_var}={per_node!r}: {err}") from None
    if len(counts) != len(nodes):
        raise UserError(
            f"runtime.cluster slurm: {per_node_var}={per_node!r} gives {len(counts)} node(s) but "
            f"{nodes_var}={nodelist!r} names {len(nodes)}"
        )
    if sum(counts) != tasks:
        raise UserError(
            f"runtime.cluster slurm: {per_node_var}={per_node!r} gives {sum(counts)} tasks but "
            f"{tasks_var}={tasks}"
        )
    if not 0 <= rank < tasks:
        raise UserError(
            f"runtime.cluster slurm: SLURM_PROCID must be in [0, {tasks}) ({tasks_var}={tasks}). "
            f"Received: {rank}"
        )
    if port + max(counts) - 1 > 65535:
        raise UserError(
            f"runtime.cluster_port ({port}) + {max(counts)} tasks per node exceeds port 65535"
        )
    placement = [(n, local) for n, count in enumerate(counts) for local in range(count)]
    addresses = [f"{nodes[n]}:{port + local}" for n, local in placement]
    node_index, local = placement[rank]
    # block distribution: rank r runs on the node and slot computed above; check it
    for name, expected in (("SLURM_NODEID", node_index), ("SLURM_LOCALID", local)):
        value = env.get(name, "")
        if value.isdigit() and int(value) != expected:
            raise UserError(
                f"runtime.cluster slurm: {name}={value} but SLURM_PROCID={rank} should run as "
                f"{name}={expected} with block distribution; start tfkit with "
                "`srun --distribution=block`"
            )
    gpus, per_task = _task_gpus(env, max(counts), local)
    return Cluster(
        "slurm",
        {"worker": addresses},
        "worker",
        rank,
        reason=reason,
        gpus=gpus,
        gpus_per_task=per_task,
        nodes=tuple(nodes),
    )
