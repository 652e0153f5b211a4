"""Distribution: the runtime set-up and the `tf.distribute.Strategy` a run trains under.

`setup_runtime(cfg.runtime)` runs first (logical CPU devices, seed, determinism, mixed
precision); `strategy(cfg.runtime)` then picks the strategy:

- `auto`: MultiWorkerMirrored when the cluster (`runtime.cluster`, resolved by
  `tfkit.cluster` from TF_CONFIG or SLURM) has more than one worker, Mirrored when more
  than one GPU is visible, else the default strategy.
- `default`, `one_device`, `mirrored` (optionally over `runtime.devices`; with no GPU and
  several logical CPUs it mirrors over the logical CPUs), `multi_worker`.

Under MultiWorkerMirrored only the chief writes to the run directory (`worker_dir`).
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import keras
import tensorflow as tf

from tfkit import cluster as cluster_lib
from tfkit.cluster import Cluster, read_tf_config  # noqa: F401 - read_tf_config: public here too
from tfkit.config import RuntimeConfig
from tfkit.errors import UserError, WorkerLost

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker")

# How long a multi-worker peer may stay silent before the coordination service declares it
# lost and the survivors stop (the heartbeats come from a C++ thread, so a long step, a
# compilation or a busy CPU does not delay them). Short, because it is how a hung or
# unreachable peer is detected: collective ops run without a per-op timeout (see
# `_multi_worker`).
HEARTBEAT_TIMEOUT_S = 10


# --------------------------------------------------------------------------------------
# runtime set-up
# --------------------------------------------------------------------------------------


def split_cpu(count: int) -> None:
    """Split the first physical CPU into `count` logical devices (before TF initialises).

    If TensorFlow is already initialised, this is a no-op: with a warning when the current
    count already equals `count`, and a `UserError` when it differs (it cannot change).
    """
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * count
        )
    except RuntimeError:
        current = len(tf.config.get_logical_device_configuration(cpus[0]) or [None])
        if current != count:
            raise UserError(
                f"`runtime.logical_cpus` ({count}) cannot be applied: TensorFlow is already "
                f"initialised with {current} logical CPU device(s) in this process. "
                f"Set it before any TensorFlow op runs, or use logical_cpus: {current}"
            ) from None
        warnings.warn(
            f"runtime.logical_cpus={count}: TensorFlow was already initialised with "
            f"{current} logical CPU devices; nothing to do",
            stacklevel=2,
        )


def set_threads(intra: int | None, inter: int | None) -> None:
    """Set TensorFlow's intra-/inter-op thread pools (None leaves one as it is).

    Raises:
        UserError: TensorFlow already runs with other thread counts (they are fixed once
            the first op has run).
    """
    for name, value, getter, setter in (
        (
            "intra_op_threads",
            intra,
            tf.config.threading.get_intra_op_parallelism_threads,
            tf.config.threading.set_intra_op_parallelism_threads,
        ),
        (
            "inter_op_threads",
            inter,
            tf.config.threading.get_inter_op_parallelism_threads,
            tf.config.threading.set_inter_op_parallelism_threads,
        ),
    ):
        if value is None or getter() == value:
            continue
        try:
            setter(value)
        except RuntimeError:
            raise UserError(
                f"`runtime.{name}` ({value}) cannot be applied: TensorFlow is already "
                f"initialised in this process with {getter() or 'its default'}. Set it "
                "before any TensorFlow op runs."
            ) from None


def setup_runtime(runtime_cfg: RuntimeConfig, *, quiet: bool = False) -> None:
    """Apply the runtime section: logical CPUs, threads, seed, op determinism, mixed precision.

    Call it before building datasets or models. The seed goes to
    `keras.utils.set_random_seed` (Python, NumPy and TensorFlow). Unless `quiet` (a dry run
    whose stdout is the resolved config), one stdout line notes a bfloat16 policy that this
    CPU can only emulate.
    """
    if runtime_cfg.logical_cpus:
        split_cpu(runtime_cfg.logical_cpus)
    set_threads(runtime_cfg.intra_op_threads, runtime_cfg.inter_op_threads)
    keras.utils.set_random_seed(runtime_cfg.seed)
    if runtime_cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(runtime_cfg.mixed_precision)
    if (
        not quiet
        and runtime_cfg.mixed_precision == "mixed_bfloat16"
        and cpu_has_native_bfloat16() is False
        and not tf.config.list_physical_devices("GPU")
    ):
        print(
            "note: runtime.mixed_precision: mixed_bfloat16 on a CPU without native bfloat16 "
            "(no avx512_bf16 or amx_bf16): TensorFlow emulates it, several times slower than "
            "float32 (runtime.mixed_precision: float32)",
            flush=True,
        )


def cpu_has_native_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """Whether the CPU computes in bfloat16 natively (the avx512_bf16 or amx_bf16 flag of
    Linux's `cpuinfo` on x86); None where that file or its `flags` line is missing (other
    systems, ARM).

    TensorFlow's bfloat16 convolutions are several times slower than float32 on a CPU
    without it (2.5 vs ~40 img/s for configs/stylegan_shapes32.yaml on a 2-core AMD EPYC
    without AVX512), and faster with it (97 vs 77 img/s on an AVX512_BF16 Intel CPU).
    """
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            flags = next(
                (line.split(":", 1)[1].split() for line in f if line.startswith("flags")), None
            )
    except OSError:
        return None
    return None if flags is None else bool({"avx512_bf16", "amx_bf16"} & set(flags))


# --------------------------------------------------------------------------------------
# multi-worker (clusters: tfkit.cluster)
# --------------------------------------------------------------------------------------


def _slurm_resolver(cluster: Cluster) -> tf.distribute.cluster_resolver.ClusterResolver:
    """TensorFlow's SlurmClusterResolver for `cluster` (resolved by `tfkit.cluster`).

    It is given the tasks per node, ports and GPUs tfkit resolved (GPUs already set in
    CUDA_VISIBLE_DEVICES), and its cluster spec keeps SLURM's node order; TensorFlow's own
    `cluster_spec()` sorts node names (misplacing ranks on `node9,node10`) and fails on
    nodes without GPUs.
    """
    counts: dict[str, int] = {}
    for address in cluster.spec["worker"]:
        host = address.rpartition(":")[0]
        counts[host] = counts.get(host, 0) + 1
    per_task = cluster.gpus_per_task or 0
    spec = tf.train.ClusterSpec(cluster.spec)

    class _Resolver(tf.distribute.cluster_resolver.SlurmClusterResolver):
        def cluster_spec(self) -> tf.train.ClusterSpec:
            return spec

    resolver = _Resolver(
        jobs={"worker": cluster.num_workers},
        port_base=int(cluster.spec["worker"][0].rpartition(":")[2]),
        gpus_per_node=per_task * max(counts.values()),
        gpus_per_task=per_task,
        tasks_per_node=counts,
        auto_set_gpu=False,
    )
    resolver.task_type, resolver.task_id = cluster.task_type, cluster.task_index
    return resolver


def _multi_worker(runtime_cfg: RuntimeConfig, cluster: Cluster) -> tf.distribute.Strategy:
    if cluster.kind == "local":
        raise UserError(
            "`runtime.strategy: multi_worker` needs a cluster: TF_CONFIG (Kubernetes, "
            "`tfkit launch` for local workers) or an srun step of several tasks (SLURM); "
            f"runtime.cluster is {runtime_cfg.cluster} ({cluster.reason})"
        )
    timeout_ms = int(runtime_cfg.collective_timeout_s * 1000)
    context = _eager_context()
    if context.coordination_service is None:
        # The same coordination service the strategy would configure, but with a
        # registration timeout: an unreachable peer fails instead of waiting forever.
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2

        jobs = [
            coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(cluster.spec[job]))
            for job in ("chief", "worker")
            if job in cluster.spec
        ]
        leader = f"/job:{'chief' if 'chief' in cluster.spec else 'worker'}/replica:0/task:0"
        context.configure_coordination_service(
            service_type="standalone",
            service_leader=leader,
            cluster_register_timeout_in_ms=timeout_ms,
            heartbeat_timeout_in_ms=HEARTBEAT_TIMEOUT_S * 1000,
            shutdown_barrier_timeout_in_ms=timeout_ms,
            coordinated_jobs=jobs,
        )
    # No per-op timeout (CommunicationOptions.timeout_seconds): TensorFlow keeps a thread
    # alive for each collective op that has one until the timeout expires, so a run grows by
    # a few threads per step and aborts within minutes ("Resource temporarily unavailable").
    # A dead peer is detected by the coordination service's heartbeat configured above,
    # which aborts the pending collectives on every surviving worker.
    options = tf.distribute.experimental.CommunicationOptions()
    message = (
        f"multi-worker: could not reach the other workers of {cluster.kind} cluster {cluster.spec} "
        f"within runtime.collective_timeout_s={runtime_cfg.collective_timeout_s:g} s. "
        "Check that every worker is started and its address reachable"
    )
    # TensorFlow waits for every peer to register while holding the GIL and ignoring
    # SIGTERM; a watchdog process turns that wait into a clear failure.
    with _watchdog(runtime_cfg.collective_timeout_s, message):
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy(
                cluster_resolver=_slurm_resolver(cluster) if cluster.kind == "slurm" else None,
                communication_options=options,
            )
        except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError) as err:
            raise UserError(f"{message} ({type(err).__name__})") from None
    from tfkit.quiet import hide_peer_loss_logs

    hide_peer_loss_logs()  # from here on a lost peer is reported in one line (`lost_worker`)
    return strategy


_WATCHDOG = """
import os, select, signal, sys
pid, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
ready, _, _ = select.select([sys.stdin], [], [], seconds)
if not ready:
    print("tfkit: error: " + message, file=sys.stderr, flush=True)
    os.kill(pid, signal.SIGKILL)
