"""Training: losses, optimizers, metrics, callbacks, the compile/fit path and the loop.

Importing this package imports TensorFlow (`import tfkit` alone does not).

- `compile_model(model, train_cfg, spec, runtime_cfg=None)` (tfkit.training.fit)
- `fit(config, run_dir, *, resume=False)`, `run_loop(...)`: one `tfkit train` run, sharing
  `prepare` and `write_result` (tfkit.training.session)
- `build_callbacks(train_cfg, run_dir, ...)`, `MetricsLogger`, `Throughput`,
  `LastCheckpoint` (tfkit.training.callbacks)
- `build_loss`, `huber`, `HuberLoss` (tfkit.training.losses)
- `build_optimizer`, `build_schedule`, `WarmupSchedule` (tfkit.training.optimizers)
- `build_metrics`, `resolve_class_weight` (tfkit.training.metrics)
"""

# Imported eagerly on purpose: the function `fit` must shadow the submodule of the same name.
# A lazy `__getattr__` lets a later `import tfkit.training.fit` rebind the package attribute
# to the module, after which `tfkit.training.fit(...)` fails with "module is not callable".
from tfkit.training.callbacks import (
    LastCheckpoint,
    MetricsLogger,
    Throughput,
    build_callback,
    build_callbacks,
)
from tfkit.training.fit import compile_model
from tfkit.training.losses import HuberLoss, build_loss, huber
from tfkit.training.metrics import build_metrics, resolve_class_weight
from tfkit.training.optimizers import WarmupSchedule, build_optimizer, build_schedule
from tfkit.training.session import fit

__all__ = [
    "HuberLoss",
    "LastCheckpoint",
    "MetricsLogger",
    "Throughput",
    "WarmupSchedule",
    "build_callback",
    "build_callbacks",
    "build_loss",
    "build_metrics",
    "build_optimizer",
    "build_schedule",
    "compile_model",
    "fit",
    "huber",
    "resolve_class_weight",
]
