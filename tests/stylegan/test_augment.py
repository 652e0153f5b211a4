"""The ADA augmentation pipeline: identity at p = 0, exact geometry, gradients, seeds, the
p adjustment, and its place in the trainer (state, replicas, logs)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfkit.stylegan.augment import AugmentPipe, _bilinear, _gather_pixels, ada_adjustment
from tfkit.stylegan.presets import AUGMENT_GROUPS, AUGPIPES

PIPES = [*AUGMENT_GROUPS, "bgcfnc", "blit+noise"]


def _images(n=6, res=16, seed=0, smooth=False):
    rs = np.random.RandomState(seed)
    if not smooth:
        return rs.uniform(-1, 1, (n, res, res, 3)).astype("float32")
    yy, xx = np.mgrid[0:res, 0:res] / res
    phase = rs.uniform(0, 2 * np.pi, (n, 1, 1, 3))
    return (0.8 * np.sin(2 * np.pi * (xx + yy)[None, ..., None] / 2 + phase)).astype("float32")


@pytest.mark.parametrize("name", PIPES)
def test_identity_at_p0_and_change_at_p1(name):
    x = _images()
    pipe = AugmentPipe(name)
    assert np.array_equal(pipe(x, seed=[1, 2]).numpy(), x)  # exactly, every transform
    pipe.p.assign(1.0)
    y = pipe(x, seed=[1, 2]).numpy()
    assert y.shape == x.shape and np.isfinite(y).all()
    changed = [not np.array_equal(a, b) for a, b in zip(x, y, strict=True)]
    assert sum(changed) >= len(x) // 2, changed


@pytest.mark.parametrize("name", PIPES)
def test_same_seed_same_output_other_seed_other_output(name):
    x = _images()
    pipe = AugmentPipe(name, initial_p=0.8)
    a, b = pipe(x, seed=[3, 4]).numpy(), pipe(x, seed=[3, 4]).numpy()
    assert np.array_equal(a, b)
    assert not np.array_equal(a, pipe(x, seed=[5, 6]).numpy())


def _blit_randoms(pipe, n, flip=0.0, quarter=0.0, shift=(0.5, 0.5)):
    """Per-image draws that choose every blit transform with given parameters."""
    u = np.full((n, pipe.num_randoms), 0.5, np.float32)
    u[:, 1] = u[:, 3] = u[:, 6] = 0.0  # chosen
    u[:, 0], u[:, 2], u[:, 4], u[:, 5] = flip, quarter, shift[0], shift[1]
    return u


def test_blit_moves_pixels_exactly():
    x = _images(n=2, res=8)
    pipe = AugmentPipe("blit", initial_p=1.0)
    flipped = pipe(x, randoms=_blit_randoms(pipe, 2, flip=0.75)).numpy()
    assert np.array_equal(flipped, x[:, :, ::-1])
    rotated = [pipe(x, randoms=_blit_randoms(pipe, 2, quarter=q)).numpy() for q in (0.3, 0.55, 0.8)]
    assert np.array_equal(rotated[1], x[:, ::-1, ::-1])  # a half turn
    for r in rotated:  # 90-degree turns: a permutation of the pixels of each image
        assert np.array_equal(np.sort(r.reshape(2, -1)), np.sort(x.reshape(2, -1)))
    assert np.array_equal(np.rot90(rotated[0], 2, axes=(1, 2)), rotated[2])
    # xint_max 0.125 of 8 pixels: u = 1 shifts by 1 pixel, reflected at the border
    shifted = pipe(x, randoms=_blit_randoms(pipe, 2, shift=(1.0, 0.5))).numpy()
    assert np.array_equal(shifted[:, :, 1:], x[:, :, :-1])
    assert np.array_equal(shifted[:, :, 0], x[:, :, 1])


@pytest.mark.parametrize("n,h,w,c", [(1, 1, 1, 1), (3, 5, 7, 2), (2, 8, 8, 3)])
def test_pixel_gather_equals_batched_gather_nd(n, h, w, c):
    rs = np.random.RandomState(h * w)
    images = tf.constant(rs.uniform(-1, 1, (n, h, w, c)).astype("float32"))
    y = tf.constant(rs.randint(0, h, (n, 4, 6)).astype("int32"))
    x = tf.constant(rs.randint(0, w, (n, 4, 6)).astype("int32"))
    expected = tf.gather_nd(images, tf.stack([y, x], -1), batch_dims=1)
    assert np.array_equal(_gather_pixels(images, y, x).numpy(), expected.numpy())


def test_augmenting_prints_no_onednn_int32_error():
    """blit and geom gather pixels without gather_nd's int32 transpose, which made oneDNN
    print `E0000 ... oneDNN supports DT_INT32 only on platforms with AVX-512` on stderr."""
    code = (
        "import numpy as np, tensorflow as tf\n"
        "from tfkit.stylegan.augment import AugmentPipe\n"
        "x = np.zeros((2, 8, 8, 3), 'float32')\n"
        "print(AugmentPipe('blit+geom', initial_p=1.0)(x, seed=tf.constant([1, 2])).shape)\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}  # as the CLI: errors still show
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "(2, 8, 8, 3)" in proc.stdout
    assert "DT_INT32" not in proc.stderr


def test_geom_resampling_is_exact_for_identity_and_integer_shifts():
    x = tf.constant(_images(n=3, res=16))
    pipe = AugmentPipe("geom")
    eye = tf.eye(3, batch_shape=[3])
    np.testing.assert_allclose(pipe._resample(x, eye).numpy(), x.numpy(), atol=1e-5)
    for dx, dy in ((2, 0), (0, -3), (1, 1)):
        shift = np.tile(np.array([[1, 0, -dx], [0, 1, -dy], [0, 0, 1]], np.float32), (3, 1, 1))
        y = pipe._resample(x, tf.constant(shift)).numpy()
        # away from the borders the output is the input moved by (dx, dy)
        np.testing.assert_allclose(
            np.roll(x.numpy(), (dy, dx), axis=(1, 2))[:, 4:-4, 4:-4], y[:, 4:-4, 4:-4], atol=1e-5
        )


def _numpy_resample(x, inv, f):
    """The geometric resampling written out in NumPy: reflect-pad by the largest margin,
    insert zeros and convolve (gain 2), sample bilinearly (zero outside), lowpass and keep
    every second sample."""
    n, h, w, c = x.shape
    pad = f.size // 4
    my, mx = h - 1, w - 1
    padded = np.pad(x, [(0, 0), (my, my), (mx, mx), (0, 0)], mode="reflect")

    def upsample(a, axis):
        z = np.zeros_like(np.repeat(a, 2, axis=axis))
        index = [slice(None)] * 4
        index[axis] = slice(0, None, 2)
        z[tuple(index)] = a
        full = np.apply_along_axis(lambda v: np.convolve(v, 2 * f), axis, z)
        index[axis] = slice(f.size // 2 - 1, f.size // 2 - 1 + z.shape[axis])
        return full[tuple(index)]

    up = upsample(upsample(padded, 1), 2)
    ho, wo = (h + 2 * pad) * 2, (w + 2 * pad) * 2
    yo, xo = np.mgrid[0:ho, 0:wo].astype(np.float64)
    xo, yo = (xo - (wo - 1) / 2 + 0.5) / 2, (yo - (ho - 1) / 2 + 0.5) / 2
    out = np.zeros((n, ho, wo, c))
    for i in range(n):
        sx = inv[i, 0, 0] * xo + inv[i, 0, 1] * yo + inv[i, 0, 2]
        sy = inv[i, 1, 0] * xo + inv[i, 1, 1] * yo + inv[i, 1, 2]
        sx, sy = 2 * (sx + (w - 1) / 2 + mx), 2 * (sy + (h - 1) / 2 + my)
        x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
        for dy in (0, 1):
            for dx in (0, 1):
                xi, yi = x0 + dx, y0 + dy
                weight = (1 - np.abs(sx - xi)) * (1 - np.abs(sy - yi))
                inside = (xi >= 0) & (xi < up.shape[2]) & (yi >= 0) & (yi < up.shape[1])
                values = up[i, np.clip(yi, 0, up.shape[1] - 1), np.clip(xi, 0, up.shape[2] - 1)]
                out[i] += np.where(inside, weight, 0)[..., None] * values

    def downsample(a, axis, size):
        low = np.apply_along_axis(lambda v: np.correlate(v, f, "valid"), axis, a)
        return np.take(low, 1 + 2 * np.arange(size), axis=axis)

    return downsample(downsample(out, 1, h), 2, w)


@pytest.mark.parametrize("res", [8, 16])
def test_geom_resampling_equals_the_numpy_composition(res):
    """Padding, upsampling and downsampling as matrix products give the same images as
    padding, zero insertion and convolution written out (random rotations, scalings,
    anisotropy and translations; the NumPy version pads by the largest margin, which
    changes values near the borders by < 1e-5)."""
    rs = np.random.RandomState(res)
    x = _images(n=5, res=res, seed=res)
    inv = []
    for k in range(5):
        angle, scale, aniso = (
            rs.uniform(-np.pi, np.pi),
            2 ** rs.normal(0, 0.3),
            2 ** rs.normal(0, 0.2),
        )
        c, s = np.cos(angle), np.sin(angle)
        m = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag(
            [scale * aniso, scale / aniso, 1]
        )
        m[:2, 2] = rs.normal(0, 0.125 * res, 2) if k else 0.0
        inv.append(m)
    inv = np.asarray(inv, np.float32)
    pipe = AugmentPipe("geom")
    got = pipe._resample(tf.constant(x), tf.constant(inv)).numpy()
    expected = _numpy_resample(x.astype(np.float64), inv.astype(np.float64), pipe._geom_filter)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_geom_keeps_shape_and_value_range_of_smooth_images():
    x = _images(n=16, res=16, smooth=True)
    pipe = AugmentPipe("bg", initial_p=1.0)
    y = pipe(x, seed=[7, 8]).numpy()
    assert y.shape == x.shape
    # reflect padding: no black borders; the lowpass filter rings only slightly
    assert y.min() >= x.min() - 0.05 and y.max() <= x.max() + 0.05
    assert not np.array_equal(y, x)


@pytest.mark.parametrize("name", ["blit", "geom", "color", "filter", "cutout", "bgcfnc"])
def test_gradients_reach_the_input_as_the_exact_adjoint(name):
    """For fixed draws a transform is affine, f(x) = A x + b, so the gradient of <v, f(x)>
    is A^T v: <A^T v, u> must equal <v, f(x + u) - f(x)> (the dot-product test)."""
    pipe = AugmentPipe(name, initial_p=1.0)
    x = tf.constant(_images(n=4, res=8))
    u, v = tf.constant(_images(n=4, res=8, seed=1)), tf.constant(_images(n=4, res=8, seed=2))
    randoms = tf.random.stateless_uniform([4, pipe.num_randoms], [0, 1])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = pipe(x, seed=[0, 0], randoms=randoms)
        dot = tf.reduce_sum(v * y)
    adjoint = tape.gradient(dot, x)
    assert np.abs(adjoint.numpy()).sum() > 0
    moved = pipe(x + u, seed=[0, 0], randoms=randoms) - y
    lhs, rhs = float(tf.reduce_sum(adjoint * u)), float(tf.reduce_sum(v * moved))
    assert lhs == pytest.approx(rhs, rel=1e-4, abs=1e-4)


def _r1_through_pipe(w):
    """R1 of D(x) = tanh(aug(x)) @ w through the full pipeline at p = 1; its sum and the
    gradient of the sum with respect to w (second order through the augmentations)."""
    from tfkit.stylegan import losses

    pipe = AugmentPipe("bgcfnc", initial_p=1.0)
    x = tf.constant(_images(n=2, res=8))

    def discriminator(images, labels):
        return tf.reshape(tf.tanh(pipe(images, seed=[1, 2])), [2, -1]) @ w

    with tf.GradientTape() as tape:
        penalty, _ = losses.r1_penalty(discriminator, x)
        total = tf.reduce_sum(penalty)
    return float(total), tape.gradient(total, w).numpy()


def _plain_sample(flat, pixels, weights):
    """`augment._sample` without its custom gradient: TensorFlow differentiates the gathers."""
    out = 0.0
    for k in range(4):
        out = out + tf.gather(flat, pixels[:, k]) * tf.expand_dims(weights[:, k], -1)
    return out


def test_second_order_gradients_for_r1(monkeypatch):
    """R1 through the pipeline: the penalty and d/dw ||d D(aug(x)) / dx||^2 equal those that
    TensorFlow derives with plain gathers in place of the custom sparse gradient, and, the
    penalty being quadratic in w, <grad, w> = 2 * penalty and the central difference along
    any direction d equals <grad, d>."""
    from tfkit.stylegan import augment

    w = tf.Variable(tf.random.stateless_normal([8 * 8 * 3, 1], [1, 1]))
    total, grad = _r1_through_pipe(w)
    assert np.isfinite(grad).all() and total > 0
    assert float(np.sum(grad * w.numpy())) == pytest.approx(2 * total, rel=1e-4)
    d = tf.random.stateless_normal(w.shape, [3, 4]).numpy()
    w_plus, w_minus = (tf.Variable(w.numpy() + sign * 0.1 * d) for sign in (1, -1))
    difference = (_r1_through_pipe(w_plus)[0] - _r1_through_pipe(w_minus)[0]) / 0.2
    assert difference == pytest.approx(float(np.sum(grad * d)), rel=1e-3)

    monkeypatch.setattr(augment, "_sample", _plain_sample)
    reference_total, reference_grad = _r1_through_pipe(w)
    assert total == pytest.approx(reference_total, rel=1e-5)
    np.testing.assert_allclose(grad, reference_grad, rtol=1e-4, atol=1e-6 * np.abs(grad).max())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bilinear_sparse_gradient_equals_the_gather_gradient_to_second_order(seed):
    """The sampling's custom gradient (a sparse matrix product) equals what TensorFlow
    derives for the same sampling written with plain gathers, and so does the gradient of
    an R1-like penalty on it (second order); samples fall inside and outside the image."""

    def plain(images, x, y):
        h, w = images.shape[1], images.shape[2]
        x0, y0 = tf.floor(x), tf.floor(y)
        out = 0.0
        for yi in (y0, y0 + 1):
            for xi in (x0, x0 + 1):
                weight = (1 - tf.abs(x - xi)) * (1 - tf.abs(y - yi))
                inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
                yc = tf.clip_by_value(tf.cast(yi, tf.int32), 0, h - 1)
                xc = tf.clip_by_value(tf.cast(xi, tf.int32), 0, w - 1)
                out = (
                    out + _gather_pixels(images, yc, xc) * tf.where(inside, weight, 0.0)[..., None]
                )
        return out

    rs = np.random.RandomState(seed)
    images = tf.constant(rs.normal(size=(3, 9, 11, 2)).astype("float32"))
    x = tf.constant(rs.uniform(-3, 14, (3, 7, 6)).astype("float32"))
    y = tf.constant(rs.uniform(-3, 12, (3, 7, 6)).astype("float32"))

    def gradients(sample):
        with tf.GradientTape() as outer:
            outer.watch(images)
            with tf.GradientTape() as inner:
                inner.watch(images)
                total = tf.reduce_sum(tf.tanh(sample(images, x, y)))
            grad = inner.gradient(total, images)
            penalty = tf.reduce_sum(tf.square(grad) * tf.cos(images))
        return sample(images, x, y), grad, outer.gradient(penalty, images)

    for got, expected in zip(gradients(_bilinear), gradients(plain), strict=True):
        assert np.abs(expected.numpy()).max() > 0.1
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-6, rtol=1e-5)


def test_layer_round_trips_through_keras_serialization():
    pipe = AugmentPipe("bgcf", initial_p=0.25, name="aug")
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(pipe))
    assert isinstance(again, AugmentPipe) and again.get_config() == pipe.get_config()
    assert again.groups == ("blit", "geom", "color", "filter")
    assert float(again.p.numpy()) == 0.25 and not again.trainable_weights


@pytest.mark.parametrize(
    "p, rt, target, expected",
    [
        (0.0, 0.9, 0.6, 0.032),  # overfitting: more augmentation
        (0.5, 0.2, 0.6, 0.468),  # underfitting: less
        (0.01, -1.0, 0.6, 0.0),  # clamped at 0
        (0.99, 1.0, 0.6, 1.0),  # clamped at 1
        (0.3, 0.6, 0.6, 0.3),  # on target: unchanged
        (0.3, -0.5, -0.6, 0.332),  # any target in [-1, 1]
    ],
)
def test_ada_adjustment_arithmetic(p, rt, target, expected):
    # batch 32, every 4 iterations, 0 -> 1 in 4 kimg: steps of 32 * 4 / 4000 = 0.032
    assert ada_adjustment(p, rt, target, 32, 4, 4.0) == pytest.approx(expected, abs=1e-12)


def test_unknown_pipeline_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown augmentation pipeline 'bgx'.*bgcfnc"):
        AugmentPipe("bgx")
    assert set(AUGPIPES) >= {"blit", "geom", "color", "bg", "bgc", "bgcf", "bgcfn", "bgcfnc"}


# ------------------------------------------------------------------ in the trainer


def _ada_trainer(tmp_path, strategy=None, run="run", resume=False, **gan):
    from .test_trainer import _trainer

    ada = dict(augment="ada", ada_kimg=0.1, ada_interval=2, ada_target=0.0)
    return _trainer(tmp_path, strategy, resume=resume, run=run, **{**ada, **gan})


def test_ada_moves_p_like_the_reference_and_logs_it(tmp_path):
    t = _ada_trainer(tmp_path, gamma=0.0, pl_weight=0.0)  # G-main and D-main only: quick
    assert t.augment_pipe is not None and t.augment_pipe.groups == ("blit", "geom", "color")
    p, signs = 0.0, []
    for step in range(4):
        stats = t.train_iteration()
        signs.append(stats["Loss/signs/real"])
        if step % 2 == 0:  # adjusted after iterations 0 and 2 from the signs since the last
            rt = np.mean(signs)
            p = ada_adjustment(p, rt, 0.0, 8, 2, 0.1)
            signs = []
        assert float(t.augment_pipe.p.numpy()) == pytest.approx(p, abs=1e-6), step
    assert t.run() == "done"
    ticks = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert ticks and all(0 <= r["augment_p"] <= 1 and -1 <= r["augment_rt"] <= 1 for r in ticks)
    assert ticks[-1]["augment_p"] == pytest.approx(float(t.augment_pipe.p.numpy()))


@pytest.mark.property  # about 2 minutes on 2 busy cores
def test_ada_p_is_the_same_on_two_replicas_and_one(tmp_path, two_replicas):
    from .test_trainer import _copy

    gan = dict(noise_mode="const", style_mixing=0.0, mbstd_group=1)
    one = _ada_trainer(tmp_path, run="one", **gan)
    two = _ada_trainer(tmp_path, two_replicas, run="two", **gan)
    for net in ("G", "D", "G_ema"):
        _copy(getattr(two, net), getattr(one, net))
    for t in (one, two):  # D sees augmented images; p moves whatever the sign of r_t
        t.augment_pipe.p.assign(0.5)
    for _ in range(3):
        a, b = one.train_iteration(), two.train_iteration()
        assert a["Loss/signs/real"] == pytest.approx(b["Loss/signs/real"], abs=1e-6)
        local = two_replicas.experimental_local_results(two.augment_pipe.p.value)
        replicas = [float(v.numpy()) for v in local]
        assert len(replicas) == 2 and replicas[0] == replicas[1]
        assert replicas[0] == pytest.approx(float(one.augment_pipe.p.numpy()), abs=1e-6)
    assert float(one.augment_pipe.p.numpy()) != 0.5


def test_fixed_p_is_set(tmp_path):
    t = _ada_trainer(tmp_path, augment="fixed", augment_p=0.3, augpipe="bgcfnc")
    assert t.augment_pipe.groups == tuple(AUGMENT_GROUPS)
    assert float(t.augment_pipe.p.numpy()) == pytest.approx(0.3)
