"""tfkit: a Keras-first TensorFlow toolkit driven by one YAML config.

`import tfkit` is instant: TensorFlow loads only when a submodule that needs it is used.

Public API:
    load_config(path, overrides) -> ExperimentConfig
    tfkit.data.build(cfg.data, seed=..., input_context=None) -> Splits
    tfkit.models.build(cfg.model, spec) -> keras.Model
    tfkit.training.compile_model(model, cfg.train, spec, cfg.runtime)
    tfkit.training.build_callbacks(cfg.train, run_dir, batch_size=...)
    tfkit.distribute.strategy(cfg.runtime), tfkit.distribute.setup_runtime(cfg.runtime)
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["load_config", "data", "models", "training", "distribute"]
_SUBMODULES = {"data", "models", "training", "distribute"}


def __getattr__(name: str) -> Any:
    if name == "load_config":  # lazy too: pydantic's import alone costs ~0.2 s of `tfkit --help`
        from tfkit.config import load_config

        return load_config
    if name in _SUBMODULES:
        return importlib.import_module(f"tfkit.{name}")
    raise AttributeError(f"module 'tfkit' has no attribute {name!r}")
