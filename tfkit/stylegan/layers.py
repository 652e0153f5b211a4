"""StyleGAN building blocks as Keras 3 layers, channels-last (NHWC) so they run on CPU.

Equalized learning rate (weights drawn from N(0, 1) and scaled at run time), FIR resampling
with the [1, 3, 3, 1] filter, bias + activation with the sqrt(2) gain and clamping, PixelNorm,
AddNoise, AdaIN, ModulatedConv2D, MinibatchStdDev and ToRGB. Every layer has `get_config`.

Random noise comes from `seed` call arguments (stateless ops) when given, so a trainer that
owns one checkpointed `tf.random.Generator` makes every run reproducible and resumable.
"""

from __future__ import annotations

import contextlib
import math

import keras
import numpy as np
import tensorflow as tf

FIR_TAPS = (1.0, 3.0, 3.0, 1.0)
LRELU_ALPHA = 0.2


def activate(
    x: tf.Tensor, activation: str = "linear", gain: float | None = None, clamp: float | None = None
) -> tf.Tensor:
    """Apply `activation` (`linear` or `lrelu`), its gain (sqrt(2) for lrelu) and a clamp."""
    if activation == "lrelu":
        # leaky ReLU times its gain as x * slope(x), the slope (gain or 0.2 gain; 0.2 gain at
        # 0, as leaky_relu) held constant for the gradient: the backward pass is one multiply
        # and every higher derivative is exact (R1 differentiates twice). Not the LeakyRelu
        # op: Grappler's remapper fuses conv + bias + LeakyRelu even when the gradient still
        # reads the pre-activation sum, then fails ("Mutation::Apply error: fanout
        # ...LeakyReluGrad") and drops every fusion of the graph.
        gain = math.sqrt(2.0) if gain is None else gain
        slope = tf.where(
            x > 0, tf.constant(gain, x.dtype), tf.constant(LRELU_ALPHA * gain, x.dtype)
        )
        x = x * tf.stop_gradient(slope)
        gain = None
    elif activation != "linear":
        raise ValueError(
            f"`activation` must be 'linear' or 'lrelu'. Received: activation={activation!r}"
        )
    if gain is not None and gain != 1:
        x = x * gain
    if clamp is not None:
        x = tf.clip_by_value(x, -clamp, clamp)
    return x


def _fir_kernel(channels: int, gain: float = 1.0, dtype=tf.float32) -> tf.Tensor:
    taps = np.asarray(FIR_TAPS, np.float64)
    k = np.outer(taps, taps)
    k = k / k.sum() * gain
    k = np.tile(k[:, :, None, None], [1, 1, channels, 1])
    return tf.constant(k, dtype=dtype)


def fir_filter(x: tf.Tensor, pad: tuple[int, int], gain: float = 1.0, stride: int = 1) -> tf.Tensor:
    """Pad H and W by `pad` (before, after), filter with the 4x4 FIR kernel, then stride."""
    channels = x.shape[-1]
    x = tf.pad(x, [[0, 0], [pad[0], pad[1]], [pad[0], pad[1]], [0, 0]])
    kernel = _fir_kernel(channels, gain, x.dtype)
    return tf.nn.depthwise_conv2d(x, kernel, [1, stride, stride, 1], "VALID")


