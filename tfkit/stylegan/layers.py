"""StyleGAN building blocks as Keras 3 layers, channels-last (NHWC) so they run on CPU.

Equalized learning rate (weights drawn from N(0, 1) and scaled at run time), FIR resampling
layers, bias + activation, PixelNorm, AddNoise, AdaIN, ModulatedConv2D, MinibatchStdDev and
ToRGB. Every layer has `get_config`. The tensor ops they use (FIR/upfirdn, Winograd
convolutions, activations) are in `tfkit.stylegan.ops`.

Random noise comes from `seed` call arguments (stateless ops) when given, so a trainer that
owns one checkpointed `tf.random.Generator` makes every run reproducible and resumable.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from tfkit.stylegan.ops import (
    activate,
    conv3x3_same,
    downsample2d,
    fir_filter,
    upsample2d,
    upsample_conv2d,
    upsample_for_conv,
)


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
