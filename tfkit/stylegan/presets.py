"""Named StyleGAN training presets and the resolution of a `gan` config into options.

The published presets follow stylegan2-ada-pytorch's `train.py` table (`--cfg`): batch,
mapping depth, feature maps (channel_base = fmaps * 32768, channel_max 512), minibatch-stddev
group, learning rate, R1 gamma, EMA half-life in kimg and its ramp-up, path-length weight and
style-mixing probability (`cifar` turns the last two off and uses a plain discriminator).
`auto` derives them from the resolution and the replica count as the reference does. Any
`gan.*` key that is set overrides the preset's value. `shapes16`/`shapes32` are small CPU
presets for the embedded `shapes` data.

No TensorFlow here: config validation imports this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# the augmentation pipelines and the preset names are config vocabulary (validated without
# TensorFlow), so they live in tfkit.config
from tfkit.config import (  # noqa: F401 - re-exported
    AUGMENT_GROUPS,
    AUGPIPES,
    GAN_PRESET_NAMES,
    GAN_RESOLUTIONS,
    augment_p_error,
    gan_default,
    parse_augpipe,
)
from tfkit.config import check_power_of_two as check_gan_resolution
from tfkit.errors import UserError, unknown_name

_REF = dict(
    lr_decay="none",
    lr_decay_start=0.0,
    z_dim=512,
    w_dim=512,
    channel_max=512,
    pl_weight=2.0,
    style_mixing=0.9,
    d_residual=True,
    ema_rampup=0.0,
    augment="ada",  # the reference trains every configuration with ADA (--aug=ada)
    tick_kimg=4.0,  # the reference's --tick 4: a progress line every 4 kimg
    snapshot_ticks=50,  # the reference's --snap 50: a grid and checkpoint every 50 ticks
)

PRESETS: dict[str, dict] = {
    "auto": dict(_REF, kimg=25000, map_layers=2, ema_rampup=0.05),
    "stylegan2": dict(
        _REF,
        kimg=25000,
        batch=32,
        mbstd_group=4,
        channel_base=32768,
        lr=0.002,
        gamma=10.0,
        ema_kimg=10.0,
        map_layers=8,
    ),
    "paper256": dict(
        _REF,
        kimg=25000,
        batch=64,
        mbstd_group=8,
        channel_base=16384,
        lr=0.0025,
        gamma=1.0,
        ema_kimg=20.0,
        map_layers=8,
    ),
    "paper512": dict(
        _REF,
        kimg=25000,
        batch=64,
        mbstd_group=8,
        channel_base=32768,
        lr=0.0025,
        gamma=0.5,
        ema_kimg=20.0,
        map_layers=8,
    ),
    "paper1024": dict(
        _REF,
        kimg=25000,
        batch=32,
        mbstd_group=4,
        channel_base=65536,
        lr=0.002,
        gamma=2.0,
        ema_kimg=10.0,
        map_layers=8,
    ),
    "cifar": dict(
        _REF,
        kimg=100000,
        batch=64,
        mbstd_group=32,
        channel_base=32768,
        lr=0.0025,
        gamma=0.01,
        ema_kimg=500.0,
        ema_rampup=0.05,
        map_layers=2,
        pl_weight=0.0,
        style_mixing=0.0,
        d_residual=False,
    ),
    # CPU presets for the embedded shapes data: small nets that learn visibly in minutes
    "shapes16": dict(
        _REF,
        augment="none",  # 20,000 images of the embedded shapes: D does not overfit
        kimg=10,
        batch=16,
        mbstd_group=4,
        z_dim=64,
        w_dim=64,
        channel_base=1024,
        channel_max=64,
        lr=0.0025,
        gamma=0.05,
        ema_kimg=1.0,
        ema_rampup=0.05,
        map_layers=2,
        tick_kimg=1.0,
        snapshot_ticks=5,
    ),
    "shapes32": dict(
        _REF,
        augment="none",  # 20,000 images of the embedded shapes: D does not overfit
        kimg=10,
        batch=32,
        mbstd_group=4,
        z_dim=64,
        w_dim=64,
        channel_base=2048,
        channel_max=64,
        lr=0.0025,
        gamma=0.1,
        ema_kimg=2.0,
        ema_rampup=0.05,
        map_layers=2,
        tick_kimg=1.0,
        snapshot_ticks=5,
    ),
}
PRESET_NAMES = GAN_PRESET_NAMES
if tuple(PRESETS) != PRESET_NAMES:  # tfkit.config validates `gan.preset` against the names
    raise RuntimeError(f"PRESETS {tuple(PRESETS)} != config.GAN_PRESET_NAMES {PRESET_NAMES}")


@dataclass(frozen=True)
class GanOptions:
    """Every hyperparameter of a GAN run, resolved from the preset and `gan.*` overrides."""

    preset: str
    arch: str
    resolution: int
    num_classes: int
    kimg: float
    tick_kimg: float
    snapshot_ticks: int
    batch: int
    z_dim: int
    w_dim: int
    map_layers: int
    channel_base: int
    channel_max: int
    mbstd_group: int
    d_residual: bool
    lr: float
    betas: tuple[float, float]
    gamma: float
    ema_kimg: float
    ema_rampup: float  # 0: none
    pl_weight: float
    pl_batch_shrink: int
    pl_decay: float
    style_mixing: float
    g_reg_interval: int
    d_reg_interval: int
    noise_mode: str
    clamp: float | None
    grid: tuple[int, int]
    # defaults keep older runs' gan_options.json loadable
    precision: str = "float32"  # dtype of the top `num_fp16_res` resolutions
    num_fp16_res: int = 0
    batch_per_replica: int = 0  # examples per replica and accumulation round
    rounds: int = 1  # gradient-accumulation rounds per step
    max_minutes: float = 0.0  # 0: no time limit
    lr_decay: str = "none"  # none | linear | cosine, to 0 at kimg
    lr_decay_start: float = 0.0  # fraction of kimg where the decay starts
    augment: str = "none"  # ada | fixed | none
    augpipe: str = gan_default("augpipe")
    augment_p: float = 0.0  # p with augment: fixed (ada starts at 0)
    ada_target: float = gan_default("ada_target")
    ada_kimg: float = float(gan_default("ada_kimg"))
    ada_interval: int = gan_default("ada_interval")
    # the original arch's noise strength per channel (the reference's); runs before it have one
    noise_per_channel: bool = False

    def as_dict(self) -> dict:
        """The options as a plain dict (for logs)."""
        return asdict(self)


def auto_preset(resolution: int, replicas: int) -> dict:
    """The reference's `auto` heuristics for a resolution and a number of replicas."""
    batch = max(min(replicas * min(4096 // resolution, 32), 64), replicas)
    return dict(
        PRESETS["auto"],
        batch=batch,
        mbstd_group=min(batch // replicas, 4),
        channel_base=32768 if resolution >= 512 else 16384,
        lr=0.002 if resolution >= 1024 else 0.0025,
        gamma=0.0002 * resolution**2 / batch,
        ema_kimg=batch * 10 / 32,
    )


def check_power_of_two(resolution: int, where: str) -> None:
    """Raise UserError unless `resolution` is a power of two from 8 to 1024 (the rule of
    `gan.resolution`, applied to the data's image size)."""
    try:
        check_gan_resolution(resolution, where.rsplit(".", 1)[-1], *GAN_RESOLUTIONS)
    except ValueError as err:
        raise UserError(f"`{where}` {err}") from None


RUNTIME_PRECISION = {"float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


def _batch_fix(batch: int, step: int, batch_per_replica: int | None) -> str:
    """'Use --set gan.batch=4 or 8' (the valid batches nearest `batch`, multiples of `step`)."""
    if batch_per_replica:
        return "Change gan.batch_per_replica"
    low = batch // step * step
    options = [b for b in (low, low + step) if b >= step]
    return f"Use --set gan.batch={' or '.join(map(str, options))} (a multiple of {step})"


# the `gan.*` keys a preset supplies (a key set in the config wins)
PRESET_FIELDS = (
    "kimg",
    "tick_kimg",
    "snapshot_ticks",
    "batch",
    "z_dim",
    "w_dim",
    "map_layers",
    "channel_base",
    "channel_max",
    "mbstd_group",
    "d_residual",
    "lr",
    "lr_decay",
    "lr_decay_start",
    "gamma",
    "ema_kimg",
    "ema_rampup",
    "pl_weight",
    "style_mixing",
    "augment",
)


def _accumulation(gan, v: dict, replicas: int) -> tuple[int, int]:
    """(examples per replica of one accumulation round, rounds per step) of the batch
    `v['batch']` on `replicas`, checked against the minibatch-stddev group and the
    path-length batch.

    Raises:
        UserError: a batch that does not split evenly, naming the fix.
    """
    if v["batch"] % replicas:
        raise UserError(
            f"`gan.batch` ({v['batch']}) must be divisible by the number of replicas ({replicas}). "
            f"Use e.g. --set gan.batch={max(replicas, v['batch'] // replicas * replicas)}"
        )
    per_replica = v["batch"] // replicas
    batch_per_replica = gan.batch_per_replica or per_replica
    if batch_per_replica > per_replica or per_replica % batch_per_replica:
        raise UserError(
            f"`gan.batch_per_replica` ({batch_per_replica}) must divide the per-replica batch "
            f"({per_replica} = gan.batch {v['batch']} / {replicas} replicas)."
        )
    rounds = per_replica // batch_per_replica
    per_replica = batch_per_replica  # one accumulation round
    group = min(v["mbstd_group"], per_replica)
    if per_replica % group:
        divisor = max(d for d in range(1, group + 1) if per_replica % d == 0)
        raise UserError(
            f"The per-replica batch of one round ({per_replica} = gan.batch {v['batch']} / {replicas} replicas"
            f"{f' / {rounds} rounds' if rounds > 1 else ''}) must be divisible by `gan.mbstd_group` ({v['mbstd_group']}). "
            f"{_batch_fix(v['batch'], replicas * rounds * group, gan.batch_per_replica)}"
            f" or --set gan.mbstd_group={divisor}"
        )
    shrunk = max(per_replica // gan.pl_batch_shrink, 1)
    if v["pl_weight"] and shrunk % min(group, shrunk):
        step = replicas * rounds * group * gan.pl_batch_shrink
        raise UserError(
            f"The path-length batch ({shrunk} = one round's per-replica batch {per_replica} / "
            f"gan.pl_batch_shrink {gan.pl_batch_shrink}) must be divisible by `gan.mbstd_group` "
            f"({group}). {_batch_fix(v['batch'], step, gan.batch_per_replica)}"
        )
    return batch_per_replica, rounds


def _precision(gan, mixed_precision: str) -> tuple[str, int]:
    """(dtype of the top resolutions, how many of them) from `gan.mixed_precision` and
    `gan.num_fp16_res`; `auto` follows `runtime.mixed_precision`."""
    precision = gan.mixed_precision
    if precision == "auto":
        precision = RUNTIME_PRECISION.get(mixed_precision, "float32")
    num_fp16_res = (
        0 if precision == "float32" else 4 if gan.num_fp16_res is None else gan.num_fp16_res
    )
    if precision != "float32" and not num_fp16_res:
        precision = "float32"
    return precision, num_fp16_res


def resolve_options(
    gan,
    resolution: int,
    replicas: int = 1,
    num_classes: int = 0,
    mixed_precision: str = "float32",
) -> GanOptions:
    """Resolve a `GanConfig` into `GanOptions` for data of `resolution` on `replicas` replicas.

    Args:
        gan: the `gan` config section.
        resolution: the image size of the training data.
        replicas: replicas in sync (the global batch is split across them).
        num_classes: classes of the data (used when `gan.conditional`).
        mixed_precision: `runtime.mixed_precision` (used when `gan.mixed_precision` is auto).

    Raises:
        UserError: unknown preset, resolution not a power of two or not matching the data,
            batch not divisible by the replicas or the per-replica batch by the
            minibatch-stddev group, conditional model without labels.
    """
    if gan.preset not in PRESETS:
        raise unknown_name("gan.preset", gan.preset, PRESET_NAMES)
    check_power_of_two(
        resolution, "data resolution" if gan.resolution is None else "gan.resolution"
    )
    if gan.resolution is not None and gan.resolution != resolution:
        raise UserError(
            f"`gan.resolution` ({gan.resolution}) does not match the data's image size ({resolution})."
        )
    p = auto_preset(resolution, replicas) if gan.preset == "auto" else dict(PRESETS[gan.preset])
    v = {k: getattr(gan, k) if getattr(gan, k) is not None else p.get(k) for k in PRESET_FIELDS}
    batch_per_replica, rounds = _accumulation(gan, v, replicas)
    precision, num_fp16_res = _precision(gan, mixed_precision)
    preset = gan.preset if gan.augment is None else None
    if message := augment_p_error(v["augment"], gan.augment_p, preset):
        raise UserError(message)
    if gan.conditional and not num_classes:
        raise UserError(
            "`gan.conditional` is true but the data has no class labels (set gan.conditional=false)."
        )
    return GanOptions(
        preset=gan.preset,
        arch=gan.arch,
        resolution=resolution,
        num_classes=num_classes if gan.conditional else 0,
        betas=(0.0, 0.99),
        pl_batch_shrink=gan.pl_batch_shrink,
        pl_decay=gan.pl_decay,
        g_reg_interval=gan.g_reg_interval,
        d_reg_interval=gan.d_reg_interval,
        noise_mode=gan.noise_mode,
        clamp=gan.clamp if gan.clamp is not None or not num_fp16_res else 256.0,
        max_minutes=gan.max_minutes or 0.0,
        grid=tuple(gan.grid),
        precision=precision,
        num_fp16_res=num_fp16_res,
        batch_per_replica=batch_per_replica,
        rounds=rounds,
        augpipe=gan.augpipe,
        augment_p=gan.augment_p or 0.0,
        ada_target=gan.ada_target,
        ada_kimg=gan.ada_kimg,
        ada_interval=gan.ada_interval,
        noise_per_channel=gan.arch == "stylegan",
        **v,
    )


def data_resolution(cfg) -> int | None:
    """The image size of an experiment's data as far as the config states it (no reading)."""
    if cfg.gan is not None and cfg.gan.resolution is not None:
        return cfg.gan.resolution
    source = cfg.data.source
    if getattr(source, "resolution", None):
        return source.resolution
    size = getattr(source, "image_size", None)
    return size[0] if size and size[0] == size[1] else None


def preset_values(gan, resolution: int | None, replicas: int = 1) -> dict:
    """What `gan.preset` sets, unchecked (`{}` for `auto` when the resolution is unknown)."""
    if gan.preset == "auto":
        if resolution is None:
            return {}
        values = auto_preset(resolution, replicas)
    else:
        values = dict(PRESETS.get(gan.preset, {}))
    if resolution is not None:
        values.setdefault("resolution", resolution)
    return values


def resolved_yaml(tree: dict, values: dict) -> str:
    """A resolved experiment (`tfkit.config.to_dict`) as YAML, each null `gan` key the
    preset fills shown with its value."""
    import yaml

    gan = tree.get("gan")
    if gan is not None:
        tree = {**tree, "gan": {
            k: values[k] if v is None and values.get(k) is not None else v for k, v in gan.items()
        }}  # fmt: skip
    text = yaml.safe_dump(tree, sort_keys=False, default_flow_style=None)
    if gan is None:
        return text
    return f"{text}# gan: null keys shown with the value of preset {gan['preset']}\n"


def check_class(num_classes: int, class_idx: int | None) -> None:
    """Refuse a `--class` an (un)conditional generator of `num_classes` classes cannot take.

    Raises:
        UserError: naming `--class` and the valid range.
    """
    if not num_classes:
        if class_idx is not None:
            raise UserError("--class was given but this generator is unconditional.")
        return
    if class_idx is None:
        raise UserError(f"This generator is conditional: pass --class 0..{num_classes - 1}.")
    if not 0 <= class_idx < num_classes:
        raise UserError(f"--class must be in 0..{num_classes - 1}. Received: --class {class_idx}")
