"""Every tfkit Keras object, registered for safe-mode `.keras` loading.

tfkit's layers, models, losses and schedules are registered as `tfkit>ClassName` with
`keras.saving.register_keras_serializable(package="tfkit")` where they are defined. Keras
finds a registered class only once its module has run, so importing this module imports
every module that registers one; after it, any `.keras` file written by tfkit (a classic
run's `model.keras`, a GAN run's `G_ema.keras`) loads with
`keras.saving.load_model(path, safe_mode=True)`:

    import keras
    import tfkit.saving

    G = keras.saving.load_model("runs/gan/00000/G_ema.keras", safe_mode=True)

`load_model(path)` does both. `import tfkit` alone does not import TensorFlow, so it cannot
register anything.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import keras

PACKAGE = "tfkit"

# the modules that define registered objects (tests check that none is missing)
MODULES: tuple[str, ...] = (
    "tfkit.models.layers",
    "tfkit.models.subclassed",
    "tfkit.models.cells",
    "tfkit.training.losses",
    "tfkit.training.optimizers",
    "tfkit.stylegan.layers",
    "tfkit.stylegan.mapping",
    "tfkit.stylegan.synthesis",
    "tfkit.stylegan.discriminator",
    "tfkit.stylegan.augment",
)

for _module in MODULES:
    importlib.import_module(_module)


def registered_objects() -> dict[str, Any]:
    """`{"tfkit>Name": class or function}` for every registered tfkit object."""
    prefix = f"{PACKAGE}>"
    return {
        name: obj
        for name, obj in keras.saving.get_custom_objects().items()
        if name.startswith(prefix)
    }


def load_model(path: str | os.PathLike, compile: bool = True) -> keras.Model:
    """Load a `.keras` file written by tfkit, in Keras safe mode.

    Args:
        path: the `.keras` file.
        compile: restore the training configuration (loss, optimizer, metrics) if saved.
    """
    return keras.saving.load_model(path, compile=compile, safe_mode=True)
