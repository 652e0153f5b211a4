"""The networks of a GAN run: a generator and a discriminator built from resolved options."""

from __future__ import annotations

from tfkit.stylegan.discriminator import Discriminator
from tfkit.stylegan.presets import GanOptions
from tfkit.stylegan.synthesis import Generator


def build_networks(opts: GanOptions) -> tuple[Generator, Discriminator]:
    """A generator and a discriminator for resolved options."""
    G = Generator(
        opts.resolution,
        opts.z_dim,
        opts.w_dim,
        opts.num_classes,
        opts.map_layers,
        3,
        opts.channel_base,
        opts.channel_max,
        opts.arch,
        opts.noise_mode,
        opts.clamp,
        num_fp16_res=opts.num_fp16_res,
        precision=opts.precision,
        noise_per_channel=opts.noise_per_channel,
        name="G",
    )
    d_arch = "stylegan2" if opts.arch == "stylegan2" and opts.d_residual else "stylegan"
    D = Discriminator(
        opts.resolution,
        3,
        opts.channel_base,
        opts.channel_max,
        d_arch,
        opts.mbstd_group,
        num_classes=opts.num_classes,
        clamp=opts.clamp,
        num_fp16_res=opts.num_fp16_res,
        precision=opts.precision,
        name="D",
    )
    return G, D
