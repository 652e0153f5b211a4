"""The data building block: sources, TFRecords, the tf.data pipeline, embedded datasets.

`build(cfg.data, seed=..., input_context=...)` returns `Splits(train, val, test, spec)`.
The Python API (`from_numpy`, `from_dataframe`, `from_generator`, `from_tfrecords`,
`from_image_folder`, `pipeline`, `write_tfrecords`) is imported lazily: importing
`tfkit.data` does not import TensorFlow; the first use of a TF-based name does.
"""

from __future__ import annotations

import importlib
from typing import Any

from tfkit.data.spec import DataSpec, InputSpec

_LAZY = {
    "build": "tfkit.data.input_pipeline",
    "pipeline": "tfkit.data.input_pipeline",
    "Splits": "tfkit.data.input_pipeline",
    "split_table": "tfkit.data.input_pipeline",
    "from_numpy": "tfkit.data.sources",
    "from_dataframe": "tfkit.data.sources",
    "from_generator": "tfkit.data.sources",
    "from_tfrecords": "tfkit.data.sources",
    "from_image_folder": "tfkit.data.sources",
    "write_tfrecords": "tfkit.data.tfrecord",
    "Arrays": "tfkit.data.datasets",
}

__all__ = ["DataSpec", "InputSpec", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tfkit.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
