# %% [markdown]
# # StyleGAN2 on procedural shapes
#
# **Goal:** build StyleGAN2's generator and discriminator, train them briefly on the
# embedded 16x16 `shapes` images, and look at what a style-based generator offers: a
# grid of samples, the truncation trick, and style mixing.
#
# tfkit's StyleGAN follows stylegan2-ada-pytorch's published configurations: mapping
# network, modulated convolutions, noise inputs, a residual discriminator with
# minibatch standard deviation, the non-saturating loss with lazy R1 and path-length
# regularization, style mixing and an exponential moving average of the generator
# (`G_ema`). The `shapes16` preset shrinks the networks so that they learn on a CPU.
# Here we train for only 3 thousand images (kimg) to keep the notebook under two
# minutes; the shapes take recognisable form after the preset's 10 kimg
# (`tfkit gan train configs/stylegan_shapes16.yaml`).

# %% [markdown]
# ## Setup

# %%
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's C++ info lines
sys.path.insert(0, str(Path.cwd().parent))  # the repository root, when run from notebooks/
WORK = Path(tempfile.mkdtemp(prefix="tfkit-nb-"))  # everything this notebook writes

import io
import json

import numpy as np
import tensorflow as tf
from IPython.display import Image, display
from PIL import Image as PILImage

from tfkit.config import load_config
from tfkit.data import datasets
from tfkit.stylegan import generate
from tfkit.stylegan.trainer import Trainer, build_networks, make_grid


