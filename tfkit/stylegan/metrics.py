"""GAN quality metrics: FID and KID from the features of any Keras feature network.

Range convention: images are float NHWC in [-1, 1] (what the generator outputs and the GAN
real-data pipeline serves); `tfkit.stylegan.features` adapts them to each network.

- `compute_features(images_or_dataset, network, batch_size)`: features of real or any images.
- `fid_from_features` / `frechet_distance`: Fréchet distance of the two Gaussians fitted to
  the features (FID with InceptionV3, Fréchet classifier distance with a tfkit classifier).
- `kid_from_features`: unbiased kernel inception distance (cubic polynomial kernel MMD²)
  averaged over `num_subsets` random subsets of `max_subset_size`, as in the reference
  (stylegan2-ada-pytorch `kid50k_full`: 100 subsets of 1000).
- `real_statistics`: the real-data features/mean/covariance, cached on disk per dataset,
  feature network and number of images.
- `evaluate_generator(generate_fn, real_dataset, network, ...)`: the metrics of a generator
  given as a callable `generate_fn(z_batch) -> images`, each named with the network that
  computed it (`fid_network`, `kid_network`).

Only the standard FID Inception network (`inception_2015_12_05`) gives values comparable
with published FIDs and KIDs; `comparability` says so in words for the CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfkit.errors import UserError, unknown_name
from tfkit.runs import Run, strict_json
from tfkit.stylegan.features import (
    DEFAULT_SPEC,
    FID_INCEPTION,
    FeatureNetwork,
    as_feature_network,
    comparable_with_published,
    feature_network,
)

METRICS = ("fid", "kid")
DEFAULT_NUM_IMAGES = 50_000  # the reference's fid50k_full / kid50k_full
CACHE_ENV = "TFKIT_METRICS_CACHE"


def default_cache_dir() -> Path:
    """Where real-data statistics are cached: `$TFKIT_METRICS_CACHE` or ~/.cache/tfkit/metrics."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/tfkit/metrics").expanduser()


# --------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------


def _image_batches(images_or_dataset: Any, batch_size: int) -> Iterable[np.ndarray]:
    """Batches of `batch_size` images (the last may be smaller) as float32 NumPy arrays."""
    if isinstance(images_or_dataset, tf.data.Dataset):
        dataset = images_or_dataset
        spec = dataset.element_spec
        if isinstance(spec, (tuple, list)):  # (images, labels[, weights])
            dataset = dataset.map(lambda *parts: parts[0])
        elif isinstance(spec, dict):
            raise UserError(
                "compute_features takes a dataset of images or (images, labels) tuples. "
                f"Received: elements of type dict with keys {sorted(spec)}"
            )
        rank = dataset.element_spec.shape.rank
        if rank == 4:
            dataset = dataset.unbatch()
        elif rank != 3:
            raise UserError(
                "compute_features expects images of shape (H, W, C) or batches (N, H, W, C). "
                f"Received: element shape {dataset.element_spec.shape}"
            )
        for batch in dataset.batch(batch_size).as_numpy_iterator():
            yield np.asarray(batch, np.float32)
        return
    images = np.asarray(images_or_dataset)
    if images.ndim != 4:
        raise UserError(
            f"compute_features expects images of shape (N, H, W, C). Received: shape {images.shape}"
        )
    for start in range(0, len(images), batch_size):
        yield np.asarray(images[start : start + batch_size], np.float32)


