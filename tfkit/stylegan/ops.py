"""StyleGAN's tensor ops, channels-last (NHWC) so they run on CPU: bias + activation with the
sqrt(2) gain and clamping, FIR resampling with the [1, 3, 3, 1] filter (upfirdn: upsample,
filter, downsample), the transposed convolution that upsamples, and 3x3 convolutions by
Winograd's F(m x m, 3 x 3) algorithm where that is faster than TensorFlow's on CPU
(`conv_algorithm` chooses). `tfkit.stylegan.layers` builds its layers from these.
"""

from __future__ import annotations

import contextlib
import math

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
