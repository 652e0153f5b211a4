"""StyleGAN in Keras 3: layers, mapping/synthesis/discriminator networks, GAN trainer.

Submodules import TensorFlow; this package file does not (names load lazily).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Generator": "tfkit.stylegan.synthesis",
    "SynthesisNetwork": "tfkit.stylegan.synthesis",
    "MappingNetwork": "tfkit.stylegan.mapping",
    "Discriminator": "tfkit.stylegan.discriminator",
    "Trainer": "tfkit.stylegan.trainer",
    "resolve_options": "tfkit.stylegan.presets",
    "PRESETS": "tfkit.stylegan.presets",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tfkit.stylegan' has no attribute {name!r}")
