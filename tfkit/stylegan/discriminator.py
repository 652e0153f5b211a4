"""Discriminator: from-RGB, per-resolution blocks with FIR blur + 2x downsampling, epilogue."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from tfkit.stylegan.layers import EqualizedConv2D, EqualizedDense, MinibatchStdDev
from tfkit.stylegan.synthesis import (
    ARCHS,
    block_dtype,
    channels_at,
    check_resolution,
    float32_default_policy,
)


@keras.saving.register_keras_serializable(package="tfkit")
class Discriminator(keras.Model):
    """StyleGAN discriminator (NHWC).

    From-RGB 1x1 conv at the top resolution, then per resolution down to 8: conv 3x3 and a
    blurred stride-2 conv 3x3 (plus a 1x1 downsampling skip with gain sqrt(0.5) in the
    residual `stylegan2` architecture; plain in `stylegan`); the 4x4 epilogue appends the
    minibatch standard deviation, then conv 3x3, dense and the output dense. Conditional
    models use projection: the output is dot(features, embed(c)) / sqrt(cmap_dim).

    Args:
        resolution: input size (power of two, 8..1024). channels: image channels.
        channel_base, channel_max: feature maps min(channel_base // res, channel_max).
        arch: `stylegan2` (residual) or `stylegan` (plain).
        mbstd_group: minibatch-stddev group size. mbstd_channels: its appended channels.
        num_classes: 0 for unconditional. cmap_dim: projection size (default channels at 4).
        clamp: clamp conv outputs.
        num_fp16_res: from-RGB and the blocks of the top N resolutions compute in
            `precision` (`float16` or `bfloat16`); the 4x4 epilogue stays float32.

    Call arguments:
        img: (N, R, R, channels). c: (N,) integer labels or None.
    """

    def __init__(
        self,
        resolution: int = 32,
        channels: int = 3,
        channel_base: int = 32768,
        channel_max: int = 512,
        arch: str = "stylegan2",
        mbstd_group: int = 4,
        mbstd_channels: int = 1,
        num_classes: int = 0,
        cmap_dim: int | None = None,
        clamp: float | None = None,
        num_fp16_res: int = 0,
        precision: str = "float32",
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        with float32_default_policy():
            log2 = check_resolution(resolution)
            if arch not in ARCHS:
                raise ValueError(
                    f"`arch` must be one of {', '.join(ARCHS)}. Received: arch={arch!r}"
                )
            self.resolution = int(resolution)
            self.channels = int(channels)
            self.channel_base = int(channel_base)
            self.channel_max = int(channel_max)
            self.arch = arch
            self.mbstd_group = int(mbstd_group)
            self.mbstd_channels = int(mbstd_channels)
            self.num_classes = int(num_classes)
            self.clamp = clamp
            self.num_fp16_res = int(num_fp16_res)
            self.precision = precision
            dt = lambda r: block_dtype(r, self.resolution, self.num_fp16_res, precision)  # noqa: E731
            ch = lambda r: channels_at(r, self.channel_base, self.channel_max)  # noqa: E731
            self.cmap_dim = int(cmap_dim or ch(4)) if self.num_classes else 0
            self.fromrgb = EqualizedConv2D(
                ch(self.resolution),
                1,
                activation="lrelu",
                clamp=clamp,
                dtype=dt(self.resolution),
                name=f"b{self.resolution}_fromrgb",
            )
            self.blocks = []
            for i in range(log2, 2, -1):
                r = 2**i
                block = {
                    "conv0": EqualizedConv2D(
                        ch(r), 3, activation="lrelu", clamp=clamp, dtype=dt(r), name=f"b{r}_conv0"
                    ),
                    "conv1": EqualizedConv2D(
                        ch(r // 2),
                        3,
                        activation="lrelu",
                        down=True,
                        clamp=clamp,
                        gain=math.sqrt(0.5) if arch == "stylegan2" else 1.0,
                        dtype=dt(r),
                        name=f"b{r}_conv1",
                    ),
                }
                if arch == "stylegan2":
                    block["skip"] = EqualizedConv2D(
                        ch(r // 2),
                        1,
                        down=True,
                        use_bias=False,
                        gain=math.sqrt(0.5),
                        dtype=dt(r),
                        name=f"b{r}_skip",
                    )
                self.blocks.append(block)
            # direct attributes, so tf.train.Checkpoint tracks every block layer by name
            for block in self.blocks:
                for layer in block.values():
                    setattr(self, layer.name, layer)
            self.mbstd = MinibatchStdDev(self.mbstd_group, self.mbstd_channels, name="mbstd")
            self.conv = EqualizedConv2D(ch(4), 3, activation="lrelu", clamp=clamp, name="b4_conv")
            self.fc = EqualizedDense(ch(4), activation="lrelu", name="b4_fc")
            self.out = EqualizedDense(self.cmap_dim or 1, name="b4_out")
            self.embed = (
                EqualizedDense(self.cmap_dim, name="cmap_embed") if self.num_classes else None
            )
        self.build_all()

    def build_all(self) -> None:
        """Create every weight (the input shape is known from the constructor)."""
        ch = lambda r: channels_at(r, self.channel_base, self.channel_max)  # noqa: E731
        r = self.resolution
        self.fromrgb.build((None, r, r, self.channels))
        for block in self.blocks:
            block["conv0"].build((None, r, r, ch(r)))
            block["conv1"].build((None, r, r, ch(r)))
            if "skip" in block:
                block["skip"].build((None, r, r, ch(r)))
            r //= 2
        self.conv.build((None, 4, 4, ch(4) + self.mbstd_channels))
        self.fc.build((None, 16 * ch(4)))
        self.out.build((None, ch(4)))
        if self.embed is not None:
            self.embed.build((None, self.num_classes))
        self.built = True

    def call(self, img, c=None, training=None):
        x = self.fromrgb(img)
        for block in self.blocks:
            y = block["conv1"](block["conv0"](x))
            x = block["skip"](x) + y if "skip" in block else y
        x = self.conv(self.mbstd(x))
        x = self.fc(tf.reshape(x, [tf.shape(x)[0], -1]))
        x = self.out(x)
        if self.embed is not None:
            if c is None:
                raise ValueError("This discriminator is conditional: pass class labels `c`.")
            cmap = self.embed(
                tf.one_hot(tf.cast(tf.reshape(c, [-1]), tf.int32), self.num_classes, dtype=x.dtype)
            )
            x = tf.reduce_sum(x * cmap, axis=1, keepdims=True) / math.sqrt(self.cmap_dim)
        return x

    def get_config(self):
        return {
            **super().get_config(),
            "resolution": self.resolution,
            "channels": self.channels,
            "channel_base": self.channel_base,
            "channel_max": self.channel_max,
            "arch": self.arch,
            "mbstd_group": self.mbstd_group,
            "mbstd_channels": self.mbstd_channels,
            "num_classes": self.num_classes,
            "cmap_dim": self.cmap_dim or None,
            "clamp": self.clamp,
            "num_fp16_res": self.num_fp16_res,
            "precision": self.precision,
        }