def compute_features(
    images_or_dataset: Any,
    network: FeatureNetwork | Any,
    batch_size: int = 64,
    *,
    num_images: int | None = None,
    verbose: bool = False,
) -> np.ndarray:
    """Features of images in [-1, 1], computed in batches.

    Every batch is padded to `batch_size`, so the network is traced once and an image's
    features do not depend on which batch it falls in.

    Args:
        images_or_dataset: an array (N, H, W, C), or a `tf.data.Dataset` of images or
            `(images, labels)` tuples, batched or not.
        network: a `FeatureNetwork` (see `feature_network`) or a Keras image model.
        batch_size: images per network call.
        num_images: stop after this many images (default: all).
        verbose: print progress to stderr every ~10 s.

    Returns:
        float32 array (images, features) in input order.
    """
    if batch_size < 1:
        raise UserError(f"`batch_size` must be >= 1. Received: batch_size={batch_size}")
    network = as_feature_network(network)
    out: list[np.ndarray] = []
    done = 0
    start = last_print = time.perf_counter()
    for batch in _image_batches(images_or_dataset, batch_size):
        if num_images is not None:
            batch = batch[: num_images - done]
        count = len(batch)
        if count == 0:
            break
        if count < batch_size:
            pad = np.zeros((batch_size - count, *batch.shape[1:]), np.float32)
            batch = np.concatenate([batch, pad])
        out.append(np.asarray(network(batch))[:count])
        done += count
        now = time.perf_counter()
        if verbose and now - last_print > 10:
            print(f"features: {done} images, {done / (now - start):.1f} img/s", file=sys.stderr)
            last_print = now
        if num_images is not None and done >= num_images:
            break
    if not out:
        raise UserError("compute_features received no images")
    return np.concatenate(out).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------
