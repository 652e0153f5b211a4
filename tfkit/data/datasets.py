"""Embedded datasets: generated or bundled, never downloaded. NumPy only (no TensorFlow).

Each function returns an `Arrays` bundle: features, labels, optional sample weights and
what the pipeline needs to describe them (task, classes, known value range). Every
synthetic set is learnable: a small model reaches clearly-above-chance accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfkit.config import check_power_of_two
from tfkit.errors import UserError


@dataclass
class Arrays:
    """In-memory examples and what they mean.

    Attributes:
        x: features, an array (one input) or a dict `{name: array}` (several inputs).
        y: labels (None for unlabelled data).
        sample_weight: per-example weights or None.
        task: `binary`, `multiclass` or `regression` (None: infer from `y`).
        num_classes: number of classes for classification.
        class_names: class names where known.
        value_range: known (low, high) range of the features, e.g. (0, 1) for images.
    """

    x: np.ndarray | dict[str, np.ndarray]
    y: np.ndarray | None
    sample_weight: np.ndarray | None = None
    task: str | None = None
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    value_range: tuple[float, float] | None = None

    def __len__(self) -> int:
        first = next(iter(self.x.values())) if isinstance(self.x, dict) else self.x
        return len(first)


SHAPE_CLASSES = ("circle", "square", "triangle")


def digits_table() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits as `load_digits()` gives them: images (1797, 8, 8) of
    values 0-16 and their labels.

    Read from the file scikit-learn ships, without importing `sklearn.datasets` (which
    imports every loader it has: a tenth of a second of every run's start-up); through
    `load_digits` when the file is not where scikit-learn has always kept it.
    """
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",")  # 64 pixels, then the label
            return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images, bunch.target


def digits(layout: str = "image") -> Arrays:
    """scikit-learn's bundled 8x8 digits, scaled to [0, 1].

    Args:
        layout: `image` gives x of shape (N, 8, 8, 1), `flat` gives (N, 64).
    """
    images, labels = digits_table()
    x = (images.astype(np.float32) / 16.0).reshape(-1, 8, 8, 1)
    if layout == "flat":
        x = x.reshape(len(x), 64)
    elif layout != "image":
        raise UserError(
            f"`data.source.layout` must be 'image' or 'flat'. Received: layout={layout!r}"
        )
    return Arrays(
        x=x,
        y=labels.astype(np.int32),
        task="multiclass",
        num_classes=10,
        class_names=tuple(str(i) for i in range(10)),
        value_range=(0.0, 1.0),
    )


def _triangle_mask(xx: np.ndarray, yy: np.ndarray, pts: np.ndarray) -> np.ndarray:
    def edge(p, q):
        return (xx - p[0]) * (q[1] - p[1]) - (yy - p[1]) * (q[0] - p[0])

    d1, d2, d3 = edge(pts[0], pts[1]), edge(pts[1], pts[2]), edge(pts[2], pts[0])
    neg = (d1 < 0) | (d2 < 0) | (d3 < 0)
    pos = (d1 > 0) | (d2 > 0) | (d3 > 0)
    return ~(neg & pos)


def shapes(count: int = 2000, resolution: int = 32, seed: int = 0) -> Arrays:
    """Procedural RGB images of circles, squares and triangles (labels 0, 1, 2).

    Each image has a random dark background and one bright shape of random colour, size,
    position (and rotation for triangles). Deterministic for a given `seed`.

    Args:
        count: number of images.
        resolution: image side, a power of two >= 4.
        seed: random seed.

    Returns:
        x float32 (count, resolution, resolution, 3) in [0, 1], y int32 in {0, 1, 2}.
    """
    try:
        check_power_of_two(resolution, "resolution", 4)  # the rule of `data.source.resolution`
    except ValueError as err:
        raise UserError(f"`resolution` {err}") from None
    if count < 1:
        raise UserError(f"`count` must be >= 1. Received: count={count}")
    rng = np.random.default_rng(seed)
    r = resolution
    coords = (np.arange(r, dtype=np.float32) + 0.5) / r
    xx, yy = np.meshgrid(coords, coords)
    x = np.empty((count, r, r, 3), np.float32)
    y = rng.integers(0, 3, size=count).astype(np.int32)
    for i in range(count):
        background = rng.uniform(0.0, 0.35, size=3).astype(np.float32)
        colour = rng.uniform(0.55, 1.0, size=3).astype(np.float32)
        size = rng.uniform(0.18, 0.34)
        cx, cy = rng.uniform(size + 0.02, 1 - size - 0.02, size=2)
        if y[i] == 0:
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 < size**2
        elif y[i] == 1:
            half = size * 0.85
            mask = (np.abs(xx - cx) < half) & (np.abs(yy - cy) < half)
        else:
            angle = rng.uniform(0, 2 * np.pi)
            angles = angle + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
            pts = np.stack([cx + size * np.cos(angles), cy + size * np.sin(angles)], axis=1)
            mask = _triangle_mask(xx, yy, pts)
        image = np.where(mask[..., None], colour, background)
        image += rng.normal(0, 0.02, size=image.shape).astype(np.float32)
        x[i] = np.clip(image, 0.0, 1.0)
    return Arrays(
        x=x,
        y=y,
        task="multiclass",
        num_classes=3,
        class_names=SHAPE_CLASSES,
        value_range=(0.0, 1.0),
    )


