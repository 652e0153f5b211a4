"""The GAN image reader: the training images of an experiment config as (image, label).

The StyleGAN trainer, `tfkit gan` and `tfkit data inspect` read GAN images through this one
function, so the checks on them (square, RGB, values in [-1, 1]) are written once.
"""

from __future__ import annotations

import tensorflow as tf

from tfkit.data.input_pipeline import build
from tfkit.errors import UserError


def load_images(cfg) -> tuple[tf.data.Dataset, int, int]:
    """The training images of `cfg.data` as an unbatched dataset of (image, label).

    Images are float32 in [-1, 1], NHWC, read by `tfkit.data.build`.

    Returns:
        (dataset, resolution, num_classes); num_classes is 0 without labels.

    Raises:
        UserError: images that are not square or not 3-channel RGB, or `data.normalize`
            other than `minus_one_one`.
    """
    splits = build(cfg.data, seed=cfg.runtime.seed)
    ds = splits.train.unbatch()
    num_classes = int(splits.spec.num_classes or 0)
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
    if len(shape) != 3 or shape[0] != shape[1]:
        raise UserError(
            f"GAN training needs square images (H, W, C). Received: image shape {shape}"
        )
    if shape[2] != 3:
        raise UserError(
            f"GAN training needs RGB images with 3 channels. Received: {shape[2]} channels"
        )
    return ds, int(shape[0]), num_classes
