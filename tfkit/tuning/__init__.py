"""Keras Tuner searches from a config: `tfkit tune CONFIG`.

`space` (pure Python) checks and applies the search space; `hypermodel` and `search` use
Keras Tuner and TensorFlow and are imported lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "run_search": "tfkit.tuning.search",
    "TfkitHyperModel": "tfkit.tuning.hypermodel",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tfkit.tuning' has no attribute {name!r}")
