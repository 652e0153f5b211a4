"""`ClassPathConfig`: a class of the user's own by import path (a loss, metric,
callback or recurrent cell), checked for form without importing it."""

from __future__ import annotations

import keyword
import re
from typing import Any

from pydantic import Field, field_validator

from tfkit.config.base import Strict

_CLASS_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


class ClassPathConfig(Strict):
    """A class of your own by import path, with its constructor arguments (as LightningCLI).

    `{class_path: mypkg.callbacks.MyCallback, args: {patience: 3}}` in `train.callbacks`,
    `train.loss`, `train.metrics` or `model.cell`: `tfkit train` imports `mypkg.callbacks`
    (from the working directory or `PYTHONPATH`), checks the class's kind and that `args`
    fit its signature, and calls `MyCallback(patience=3)`. Only the named module is
    imported; `tfkit config validate` checks the path's form without importing it.
    """

    class_path: str
    args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("class_path")
    @classmethod
    def _dotted(cls, v: str) -> str:
        if not _CLASS_PATH.match(v) or any(keyword.iskeyword(p) for p in v.split(".")):
            raise ValueError(f"must be an import path `package.module.ClassName`. Received: {v!r}")
        return v