"""


@contextmanager
def _watchdog(seconds: float, message: str):
    """Kill this process with `message` on stderr unless the block ends within `seconds`."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(seconds), message],
        stdin=subprocess.PIPE,
    )
    try:
        yield
    finally:
        proc.stdin.close()  # wakes the watchdog: done in time
        proc.wait()


# the errors a collective or the coordination service raises when a peer is gone: its
# connection reset (the process died), a heartbeat that stopped (it hangs or is cut off),
# or the abort of every pending collective that follows either
_PEER_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.AbortedError,
    tf.errors.CancelledError,
    tf.errors.DeadlineExceededError,
    tf.errors.InternalError,
)
_PEER_SIGNS = ("collective ops is aborted", "coordination", "heartbeat", "/job:", "peer")
_TASK = re.compile(r"/job:(\w+)/replica:\d+/task:(\d+)")
_REASONS = (
    ("connection reset", "connection reset by peer"),
    ("heartbeat", "its heartbeat stopped"),
    ("socket closed", "connection closed"),
    ("connection refused", "connection refused"),
    ("failed to connect", "unreachable"),
    ("deadline", "timed out"),
)


def lost_worker(err: BaseException, runtime_cfg: RuntimeConfig) -> WorkerLost | None:
    """The `WorkerLost` that `err` means in a multi-worker run, or None.

    A collective whose peer died fails on every survivor with an `UnavailableError` (or an
    abort of the pending collectives) naming the peer's task; the coordination service's
    heartbeat reports a peer that hangs. Any other error, or any error outside a
    multi-worker cluster, is not a lost worker.
    """
    if not isinstance(err, _PEER_ERRORS):
        return None
    text = str(err)
    lower = text.lower()
    if not any(sign in lower for sign in _PEER_SIGNS):
        return None
    try:
        cluster = cluster_lib.for_runtime(runtime_cfg)
    except UserError:
        return None
    if not cluster.multi_worker:
        return None
    me = (cluster.task_type, cluster.task_index)
    others = [(job, int(i)) for job, i in _TASK.findall(text) if (job, int(i)) != me]
    lost = f"{others[0][0]} {others[0][1]}" if others else "a peer worker"
    reason = next((why for sign, why in _REASONS if sign in lower), type(err).__name__)
    return WorkerLost(lost, reason)


