"""Images from a trained GAN run: seed grids, style-mixing figures, interpolation strips.

The EMA generator is rebuilt from the run's `gan_options.json` and restored from its latest
checkpoint. Latents come from `np.random.RandomState(seed)`, so a seed always gives the
same image, and noise is `const` by default.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfkit.data.imageio import make_grid
from tfkit.errors import UserError
from tfkit.stylegan.checkpoints import load_g_ema
from tfkit.stylegan.presets import check_class


def parse_seeds(text: str) -> list[int]:
    """`0-3,7` -> [0, 1, 2, 3, 7] (see `tfkit.arguments.parse_seeds`).

    Raises:
        UserError: not a comma-separated list of integers and ranges, seeds out of range,
            or more than `tfkit.arguments.MAX_SEEDS` of them.
    """
    from tfkit import arguments

    try:
        return arguments.parse_seeds(text)
    except ValueError as err:
        raise UserError(f"--seeds {err}") from None


def load_generator(run_dir: str | Path):
    """The EMA generator of a GAN run, restored (checked) from its latest checkpoint; also
    its options."""
    loaded = load_g_ema(run_dir)
    return loaded.G, loaded.opts


def latents(seeds: list[int], z_dim: int) -> np.ndarray:
    """One z per seed from `np.random.RandomState(seed)` (reproducible)."""
    return np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds]).astype(np.float32)


def _labels(G, n: int, class_idx: int | None) -> tf.Tensor | None:
    check_class(G.num_classes, class_idx)
    return None if not G.num_classes else tf.fill([n], class_idx)


def images(
    G,
    seeds: list[int],
    psi: float = 1.0,
    cutoff: int | None = None,
    class_idx: int | None = None,
    noise_mode: str = "const",
) -> np.ndarray:
    """Images in [-1, 1] for `seeds` (N, R, R, 3)."""
    z = latents(seeds, G.z_dim)
    return G(
        z, _labels(G, len(seeds), class_idx), psi=psi, cutoff=cutoff, noise_mode=noise_mode
    ).numpy()


def seed_grid(
    G,
    seeds: list[int],
    psi: float = 1.0,
    cutoff: int | None = None,
    class_idx: int | None = None,
    cols: int | None = None,
    noise_mode: str = "const",
) -> np.ndarray:
    """A uint8 grid of the images of `seeds`."""
    cols = cols or math.ceil(math.sqrt(len(seeds)))
    rows = math.ceil(len(seeds) / cols)
    return make_grid(images(G, seeds, psi, cutoff, class_idx, noise_mode), cols, rows)


def style_mix_figure(
    G,
    row_seeds: list[int],
    col_seeds: list[int],
    psi: float = 1.0,
    class_idx: int | None = None,
    noise_mode: str = "const",
) -> np.ndarray:
    """The StyleGAN style-mixing figure as a uint8 grid.

    Top row: the column seeds' images; left column: the row seeds' images; each inner cell
    takes the coarse styles (the first half of the layers) from its column seed and the
    rest from its row seed.
    """
    c_row = _labels(G, len(row_seeds), class_idx)
    c_col = _labels(G, len(col_seeds), class_idx)
    w_row = G.mapping(latents(row_seeds, G.z_dim), c_row, psi=psi)
    w_col = G.mapping(latents(col_seeds, G.z_dim), c_col, psi=psi)
    coarse = G.num_ws // 2
    r, c = len(row_seeds), len(col_seeds)
    ws_row = tf.repeat(w_row, c, axis=0)  # [r*c, num_ws, w_dim]
    ws_col = tf.tile(w_col, [r, 1, 1])
    mixed = G.mix(ws_col, ws_row, tf.fill([r * c], coarse))
    synth = lambda ws: G.synthesis(ws, noise_mode=noise_mode).numpy()  # noqa: E731
    cells = synth(mixed)
    row_imgs, col_imgs = synth(w_row), synth(w_col)
    blank = -np.ones_like(row_imgs[:1])
    table = [np.concatenate([blank, col_imgs])]
    for i in range(r):
        table.append(np.concatenate([row_imgs[i : i + 1], cells[i * c : (i + 1) * c]]))
    return make_grid(np.concatenate(table), c + 1, r + 1)


def interpolation_strip(
    G,
    seed_a: int,
    seed_b: int,
    steps: int = 8,
    psi: float = 1.0,
    class_idx: int | None = None,
    noise_mode: str = "const",
) -> np.ndarray:
    """Images along the straight line from w(seed_a) to w(seed_b), as a uint8 strip."""
    if steps < 2:
        raise UserError(f"--steps must be at least 2. Received: --steps {steps}")
    c = _labels(G, 2, class_idx)
    ws = G.mapping(latents([seed_a, seed_b], G.z_dim), c, psi=psi)
    t = tf.reshape(tf.linspace(0.0, 1.0, steps), [-1, 1, 1])
    path = ws[:1] + (ws[1:] - ws[:1]) * t
    return make_grid(G.synthesis(path, noise_mode=noise_mode).numpy(), steps, 1)


def save_png(grid: np.ndarray, out: str | Path) -> Path:
    """Write a uint8 image to a PNG file (parents created)."""
    from PIL import Image

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.squeeze(-1) if grid.shape[-1] == 1 else grid).save(out)
    return out