# FID
# --------------------------------------------------------------------------------------


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64, unbiased) of features (N, D), N >= 2."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise UserError(
            f"Statistics need at least 2 feature vectors (N, D). Received: shape {features.shape}"
        )
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ||mu1 - mu2||² + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^½), with the trace of the matrix
    square root computed as the sum of square roots of the eigenvalues of the symmetric
    s1^½ s2 s1^½ (same spectrum as s1 s2), which stays real and stable for singular
    covariances.
    """
    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, np.float64)),
        np.atleast_1d(np.asarray(mu2, np.float64)),
    )
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(
            "mu1/mu2 must have shape (D,) and sigma1/sigma2 shape (D, D). Received: "
            f"mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 {mu2.shape}, sigma2 {sigma2.shape}"
        )
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_covmean = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_covmean
    return float(max(value, 0.0))


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets (N, D)."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


# --------------------------------------------------------------------------------------
# KID
# --------------------------------------------------------------------------------------


def _cubic_kernel(a: np.ndarray, b: np.ndarray, dims: int) -> np.ndarray:
    k = a @ b.T / dims + 1
    return k * k * k  # 5x faster than k ** 3 in NumPy


def kid_from_features(
    features1: np.ndarray,
    features2: np.ndarray,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int = 0,
) -> float:
    """Unbiased kernel inception distance: MMD² with the kernel k(x, y) = (x·y / D + 1)³.

    Each of `num_subsets` draws m = min(N1, N2, max_subset_size) vectors from each set
    without replacement and computes the unbiased MMD² estimate (diagonal terms of the
    within-set kernels left out); the result is their mean. Equal distributions give values
    scattered around 0, negative ones included.
    """
    x_all = np.asarray(features1, np.float64)
    y_all = np.asarray(features2, np.float64)
    if x_all.ndim != 2 or y_all.ndim != 2 or x_all.shape[1] != y_all.shape[1]:
        raise ValueError(
            f"features must be (N, D) with the same D. Received: {x_all.shape}, {y_all.shape}"
        )
    m = min(len(x_all), len(y_all), max_subset_size)
    if m < 2:
        raise UserError(f"KID needs at least 2 feature vectors per set. Received: {m}")
    if num_subsets < 1:
        raise UserError(f"`num_subsets` must be >= 1. Received: num_subsets={num_subsets}")
    dims = x_all.shape[1]
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = x_all[rng.choice(len(x_all), m, replace=False)]
        y = y_all[rng.choice(len(y_all), m, replace=False)]
        kxx, kyy, kxy = (
            _cubic_kernel(x, x, dims),
            _cubic_kernel(y, y, dims),
            _cubic_kernel(x, y, dims),
        )
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        total += within - 2 * kxy.sum() / (m * m)
    return float(total / num_subsets)


# --------------------------------------------------------------------------------------
# real-data statistics, cached
# --------------------------------------------------------------------------------------


@dataclass
class RealStatistics:
    """Features of real images and their mean/covariance (what FID and KID need)."""

    features: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray

    @property
    def num_images(self) -> int:
        """Number of real images the statistics cover."""
        return len(self.features)


def cache_key(data_key: Any, network_spec: str, num_images: int) -> str:
    """A file-name-safe key of (dataset description, feature network, number of images)."""
    payload = json.dumps(
        {"data": data_key, "features": network_spec, "num_images": int(num_images)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha1(payload.encode()).hexdigest()[:20]


def real_statistics(
    real_dataset: Any,
    network: FeatureNetwork | Any,
    num_images: int = DEFAULT_NUM_IMAGES,
    batch_size: int = 64,
    *,
    cache_dir: str | os.PathLike | None = None,
    data_key: Any = None,
    verbose: bool = False,
) -> RealStatistics:
    """Real-image features, mean and covariance, read from / written to a cache.

    The cache file is `cache_dir/<key>.npz` with key `cache_key(data_key, network.spec,
    num_images)`; caching is off when `cache_dir`, `data_key` or the network's `spec` is
    None. The file is written atomically, so concurrent runs never read half a file.

    Args:
        real_dataset: real images in [-1, 1] (see `compute_features`).
        network: the feature network.
        num_images: at most this many real images (fewer if the dataset is smaller).
        batch_size: images per network call.
        cache_dir: directory of cached statistics.
        data_key: anything JSON-able that identifies the dataset (e.g. the data config).
        verbose: print progress and cache hits to stderr.
    """
    network = as_feature_network(network)
    path = None
    if cache_dir is not None and data_key is not None and network.spec is not None:
        key = cache_key(data_key, network.spec, num_images)
        path = Path(cache_dir) / f"{key}.npz"
        if path.is_file():
            with np.load(path) as f:
                if verbose:
                    print(f"real statistics: cached {path}", file=sys.stderr)
                return RealStatistics(f["features"], f["mu"], f["sigma"])
    features = compute_features(
        real_dataset, network, batch_size, num_images=num_images, verbose=verbose
    )
    stats = RealStatistics(features, *feature_statistics(features))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, features=stats.features, mu=stats.mu, sigma=stats.sigma)
        tmp.replace(path)
        meta = {"data": data_key, "features": network.spec, "num_images": stats.num_images}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1, default=str))
    return stats


# --------------------------------------------------------------------------------------
# generator evaluation
# --------------------------------------------------------------------------------------


def generated_images(
    generate_fn: Callable[[np.ndarray], Any],
    num_images: int,
    batch_size: int = 64,
    *,
    z_dim: int = 512,
    seed: int = 0,
) -> Iterable[np.ndarray]:
    """Batches of generated images, clipped to [-1, 1], from latents drawn with `seed`.

    Image i always comes from the same latent whatever `batch_size` is; every call of
    `generate_fn` gets a full batch (the last one padded with zeros, its extra outputs
    dropped), so a traced generator is traced once.
    """
    z_all = np.random.default_rng(seed).standard_normal((num_images, z_dim), dtype=np.float32)
    for start in range(0, num_images, batch_size):
        z = z_all[start : start + batch_size]
        count = len(z)
        if count < batch_size:
            z = np.concatenate([z, np.zeros((batch_size - count, z_dim), np.float32)])
        images = np.asarray(generate_fn(z), np.float32)[:count]
        yield np.clip(images, -1.0, 1.0)


def check_metric_names(metrics: Sequence[str] | str) -> tuple[str, ...]:
    """Metric names from a list or a comma-separated string, checked against `METRICS`."""
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    if not metrics:
        raise UserError(f"--metrics needs at least one of: {', '.join(METRICS)}. Received: none")
    for name in metrics:
        if name not in METRICS:
            raise unknown_name("metric", name, METRICS)
    return tuple(dict.fromkeys(metrics))


def evaluate_generator(
    generate_fn: Callable[[np.ndarray], Any],
    real_dataset: Any,
    network: FeatureNetwork | Any,
    metrics: Sequence[str] = METRICS,
    num_images: int = DEFAULT_NUM_IMAGES,
    batch_size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    *,
    data_key: Any = None,
    z_dim: int = 512,
    seed: int = 0,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    verbose: bool = False,
) -> dict[str, Any]:
    """FID and/or KID of a generator against real data.

    Args:
        generate_fn: `generate_fn(z)` with z float32 (batch, z_dim) returns images
            (batch, H, W, C) in [-1, 1] (e.g. G_ema with truncation psi 1).
        real_dataset: real images in [-1, 1] (an array or a `tf.data.Dataset`), or their
            `RealStatistics` (computed once, e.g. by a trainer evaluating every snapshot).
        network: the feature network (`feature_network("inception_2015_12_05")`, ...).
        metrics: any of `fid`, `kid`.
        num_images: generated images, and at most this many real ones (50k like the
            reference's `fid50k_full`).
        batch_size: images per generator/network call.
        cache_dir: where real statistics are cached (needs `data_key`).
        data_key: JSON-able description of the real dataset (the cache key's data part).
        z_dim: latent size of the generator.
        seed: seed of the latents and of KID's subsets.
        kid_subsets, kid_subset_size: KID's `num_subsets` and `max_subset_size`.
        verbose: print progress to stderr.

    Returns:
        `{"fid": ..., "fid_network": name, "kid": ..., "kid_network": name, "num_real": N,
        "num_fake": M}` for the requested metrics; `name` is the feature network's
        (`inception_2015_12_05`, `inception_v3_keras_imagenet`, `classifier:RUN_DIR`, ...).
    """
    metrics = check_metric_names(metrics)
    if num_images < 2:
        raise UserError(f"--num-images must be >= 2. Received: {num_images}")
    network = as_feature_network(network)
    if isinstance(real_dataset, RealStatistics):
        real = real_dataset
    else:
        real = real_statistics(
            real_dataset,
            network,
            num_images,
            batch_size,
            cache_dir=cache_dir,
            data_key=data_key,
            verbose=verbose,
        )
    batches = generated_images(generate_fn, num_images, batch_size, z_dim=z_dim, seed=seed)
    fake = np.concatenate([compute_features(b, network, batch_size) for b in batches])
    results: dict[str, Any] = {}
    if "fid" in metrics:
        results["fid"] = frechet_distance(*feature_statistics(fake), real.mu, real.sigma)
        results["fid_network"] = network.name
    if "kid" in metrics:
        results["kid"] = kid_from_features(
            fake, real.features, kid_subsets, kid_subset_size, seed=seed
        )
        results["kid_network"] = network.name
    results["num_real"] = real.num_images
    results["num_fake"] = len(fake)
    return results


class SnapshotMetrics:
    """Metrics a trainer computes at every snapshot (`gan.metrics`), real statistics once.

    The feature network is built at construction, so a missing network file stops a run
    before training; the real statistics are computed (or read from the cache)
    at the first call and kept.

    Args:
        real_dataset: real images in [-1, 1] (array or `tf.data.Dataset` of images or
            (image, label) pairs).
        metrics: any of `fid`, `kid`.
        features: feature network spec (`inception_2015_12_05`, `inception_v3`,
            `classifier:RUN_DIR`) or network.
        num_images: images per set.
        batch_size, cache_dir, data_key, seed: as in `evaluate_generator`.
        inception_weights: local InceptionV3 weights file.
        fid_inception: local `classify_image_graph_def.pb` (`gan.metrics_fid_inception`).

    Example:
        >>> metrics = SnapshotMetrics(reals, metrics=("fid",), features="classifier:runs/c/00000",
        ...                           num_images=2000, data_key=to_dict(cfg.data))
        >>> results = metrics(lambda z: G_ema(z).numpy(), z_dim=64)  # {"fid": ..., ...}
        >>> log_metrics(run_dir, results, step=kimg, extra={"kimg": kimg})
    """

    def __init__(
        self,
        real_dataset: Any,
        *,
        metrics: Sequence[str] = ("fid",),
        features: str | FeatureNetwork | Any = DEFAULT_SPEC,
        num_images: int = DEFAULT_NUM_IMAGES,
        batch_size: int = 64,
        cache_dir: str | os.PathLike | None = None,
        data_key: Any = None,
        inception_weights: str | os.PathLike | None = None,
        fid_inception: str | os.PathLike | None = None,
        seed: int = 0,
    ):
        self.metrics = check_metric_names(metrics)
        self.network = feature_network(
            features,
            inception_weights=inception_weights,
            fid_inception_path=fid_inception,
            fid_inception_source="gan.metrics_fid_inception",
        )
        self.real_dataset = real_dataset
        self.num_images = int(num_images)
        self.batch_size = int(batch_size)
        self.cache_dir = cache_dir
        self.data_key = data_key
        self.seed = int(seed)
        self._real: RealStatistics | None = None

    def __call__(self, generate_fn: Callable[[np.ndarray], Any], z_dim: int) -> dict[str, Any]:
        """The metrics of `generate_fn` (z -> images in [-1, 1]) with latents of `z_dim`."""
        if self._real is None:
            self._real = real_statistics(
                self.real_dataset,
                self.network,
                self.num_images,
                self.batch_size,
                cache_dir=self.cache_dir,
                data_key=self.data_key,
            )
        return evaluate_generator(
            generate_fn,
            self._real,
            self.network,
            self.metrics,
            self.num_images,
            self.batch_size,
            z_dim=z_dim,
            seed=self.seed,
        )


def log_metrics(
    run_dir: str | os.PathLike, results: dict[str, Any], *, step: int = 0, extra: dict | None = None
) -> None:
    """Append the results to `run_dir/metrics.jsonl` and write `Metrics/<name>` TB scalars."""
    run = Run(run_dir)
    record = {"time": time.time(), **(extra or {}), **results}
    with open(run.metrics_file, "a") as f:
        f.write(json.dumps(strict_json(record), default=str, allow_nan=False) + "\n")
    writer = tf.summary.create_file_writer(str(run.tensorboard_dir))
    with writer.as_default():
        for name, value in results.items():
            if name in METRICS:
                tf.summary.scalar(f"Metrics/{name}", value, step=step)
    writer.close()


def display_name(metric: str, network: str) -> str:
    """How a metric is named to the user: the Fréchet distance of classifier features is
    the Fréchet classifier distance (FCD), not FID, which means Inception features."""
    if metric == "fid" and not network.startswith("inception"):
        return "fcd (Fréchet classifier distance)"
    return metric


def comparability(
    metrics: Sequence[str], network: str, num_images: int = DEFAULT_NUM_IMAGES
) -> str:
    """One sentence for the user: whether the distances of `network` (its name), measured
    with `num_images` generated images, compare with published values, and how to get ones
    that do."""
    shown = " and ".join(display_name(m, network).split(" (")[0] for m in metrics)
    if comparable_with_published(network):
        line = f"network: {network}, the standard FID Inception network (pool_3 features): "
        if num_images >= DEFAULT_NUM_IMAGES:
            return line + f"{shown} comparable with published values"
        return line + (
            f"{shown} comparable with published values at the same number of images only "
            f"(published: {DEFAULT_NUM_IMAGES}; fewer images give a larger FID)"
        )
    return (
        f"network: {network}: {shown} NOT comparable with published FID/KID values (only "
        f"--features {FID_INCEPTION}, the standard FID Inception network, is); compare them "
        "only with runs measured by the same network"
    )
