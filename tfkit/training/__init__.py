"""Training: losses, optimizers, metrics, callbacks and the compile/fit path.

The public names import TensorFlow, so they load on first use:

- `compile_model(model, train_cfg, spec, runtime_cfg=None)` (tfkit.training.fit)
- `fit(config, run_dir, *, resume=False)` (tfkit.training.fit)
- `build_callbacks(train_cfg, run_dir, ...)`, `MetricsLogger`, `Throughput`,
  `LastCheckpoint` (tfkit.training.callbacks)
- `build_loss`, `huber`, `HuberLoss` (tfkit.training.losses)
- `build_optimizer`, `build_schedule`, `WarmupSchedule` (tfkit.training.optimizers)
- `build_metrics`, `resolve_class_weight` (tfkit.training.metrics)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "compile_model": "tfkit.training.fit",
    "fit": "tfkit.training.fit",
    "build_callbacks": "tfkit.training.callbacks",
    "build_callback": "tfkit.training.callbacks",
    "MetricsLogger": "tfkit.training.callbacks",
    "Throughput": "tfkit.training.callbacks",
    "LastCheckpoint": "tfkit.training.callbacks",
    "build_loss": "tfkit.training.losses",
    "huber": "tfkit.training.losses",
    "HuberLoss": "tfkit.training.losses",
    "build_optimizer": "tfkit.training.optimizers",
    "build_schedule": "tfkit.training.optimizers",
    "WarmupSchedule": "tfkit.training.optimizers",
    "build_metrics": "tfkit.training.metrics",
    "resolve_class_weight": "tfkit.training.metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tfkit.training' has no attribute {name!r}")
