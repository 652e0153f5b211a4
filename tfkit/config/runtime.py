"""The `runtime` section: where and how a run executes (strategy, devices, seed,
precision, compilation, the cluster)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from tfkit.config.base import Seed, Strict, steps_or_auto


class RuntimeConfig(Strict):
    """Where and how the run executes: distribution strategy, seed, precision, compilation."""

    strategy: Literal["auto", "default", "one_device", "mirrored", "multi_worker"] = "auto"
    devices: list[str] | None = None  # for one_device / mirrored
    logical_cpus: int | None = Field(None, ge=1)  # split the CPU into N logical devices
    # CPU threads: within one op (intra) and across independent ops (inter); None: TensorFlow
    # picks (the number of cores); like torch.set_num_threads
    intra_op_threads: int | None = Field(None, ge=1)
    inter_op_threads: int | None = Field(None, ge=1)
    seed: Seed = 0
    deterministic: bool = False  # tf.config.experimental.enable_op_determinism
    mixed_precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = "float32"
    jit_compile: bool | Literal["auto"] = "auto"
    # training steps per graph call in `fit` (Keras' compile argument). auto: 16 on one
    # replica (takes Python's per-step dispatch out of the loop; batch hooks and the
    # progress bar then see every 16th step), 1 under a multi-replica strategy (Keras'
    # multi-step loop fails there); 1 is Keras' default
    steps_per_execution: int | Literal["auto"] = "auto"
    collective_timeout_s: float = Field(120.0, gt=0)
    # where the other workers are (tfkit.cluster): auto (TF_CONFIG when set, else an srun
    # step of several tasks, else this process alone) | local | tf_config (Kubernetes,
    # Kubeflow TFJob, `tfkit launch`) | slurm (one srun task per worker)
    cluster: Literal["auto", "local", "tf_config", "slurm"] = "auto"
    # slurm: task k of a node listens on cluster_port + k; a distributed search's oracle
    # listens on the chief's port
    cluster_port: int = Field(8888, ge=1, le=65535)

    @field_validator("steps_per_execution", mode="before")
    @classmethod
    def _steps_per_execution(cls, v: Any) -> Any:
        return steps_or_auto(v)