def _eager_context():
    from tensorflow.python.eager import context

    return context.context()


# --------------------------------------------------------------------------------------
# strategy
# --------------------------------------------------------------------------------------


def _mirrored(devices: list[str] | None) -> tf.distribute.Strategy:
    if not devices:
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return mirrored(tuple(_canonical(d) for d in devices))


@functools.cache
def mirrored(devices: tuple[str, ...]) -> tf.distribute.MirroredStrategy:
    """One `MirroredStrategy` per device set and process, e.g. `mirrored(("CPU:0", "CPU:1"))`.

    Two MirroredStrategy objects over the same devices in one process number their
    collective ops alike, and the second one's all-reduce then fails with "Shape mismatch
    in the collective instance" (seen with tuning trials and notebooks that build a
    strategy per model). Reusing the strategy avoids it; models built in its scope at
    different times stay independent.
    """
    return tf.distribute.MirroredStrategy(devices=[f"/device:{d}" for d in devices])


def strategy(runtime_cfg: RuntimeConfig) -> tf.distribute.Strategy:
    """The `tf.distribute.Strategy` named by `runtime.strategy`.

    Raises:
        UserError: an unknown device, a malformed TF_CONFIG (naming the field), or workers
            that cannot reach each other within `runtime.collective_timeout_s`.
    """
    name = runtime_cfg.strategy
    if name not in STRATEGIES:
        from tfkit.errors import unknown_name

        raise unknown_name("strategy", name, STRATEGIES)
    if name == "auto":
        cluster = cluster_lib.for_runtime(runtime_cfg)
        if cluster.multi_worker:
            return _multi_worker(runtime_cfg, cluster)
        if len(tf.config.list_logical_devices("GPU")) > 1:
            return _mirrored(None)
        return tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi_worker":
        return _multi_worker(runtime_cfg, cluster_lib.for_runtime(runtime_cfg))
    devices = runtime_cfg.devices
    if devices:
        known = {d.name for d in tf.config.list_logical_devices()}
        canon = {_canonical(d) for d in known}
        for d in devices:
            if _canonical(d) not in canon:
                raise UserError(
                    f"`runtime.devices` names an unknown device {d!r}. "
                    f"Available: {', '.join(sorted(known))}"
                )
    if name == "one_device":
        if devices:
            device = devices[0]
        else:
            gpus = tf.config.list_logical_devices("GPU")
            device = gpus[0].name if gpus else "/cpu:0"
        return tf.distribute.OneDeviceStrategy(device)
    return _mirrored(devices)


