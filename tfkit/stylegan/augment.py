"""Adaptive discriminator augmentation (ADA): what the discriminator sees.

Karras et al., "Training Generative Adversarial Networks with Limited Data" (2020): every
image shown to D (reals and fakes, in D-main, D-reg and G-main) goes through the same
random, differentiable transforms, each applied with probability `p`. D cannot memorise
a small data set, and since the transforms are "non-leaking" at p < ~0.8, G still learns
the un-augmented distribution. With `gan.augment: ada` the trainer adjusts p from the sign
of D's outputs on reals (`ada_adjustment`).

The transform groups and their parameters follow stylegan2-ada-pytorch's `AugmentPipe`:

    blit    x-flip, 90-degree rotations, integer translation (exact pixel copies)
    geom    isotropic scaling, arbitrary rotation, anisotropic scaling, fractional
            translation: one 3x3 matrix per image, resampled once with reflect padding,
            upsampling by 2 through a sym6 lowpass filter, bilinear sampling, lowpass
            filtering and downsampling by 2 (no edge leaks, no aliasing)
    color   brightness, contrast, luma flip, hue rotation, saturation: one 4x4 color matrix
    filter  random amplification of 4 frequency bands
    noise   additive Gaussian RGB noise
    cutout  a zeroed square of half the image size

Unlike the reference, blit moves pixels exactly (a gather, no resampling), and an image
whose geometric (or filter) transform is the identity is passed through unchanged, so
`p = 0` is exactly the identity. Images are NHWC float32.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from tfkit.config import gan_default
from tfkit.stylegan.presets import AUGMENT_GROUPS, parse_augpipe

DEFAULT_AUGPIPE = gan_default("augpipe")  # `gan.augpipe`'s default

# every transform of the pipeline's groups at full probability (the reference's
# multipliers are all 1)
GROUPS = {group: dict.fromkeys(names, 1.0) for group, names in AUGMENT_GROUPS.items()}

# transform parameters (the reference's defaults)
XINT_MAX = 0.125  # integer translation range, fraction of the image size
SCALE_STD = 0.2  # log2 std of isotropic scaling
ROTATE_MAX = 1.0  # rotation range, 1 = full circle
ANISO_STD = 0.2  # log2 std of anisotropic scaling
XFRAC_STD = 0.125  # std of fractional translation, fraction of the image size
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5  # log2
HUE_MAX = 1.0  # 1 = full circle
SATURATION_STD = 1.0  # log2
IMGFILTER_STD = 1.0  # log2 std of a band's amplification
NOISE_STD = 0.1
CUTOUT_SIZE = 0.5  # fraction of the image size

# wavelet lowpass filters (published coefficients)
SYM2 = (-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025)
SYM6 = (
    0.015404109327027373,
    0.0034907120842174702,
    -0.11799011114819057,
    -0.048311742585633,
    0.4910559419267466,
    0.787641141030194,
    0.3379294217276218,
    -0.07263752278646252,
    -0.021060292512300564,
    0.04472490177066578,
    0.0017677118642428036,
    -0.007800708325034148,
)


def ada_adjustment(
    p: float, rt: float, target: float, batch: int, interval: int, ada_kimg: float
) -> float:
    """The ADA update of p after `interval` iterations of `batch` images with mean
    sign(D(real)) `rt`: p moves by batch * interval / (ada_kimg * 1000) towards more
    augmentation when D is overconfident (rt > target), clamped to [0, 1]."""
    step = batch * interval / (ada_kimg * 1000)
    return float(min(max(p + np.sign(rt - target) * step, 0.0), 1.0))


def _filter_bank() -> np.ndarray:
    """The 4-band (one lowpass, three octaves of highpass) filter bank built from sym2:
    its rows sum to the identity filter."""
    lo = np.asarray(SYM2)
    hi = lo * ((-1.0) ** np.arange(lo.size))
    lo2 = np.convolve(lo, lo[::-1]) / 2
    hi2 = np.convolve(hi, hi[::-1]) / 2
    bank = np.eye(4, 1)
    for i in range(1, 4):
        up = np.zeros((4, bank.shape[1] * 2 - 1))
        up[:, ::2] = bank  # insert zeros between taps
        bank = np.stack([np.convolve(row, lo2) for row in up])
        start = (bank.shape[1] - hi2.size) // 2
        bank[i, start : start + hi2.size] += hi2
    return bank.astype(np.float32)


def _normal(u: tf.Tensor) -> tf.Tensor:
    """Standard normal values from uniform (0, 1) values (inverse CDF)."""
    u = tf.clip_by_value(u, 1e-7, 1.0 - 1e-7)
    return math.sqrt(2.0) * tf.math.erfinv(2.0 * u - 1.0)


def _mat3(rows) -> tf.Tensor:
    """A [N, 3, 3] stack from 3 rows of 3 entries ([N] tensors or Python numbers)."""
    ref = next(x for row in rows for x in row if isinstance(x, tf.Tensor))
    entries = [
        x if isinstance(x, tf.Tensor) else tf.fill(tf.shape(ref), float(x))
        for row in rows
        for x in row
    ]
    return tf.reshape(tf.stack(entries, axis=-1), [-1, 3, 3])


def _reflect(index: tf.Tensor, size: int) -> tf.Tensor:
    """Indices reflected into [0, size) without repeating the edge (numpy 'reflect')."""
    if size == 1:
        return tf.zeros_like(index)
    period = 2 * (size - 1)
    index = tf.math.floormod(index, period)
    return tf.where(index >= size, period - index, index)


def _gather_pixels(images: tf.Tensor, y: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """`images[n, y[n, i, j], x[n, i, j]]` for NHWC `images` and int32 [N, H', W'] indices.

    The same values as `tf.gather_nd(images, tf.stack([y, x], -1), batch_dims=1)`, as one
    flat gather: gather_nd's batch_dims path transposes an int32 index grid, which makes
    oneDNN print an `oneDNN supports DT_INT32 only on platforms with AVX-512` error line on
    CPUs without AVX-512.
    """
    shape = tf.shape(images)
    n, h, w = shape[0], shape[1], shape[2]
    flat = tf.reshape(images, [-1, shape[3]])
    base = tf.reshape(tf.range(n) * (h * w), [-1, 1, 1])
    return tf.gather(flat, base + y * w + x)


def _upsample_matrix(size: int, before: tf.Tensor, after: tf.Tensor, f: np.ndarray):
    """[2 (size + before + after), size]: reflect-pad a signal of `size` samples by
    (`before`, `after`), insert a zero after every sample and convolve with the lowpass
    filter `f` at gain 2, as one matrix (row k of the output from the input samples)."""
    length = size + before + after
    k = tf.range(2 * length)[:, None]
    i = tf.range(length)[None, :]
    # output k takes the zero-inserted sample 2 i through tap (L - 1 - lead) + k - 2 i of f,
    # lead = (L + 1) // 2 zeros being padded in front
    tap = (f.size - 1 - (f.size + 1) // 2) + k - 2 * i
    valid = (tap >= 0) & (tap < f.size)
    taps = 2 * tf.gather(tf.constant(f), tf.clip_by_value(tap, 0, f.size - 1))
    up = tf.where(valid, taps, 0.0)  # [2 length, length]
    reflect = tf.one_hot(_reflect(tf.range(-before, size + after), size), size)
    return up @ reflect


def _separable(images: tf.Tensor, rows, cols) -> tf.Tensor:
    """`rows @ image @ cols^T` for every image and channel of an NHWC batch."""
    x = tf.transpose(images, [0, 3, 1, 2])
    x = tf.matmul(tf.matmul(tf.cast(rows, x.dtype), x), tf.cast(cols, x.dtype), transpose_b=True)
    return tf.transpose(x, [0, 2, 3, 1])


def _downsample_matrix(size: int, canvas: int, f: np.ndarray) -> np.ndarray:
    """[size, canvas]: crop one sample at each end of a `canvas` of 2 (size + f.size / 4)
    samples, correlate with the lowpass filter `f` and keep every second sample."""
    matrix = np.zeros((size, canvas), np.float32)
    for o in range(size):
        matrix[o, 2 * o + 1 : 2 * o + 1 + f.size] = f
    return matrix


@keras.saving.register_keras_serializable(package="tfkit")
class AugmentPipe(keras.layers.Layer):
    """Random differentiable augmentation of NHWC image batches, each transform with
    probability `p` (see the module docstring for the groups).

    Args:
        augpipe: pipeline name: `bgc` (default), any of blit, geom, color, filter, noise,
            cutout, bg, bgc, bgcf, bgcfn, bgcfnc, or group names joined by `+`.
        initial_p: the starting augmentation probability.
        **kwargs: passed to `keras.layers.Layer`.

    Call arguments:
        images: float NHWC batch (any value range; GAN images are in [-1, 1]).
        seed: int32 [2] stateless seed of the per-image draws and the pixel noise
            (default: drawn from TensorFlow's global generator).
        randoms: [N, num_randoms] uniform (0, 1) values to use for the per-image draws
            instead of `seed` (the trainer draws them per example for the global batch, so
            the augmentation does not depend on how the batch is split over replicas).

    The probability lives in the non-trainable variable `p` (ADA assigns it).

    Example:
        >>> pipe = AugmentPipe("bgc", initial_p=0.5)
        >>> augmented = pipe(images, seed=tf.constant([1, 2]))
    """

    def __init__(self, augpipe: str = DEFAULT_AUGPIPE, initial_p: float = 0.0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.augpipe = augpipe
        self.initial_p = float(initial_p)
        self.groups = parse_augpipe(augpipe)
        self.strengths = {k: v for g in self.groups for k, v in GROUPS[g].items()}
        self.p = self.add_weight(
            name="p",
            shape=(),
            initializer=keras.initializers.Constant(self.initial_p),
            trainable=False,
            aggregation="only_first_replica",
        )
        # the per-image uniform draws each transform takes, in a fixed order
        draws = dict(
            xflip=2,
            rotate90=2,
            xint=3,
            scale=2,
            rotate=4,
            aniso=2,
            xfrac=3,
            brightness=2,
            contrast=2,
            lumaflip=2,
            hue=2,
            saturation=2,
            imgfilter=8,
            noise=2,
            cutout=3,
        )
        self._slots: dict[str, int] = {}
        for name in draws:
            if name in self.strengths:
                self._slots[name] = sum(draws[k] for k in self._slots)
        self.num_randoms = sum(draws[k] for k in self._slots)
        self._bank = _filter_bank()
        self._geom_filter = np.asarray(SYM6, np.float32) / np.float32(sum(SYM6))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(augpipe=self.augpipe, initial_p=self.initial_p)
        return config

    def compute_output_shape(self, input_shape):
        return input_shape

    # ------------------------------------------------------------------ call

    def call(self, images, seed=None, randoms=None):
        images = tf.convert_to_tensor(images)
        if seed is None:
            seed = tf.random.uniform([2], 0, 2**31 - 1, dtype=tf.int32)
        seed = tf.cast(seed, tf.int32)
        n = tf.shape(images)[0]
        if randoms is None:
            randoms = tf.random.stateless_uniform([n, self.num_randoms], seed)
        u = tf.cast(randoms, tf.float32)
        p = tf.cast(tf.convert_to_tensor(self.p), tf.float32)

        def draw(name: str, k: int) -> tf.Tensor:
            return u[:, self._slots[name] + k]

        def chosen(name: str, k: int, probability=None) -> tf.Tensor:
            if probability is None:
                probability = self.strengths[name] * p
            return draw(name, k) < probability

        out = images
        if "blit" in self.groups:
            out = self._blit(out, draw, chosen)
        if "geom" in self.groups:
            out = self._geom(out, draw, chosen, p)
        if "color" in self.groups:
            out = self._color(out, draw, chosen)
        if "filter" in self.groups:
            out = self._imgfilter(out, draw, chosen, p)
        if "noise" in self.groups:
            sigma = tf.abs(_normal(draw("noise", 0))) * NOISE_STD
            sigma = tf.where(chosen("noise", 1), sigma, 0.0)
            noise = tf.random.stateless_normal(
                tf.shape(out), tf.random.experimental.stateless_fold_in(seed, 7)
            )
            out = out + noise * tf.cast(tf.reshape(sigma, [-1, 1, 1, 1]), out.dtype)
        if "cutout" in self.groups:
            out = self._cutout(out, draw, chosen)
        return out

    # ------------------------------------------------------------ the groups

    def _blit(self, images, draw, chosen):
        """x-flip, 90-degree rotations and integer translation as one exact pixel gather
        (reflected at the borders)."""
        h, w = images.shape[1], images.shape[2]
        zeros = tf.zeros_like(draw("xflip", 0))
        flip = tf.where(chosen("xflip", 1), tf.floor(draw("xflip", 0) * 2), zeros)
        quarter = tf.where(chosen("rotate90", 1), tf.floor(draw("rotate90", 0) * 4), zeros)
        if h != w:
            quarter = zeros  # a 90-degree rotation keeps the shape of square images only
        t = (tf.stack([draw("xint", 0), draw("xint", 1)], -1) * 2 - 1) * XINT_MAX
        t = tf.where(chosen("xint", 2)[:, None], t, 0.0)
        tx, ty = tf.round(t[:, 0] * w), tf.round(t[:, 1] * h)
        # output pixel (centred coordinates) -> input pixel: flip^-1 rot^-1 shift^-1
        angle = -math.pi / 2 * quarter
        cos, sin = tf.round(tf.cos(angle)), tf.round(tf.sin(angle))
        inv = _mat3([[1 - 2 * flip, 0, 0], [0, 1, 0], [0, 0, 1]])
        inv = inv @ _mat3([[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]])
        inv = inv @ _mat3([[1, 0, -tx], [0, 1, -ty], [0, 0, 1]])
        cx, cy = (w - 1) / 2, (h - 1) / 2
        ys, xs = tf.meshgrid(
            tf.range(h, dtype=tf.float32) - cy, tf.range(w, dtype=tf.float32) - cx, indexing="ij"
        )
        grid = tf.stack([xs, ys, tf.ones_like(xs)], -1)  # [h, w, 3]
        src = tf.einsum("nij,hwj->nhwi", inv, grid)
        sx = _reflect(tf.cast(tf.round(src[..., 0] + cx), tf.int32), w)
        sy = _reflect(tf.cast(tf.round(src[..., 1] + cy), tf.int32), h)
        return _gather_pixels(images, sy, sx)

    def _geom(self, images, draw, chosen, p):
        """The general geometric transforms as one inverse matrix per image, resampled once."""
        h, w = images.shape[1], images.shape[2]
        ones = tf.ones_like(draw("scale", 0))
        zeros = tf.zeros_like(ones)
        inv = _mat3([[ones, 0, 0], [0, 1, 0], [0, 0, 1]])
        s = tf.where(chosen("scale", 1), tf.pow(2.0, _normal(draw("scale", 0)) * SCALE_STD), ones)
        inv = inv @ _mat3([[1 / s, 0, 0], [0, 1 / s, 0], [0, 0, 1]])
        # rotation before and after the anisotropic scaling: P(either) = p
        p_rot = 1 - tf.sqrt(tf.clip_by_value(1 - self.strengths["rotate"] * p, 0.0, 1.0))

        def rotation(k: int):
            theta = (draw("rotate", k) * 2 - 1) * math.pi * ROTATE_MAX
            theta = tf.where(chosen("rotate", k + 1, p_rot), theta, zeros)
            c, sn = tf.cos(theta), tf.sin(theta)
            return _mat3([[c, -sn, 0], [sn, c, 0], [0, 0, 1]])

        inv = inv @ rotation(0)
        a = tf.where(chosen("aniso", 1), tf.pow(2.0, _normal(draw("aniso", 0)) * ANISO_STD), ones)
        inv = inv @ _mat3([[1 / a, 0, 0], [0, a, 0], [0, 0, 1]])
        inv = inv @ rotation(2)
        t = tf.stack([_normal(draw("xfrac", 0)), _normal(draw("xfrac", 1))], -1) * XFRAC_STD
        t = tf.where(chosen("xfrac", 2)[:, None], t, 0.0)
        inv = inv @ _mat3([[ones, 0, -t[:, 0] * w], [0, 1, -t[:, 1] * h], [0, 0, 1]])
        identity = tf.reduce_all(tf.equal(inv, tf.eye(3)), axis=[1, 2])
        return tf.cond(
            tf.reduce_all(identity),
            lambda: images,
            lambda: tf.where(identity[:, None, None, None], images, self._resample(images, inv)),
        )

    def _resample(self, images, inv):
        """Apply output->input matrices `inv` (centred pixel coordinates): reflect-pad,
        upsample x2 through the lowpass filter, sample bilinearly, lowpass, downsample x2.

        The padding and the filters are separable linear maps, applied as small matrix
        products per axis (`_upsample_matrix`, `_downsample_matrix`); only the bilinear
        sampling is a gather.
        """
        h, w = images.shape[1], images.shape[2]
        f = self._geom_filter
        pad = f.size // 4
        cx, cy = (w - 1) / 2, (h - 1) / 2
        corners = tf.constant([[-cx, cx, cx, -cx], [-cy, -cy, cy, cy], [1, 1, 1, 1]], tf.float32)
        cp = inv @ corners  # [N, 3, 4]: where the output's corners come from
        xs, ys = cp[:, 0], cp[:, 1]
        margin = tf.stack(
            [tf.reduce_max(-xs), tf.reduce_max(-ys), tf.reduce_max(xs), tf.reduce_max(ys)]
        )
        margin = margin + tf.constant([2 * pad - cx, 2 * pad - cy] * 2, tf.float32)
        margin = tf.clip_by_value(margin, 0.0, tf.constant([w - 1, h - 1] * 2, tf.float32))
        mx0, my0, mx1, my1 = tf.unstack(tf.cast(tf.math.ceil(margin), tf.int32))
        shift = tf.cast(tf.stack([mx0 - mx1, my0 - my1]), tf.float32) / 2
        # reflect-pad and upsample x2 (zero insertion, then the filter with gain 2)
        up = _separable(images, _upsample_matrix(h, my0, my1, f), _upsample_matrix(w, mx0, mx1, f))
        # output pixel k of the (h + 2 pad) * 2 canvas -> input index of `up`
        ho, wo = (h + 2 * pad) * 2, (w + 2 * pad) * 2
        yo, xo = tf.meshgrid(
            tf.range(ho, dtype=tf.float32) - (ho - 1) / 2,
            tf.range(wo, dtype=tf.float32) - (wo - 1) / 2,
            indexing="ij",
        )
        # centred coordinates at half scale, shifted by half a sample (the reference's
        # conjugation of the matrix by scale 2 and translate -0.5)
        xo, yo = (xo + 0.5) / 2, (yo + 0.5) / 2
        grid = tf.stack([xo, yo, tf.ones_like(xo)], -1)
        src = tf.einsum("nij,hwj->nhwi", inv, grid)
        hin, win = tf.shape(up)[1], tf.shape(up)[2]
        sx = (src[..., 0] + shift[0]) * 2 - 0.5 + (tf.cast(win, tf.float32) - 1) / 2
        sy = (src[..., 1] + shift[1]) * 2 - 0.5 + (tf.cast(hin, tf.float32) - 1) / 2
        sampled = _bilinear(up, sx, sy)
        # lowpass, crop the margin and downsample x2 (the filter reversed: zero phase overall)
        return _separable(sampled, _downsample_matrix(h, ho, f), _downsample_matrix(w, wo, f))

    def _color(self, images, draw, chosen):
        """Brightness, contrast, luma flip, hue rotation and saturation as one 4x4 matrix."""
        ones = tf.ones_like(draw("brightness", 0))
        n = tf.shape(ones)[0]
        eye = tf.eye(4, batch_shape=[n])
        v = tf.constant([1, 1, 1, 0], tf.float32) / math.sqrt(3)
        vv = tf.tensordot(v, v, axes=0)
        b = tf.where(chosen("brightness", 1), _normal(draw("brightness", 0)) * BRIGHTNESS_STD, 0.0)
        m = eye + tf.concat(
            [tf.zeros([n, 4, 3]), tf.reshape(tf.stack([b, b, b, 0 * b], -1), [n, 4, 1])], -1
        )
        c = tf.where(
            chosen("contrast", 1), tf.pow(2.0, _normal(draw("contrast", 0)) * CONTRAST_STD), ones
        )
        m = tf.linalg.diag(tf.stack([c, c, c, ones], -1)) @ m
        flip = tf.where(chosen("lumaflip", 1), tf.floor(draw("lumaflip", 0) * 2), 0.0)
        m = (eye - 2 * vv * flip[:, None, None]) @ m
        if images.shape[-1] > 1:
            theta = (draw("hue", 0) * 2 - 1) * math.pi * HUE_MAX
            theta = tf.where(chosen("hue", 1), theta, 0.0)
            m = _rotate_about(v, theta) @ m
            s = tf.where(
                chosen("saturation", 1),
                tf.pow(2.0, _normal(draw("saturation", 0)) * SATURATION_STD),
                ones,
            )
            m = (vv + (tf.eye(4) - vv) * s[:, None, None]) @ m
        if images.shape[-1] == 3:
            return tf.einsum("nij,nhwj->nhwi", m[:, :3, :3], images) + m[:, None, None, :3, 3]
        # one channel: the mean of the RGB rows
        rows = tf.reduce_mean(m[:, :3], axis=1)
        gain = tf.reduce_sum(rows[:, :3], -1)
        return images * gain[:, None, None, None] + rows[:, 3][:, None, None, None]

    def _imgfilter(self, images, draw, chosen, p):
        """Random amplification of 4 frequency bands (power-normalised), separable, reflect-padded."""
        bank = tf.constant(self._bank)
        bands = bank.shape[0]
        expected = tf.constant([10, 1, 1, 1], tf.float32) / 13  # a 1/f power spectrum
        n = tf.shape(images)[0]
        gains = tf.ones([n, bands])
        applied = tf.zeros([n], tf.bool)
        for i in range(bands):
            on = chosen("imgfilter", 2 * i + 1)
            applied = applied | on
            t_i = tf.where(on, tf.pow(2.0, _normal(draw("imgfilter", 2 * i)) * IMGFILTER_STD), 1.0)
            t = tf.tensor_scatter_nd_update(tf.ones([bands, n]), [[i]], t_i[None])
            t = tf.transpose(t)
            t = t / tf.sqrt(tf.reduce_sum(expected * tf.square(t), -1, keepdims=True))
            gains = gains * t
        taps = gains @ bank  # [n, taps]

        def filtered():
            h, w, c = images.shape[1], images.shape[2], images.shape[3]
            half = bank.shape[1] // 2
            x = tf.gather(images, _reflect(tf.range(-half, h + half), h), axis=1)
            x = tf.gather(x, _reflect(tf.range(-half, w + half), w), axis=2)
            # one depthwise channel per (image, channel)
            x = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, h + 2 * half, w + 2 * half, -1])
            kernel = tf.reshape(tf.repeat(taps, c, axis=0), [-1, bank.shape[1]])
            kernel = tf.transpose(kernel)[:, None, :, None]  # [taps, 1, n*c, 1]
            x = tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "VALID")
            x = tf.nn.depthwise_conv2d(x, tf.transpose(kernel, [1, 0, 2, 3]), [1, 1, 1, 1], "VALID")
            x = tf.transpose(tf.reshape(x, [h, w, n, c]), [2, 0, 1, 3])
            return tf.where(applied[:, None, None, None], x, images)

        return tf.cond(tf.reduce_any(applied), filtered, lambda: images)

    def _cutout(self, images, draw, chosen):
        h, w = images.shape[1], images.shape[2]
        size = tf.where(chosen("cutout", 2), CUTOUT_SIZE, 0.0)[:, None, None]
        cx, cy = draw("cutout", 0)[:, None, None], draw("cutout", 1)[:, None, None]
        xs = (tf.range(w, dtype=tf.float32)[None, None, :] + 0.5) / w
        ys = (tf.range(h, dtype=tf.float32)[None, :, None] + 0.5) / h
        keep = (tf.abs(xs - cx) >= size / 2) | (tf.abs(ys - cy) >= size / 2)
        return images * tf.cast(keep, images.dtype)[..., None]


def _rotate_about(v: tf.Tensor, theta: tf.Tensor) -> tf.Tensor:
    """[N, 4, 4] homogeneous rotations by `theta` about the unit 3-vector `v` (Rodrigues)."""
    vx, vy, vz = v[0], v[1], v[2]
    s, c = tf.sin(theta), tf.cos(theta)
    cc = 1 - c
    zero, one = tf.zeros_like(theta), tf.ones_like(theta)
    rows = [
        [vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, zero],
        [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, zero],
        [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, zero],
        [zero, zero, zero, one],
    ]
    return tf.reshape(tf.stack([x for row in rows for x in row], -1), [-1, 4, 4])


def _bilinear(images, x, y):
    """Sample NHWC `images` at fractional pixel indices (x, y) [N, H', W']; zero outside.

    Differentiable in `images` (not in x, y); the gradient is the transposed sampling as
    one sparse matrix product (`_sample`).
    """
    shape = tf.shape(images)
    n, hin, win, c = shape[0], shape[1], shape[2], images.shape[-1]
    x0, y0 = tf.floor(x), tf.floor(y)
    wx1, wy1 = x - x0, y - y0
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    base = tf.reshape(tf.range(n) * (hin * win), [-1, 1, 1])
    pixels, weights = [], []
    for dy, wy in ((0, 1 - wy1), (1, wy1)):
        for dx, wx in ((0, 1 - wx1), (1, wx1)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < win) & (yi >= 0) & (yi < hin)
            yc, xc = tf.clip_by_value(yi, 0, hin - 1), tf.clip_by_value(xi, 0, win - 1)
            pixels.append(tf.reshape(base + yc * win + xc, [-1]))
            weights.append(tf.reshape(tf.where(inside, wx * wy, 0.0), [-1]))
    out = _sample(tf.reshape(images, [-1, c]), tf.stack(pixels, 1), tf.stack(weights, 1))
    return tf.reshape(out, tf.concat([tf.shape(x), [c]], 0))


@tf.custom_gradient
def _sample(flat, pixels, weights):
    """Rows `sum_k flat[pixels[:, k]] * weights[:, k]` of a [P, C] matrix: the product
    S @ flat with a sparse S of 4 entries per row.

    The gradient is S^T @ g as a sparse matrix product: `tf.gather`'s own gradient (an
    unsorted segment sum) costs several times more on CPU. It is itself differentiable
    (R1 differentiates it once more).
    """
    out = 0.0
    for k in range(4):
        out = out + tf.gather(flat, pixels[:, k]) * tf.expand_dims(weights[:, k], -1)

    def grad(upstream):
        rows = tf.shape(pixels)[0]
        indices = tf.stack([tf.repeat(tf.range(rows), 4), tf.reshape(pixels, [-1])], 1)
        matrix = tf.sparse.SparseTensor(
            tf.cast(indices, tf.int64),
            tf.reshape(weights, [-1]),
            tf.cast(tf.stack([rows, tf.shape(flat)[0]]), tf.int64),
        )
        return tf.sparse.sparse_dense_matmul(matrix, upstream, adjoint_a=True), None, None

    return out, grad