def upsample2d(x: tf.Tensor) -> tf.Tensor:
    """2x upsampling: zero insertion then the [1,3,3,1] FIR filter with gain 4 (NHWC)."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    # zero insertion with 4-D ops only (LiteRT's builtins lack a 6-D pad): interleave
    # zero columns through the channel axis, then zero rows through the width axis
    x = tf.concat([x, tf.zeros_like(x)], axis=3)
    x = tf.reshape(x, [-1, height, width * 2, channels])
    x = tf.concat([x, tf.zeros_like(x)], axis=2)
    x = tf.reshape(x, [-1, height * 2, width * 2, channels])
    return fir_filter(x, (2, 1), gain=4.0)


def downsample2d(x: tf.Tensor) -> tf.Tensor:
    """2x downsampling: the [1,3,3,1] FIR filter then keep every second pixel (NHWC)."""
    return fir_filter(x, (1, 1), stride=2)


def upsample_for_conv(x: tf.Tensor, kernel_size: int) -> tf.Tensor:
    """2x upsampling for a following VALID `kernel_size` convolution (the reference's
    `conv2d_resample(up=2)` slow path): zero insertion, then the FIR filter (gain 4) with
    the convolution's padding folded into the filter's, so the borders see the filtered
    image rather than zeros. The convolution then gives exactly twice the input size."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    x = tf.concat([x, tf.zeros_like(x)], axis=3)
    x = tf.reshape(x, [-1, height, width * 2, channels])
    x = tf.concat([x, tf.zeros_like(x)], axis=2)
    x = tf.reshape(x, [-1, height * 2, width * 2, channels])
    return fir_filter(x, (2 + kernel_size // 2, 1 + kernel_size // 2), gain=4.0)


def upsample_conv2d(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """`conv2d(upsample_for_conv(x, k), kernel, VALID)` computed as a stride-2 transposed
    convolution on the small image, then the FIR filter: the convolution does a quarter of
    the work (2.4x faster forward + backward on CPU at 16 -> 32, 64 channels).

    Args:
        x: NHWC input (N, H, W, Cin).
        kernel: (k, k, Cin, Cout) with k odd.

    Returns:
        (N, 2H, 2W, Cout).
    """
    k = int(kernel.shape[0])
    height, width = x.shape[1], x.shape[2]
    # tf.reverse, not kernel[::-1, ::-1]: the same values, but a negative-stride slice and
    # its gradient took ~5x as long (3 % of a whole training iteration)
    flipped = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])  # [k, k, Cout, Cin]
    shape = [tf.shape(x)[0], 2 * height + k - 2, 2 * width + k - 2, kernel.shape[-1]]
    x = tf.nn.conv2d_transpose(x, flipped, shape, 2, "VALID")
    return fir_filter(x, ((5 - k) // 2, (5 - k) // 2), gain=4.0)


# Winograd F(m x m, 3x3): a 3x3 convolution over (m + 2) x (m + 2) input tiles (stride m)
# giving m x m output tiles (Lavin & Gray, 2015). F(2x2, 3x3): 16 multiplies per 4 outputs
# instead of 36; F(4x4, 3x3): 36 per 16 outputs instead of 144, and its input tiles overlap
# less (2.25 transformed values per input value instead of 4). F(4x4, 3x3) is built from the
# Cook-Toom points 0, 1, -1, 2, -1/2 (and infinity), which round less than the usual 0, +-1,
# +-2 (largest float32 error 5e-6 of the output's largest value instead of 1.1e-5).
# Per tile size m: (B^T [m+2, m+2], G [m+2, 3], A^T [m, m+2]).
_WINOGRAD = {
    2: (
        np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
        np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64),
    ),
    4: (
        np.array(
            [
                [1, 1.5, -2, -1.5, 1, 0],
                [0, -1, -2.5, -0.5, 1, 0],
                [0, 1, 0.5, -2.5, 1, 0],
                [0, -0.5, -1, 0.5, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 1, 1.5, -2, -1.5, 1],
            ],
            np.float64,
        ),
        np.array(
            [
                [1, 0, 0],
                [-1 / 3, -1 / 3, -1 / 3],
                [1 / 3, -1 / 3, 1 / 3],
                [1 / 15, 2 / 15, 4 / 15],
                [-16 / 15, 8 / 15, -4 / 15],
                [0, 0, 1],
            ],
            np.float64,
        ),
        np.array(
            [
                [1, 1, 1, 1, 1, 0],
                [0, 1, -1, 2, -0.5, 0],
                [0, 1, 1, 4, 0.25, 0],
                [0, 1, -1, 8, -0.125, 1],
            ],
            np.float64,
        ),
    ),
}
CONV_ALGORITHMS = ("auto", "winograd", "direct")
_conv_algorithm = "auto"


@contextlib.contextmanager
def conv_algorithm(name: str):
    """Choose how 3x3 'SAME' convolutions are computed while tracing inside this block.

    `auto` (the default): Winograd (`winograd_conv3x3`) in float32 when TensorFlow sees no
    GPU (faster forward + backward on CPU), else `tf.nn.conv2d`; `winograd` or `direct` force one. All
    give the same result within float32 rounding.
    """
    global _conv_algorithm
    if name not in CONV_ALGORITHMS:
        raise ValueError(
            f"`name` must be one of {', '.join(CONV_ALGORITHMS)}. Received: name={name!r}"
        )
    previous, _conv_algorithm = _conv_algorithm, name
    try:
        yield
    finally:
        _conv_algorithm = previous


def _winograd_applies(x: tf.Tensor, kernel: tf.Tensor) -> bool:
    if _conv_algorithm == "direct" or tuple(kernel.shape[:2]) != (3, 3):
        return False
    height, width = x.shape[1], x.shape[2]
    if height is None or width is None or height % 2 or width % 2:
        return False
    if _conv_algorithm == "winograd":
        return True
    return x.dtype == tf.float32 and not tf.config.list_logical_devices("GPU")


def _winograd_tile(height: int, width: int) -> int:
    """Output tile size m: 4 where H and W are multiples of 4 and at least 8, else 2."""
    return 4 if height % 4 == 0 and width % 4 == 0 and min(height, width) >= 8 else 2


def _winograd_input_1d(x: tf.Tensor, axis: int, m: int) -> tf.Tensor:
    """B^T d along `axis` of `x` (of length m (T + 1) there): the (m + 2)-long tiles at
    stride m transformed, stacked on a new leading axis (m + 2, ..., T along `axis`, ...).

    Written with reshape, unstack, (non-strided) slice, stack and one small matmul, whose
    gradients are cheap; strided slices are not (StridedSliceGrad took 70 % of the time)."""
    shape = [-1 if d is None else d for d in x.shape]
    groups = shape[axis] // m
    shape[axis : axis + 1] = [groups, m]
    parts = tf.unstack(tf.reshape(x, shape), axis=axis + 1)
    rank = len(x.shape)
    size, begin1 = [-1] * rank, [0] * rank
    size[axis], begin1[axis] = groups - 1, 1
    # tile t: the m values of group t, then the first two of group t + 1
    d = [tf.slice(p, [0] * rank, size) for p in parts]
    d += [tf.slice(p, begin1, size) for p in parts[:2]]
    if m == 2:  # B^T by additions: exact, cheaper than a matmul, and the rounding of the
        e0, o0, e1, o1 = d  # runs measured before F(4x4, 3x3) existed (the 4x4 layers)
        return tf.stack([e0 - e1, o0 + e1, e1 - o0, o0 - o1], 0)
    d = tf.stack(d, 0)
    bt = tf.constant(_WINOGRAD[m][0], x.dtype)
    return tf.reshape(tf.matmul(bt, tf.reshape(d, [m + 2, -1])), tf.shape(d))


def winograd_conv3x3(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """`tf.nn.conv2d(x, kernel, 1, "SAME")` for a 3x3 kernel by Winograd F(m x m, 3x3).

    m = 4 where H and W are multiples of 4 (at least 8), else 2. The input tiles are
    transformed (small constant matmuls), multiplied by the transformed kernel in one batched
    matmul of (m + 2)^2 [N*H*W/m^2, Cin] x [Cin, Cout] products (2.25 (m = 4) or 4 (m = 2)
    multiplies per output instead of 9), and transformed back. Every step is differentiable
    to any order (R1 needs the second), and the gradients are Winograd products too.

    Args:
        x: NHWC (N, H, W, Cin), H and W even and static.
        kernel: (3, 3, Cin, Cout).

    Returns:
        (N, H, W, Cout).
    """
    height, width, cin = x.shape[1], x.shape[2], x.shape[3]
    cout = kernel.shape[-1]
    m = _winograd_tile(height, width)
    n = m + 2
    _, g, at = _WINOGRAD[m]
    xp = tf.pad(x, [[0, 0], [1, m - 1], [1, m - 1], [0, 0]])
    # at most 5-D tensors throughout, so the graph also converts to LiteRT builtins
    rows = _winograd_input_1d(xp, 1, m)  # [n, N, H/m, W + m, Cin]
    rows = tf.reshape(rows, [-1, height // m, width + m, cin])  # [(i, N), H/m, W + m, Cin]
    v = tf.reshape(_winograd_input_1d(rows, 2, m), [n * n, -1, cin])  # [(j, i), N*H*W/m^2, Cin]
    # the kernel transform G g G^T as one matmul: [n^2, 9] x [9, Cin*Cout], ordered (j, i)
    gg = np.einsum("ia,jb->jiab", g, g).reshape(n * n, 9)
    u = tf.matmul(tf.constant(gg, kernel.dtype), tf.reshape(kernel, [9, -1]))
    prod = tf.matmul(v, tf.reshape(u, [n * n, cin, cout]))  # [n^2, N*H*W/m^2, Cout]
    aa = np.einsum("ai,bj->abji", at, at).reshape(m * m, n * n)
    y = tf.matmul(tf.constant(aa, x.dtype), tf.reshape(prod, [n * n, -1]))  # [(a, b), ...]
    # output pixel (m t + a, m s + b) of tile (t, s): one 5-D transpose [a, b, (N, t), s, Cout]
    # -> [(N, t), a, s, b, Cout] (one pass, where transpose + depth_to_space took two)
    y = tf.transpose(tf.reshape(y, [m, m, -1, width // m, cout]), [2, 0, 3, 1, 4])
    return tf.reshape(y, [-1, height, width, cout])


def conv3x3_same(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """`tf.nn.conv2d(x, kernel, 1, "SAME")`, by Winograd where `conv_algorithm` says so."""
    if _winograd_applies(x, kernel):
        return winograd_conv3x3(x, kernel)
    return tf.nn.conv2d(x, kernel, 1, "SAME")


@keras.saving.register_keras_serializable(package="tfkit")
class FirUpsample2D(keras.layers.Layer):
    """2x upsampling with the [1, 3, 3, 1] FIR filter (NHWC).

    Example:
        >>> FirUpsample2D()(tf.ones([1, 4, 4, 3])).shape
        TensorShape([1, 8, 8, 3])
    """

    def call(self, x):
        return upsample2d(x)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, None if h is None else 2 * h, None if w is None else 2 * w, c)


@keras.saving.register_keras_serializable(package="tfkit")
class FirDownsample2D(keras.layers.Layer):
    """2x downsampling with the [1, 3, 3, 1] FIR filter (NHWC)."""

    def call(self, x):
        return downsample2d(x)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, None if h is None else h // 2, None if w is None else w // 2, c)


@keras.saving.register_keras_serializable(package="tfkit")
class BiasAct(keras.layers.Layer):
    """A learned per-channel bias, then an activation with its gain, then an optional clamp.

    Args:
        activation: `linear` or `lrelu` (leaky ReLU 0.2 with gain sqrt(2)).
        clamp: clip the output to [-clamp, clamp] (None: no clamp).
        lr_multiplier: the bias is scaled by this at run time.
    """

    def __init__(
        self,
        activation: str = "linear",
        clamp: float | None = None,
        lr_multiplier: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        activate(tf.zeros([1]), activation)  # validates the name
        self.activation = activation
        self.clamp = clamp
        self.lr_multiplier = lr_multiplier

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="bias")

    def call(self, x):
        return activate(
            x + tf.cast(self.bias, x.dtype) * self.lr_multiplier, self.activation, clamp=self.clamp
        )

    def get_config(self):
        return {
            **super().get_config(),
            "activation": self.activation,
            "clamp": self.clamp,
            "lr_multiplier": self.lr_multiplier,
        }


@keras.saving.register_keras_serializable(package="tfkit")
class EqualizedDense(keras.layers.Layer):
    """Dense layer with equalized learning rate.

    The kernel is drawn from N(0, 1 / lr_multiplier^2) and multiplied at run time by
    `lr_multiplier / sqrt(fan_in)`; the bias is stored divided by `lr_multiplier`. With
    Adam this makes every layer learn at the same speed, scaled by `lr_multiplier`.

    Args:
        units: output features.
        activation: `linear` or `lrelu`.
        lr_multiplier: learning-rate multiplier (0.01 in the mapping network).
        bias_init: initial (effective) bias value.
        use_bias: add a bias.
    """

    def __init__(
        self,
        units: int,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
        use_bias: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = activation
        self.lr_multiplier = float(lr_multiplier)
        self.bias_init = float(bias_init)
        self.use_bias = use_bias

    def build(self, input_shape):
        fan_in = int(input_shape[-1])
        self.weight_gain = self.lr_multiplier / math.sqrt(fan_in)
        self.kernel = self.add_weight(
            shape=(fan_in, self.units),
            initializer=keras.initializers.RandomNormal(stddev=1.0 / self.lr_multiplier),
            name="kernel",
        )
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(self.units,),
                initializer=keras.initializers.Constant(self.bias_init / self.lr_multiplier),
                name="bias",
            )

    def call(self, x):
        x = tf.matmul(x, tf.cast(self.kernel, x.dtype) * self.weight_gain)
        if self.use_bias:
            x = x + tf.cast(self.bias, x.dtype) * self.lr_multiplier
        return activate(x, self.activation)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": self.activation,
            "lr_multiplier": self.lr_multiplier,
            "bias_init": self.bias_init,
            "use_bias": self.use_bias,
        }


@keras.saving.register_keras_serializable(package="tfkit")
class EqualizedConv2D(keras.layers.Layer):
    """2D convolution (NHWC, 'same' size) with equalized learning rate and FIR resampling.

    Args:
        filters: output channels.
        kernel_size: square kernel size.
        activation: `linear` or `lrelu`.
        up: 2x FIR upsampling before the convolution.
        down: 2x FIR blur + strided convolution (halves the size).
        use_bias: add a bias.
        clamp: clip the activated output to [-clamp, clamp].
        lr_multiplier: learning-rate multiplier.
        gain: extra output gain (e.g. sqrt(0.5) in residual blocks).
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        activation: str = "linear",
        up: bool = False,
        down: bool = False,
        use_bias: bool = True,
        clamp: float | None = None,
        lr_multiplier: float = 1.0,
        gain: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if up and down:
            raise ValueError("`up` and `down` cannot both be True.")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.activation = activation
        self.up = up
        self.down = down
        self.use_bias = use_bias
        self.clamp = clamp
        self.lr_multiplier = float(lr_multiplier)
        self.gain = float(gain)

    def build(self, input_shape):
        fan_in = int(input_shape[-1]) * self.kernel_size**2
        self.weight_gain = self.lr_multiplier / math.sqrt(fan_in)
        self.kernel = self.add_weight(
            shape=(self.kernel_size, self.kernel_size, int(input_shape[-1]), self.filters),
            initializer=keras.initializers.RandomNormal(stddev=1.0 / self.lr_multiplier),
            name="kernel",
        )
        if self.use_bias:
            self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")

    def call(self, x):
        w = tf.cast(self.kernel, x.dtype) * self.weight_gain
        if self.up:
            x = upsample2d(x)
        if self.down:
            k = self.kernel_size
            # blur so that a VALID stride-2 convolution gives exactly half the size
            p = (4 - 2) + (k - 1)
            x = fir_filter(x, ((p + 1) // 2, p // 2))
            x = tf.nn.conv2d(x, w, 2, "VALID")
        else:
            x = conv3x3_same(x, w)
        if self.use_bias:
            x = x + tf.cast(self.bias, x.dtype) * self.lr_multiplier
        gain = (math.sqrt(2.0) if self.activation == "lrelu" else 1.0) * self.gain
        clamp = None if self.clamp is None else self.clamp * self.gain
        return activate(x, self.activation, gain=gain, clamp=clamp)

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        f = 2 if self.up else 0.5 if self.down else 1
        return (
            n,
            None if h is None else int(h * f),
            None if w is None else int(w * f),
            self.filters,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "activation": self.activation,
            "up": self.up,
            "down": self.down,
            "use_bias": self.use_bias,
            "clamp": self.clamp,
            "lr_multiplier": self.lr_multiplier,
            "gain": self.gain,
        }


@keras.saving.register_keras_serializable(package="tfkit")
class PixelNorm(keras.layers.Layer):
    """Normalize each feature vector to unit second moment: x / sqrt(mean(x^2) + eps)."""

    def __init__(self, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, x):
        return x * tf.math.rsqrt(
            tf.reduce_mean(tf.square(x), axis=-1, keepdims=True) + self.epsilon
        )

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


NOISE_MODES = ("random", "const", "none")


def _check_noise_mode(noise_mode: str) -> str:
    if noise_mode not in NOISE_MODES:
        raise ValueError(
            f"`noise_mode` must be one of {', '.join(NOISE_MODES)}. Received: noise_mode={noise_mode!r}"
        )
    return noise_mode


@keras.saving.register_keras_serializable(package="tfkit")
class AddNoise(keras.layers.Layer):
    """Add per-pixel Gaussian noise times a learned strength (initially 0).

    Args:
        noise_mode: `random` (fresh noise each call), `const` (a fixed noise image stored
            in the layer) or `none`.
        per_channel: one strength per channel (the original StyleGAN) instead of one per
            layer (StyleGAN2).

    Call arguments:
        x: NHWC features.
        seed: optional int32 [2] seed for stateless noise (reproducible).
        noise_mode: overrides the constructor's mode for this call.
    """

    def __init__(self, noise_mode: str = "random", per_channel: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.noise_mode = _check_noise_mode(noise_mode)
        self.per_channel = bool(per_channel)

    def build(self, input_shape):
        shape = (int(input_shape[-1]),) if self.per_channel else ()
        self.strength = self.add_weight(shape=shape, initializer="zeros", name="strength")
        self.const_noise = self.add_weight(
            shape=(int(input_shape[1]), int(input_shape[2]), 1),
            initializer=keras.initializers.RandomNormal(stddev=1.0, seed=0),
            trainable=False,
            name="const_noise",
        )

    def call(self, x, seed=None, noise_mode=None):
        mode = _check_noise_mode(noise_mode or self.noise_mode)
        if mode == "none":
            return x
        if mode == "const":
            noise = tf.cast(self.const_noise, x.dtype)[None]
        else:
            shape = tf.concat([tf.shape(x)[:3], [1]], 0)
            if seed is None:
                noise = tf.random.normal(shape, dtype=x.dtype)
            else:
                noise = tf.random.stateless_normal(shape, seed, dtype=x.dtype)
        return x + noise * tf.cast(self.strength, x.dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "noise_mode": self.noise_mode,
            "per_channel": self.per_channel,
        }


@keras.saving.register_keras_serializable(package="tfkit")
class AdaIN(keras.layers.Layer):
    """Adaptive instance normalization: instance-normalize x, then scale and shift per channel.

    Instance norm is `keras.layers.GroupNormalization(groups=-1)`; the per-channel scale
    (initially 1) and bias come from the style vector w through an equalized dense layer.

    Call arguments:
        inputs: `[x, w]`, x of shape (N, H, W, C) and w of shape (N, w_dim).
    """

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        x_shape, _ = input_shape
        channels = int(x_shape[-1])
        self.norm = keras.layers.GroupNormalization(
            groups=-1, center=False, scale=False, epsilon=self.epsilon, dtype=self.dtype_policy
        )
        self.norm.build(x_shape)
        self.style = EqualizedDense(
            2 * channels, bias_init=0.0, dtype=self.dtype_policy, name="style"
        )
        self.style.build(input_shape[1])
        self.channels = channels

    def call(self, inputs):
        x, w = inputs
        x = self.norm(x)
        style = self.style(w)
        scale, bias = style[:, : self.channels], style[:, self.channels :]
        return x * (1.0 + scale[:, None, None, :]) + bias[:, None, None, :]

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="tfkit")
class ModulatedConv2D(keras.layers.Layer):
    """Convolution modulated per example by a style vector, optionally demodulated.

    The kernel (N(0, 1), no runtime gain, as in StyleGAN2) is scaled per example and input
    channel by `styles`; demodulation rescales each output channel to unit expected
    variance. `fused=False` modulates the activations instead of the weights (one shared
    convolution; the fastest on CPU: see benchmarks/bench_stylegan.py). `fused=True` (or
    `"grouped"`) builds per-example kernels and applies them as one grouped convolution with
    the batch folded into the channels, as the reference does on GPU; `fused="einsum"`
    applies them with a batched einsum over image patches (slowest). All give the same result.

    Args:
        filters: output channels.
        kernel_size: square kernel size.
        demodulate: normalize output channels (False for ToRGB).
        up: 2x FIR upsampling before the convolution.
        fused: `False`, `True`/`"grouped"` or `"einsum"` (see above).

    Call arguments:
        inputs: `[x, styles]`, x (N, H, W, Cin) and styles (N, Cin).
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        demodulate: bool = True,
        up: bool = False,
        fused: bool | str = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if fused not in (False, True, "grouped", "einsum"):
            raise ValueError(
                f"`fused` must be False, True, 'grouped' or 'einsum'. Received: fused={fused!r}"
            )
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.demodulate = demodulate
        self.up = up
        self.fused = fused

    def build(self, input_shape):
        x_shape, _ = input_shape
        self.kernel = self.add_weight(
            shape=(self.kernel_size, self.kernel_size, int(x_shape[-1]), self.filters),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="kernel",
        )

    def call(self, inputs):
        x, styles = inputs
        w = self.kernel
        if x.dtype == tf.float16 and self.demodulate:
            # keep float16 in range, as the reference: demodulation cancels both scalings
            styles = tf.cast(styles, w.dtype)
            styles = styles / tf.reduce_max(tf.abs(styles), axis=1, keepdims=True)
            fan_in = float(np.prod(w.shape[:3]))
            w = w / (math.sqrt(fan_in) * tf.reduce_max(tf.abs(w), axis=[0, 1, 2], keepdims=True))
        styles = tf.cast(styles, x.dtype)
        w = tf.cast(w, x.dtype)
        if self.up and not self.fused:
            x = upsample_conv2d(x * styles[:, None, None, :], w)
            return self._demodulate(x, styles, w)
        padding = "SAME"
        if self.up:
            x, padding = upsample_for_conv(x, self.kernel_size), "VALID"
        if self.fused:
            wn = w[None] * styles[:, None, None, :, None]  # [N, k, k, Cin, Cout]
            if self.demodulate:
                wn = wn * tf.math.rsqrt(
                    tf.reduce_sum(tf.square(wn), axis=[1, 2, 3], keepdims=True) + 1e-8
                )
            if self.fused == "einsum":
                k = self.kernel_size
                patches = tf.image.extract_patches(
                    x, [1, k, k, 1], [1, 1, 1, 1], [1, 1, 1, 1], padding
                )
                wn = tf.reshape(wn, [tf.shape(wn)[0], -1, self.filters])
                return tf.einsum("nhwp,npo->nhwo", patches, wn)
            # grouped convolution: the batch folded into channels, one group per example
            shape = tf.shape(x)
            n, h, width, cin = shape[0], shape[1], shape[2], x.shape[-1]
            xg = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, h, width, n * cin])
            k = self.kernel_size
            wg = tf.reshape(tf.transpose(wn, [1, 2, 3, 0, 4]), [k, k, cin, n * self.filters])
            y = tf.nn.conv2d(xg, wg, 1, padding)
            y = tf.reshape(y, [tf.shape(y)[1], tf.shape(y)[2], n, self.filters])
            return tf.transpose(y, [2, 0, 1, 3])
        x = conv3x3_same(x * styles[:, None, None, :], w)
        return self._demodulate(x, styles, w)

    def _demodulate(self, x, styles, w):
        """Scale output channels by 1/||w * styles|| (unfused demodulation)."""
        if not self.demodulate:
            return x
        d = tf.math.rsqrt(
            tf.einsum("ni,io->no", tf.square(styles), tf.reduce_sum(tf.square(w), axis=[0, 1]))
            + 1e-8
        )
        return x * d[:, None, None, :]

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "demodulate": self.demodulate,
            "up": self.up,
            "fused": self.fused,
        }


@keras.saving.register_keras_serializable(package="tfkit")
class SynthesisLayer(keras.layers.Layer):
    """StyleGAN2 synthesis layer: affine(w) -> modulated 3x3 conv -> noise -> bias + lrelu.

    Call arguments:
        inputs: `[x, w]`.
        seed: optional stateless noise seed; noise_mode: override of `noise_mode`.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        up: bool = False,
        noise_mode: str = "random",
        clamp: float | None = None,
        fused: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.up = up
        self.noise_mode = _check_noise_mode(noise_mode)
        self.clamp = clamp
        self.fused = fused

    def build(self, input_shape):
        x_shape, w_shape = input_shape
        self.affine = EqualizedDense(
            int(x_shape[-1]), bias_init=1.0, dtype=self.dtype_policy, name="affine"
        )
        self.affine.build(w_shape)
        self.conv = ModulatedConv2D(
            self.filters,
            self.kernel_size,
            up=self.up,
            fused=self.fused,
            dtype=self.dtype_policy,
            name="conv",
        )
        self.conv.build((x_shape, (w_shape[0], x_shape[-1])))
        f = 2 if self.up else 1
        out_shape = (x_shape[0], x_shape[1] * f, x_shape[2] * f, self.filters)
        self.noise = AddNoise(self.noise_mode, dtype=self.dtype_policy, name="noise")
        self.noise.build(out_shape)
        self.bias_act = BiasAct("lrelu", clamp=self.clamp, dtype=self.dtype_policy, name="bias_act")
        self.bias_act.build(out_shape)

    def call(self, inputs, seed=None, noise_mode=None):
        x, w = inputs
        x = self.conv([x, self.affine(w)])
        x = self.noise(x, seed=seed, noise_mode=noise_mode)
        return self.bias_act(x)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "up": self.up,
            "noise_mode": self.noise_mode,
            "clamp": self.clamp,
            "fused": self.fused,
        }


@keras.saving.register_keras_serializable(package="tfkit")
class ToRGB(keras.layers.Layer):
    """Modulated 1x1 convolution to image channels, without demodulation (StyleGAN2).

    The style is scaled by 1/sqrt(fan_in) (equalized learning rate), then a bias is added
    and the result optionally clamped.

    Call arguments:
        inputs: `[x, w]`.
    """

    def __init__(
        self, channels: int = 3, kernel_size: int = 1, clamp: float | None = None, **kwargs
    ):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.kernel_size = int(kernel_size)
        self.clamp = clamp

    def build(self, input_shape):
        x_shape, w_shape = input_shape
        self.weight_gain = 1.0 / math.sqrt(int(x_shape[-1]) * self.kernel_size**2)
        self.affine = EqualizedDense(
            int(x_shape[-1]), bias_init=1.0, dtype=self.dtype_policy, name="affine"
        )
        self.affine.build(w_shape)
        self.conv = ModulatedConv2D(
            self.channels, self.kernel_size, demodulate=False, dtype=self.dtype_policy, name="conv"
        )
        self.conv.build((x_shape, (w_shape[0], x_shape[-1])))
        self.bias_act = BiasAct(
            "linear", clamp=self.clamp, dtype=self.dtype_policy, name="bias_act"
        )
        self.bias_act.build((*x_shape[:-1], self.channels))

    def call(self, inputs):
        x, w = inputs
        return self.bias_act(self.conv([x, self.affine(w) * self.weight_gain]))

    def get_config(self):
        return {
            **super().get_config(),
            "channels": self.channels,
            "kernel_size": self.kernel_size,
            "clamp": self.clamp,
        }


@keras.saving.register_keras_serializable(package="tfkit")
class MinibatchStdDev(keras.layers.Layer):
    """Append the standard deviation across groups of examples as extra feature maps.

    Examples are split into groups of `group_size` (example i joins group i % (N / G));
    per group the std of every feature is averaged over H, W and each of `num_channels`
    channel slices and broadcast back as `num_channels` new channels.

    Args:
        group_size: examples per group (the batch is used when smaller); the per-replica
            batch must be divisible by it.
        num_channels: number of appended channels.
    """

    def __init__(self, group_size: int = 4, num_channels: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.group_size = int(group_size)
        self.num_channels = int(num_channels)

    def call(self, x):
        shape = tf.shape(x)
        n, h, w = shape[0], shape[1], shape[2]
        c = x.shape[-1]
        g = tf.minimum(self.group_size, n) if self.group_size else n
        f = self.num_channels
        y = tf.reshape(x, [g, -1, h, w, f, c // f])
        y = y - tf.reduce_mean(y, axis=0)
        y = tf.sqrt(tf.reduce_mean(tf.square(y), axis=0) + 1e-8)  # [n/G, H, W, F, c]
        y = tf.reduce_mean(y, axis=[1, 2, 4])  # [n/G, F]
        y = tf.tile(y[None], [g, 1, 1])
        y = tf.reshape(y, [n, 1, 1, f])
        y = tf.tile(y, [1, h, w, 1])
        return tf.concat([x, tf.cast(y, x.dtype)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + self.num_channels)

    def get_config(self):
        return {
            **super().get_config(),
            "group_size": self.group_size,
            "num_channels": self.num_channels,
        }