def _canonical(device: str) -> str:
    """'/cpu:0', '/device:CPU:0', '/job:localhost/replica:0/task:0/device:CPU:0' -> 'CPU:0'."""
    tail = device.split("/")[-1]
    tail = tail.removeprefix("device:")
    kind, _, index = tail.partition(":")
    return f"{kind.upper()}:{index or 0}"


# --------------------------------------------------------------------------------------
# batch arithmetic and chief-only writing
# --------------------------------------------------------------------------------------


def global_batch_check(global_batch: int, strategy: tf.distribute.Strategy) -> int:
    """The per-replica batch for `global_batch` examples split over the strategy's replicas.

    Raises:
        UserError: `global_batch` is not divisible by the number of replicas.
    """
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise UserError(
            f"`data.batch_size` ({global_batch}) must be divisible by the number of replicas "
            f"({replicas}); use e.g. data.batch_size={max(replicas, global_batch // replicas * replicas)}"
        )
    return global_batch // replicas


def strategy_cluster(strategy: tf.distribute.Strategy | None = None) -> Cluster:
    """The cluster a strategy trains on: its resolver's under a multi-worker strategy, else
    (any other strategy, or none) the environment's (`runtime.cluster: auto`)."""
    if strategy is None or not spans_workers(strategy):
        return cluster_lib.resolve()
    resolver = strategy.extended._cluster_resolver
    spec = {
        job: list(tasks.values()) if isinstance(tasks, dict) else list(tasks)
        for job, tasks in resolver.cluster_spec().as_dict().items()
    }
    return Cluster("strategy", spec, resolver.task_type, resolver.task_id, reason="strategy")


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process is the chief: single-process runs, `chief`, or `worker` 0
    when the cluster has no chief (see `strategy_cluster` for where the cluster comes from)."""
    return strategy_cluster(strategy).is_chief


@contextmanager
def worker_dir(run_dir: str | Path, strategy: tf.distribute.Strategy | None = None):
    """Context manager yielding where this worker writes: `run_dir` on the chief, a
    temporary directory (removed at exit) on the other workers.

    Example:
        with worker_dir(run_dir, strategy) as out:
            manager = tf.train.CheckpointManager(ckpt, out / "ckpt", 3)
    """
    if is_chief(strategy):
        yield Path(run_dir)
        return
    from tfkit.runs import Run

    cluster = strategy_cluster(strategy)
    with Run.worker_temp_dir(f"{cluster.task_type}{cluster.task_index}") as tmp:
        yield tmp


def describe(strategy: tf.distribute.Strategy) -> str:
    """One line naming the strategy and its replica count, e.g. 'MirroredStrategy (2 replicas)'."""
    n = strategy.num_replicas_in_sync
    return f"{type(strategy).__name__} ({n} replica{'s' if n != 1 else ''})"


def wants_multi_worker(runtime_cfg: RuntimeConfig) -> bool:
    """Whether `runtime` selects MultiWorkerMirroredStrategy (explicitly, or `auto` in a
    cluster of more than one worker: `runtime.cluster`)."""
    if runtime_cfg.strategy == "multi_worker":
        return True
    return runtime_cfg.strategy == "auto" and cluster_lib.for_runtime(runtime_cfg).multi_worker


def spans_workers(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` has replicas in more than one process (multi-worker)."""
    resolver = getattr(strategy.extended, "_cluster_resolver", None)
    if resolver is None:
        return False
    spec = resolver.cluster_spec().as_dict()
    return sum(len(tasks) for name, tasks in spec.items() if name in ("chief", "worker")) > 1


