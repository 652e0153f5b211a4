"""Decode image files with PIL as TensorFlow's `decode_image` does (no TensorFlow here).

PIL's `convert("L"/"RGB")` clips 16-bit pixels to 255 (a 16-bit PNG turns white), so 16-bit
and 32-bit integer images are scaled to 8 bits first, as `tf.io.decode_png(dtype=uint8)`
does; palette images are expanded through their palette. `make_grid` tiles a batch of images
in [-1, 1] into one uint8 grid (the GAN trainer's and `tfkit gan`'s image grids).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfkit.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


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


def image_files(folder: str | Path, flag: str = "--input") -> list[Path]:
    """The image files below `folder` (recursively, sorted).

    Raises:
        UserError: the folder holds no image, naming `flag` and the folder.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(
            f"{flag} {folder}: no images ({'/'.join(IMAGE_SUFFIXES)}) in this directory"
        )
    return files


def check_image_sizes(
    files: list[Path], height: int, width: int, flag: str = "--input", hint: str = ""
) -> None:
    """Refuse the first image whose size is not `height` x `width` (reads only headers).

    Raises:
        UserError: naming the file, its size and the expected size (plus `hint`).
    """
    from PIL import Image

    for f in files:
        try:
            with Image.open(f) as img:
                w, h = img.size
        except (OSError, ValueError, SyntaxError) as err:  # PIL's errors for bad files
            raise UserError(f"{flag}: cannot decode image {f}: {err}") from None
        if (h, w) != (height, width):
            raise UserError(
                f"{flag}: {f} is {h}x{w} (height x width); the model takes {height}x{width} "
                f"images{hint}"
            )


def make_grid(images: np.ndarray, cols: int, rows: int) -> np.ndarray:
    """Tile (N, H, W, C) images in [-1, 1] into a uint8 (rows*H, cols*W, C) grid."""
    n, h, w, c = images.shape
    imgs = np.clip((images + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    if n < cols * rows:
        imgs = np.concatenate([imgs, np.zeros((cols * rows - n, h, w, c), np.uint8)])
    imgs = imgs[: cols * rows].reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4)
    return imgs.reshape(rows * h, cols * w, c)
