"""The GAN vocabulary config validation needs without importing the GAN code: the
augmentation groups and pipeline names, the preset names, the resolutions a GAN trains
at."""

from __future__ import annotations

# adaptive discriminator augmentation: the transforms of each group and the reference's
# pipeline names (tfkit.stylegan.augment implements them; named here, without TensorFlow,
# for config validation)
AUGMENT_GROUPS: dict[str, tuple[str, ...]] = {
    "blit": ("xflip", "rotate90", "xint"),
    "geom": ("scale", "rotate", "aniso", "xfrac"),
    "color": ("brightness", "contrast", "lumaflip", "hue", "saturation"),
    "filter": ("imgfilter",),
    "noise": ("noise",),
    "cutout": ("cutout",),
}
AUGPIPES: dict[str, tuple[str, ...]] = {
    **{group: (group,) for group in AUGMENT_GROUPS},
    "bg": ("blit", "geom"),
    "bgc": ("blit", "geom", "color"),
    "bgcf": ("blit", "geom", "color", "filter"),
    "bgcfn": ("blit", "geom", "color", "filter", "noise"),
    "bgcfnc": ("blit", "geom", "color", "filter", "noise", "cutout"),
}


# the image sizes a GAN trains at (powers of two)
GAN_RESOLUTIONS = (8, 1024)


def parse_augpipe(name: str) -> tuple[str, ...]:
    """The transform groups of an augmentation pipeline name, in the pipeline's order: a
    reference name (`bgc`) or names joined by `+` (`blit+noise`).

    Raises:
        ValueError: an unknown name (the message lists the valid ones).
    """
    groups: set[str] = set()
    for part in str(name).split("+"):
        if part.strip() not in AUGPIPES:
            raise ValueError(
                f"unknown augmentation pipeline {part.strip()!r}. Valid: {', '.join(AUGPIPES)}, "
                "or names joined by '+' (e.g. blit+color)"
            )
        groups.update(AUGPIPES[part.strip()])
    return tuple(g for g in AUGMENT_GROUPS if g in groups)


# the presets of `tfkit.stylegan.presets` (their values live there; the names are here so
# validating a config imports nothing of the GAN code)
GAN_PRESET_NAMES = (
    "auto",
    "stylegan2",
    "paper256",
    "paper512",
    "paper1024",
    "cifar",
    "shapes16",
    "shapes32",
)
