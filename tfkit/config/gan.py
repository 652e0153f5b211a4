"""The `gan` section: StyleGAN training options over a named preset."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tfkit.config.base import Seed, Strict, check_power_of_two
from tfkit.config.gan_names import GAN_PRESET_NAMES, GAN_RESOLUTIONS, parse_augpipe


class GanConfig(Strict):
    """The gan section: StyleGAN training (`tfkit gan train`).

    `preset` supplies every hyperparameter (see `tfkit.stylegan.presets`); a key set here
    overrides the preset's value. Images come from `data` (use `normalize: minus_one_one`).
    """

    preset: str = "shapes32"
    arch: Literal["stylegan2", "stylegan"] = "stylegan2"
    resolution: int | None = None  # default: the data's image size
    conditional: bool = False  # class-conditional G and projection D (needs labels)
    kimg: float | None = Field(None, gt=0)  # training length in thousands of real images
    # or stop earlier, after this many minutes of training (counted across resumes), like
    # Lightning's max_time; the end is a normal one (snapshot, checkpoint, metrics)
    max_minutes: float | None = Field(None, gt=0)
    tick_kimg: float | None = Field(None, gt=0)  # progress line every tick
    snapshot_ticks: int | None = Field(None, ge=1)  # image grid + checkpoint every N ticks
    batch: int | None = Field(None, ge=1)  # global batch
    z_dim: int | None = Field(None, ge=1)
    w_dim: int | None = Field(None, ge=1)
    map_layers: int | None = Field(None, ge=1)  # mapping network depth
    channel_base: int | None = Field(None, ge=1)
    channel_max: int | None = Field(None, ge=1)
    mbstd_group: int | None = Field(None, ge=1)
    d_residual: bool | None = None  # residual discriminator (stylegan2 arch only)
    lr: float | None = Field(None, gt=0)  # G and D learning rate before lazy-reg scaling
    # learning-rate decay to 0 at gan.kimg (from the fraction lr_decay_start of it); the
    # reference keeps it constant (none)
    lr_decay: Literal["none", "linear", "cosine"] | None = None
    lr_decay_start: float | None = Field(None, ge=0, lt=1)
    gamma: float | None = Field(None, ge=0)  # R1 weight
    ema_kimg: float | None = Field(None, ge=0)  # G_ema half-life
    ema_rampup: float | None = Field(None, ge=0)  # 0: no ramp-up
    pl_weight: float | None = Field(None, ge=0)  # path-length regularization weight
    pl_batch_shrink: int = Field(2, ge=1)
    pl_decay: float = Field(0.01, gt=0, le=1)
    style_mixing: float | None = Field(None, ge=0, le=1)  # style-mixing probability
    g_reg_interval: int = Field(4, ge=1)
    d_reg_interval: int = Field(16, ge=1)
    noise_mode: Literal["random", "const", "none"] = "random"
    clamp: float | None = Field(None, gt=0)  # conv_clamp; default 256 with mixed precision
    # mixed precision in the top `num_fp16_res` resolutions of G and D (reference: 4);
    # auto: float16/bfloat16 when runtime.mixed_precision is mixed_float16/mixed_bfloat16
    mixed_precision: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    num_fp16_res: int | None = Field(None, ge=0)  # default: 4 with mixed precision, else 0
    # per-replica batch of one accumulation round (reference: batch_gpu); default: all of
    # it. Gradients accumulate over batch / (batch_per_replica * replicas) rounds.
    batch_per_replica: int | None = Field(None, ge=1)
    grid: tuple[int, int] = (8, 4)  # snapshot grid columns, rows
    grid_seed: Seed = 0
    metrics: list[Literal["fid", "kid"]] = []  # computed at every snapshot
    # feature network: inception_2015_12_05 (the standard FID Inception graph, the only
    # one comparable with published FIDs), inception_v3 (Keras' ImageNet weights) or
    # classifier:RUN_DIR (a tfkit classifier, offline)
    metrics_features: str = "inception_2015_12_05"
    # classify_image_graph_def.pb (from inception-2015-12-05.tgz); default:
    # $TFKIT_FID_INCEPTION or ~/.keras/models/classify_image_graph_def.pb
    metrics_fid_inception: str | None = None
    metrics_num_images: int = Field(50000, ge=2)  # real and generated images per metric
    # adaptive discriminator augmentation (see tfkit.stylegan.augment): every image D sees
    # goes through the `augpipe` transforms, each with probability p. ada: p adapts so the
    # mean sign of D(real) stays at ada_target; fixed: p = augment_p; none: off.
    # Default: the preset's (ada for the reference presets).
    augment: Literal["ada", "fixed", "none"] | None = None
    augpipe: str = "bgc"  # blit, geom, color, filter, noise, cutout, bg, bgc, ... or a+b
    augment_p: float | None = Field(None, ge=0, le=1)  # p with augment: fixed
    ada_target: float = Field(0.6, ge=-1, le=1)  # target of mean sign(D(real))
    ada_kimg: float = Field(500, gt=0)  # p can go from 0 to 1 in this many kimg
    ada_interval: int = Field(4, ge=1)  # adjust p every this many iterations

    @field_validator("preset")
    @classmethod
    def _preset(cls, v: str) -> str:
        if v not in GAN_PRESET_NAMES:
            raise ValueError(f"unknown preset {v!r}. Valid presets: {', '.join(GAN_PRESET_NAMES)}")
        return v

    @field_validator("resolution")
    @classmethod
    def _resolution(cls, v: int | None) -> int | None:
        return v if v is None else check_power_of_two(v, "resolution", *GAN_RESOLUTIONS)

    @field_validator("augpipe")
    @classmethod
    def _augpipe(cls, v: str) -> str:
        parse_augpipe(v)  # ValueError naming the valid pipelines
        return v

    @model_validator(mode="after")
    def _augment_p(self) -> GanConfig:
        if self.augment is not None and (message := augment_p_error(self.augment, self.augment_p)):
            raise ValueError(message)
        return self


def gan_default(name: str) -> Any:
    """The default of `gan.<name>`: GanConfig defines every GAN default once (presets,
    `GanOptions` and `AugmentPipe` read it here)."""
    return GanConfig.model_fields[name].default


def augment_p_error(augment: str, augment_p: float | None, preset: str | None = None) -> str:
    """The fixed-p rule: `gan.augment_p` is given exactly when the augmentation is `fixed`.

    Args:
        augment: `gan.augment`, or the preset's when `preset` names it.
        augment_p: `gan.augment_p`.
        preset: the preset whose `augment` applies (`gan.augment` was not set).

    Returns:
        The message of the broken rule, or "" when it holds.
    """
    if augment == "fixed" and augment_p is None:
        return "`gan.augment: fixed` needs `gan.augment_p` (the probability)"
    if augment != "fixed" and augment_p is not None:
        source = f" (preset {preset})" if preset else ""
        return (
            "`gan.augment_p` is used with `gan.augment: fixed` only. "
            f"Received: augment={augment}{source}"
        )
    return ""
