"""Decode image files with PIL as TensorFlow's `decode_image` does (no TensorFlow here).

PIL's `convert("L"/"RGB")` clips 16-bit pixels to 255 (a 16-bit PNG turns white), so 16-bit
and 32-bit integer images are scaled to 8 bits first, as `tf.io.decode_png(dtype=uint8)`
does; palette images are expanded through their palette.
"""

from __future__ import annotations

import numpy as np


def to_mode(img, mode: str):
    """`img` (a PIL image) converted to `mode` (`L` or `RGB`), 16-bit values scaled to 8 bits."""
    from PIL import Image

    if img.mode.startswith("I;16") or img.mode == "I":
        values = np.asarray(img, np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or values.max() > 255 else 255.0
        img = Image.fromarray(np.round(values / top * 255.0).clip(0, 255).astype(np.uint8))
    elif img.mode == "F":
        values = np.asarray(img, np.float64)
        img = Image.fromarray(np.round(values.clip(0, 1) * 255.0).astype(np.uint8))
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert(mode)