def tabular_binary(count: int = 4000, features: int = 50, seed: int = 0) -> Arrays:
    """Binary classification table: a sparse linear rule plus an interaction, 5% label noise.

    Returns:
        x float32 (count, features), y float32 in {0, 1}.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, features)).astype(np.float32)
    w = np.zeros(features, np.float32)
    informative = rng.choice(features, size=max(1, min(10, features)), replace=False)
    w[informative] = rng.normal(size=len(informative))
    logits = x @ w
    if features >= 2:
        logits = logits + 0.5 * x[:, informative[0]] * x[:, informative[-1]]
    y = (logits > 0).astype(np.float32)
    flip = rng.random(count) < 0.05
    y[flip] = 1 - y[flip]
    return Arrays(x=x, y=y, task="binary", num_classes=2)


def two_input(count: int = 4000, seed: int = 0) -> Arrays:
    """Two inputs, `a` (50 features) and `b` (10 features), and 5 classes from both.

    Returns:
        x {"a": float32 (count, 50), "b": float32 (count, 10)}, y int32 in 0..4.
    """
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(count, 50)).astype(np.float32)
    b = rng.normal(size=(count, 10)).astype(np.float32)
    wa = rng.normal(size=(50, 5)).astype(np.float32) / np.sqrt(50)
    wb = rng.normal(size=(10, 5)).astype(np.float32) / np.sqrt(10)
    logits = a @ wa + b @ wb + rng.normal(0, 0.1, size=(count, 5))
    y = logits.argmax(axis=1).astype(np.int32)
    return Arrays(x={"a": a, "b": b}, y=y, task="multiclass", num_classes=5)


def sequences(
    count: int = 2000, length: int = 20, features: int = 4, classes: int = 3, seed: int = 0
) -> Arrays:
    """Sequences whose class is the frequency of a sinusoid (class c: c+1 cycles), plus noise.

    The phase and amplitude are random, so the class is only visible across time steps.

    Returns:
        x float32 (count, length, features), y int32 in 0..classes-1.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=count).astype(np.int32)
    t = np.arange(length, dtype=np.float32) / length
    phase = rng.uniform(0, 2 * np.pi, size=(count, 1, features))
    amplitude = rng.uniform(0.5, 1.5, size=(count, 1, features))
    freq = (y + 1).astype(np.float32)[:, None, None]
    x = amplitude * np.sin(2 * np.pi * freq * t[None, :, None] + phase)
    x = x + rng.normal(0, 0.2, size=x.shape)
    return Arrays(x=x.astype(np.float32), y=y, task="multiclass", num_classes=classes)


def regression(
    count: int = 4000,
    features: int = 8,
    noise: float = 0.1,
    outlier_fraction: float = 0.05,
    seed: int = 0,
) -> Arrays:
    """Linear regression with heavy outliers in the targets (a Huber loss is robust to them).

    Returns:
        x float32 (count, features), y float32 (count, 1).
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, features)).astype(np.float32)
    w = rng.normal(size=(features,)).astype(np.float32)
    y = x @ w + 0.5 + rng.normal(0, noise, size=count)
    outliers = rng.random(count) < outlier_fraction
    y[outliers] += rng.choice([-1.0, 1.0], size=outliers.sum()) * rng.uniform(
        10, 30, outliers.sum()
    )
    return Arrays(x=x, y=y.astype(np.float32)[:, None], task="regression")


def generate(source) -> Arrays:
    """The `Arrays` of an embedded source config (digits, shapes, tabular_binary, ...)."""
    kind = source.kind
    if kind == "digits":
        return digits(source.layout)
    if kind == "shapes":
        return shapes(source.count, source.resolution, source.seed)
    if kind == "tabular_binary":
        return tabular_binary(source.count, source.features, source.seed)
    if kind == "two_input":
        return two_input(source.count, source.seed)
    if kind == "sequences":
        return sequences(source.count, source.length, source.features, source.classes, source.seed)
    if kind == "regression":
        return regression(
            source.count, source.features, source.noise, source.outlier_fraction, source.seed
        )
    raise UserError(f"`{kind}` is not an embedded dataset")


EMBEDDED = ("digits", "shapes", "tabular_binary", "two_input", "sequences", "regression")