class StopAgreement:
    """Make every worker of a multi-worker run stop at the same step.

    A SIGTERM reaches the workers at different steps (or only one of them). A worker that
    stopped alone would leave the others waiting in the next step's collective, so each
    worker asks `should_stop(local_request)` at the same points of its loop, and every
    worker gets True when any of them asked to stop. Single-process strategies return the
    local request without any collective.

    Example:
        agreement = StopAgreement(strategy)
        for step in ...:
            train_step()
            if agreement.should_stop(sigterm_received):
                save(); break
    """

    def __init__(self, strategy: tf.distribute.Strategy):
        self.strategy = strategy
        self.enabled = spans_workers(strategy)
        self._fn = None

    def should_stop(self, requested: bool) -> bool:
        """True when this worker or any other worker asked to stop (a small all-reduce
        over the cluster under a multi-worker strategy)."""
        return self.agree(requested)[0]

    def agree(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag OR-ed over every worker (one all-reduce for all of them)."""
        if not self.enabled:
            return tuple(bool(f) for f in flags)
        if self._fn is None:
            strategy = self.strategy

            def any_requested(flag):
                per_replica = strategy.run(lambda f: tf.identity(f), args=(flag,))
                return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

            self._fn = tf.function(any_requested)
        summed = self._fn(tf.constant([1.0 if f else 0.0 for f in flags])).numpy()
        return tuple(bool(v > 0) for v in summed)
