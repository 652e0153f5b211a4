"""The one checked loader of a GAN run's EMA generator (`tfkit gan generate`, `tfkit gan
metrics`, `tfkit export`).

The generator is rebuilt from the options the run saved (`gan_options.json`; else the
config's `gan` section resolved as the trainer does) and only `G_ema` and the image counter
are restored from the run's latest trainer checkpoint: the checkpoint is read in full
first (a truncated one is refused, named), and every generator variable must be restored.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from tfkit.errors import UserError
from tfkit.runs import Run, latest_tf_checkpoint
from tfkit.stylegan.presets import GanOptions


def load_options(run_dir: str | os.PathLike) -> GanOptions:
    """The resolved `GanOptions` saved in a GAN run directory.

    Raises:
        UserError: the run has no saved GAN options (not a GAN run).
    """
    path = Run(run_dir).gan_options_file
    if not path.is_file():
        raise UserError(
            f"{run_dir} is not a GAN run directory (no {path.name}); train one with "
            "`tfkit gan train`."
        )
    raw = json.loads(path.read_text())
    raw["betas"] = tuple(raw["betas"])
    raw["grid"] = tuple(raw["grid"])
    return GanOptions(**raw)


@dataclass
class LoadedGenerator:
    """G_ema of a GAN run, ready to sample: `generate(z)` gives images in [-1, 1].

    Attributes:
        G: the generator (`tfkit.stylegan.synthesis.Generator`).
        opts: the options it was built from.
        kimg: thousands of real images the checkpoint had seen.
        checkpoint: the checkpoint prefix it was restored from.
    """

    G: Any
    opts: GanOptions
    kimg: float
    checkpoint: str

    @property
    def z_dim(self) -> int:
        """Latent size."""
        return self.opts.z_dim

    @property
    def num_classes(self) -> int:
        """Number of classes (0: unconditional)."""
        return self.opts.num_classes

    def generate(self, z: np.ndarray, seed: int = 0) -> np.ndarray:
        """Images for latents `z` (random class labels for a conditional G, from `seed`)."""
        c = None
        if self.num_classes:
            c = np.random.default_rng(seed).integers(0, self.num_classes, len(z)).astype(np.int32)
        return np.asarray(self.G(tf.convert_to_tensor(z), c, training=False))


def load_g_ema(
    run_dir: str | os.PathLike,
    config: Any = None,
    resolution: int | None = None,
    num_classes: int = 0,
) -> LoadedGenerator:
    """G_ema of the latest checkpoint of a `tfkit gan train` run, checked.

    Args:
        run_dir: the GAN run directory.
        config, resolution, num_classes: used only for runs without `gan_options.json`
            (the options are then resolved from `config.gan` as the trainer does).

    Raises:
        UserError: not a GAN run, no checkpoint yet, or a truncated checkpoint (named).
        RuntimeError: a checkpoint that does not hold every variable of the generator.
    """
    from tfkit.stylegan.networks import build_networks

    run = Run(run_dir)
    latest = latest_tf_checkpoint(run.checkpoints_dir)
    if latest is None:
        raise UserError(
            f"{run_dir} holds no GAN checkpoint (nothing in {run.checkpoints_dir}); train it "
            "first with `tfkit gan train` (a checkpoint is written at every snapshot)"
        )
    if run.gan_options_file.is_file() or config is None or resolution is None:
        opts = load_options(run_dir)
    else:
        from tfkit.config import GanConfig
        from tfkit.stylegan.presets import resolve_options

        opts = resolve_options(config.gan or GanConfig(), resolution, 1, num_classes)
    G, _ = build_networks(opts)
    nimg = tf.Variable(0, dtype=tf.int64, trainable=False)
    _restore_g_ema(G, nimg, latest)
    return LoadedGenerator(G, opts, int(nimg.numpy()) / 1000, latest)


def _restore_g_ema(G: Any, nimg: tf.Variable, checkpoint: str) -> None:
    """Restore G_ema's variables from a trainer checkpoint, refusing a partial restore.

    Two layouts are read: `G_ema` saved as a dict `{variable.path: variable}` (exact: every
    key must be present) or as the Keras model object (accepted when the checkpoint holds
    as many `G_ema/` values as the model has variables).
    """
    stored = [name for name, _ in tf.train.list_variables(checkpoint) if name.startswith("G_ema/")]
    if len(stored) < len(G.variables):
        raise RuntimeError(
            f"{checkpoint} holds {len(stored)} values under G_ema/ but the generator has "
            f"{len(G.variables)} variables: the trainer's checkpoint does not track G_ema's "
            "layers, so its weights cannot be restored"
        )
    by_path = tf.train.Checkpoint(G_ema={v.path: v for v in G.variables}, nimg=nimg)
    try:
        by_path.restore(checkpoint).expect_partial().assert_existing_objects_matched()
    except AssertionError:
        status = tf.train.Checkpoint(G_ema=G, nimg=nimg).restore(checkpoint).expect_partial()
        status.assert_existing_objects_matched()
