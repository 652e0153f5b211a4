"""StyleGAN layers: shapes, values, equalized-LR scaling, config round trips."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfkit.stylegan import layers as L
from tfkit.stylegan import ops


def _roundtrip(layer, inputs):
    """Rebuild `layer` from its config, copy the weights, expect the same output."""
    out = layer(inputs)
    clone = type(layer).from_config(layer.get_config())
    clone(inputs)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(inputs), out, atol=1e-6)
    return out


def test_fir_resampling_shapes_and_dc_gain():
    x = tf.ones([2, 8, 8, 3])
    up = L.FirUpsample2D()(x)
    down = L.FirDownsample2D()(x)
    assert up.shape == (2, 16, 16, 3) and down.shape == (2, 4, 4, 3)
    # a constant image stays constant away from the borders (the filter has unit DC gain)
    np.testing.assert_allclose(up[:, 2:-2, 2:-2], 1.0, atol=1e-6)
    np.testing.assert_allclose(down[:, 1:-1, 1:-1], 1.0, atol=1e-6)


def test_bias_act_gain_and_clamp():
    layer = L.BiasAct("lrelu", clamp=1.0)
    x = tf.constant([[-1.0, 0.5, 3.0]])
    out = _roundtrip(layer, x)
    np.testing.assert_allclose(out, [[-0.2 * math.sqrt(2), 0.5 * math.sqrt(2), 1.0]], rtol=1e-6)
    with pytest.raises(ValueError, match="activation"):
        L.BiasAct("relu6")


def test_equalized_dense_runtime_scaling():
    layer = L.EqualizedDense(5, lr_multiplier=0.01, bias_init=0.5)
    x = tf.random.normal([3, 16], seed=1)
    out = _roundtrip(layer, x)
    # stored kernel ~ N(0, 1/lr^2); effective = kernel * lr / sqrt(fan_in)
    expected = x @ (layer.kernel * 0.01 / 4.0) + 0.5
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert 50 < np.std(layer.kernel.numpy()) < 200


def test_equalized_conv_shapes_and_scaling():
    x = tf.random.normal([2, 8, 8, 4], seed=2)
    for kwargs, size in [({}, 8), ({"up": True}, 16), ({"down": True}, 4)]:
        layer = L.EqualizedConv2D(6, 3, **kwargs)
        assert _roundtrip(layer, x).shape == (2, size, size, 6)
    layer = L.EqualizedConv2D(6, 3, activation="lrelu")
    out = layer(x)
    expected = tf.nn.leaky_relu(
        tf.nn.conv2d(x, layer.kernel / math.sqrt(36), 1, "SAME"), 0.2
    ) * math.sqrt(2)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert L.EqualizedConv2D(6, 1, down=True)(x).shape == (2, 4, 4, 6)


def test_pixel_norm_unit_second_moment():
    out = _roundtrip(L.PixelNorm(), tf.random.normal([4, 32], stddev=5.0, seed=3))
    np.testing.assert_allclose(np.mean(np.square(out), axis=-1), 1.0, rtol=1e-4)


def test_add_noise_modes():
    x = tf.zeros([2, 4, 4, 3])
    layer = L.AddNoise()
    np.testing.assert_array_equal(layer(x), 0.0)  # strength starts at 0
    layer.strength.assign(2.0)
    seed = tf.constant([1, 2])
    a, b = layer(x, seed=seed), layer(x, seed=seed)
    np.testing.assert_array_equal(a, b)  # stateless with a seed
    assert a.shape == (2, 4, 4, 3) and np.std(a.numpy()) > 1.0
    np.testing.assert_array_equal(a[..., 0], a[..., 1])  # one noise image for all channels
    c = layer(x, noise_mode="const")
    np.testing.assert_allclose(c[0], c[1])
    np.testing.assert_array_equal(layer(x, noise_mode="none"), 0.0)
    with pytest.raises(ValueError, match="noise_mode"):
        L.AddNoise("sometimes")
    _roundtrip(L.AddNoise("const"), x)
    # the original StyleGAN: one strength per channel scales one shared noise image
    per_channel = L.AddNoise(per_channel=True)
    per_channel(x)
    assert per_channel.strength.shape == (3,)
    per_channel.strength.assign([0.0, 1.0, -2.0])
    out = per_channel(x, seed=seed).numpy()
    np.testing.assert_array_equal(out[..., 0], 0.0)
    np.testing.assert_allclose(out[..., 2], -2.0 * out[..., 1], rtol=1e-6)
    _roundtrip(L.AddNoise("const", per_channel=True), x)


def test_adain_normalizes_then_styles():
    x = tf.random.normal([2, 8, 8, 4], mean=3.0, stddev=2.0, seed=4)
    w = tf.random.normal([2, 7], seed=5)
    layer = L.AdaIN()
    out = _roundtrip(layer, [x, w])
    style = layer.style(w).numpy()
    scale, bias = 1 + style[:, :4], style[:, 4:]
    normed = (out.numpy() - bias[:, None, None]) / scale[:, None, None]
    np.testing.assert_allclose(normed.mean(axis=(1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(normed.std(axis=(1, 2)), 1.0, atol=1e-3)


@pytest.mark.parametrize("fused", [False, True])
def test_modulated_conv_unit_styles_without_demod_is_plain_conv(fused):
    x = tf.random.normal([2, 8, 8, 4], seed=6)
    layer = L.ModulatedConv2D(5, 3, demodulate=False, fused=fused)
    out = _roundtrip(layer, [x, tf.ones([2, 4])])
    np.testing.assert_allclose(out, tf.nn.conv2d(x, layer.kernel, 1, "SAME"), rtol=1e-4, atol=1e-4)


def test_modulated_conv_fused_equals_unfused_and_demodulates():
    x = tf.random.normal([3, 8, 8, 4], seed=7)
    s = tf.random.normal([3, 4], seed=8)
    a = L.ModulatedConv2D(5, 3, fused=False)
    b = L.ModulatedConv2D(5, 3, fused=True)
    a([x, s]), b([x, s])
    b.set_weights(a.get_weights())
    np.testing.assert_allclose(a([x, s]), b([x, s]), rtol=1e-4, atol=1e-4)
    # demodulation: unit-variance inputs give roughly unit-variance outputs, any style scale
    big = a([tf.random.normal([3, 32, 32, 4], seed=9), s * 100.0])
    assert 0.5 < np.std(big.numpy()) < 2.0
    assert L.ModulatedConv2D(5, 3, up=True)([x, s]).shape == (3, 16, 16, 5)


@pytest.mark.parametrize("shape, cout", [((2, 4, 4, 3), 5), ((3, 8, 6, 4), 2), ((1, 16, 16, 8), 8)])
def test_upsample_conv2d_equals_upsampling_then_convolution(shape, cout):
    """The transposed-convolution form of the up-sampling 3x3 convolution (what
    ModulatedConv2D(up=True) runs) equals zero insertion, FIR and a VALID convolution:
    values and gradients with respect to input and kernel."""
    x = tf.random.normal(shape, seed=30)
    kernel = tf.random.normal([3, 3, shape[-1], cout], seed=31)
    probe = tf.random.normal([shape[0], 2 * shape[1], 2 * shape[2], cout], seed=32)
    out = []
    for conv in (
        ops.upsample_conv2d,
        lambda x, k: tf.nn.conv2d(ops.upsample_for_conv(x, 3), k, 1, "VALID"),
    ):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = conv(x, kernel)
            loss = tf.reduce_sum(y * probe)
        out.append([y, *tape.gradient(loss, [x, kernel])])
    for name, a, b in zip(["value", "d/dx", "d/dkernel"], *out, strict=True):
        assert _relative_error(b, a) < 1e-5, name


def test_synthesis_layer_and_torgb_shapes():
    x = tf.random.normal([2, 8, 8, 4], seed=10)
    w = tf.random.normal([2, 6], seed=11)
    assert _roundtrip(L.SynthesisLayer(5, up=True, noise_mode="const"), [x, w]).shape == (
        2,
        16,
        16,
        5,
    )
    assert _roundtrip(L.ToRGB(3, clamp=256.0), [x, w]).shape == (2, 8, 8, 3)


def test_minibatch_stddev_values():
    x = tf.random.normal([4, 4, 4, 6], seed=12)
    layer = L.MinibatchStdDev(group_size=2, num_channels=2)
    out = _roundtrip(layer, x).numpy()
    assert out.shape == (4, 4, 4, 8)
    xn = x.numpy()
    # example i is grouped with example i + 2 (reshape [G, N/G, ...])
    for i in range(2):
        pair = xn[[i, i + 2]]
        std = np.sqrt(pair.var(axis=0) + 1e-8)  # [H, W, C]
        expected = [std[..., :3].mean(), std[..., 3:].mean()]
        np.testing.assert_allclose(out[i, 0, 0, 6:], expected, rtol=1e-5)
        np.testing.assert_allclose(out[i + 2, 1, 3, 6:], expected, rtol=1e-5)


def _relative_error(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30))


@pytest.mark.parametrize(
    "shape, cout, tile",
    [
        ((1, 4, 4, 3), 5, 2),
        ((3, 8, 6, 16), 8, 2),
        ((2, 8, 12, 8), 24, 4),
        ((2, 16, 16, 32), 32, 4),
        ((5, 32, 32, 4), 16, 4),
    ],
)
def test_winograd_conv3x3_equals_conv2d_with_first_and_second_gradients(shape, cout, tile):
    """Winograd F(2x2, 3x3) and F(4x4, 3x3) are the 'SAME' 3x3 convolution: values,
    gradients with respect to input and kernel, and the second-order gradient R1 takes,
    within float32 rounding."""
    assert ops._winograd_tile(*shape[1:3]) == tile
    x = tf.random.normal(shape, seed=20)
    kernel = tf.random.normal([3, 3, shape[-1], cout], seed=21)
    probe = tf.random.normal([*shape[:3], cout], seed=22)

    def grads(conv):
        with tf.GradientTape() as outer:
            outer.watch(kernel)
            with tf.GradientTape() as inner:
                inner.watch([x, kernel])
                y = conv(x, kernel)
                loss = tf.reduce_sum(y * probe)
            gx, gk = inner.gradient(loss, [x, kernel])
            penalty = tf.reduce_sum(tf.square(gx))
        return y, gx, gk, outer.gradient(penalty, kernel)

    direct = grads(lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"))
    winograd = grads(ops.winograd_conv3x3)
    for name, a, b in zip(["value", "d/dx", "d/dkernel", "d2"], direct, winograd, strict=True):
        assert _relative_error(a, b) < 1e-5, name


def test_conv_algorithm_switches_the_layers_and_keeps_their_outputs():
    """EqualizedConv2D and ModulatedConv2D give the same outputs and gradients whether
    their 3x3 convolutions run directly or by Winograd (the default on CPU)."""
    x = tf.random.normal([4, 8, 8, 6], seed=23)
    s = tf.random.normal([4, 6], seed=24) + 1.0
    cases = [
        (L.EqualizedConv2D(7, 3, activation="lrelu"), x),
        (L.ModulatedConv2D(7, 3), [x, s]),
        (L.ModulatedConv2D(7, 3, demodulate=False), [x, s]),
    ]
    for layer, inputs in cases:
        layer(inputs)
        outs = {}
        for name in ("direct", "winograd", "auto"):
            with ops.conv_algorithm(name), tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(inputs)
                loss = tf.reduce_sum(y * y)
            outs[name] = (y, tape.gradient(loss, [x, layer.kernel]))
        for name in ("winograd", "auto"):
            assert _relative_error(outs["direct"][0], outs[name][0]) < 1e-5
            for a, b in zip(outs["direct"][1], outs[name][1], strict=True):
                assert _relative_error(a, b) < 1e-5
    with pytest.raises(ValueError, match="name"):
        with ops.conv_algorithm("fft"):
            pass


def test_winograd_applies_only_where_it_is_exact_and_faster():
    even, odd = tf.zeros([1, 8, 8, 2]), tf.zeros([1, 7, 7, 2])
    k3, k1 = tf.zeros([3, 3, 2, 2]), tf.zeros([1, 1, 2, 2])
    gpu = bool(tf.config.list_logical_devices("GPU"))
    assert ops._winograd_applies(even, k3) == (not gpu)
    assert not ops._winograd_applies(odd, k3) and not ops._winograd_applies(even, k1)
    assert not ops._winograd_applies(tf.cast(even, tf.float16), k3)  # mixed precision: direct
    with ops.conv_algorithm("direct"):
        assert not ops._winograd_applies(even, k3)
    with ops.conv_algorithm("winograd"):
        assert ops._winograd_applies(even, k3) and not ops._winograd_applies(odd, k3)


@pytest.mark.parametrize("gain", [None, 1.0, math.sqrt(0.5)])
def test_lrelu_values_and_derivatives_equal_leaky_relu(gain):
    """activate('lrelu') is leaky_relu(x, 0.2) * gain: values, first derivatives (0.2 gain
    at 0, as leaky_relu) and the second derivative of a composite (what R1 takes)."""
    x = tf.constant([-3.0, -0.5, 0.0, 0.25, 2.0, 7.0])
    w = tf.constant(1.5)
    g = math.sqrt(2.0) if gain is None else gain

    def derivatives(fn):
        with tf.GradientTape() as outer:
            outer.watch(w)
            with tf.GradientTape() as inner:
                inner.watch(x)
                y = fn(x * w)
            dx = inner.gradient(y, x)
            second = tf.reduce_sum(tf.square(dx) * x)
        return y, dx, outer.gradient(second, w)

    ours = derivatives(lambda v: ops.activate(v, "lrelu", gain=gain))
    reference = derivatives(lambda v: tf.nn.leaky_relu(v, 0.2) * g)
    for a, b in zip(ours, reference, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ours[1][2], 0.2 * g * 1.5, rtol=1e-6)  # slope 0.2 at 0