def show(grid: np.ndarray, scale: int = 3) -> None:
    """Display a uint8 image grid as a PNG, enlarged with nearest-neighbour pixels."""
    h, w = grid.shape[:2]
    image = PILImage.fromarray(grid).resize((w * scale, h * scale), PILImage.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    display(Image(buffer.getvalue()))


# %% [markdown]
# ## The data
#
# Circles, squares and triangles of random colour, size and position on dark
# backgrounds. GAN training wants pixels in [-1, 1] (`data.normalize: minus_one_one`).

# %%
real = datasets.shapes(count=32, resolution=16, seed=0)
show(make_grid(real.x * 2 - 1, cols=8, rows=4))

# %% [markdown]
# ## The experiment config
#
# `configs/stylegan_shapes16.yaml` holds the data section and `gan.preset: shapes16`;
# any `gan.*` key overrides the preset. `--set` style overrides shorten the run.

# %%
config_path = Path.cwd().parent / "configs" / "stylegan_shapes16.yaml"
print(config_path.read_text())
cfg = load_config(
    config_path,
    ["gan.kimg=3", "gan.tick_kimg=1", "gan.snapshot_ticks=3", "data.source.count=1000"],
)

# %% [markdown]
# ## The networks
#
# The generator is a mapping network (z -> w, 2 dense layers here, 8 in the paper
# configs) and a synthesis network that starts from a learned 4x4 constant and, per
# resolution, runs modulated 3x3 convolutions whose weights are scaled by a style
# computed from w, adds per-pixel noise, and sums skip connections to RGB. One w is
# broadcast to every layer (`num_ws` copies), which is what makes style mixing
# possible. The discriminator mirrors it with residual blocks down to 4x4.

# %%
from tfkit.stylegan.presets import resolve_options

opts = resolve_options(cfg.gan, resolution=16)
shown = (
    "preset batch z_dim w_dim map_layers channel_base channel_max lr gamma ema_kimg"
    " pl_weight style_mixing g_reg_interval d_reg_interval"
).split()
print({k: v for k, v in opts.as_dict().items() if k in shown})

G, D = build_networks(opts)
z = tf.random.normal([4, opts.z_dim], seed=0)
ws = G.mapping(z)
fake = G.synthesis(ws)
print(f"z {tuple(z.shape)} -> w {tuple(ws.shape)} (num_ws x w_dim) -> image {tuple(fake.shape)}")
print(f"D(image) -> {tuple(D(fake).shape)} logits")
print(f"G {G.count_params():,} parameters, D {D.count_params():,} parameters")

# %% [markdown]
# ## Training
#
# `Trainer` runs the four phases of stylegan2-ada-pytorch in a `GradientTape` loop
# under any `tf.distribute` strategy. Each iteration takes one batch of reals and runs
# the phases whose interval divides the step; the regularizers run lazily (every 4
# and 16 steps) with their weight scaled up to compensate. Progress is counted in
# images: every tick (1 kimg here) prints one line, and every `snapshot_ticks` a
# fixed-seed grid and a checkpoint (G, D, G_ema, both optimizers, counters, RNG) are
# written, so a stopped run resumes exactly. The first tick includes tracing the
# `tf.function`s.

# %%
run_dir = WORK / "runs" / "stylegan_shapes16"
trainer = Trainer(cfg, run_dir)
for phase in trainer.phases:
    print(f"{phase.name:7s} trains {phase.module} every {phase.interval:2d} step(s)")
status = trainer.run()
print("status:", status)

# %%
# What the run directory holds; metrics.jsonl has one record per tick.
print(sorted(p.name for p in run_dir.iterdir()))
for line in (run_dir / "metrics.jsonl").read_text().splitlines():
    record = json.loads(line)
    print(
        f"kimg {record['kimg']:.3f}  G loss {record['Loss/G/loss']:.3f}  D loss {record['Loss/D/loss']:.3f}  "
        f"img/s {record['img_per_sec']:.0f}"
    )

# %% [markdown]
# The fixed-seed snapshot grid before training (noise from a random generator) and
# after 3 kimg (`G_ema`): colour, dark backgrounds and bright centred blobs come
# first; edges and the three shape classes follow with more training.

# %%
latest = sorted(run_dir.glob("fakes0*.png"))[-1]  # named by images seen
for name in ("fakes_init.png", latest.name):
    print(name)
    show(np.asarray(PILImage.open(run_dir / name)), scale=2)

# %% [markdown]
# ## A generated grid
#
# `tfkit.stylegan.generate` makes images from seeds: each seed gives one latent z
# (`np.random.RandomState(seed)`), so a seed always gives the same image. The noise
# inputs are held constant (`noise_mode="const"`) for reproducible pictures.

# %%
G_ema = trainer.G_ema
show(generate.seed_grid(G_ema, list(range(32)), cols=8))

# %% [markdown]
# ## Truncation
#
# The truncation trick pulls each w towards the average w (tracked during training):
# `w = w_avg + psi * (w - w_avg)`. Lower `psi` trades variety for typical,
# cleaner-looking samples; `psi = 0` gives the average image for every seed. Each
# row below shows the same 8 seeds at psi = 1, 0.7, 0.4 and 0.

# %%
seeds = list(range(8))
rows = [generate.images(G_ema, seeds, psi=psi) for psi in (1.0, 0.7, 0.4, 0.0)]
show(make_grid(np.concatenate(rows), cols=8, rows=4))

# %% [markdown]
# ## Style mixing
#
# Because every synthesis layer reads its own copy of w, two latents can be mixed:
# the coarse layers (low resolutions: layout, size) from one seed and the fine layers
# (colour, texture) from another. Top row: the column seeds; left column: the row
# seeds; each inner image takes its coarse styles from its column and the rest from
# its row. Training with `style_mixing: 0.9` is what keeps the layers' roles separate.

# %%
show(generate.style_mix_figure(G_ema, row_seeds=[10, 11, 12, 13], col_seeds=[20, 21, 22, 23, 24]))

# %% [markdown]
# And a straight line in w space between two seeds:

# %%
show(generate.interpolation_strip(G_ema, seed_a=3, seed_b=7, steps=8))

# %% [markdown]
# ## From the command line
#
# The same run, at full length, and images from it:
#
# ```
# tfkit gan train configs/stylegan_shapes16.yaml
# tfkit gan generate runs/stylegan_shapes16/00000 --seeds 0-31 --out grid.png
# ```
#
# Next: `05_tuning.ipynb` searches hyperparameters.
