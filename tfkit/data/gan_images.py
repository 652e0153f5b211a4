"""The GAN image reader: the training images of an experiment config as (image, label).

The StyleGAN trainer, `tfkit gan` and `tfkit data inspect` read GAN images through this one
function, so the checks on them (square, RGB, values in [-1, 1]) are written once.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfkit.errors import UserError


def load_images(cfg) -> tuple[tf.data.Dataset, int, int]:
    """The training images of `cfg.data` as an unbatched dataset of (image, label).

    Images are float32 in [-1, 1], NHWC. Uses `tfkit.data.build` when available; the
    embedded sources are read directly otherwise.

    Returns:
        (dataset, resolution, num_classes); num_classes is 0 without labels.

    Raises:
        UserError: images that are not square or not 3-channel RGB.
    """
    try:
        from tfkit.data import build  # noqa: F401
    except ImportError:
        build = None
    if build is not None:
        splits = build(cfg.data, seed=cfg.runtime.seed)
        ds = splits.train.unbatch()
        spec = getattr(splits, "spec", None)
        num_classes = int(getattr(spec, "num_classes", 0) or 0)
        elem = ds.element_spec
        img_spec = elem[0] if isinstance(elem, tuple) else elem
        if not isinstance(elem, tuple):
            ds = ds.map(lambda x: (x, tf.zeros([], tf.int32)))
        else:
            ds = ds.map(
                lambda x, y, *rest: (
                    x,
                    tf.cast(y, tf.int32) if num_classes else tf.zeros([], tf.int32),
                )
            )
        shape = tuple(img_spec.shape)
        if cfg.data.normalize != "minus_one_one":
            raise UserError(
                f"`data.normalize` must be 'minus_one_one' for GAN training (images in [-1, 1]). "
                f"Received: normalize={cfg.data.normalize!r}"
            )
    else:
        from tfkit.data.datasets import EMBEDDED, generate

        kind = cfg.data.source.kind
        if kind not in EMBEDDED:
            raise UserError(
                f"`data.source.kind` {kind!r} needs tfkit.data.build, which is not available."
            )
        arrays = generate(cfg.data.source)
        x = np.asarray(arrays.x, np.float32)
        low, high = arrays.value_range or (float(x.min()), float(x.max()))
        x = (x - low) / max(high - low, 1e-8) * 2.0 - 1.0
        y = np.zeros(len(x), np.int32) if arrays.y is None else np.asarray(arrays.y, np.int32)
        num_classes = int(arrays.num_classes or 0) if arrays.y is not None else 0
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        shape = x.shape[1:]
    if len(shape) != 3 or shape[0] != shape[1]:
        raise UserError(
            f"GAN training needs square images (H, W, C). Received: image shape {shape}"
        )
    if shape[2] != 3:
        raise UserError(
            f"GAN training needs RGB images with 3 channels. Received: {shape[2]} channels"
        )
    return ds, int(shape[0]), num_classes
