"""Synthesis network (learned 4x4 constant -> image) and the Generator (mapping + synthesis)."""

from __future__ import annotations

import contextlib
import math

import keras
import tensorflow as tf

from tfkit.config import GAN_RESOLUTIONS, check_power_of_two
from tfkit.stylegan.layers import (
    AdaIN,
    AddNoise,
    BiasAct,
    EqualizedConv2D,
    SynthesisLayer,
    ToRGB,
    _check_noise_mode,
)
from tfkit.stylegan.mapping import MappingNetwork
from tfkit.stylegan.ops import upsample2d

ARCHS = ("stylegan2", "stylegan")


def check_resolution(resolution: int, name: str = "resolution") -> int:
    """Return log2(resolution); raise ValueError unless it is a power of two in 8..1024
    (`gan.resolution`'s rule, defined once in `tfkit.config`)."""
    resolution = int(resolution)
    try:
        check_power_of_two(resolution, name, *GAN_RESOLUTIONS)
    except ValueError as err:
        raise ValueError(f"`{name}` {err}") from None
    return int(math.log2(resolution))


def channels_at(res: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at resolution `res`: min(channel_base // res, channel_max)."""
    return max(1, min(channel_base // res, channel_max))


def num_ws_for(resolution: int) -> int:
    """Synthesis layers that take a w: 2 * log2(resolution) - 2 (18 at 1024)."""
    return 2 * check_resolution(resolution) - 2


PRECISIONS = ("float32", "float16", "bfloat16")


def block_dtype(res: int, resolution: int, num_fp16_res: int, precision: str) -> str:
    """Dtype policy of the block at `res`: mixed in the top `num_fp16_res` resolutions.

    As stylegan2-ada-pytorch: blocks at res >= max(2 ** (log2(resolution) + 1 -
    num_fp16_res), 8) compute in `precision` (float16 or bfloat16) with float32 weights.
    """
    if precision not in PRECISIONS:
        raise ValueError(
            f"`precision` must be one of {', '.join(PRECISIONS)}. Received: precision={precision!r}"
        )
    if precision == "float32" or num_fp16_res <= 0:
        return "float32"
    low = max(2 ** (check_resolution(resolution) + 1 - num_fp16_res), 8)
    return f"mixed_{precision}" if res >= low else "float32"


@contextlib.contextmanager
def float32_default_policy():
    """Build layers under a float32 global policy: GAN networks choose their own precision."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _fold(seed, i):
    return None if seed is None else tf.random.experimental.stateless_fold_in(seed, i)


@keras.saving.register_keras_serializable(package="tfkit")
class SynthesisNetwork(keras.layers.Layer):
    """Image from per-layer styles ws (N, num_ws, w_dim): one block per resolution.

    `arch="stylegan2"`: modulated/demodulated convolutions, noise, bias + leaky ReLU, and a
    ToRGB output at every resolution summed into an upsampled skip image. `arch="stylegan"`:
    the original blocks (FIR upsample + conv, AddNoise, leaky ReLU, instance norm + AdaIN)
    and a final 1x1 equalized conv to RGB.

    Args:
        resolution: output size, a power of two from 8 to 1024.
        w_dim: style size. channels: image channels.
        channel_base, channel_max: feature maps min(channel_base // res, channel_max).
        arch: `stylegan2` or `stylegan`.
        noise_mode: default noise mode of the AddNoise layers.
        clamp: clamp conv outputs to [-clamp, clamp] (256 in the reference's fp16 layers).
        fused: fused modulated convolutions.
        num_fp16_res: blocks of the top N resolutions compute in `precision`.
        precision: `float32`, `float16` or `bfloat16` (the image stays float32).

    Call arguments:
        ws: (N, num_ws, w_dim). seed: optional int32 [2] stateless noise seed.
        noise_mode: `random`, `const` or `none` for this call.
    """

    def __init__(
        self,
        resolution: int = 32,
        w_dim: int = 512,
        channels: int = 3,
        channel_base: int = 32768,
        channel_max: int = 512,
        arch: str = "stylegan2",
        noise_mode: str = "random",
        clamp: float | None = None,
        fused: bool = False,
        num_fp16_res: int = 0,
        precision: str = "float32",
        noise_per_channel: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.log2_res = check_resolution(resolution)
        if arch not in ARCHS:
            raise ValueError(f"`arch` must be one of {', '.join(ARCHS)}. Received: arch={arch!r}")
        self.resolution = int(resolution)
        self.w_dim = int(w_dim)
        self.channels = int(channels)
        self.channel_base = int(channel_base)
        self.channel_max = int(channel_max)
        self.arch = arch
        self.noise_mode = _check_noise_mode(noise_mode)
        self.clamp = clamp
        self.fused = fused
        self.num_fp16_res = int(num_fp16_res)
        self.precision = precision
        self.noise_per_channel = bool(noise_per_channel)
        self.num_ws = num_ws_for(resolution)
        self.resolutions = [2**i for i in range(2, self.log2_res + 1)]
        ch = {r: channels_at(r, self.channel_base, self.channel_max) for r in self.resolutions}
        self.block_channels = ch
        self.blocks = []
        for r in self.resolutions:
            c = ch[r]
            dt = block_dtype(r, self.resolution, self.num_fp16_res, precision)
            if arch == "stylegan2":
                block = {
                    "conv1": SynthesisLayer(
                        c,
                        noise_mode=noise_mode,
                        clamp=clamp,
                        fused=fused,
                        dtype=dt,
                        name=f"b{r}_conv1",
                    ),
                    "torgb": ToRGB(self.channels, clamp=clamp, dtype=dt, name=f"b{r}_torgb"),
                }
                if r > 4:
                    block["conv0"] = SynthesisLayer(
                        c,
                        up=True,
                        noise_mode=noise_mode,
                        clamp=clamp,
                        fused=fused,
                        dtype=dt,
                        name=f"b{r}_conv0",
                    )
            else:
                block = {}
                for j in (0, 1):
                    if r > 4 or j == 1:
                        block[f"conv{j}"] = EqualizedConv2D(
                            c, 3, up=(j == 0), use_bias=False, dtype=dt, name=f"b{r}_conv{j}"
                        )
                    block[f"noise{j}"] = AddNoise(
                        noise_mode,
                        per_channel=self.noise_per_channel,
                        dtype=dt,
                        name=f"b{r}_noise{j}",
                    )
                    block[f"act{j}"] = BiasAct("lrelu", clamp=clamp, dtype=dt, name=f"b{r}_act{j}")
                    block[f"adain{j}"] = AdaIN(dtype=dt, name=f"b{r}_adain{j}")
            self.blocks.append(block)
        if arch == "stylegan":
            self.torgb = EqualizedConv2D(self.channels, 1, dtype=dt, name="torgb")
        # direct attributes, so tf.train.Checkpoint tracks every block layer by name
        for block in self.blocks:
            for layer in block.values():
                setattr(self, layer.name, layer)

    def build(self, input_shape=None):
        c4 = self.block_channels[4]
        self.const = self.add_weight(
            shape=(4, 4, c4), initializer=keras.initializers.RandomNormal(stddev=1.0), name="const"
        )
        w_shape = (None, self.w_dim)
        in_ch = c4
        for r, block in zip(self.resolutions, self.blocks, strict=True):
            c = self.block_channels[r]
            if self.arch == "stylegan2":
                if "conv0" in block:
                    block["conv0"].build(((None, r // 2, r // 2, in_ch), w_shape))
                block["conv1"].build(((None, r, r, c if r > 4 else in_ch), w_shape))
                block["torgb"].build(((None, r, r, c), w_shape))
            else:
                for j in (0, 1):
                    if f"conv{j}" in block:
                        block[f"conv{j}"].build(
                            (None, r // 2, r // 2, in_ch) if j == 0 else (None, r, r, c)
                        )
                    block[f"noise{j}"].build((None, r, r, c))
                    block[f"act{j}"].build((None, r, r, c))
                    block[f"adain{j}"].build(((None, r, r, c), w_shape))
            in_ch = c
        if self.arch == "stylegan":
            self.torgb.build((None, self.resolution, self.resolution, in_ch))

    def call(self, ws, seed=None, noise_mode=None):
        n = tf.shape(ws)[0]
        x = tf.tile(tf.cast(self.const, ws.dtype)[None], [n, 1, 1, 1])
        img = None
        idx = 0
        layer = 0
        for block in self.blocks:
            if self.arch == "stylegan2":
                if "conv0" in block:
                    x = block["conv0"](
                        [x, ws[:, idx]], seed=_fold(seed, layer), noise_mode=noise_mode
                    )
                    idx, layer = idx + 1, layer + 1
                x = block["conv1"]([x, ws[:, idx]], seed=_fold(seed, layer), noise_mode=noise_mode)
                layer += 1
                y = tf.cast(block["torgb"]([x, ws[:, idx + 1]]), tf.float32)
                img = y if img is None else upsample2d(img) + y
                idx += 1
            else:
                for j in (0, 1):
                    if f"conv{j}" in block:
                        x = block[f"conv{j}"](x)
                    x = block[f"noise{j}"](x, seed=_fold(seed, layer), noise_mode=noise_mode)
                    x = block[f"act{j}"](x)
                    x = block[f"adain{j}"]([x, ws[:, idx]])
                    idx, layer = idx + 1, layer + 1
        if self.arch == "stylegan":
            img = tf.cast(self.torgb(x), tf.float32)
        return img

    def get_config(self):
        return {
            **super().get_config(),
            "resolution": self.resolution,
            "w_dim": self.w_dim,
            "channels": self.channels,
            "channel_base": self.channel_base,
            "channel_max": self.channel_max,
            "arch": self.arch,
            "noise_mode": self.noise_mode,
            "clamp": self.clamp,
            "fused": self.fused,
            "num_fp16_res": self.num_fp16_res,
            "precision": self.precision,
            "noise_per_channel": self.noise_per_channel,
        }


@keras.saving.register_keras_serializable(package="tfkit")
class Generator(keras.Model):
    """StyleGAN generator: mapping network + synthesis network, with mixing and truncation.

    Args:
        resolution: image size (power of two, 8..1024). z_dim, w_dim: latent sizes.
        num_classes: 0 for unconditional. mapping_layers: depth of the mapping network.
        channels, channel_base, channel_max, arch, noise_mode, clamp, fused, num_fp16_res,
            precision: see `SynthesisNetwork`.

    Call arguments:
        z: (N, z_dim). c: (N,) integer labels or None.
        psi, cutoff: truncation (psi=1: none; cutoff: only the first `cutoff` layers).
        mix_z: second latents for style mixing; mix_cutoff: (N,) int, layers >= cutoff
            take the styles of `mix_z` (num_ws: no mixing for that example).
        seed, noise_mode: see `SynthesisNetwork`.
    """

    def __init__(
        self,
        resolution: int = 32,
        z_dim: int = 512,
        w_dim: int = 512,
        num_classes: int = 0,
        mapping_layers: int = 8,
        channels: int = 3,
        channel_base: int = 32768,
        channel_max: int = 512,
        arch: str = "stylegan2",
        noise_mode: str = "random",
        clamp: float | None = None,
        fused: bool = False,
        num_fp16_res: int = 0,
        precision: str = "float32",
        noise_per_channel: bool = False,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.resolution = int(resolution)
        self.z_dim = int(z_dim)
        self.w_dim = int(w_dim)
        self.num_classes = int(num_classes)
        self.mapping_layers = int(mapping_layers)
        self.channels = int(channels)
        self.channel_base = int(channel_base)
        self.channel_max = int(channel_max)
        self.arch = arch
        self.noise_mode = noise_mode
        self.clamp = clamp
        self.fused = fused
        self.num_fp16_res = int(num_fp16_res)
        self.precision = precision
        self.noise_per_channel = bool(noise_per_channel)
        with float32_default_policy():
            self.synthesis = SynthesisNetwork(
                resolution,
                w_dim,
                channels,
                channel_base,
                channel_max,
                arch,
                noise_mode,
                clamp,
                fused,
                num_fp16_res,
                precision,
                noise_per_channel=noise_per_channel,
                name="synthesis",
            )
            self.num_ws = self.synthesis.num_ws
            self.mapping = MappingNetwork(
                z_dim, w_dim, self.num_ws, mapping_layers, num_classes, name="mapping"
            )
            self.mapping.build()
            self.synthesis.build()
        self.built = True

    def call(
        self,
        z,
        c=None,
        psi=1.0,
        cutoff=None,
        mix_z=None,
        mix_cutoff=None,
        seed=None,
        noise_mode=None,
        training=None,
    ):
        ws = self.mapping(z, c, psi=psi, cutoff=cutoff)
        if mix_z is not None:
            ws = self.mix(ws, self.mapping(mix_z, c, psi=psi, cutoff=cutoff), mix_cutoff)
        return self.synthesis(ws, seed=seed, noise_mode=noise_mode)

    def mix(self, ws: tf.Tensor, ws2: tf.Tensor, mix_cutoff: tf.Tensor) -> tf.Tensor:
        """Styles of `ws` before each example's `mix_cutoff`, of `ws2` from it on."""
        keep = tf.range(self.num_ws)[None, :, None] < tf.reshape(
            tf.cast(mix_cutoff, tf.int32), [-1, 1, 1]
        )
        return tf.where(keep, ws, ws2)

    def get_config(self):
        return {
            **super().get_config(),
            "resolution": self.resolution,
            "z_dim": self.z_dim,
            "w_dim": self.w_dim,
            "num_classes": self.num_classes,
            "mapping_layers": self.mapping_layers,
            "channels": self.channels,
            "channel_base": self.channel_base,
            "channel_max": self.channel_max,
            "arch": self.arch,
            "noise_mode": self.noise_mode,
            "clamp": self.clamp,
            "fused": self.fused,
            "num_fp16_res": self.num_fp16_res,
            "precision": self.precision,
            "noise_per_channel": self.noise_per_channel,
        }
