"""StyleGAN2 losses and regularizers as per-example functions (average them yourself).

Non-saturating logistic loss for G and D, the R1 penalty on real images, path-length
regularization, the lazy-regularization scaling of Adam and the EMA decay of G_ema, as in
stylegan2-ada-pytorch (`training/loss.py`, `training/training_loop.py`).
"""

from __future__ import annotations

import math

import tensorflow as tf


def g_main_loss(fake_logits: tf.Tensor) -> tf.Tensor:
    """Non-saturating generator loss per example: softplus(-D(G(z)))."""
    return tf.nn.softplus(-tf.reshape(fake_logits, [-1]))


def d_main_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
    """Logistic discriminator loss per example: softplus(D(G(z))) + softplus(-D(x))."""
    return tf.nn.softplus(tf.reshape(fake_logits, [-1])) + tf.nn.softplus(
        -tf.reshape(real_logits, [-1])
    )


def r1_penalty(
    discriminator, reals: tf.Tensor, labels: tf.Tensor | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """R1 penalty per example: ||d D(x) / d x||^2 summed over pixels; also the real logits.

    Differentiable (call it inside an outer `GradientTape` to train on it).
    """
    with tf.GradientTape() as tape:
        tape.watch(reals)
        logits = discriminator(reals, labels)
        total = tf.reduce_sum(logits)
    grads = tape.gradient(total, reals)
    return tf.reduce_sum(tf.square(grads), axis=[1, 2, 3]), logits


def path_lengths(
    synthesis,
    ws: tf.Tensor,
    noise_seed: tf.Tensor,
    synthesis_seed: tf.Tensor | None = None,
    noise_mode: str | None = None,
) -> tf.Tensor:
    """Per-example path length ||J_w^T y||: y is image-space noise scaled by 1/sqrt(H*W).

    The Jacobian-vector product is d sum(G(w) * y) / d w; its squared norm is summed over
    w_dim, averaged over the num_ws layers, then square-rooted.
    """
    with tf.GradientTape() as tape:
        tape.watch(ws)
        img = synthesis(ws, seed=synthesis_seed, noise_mode=noise_mode)
        height, width = img.shape[1], img.shape[2]
        noise = tf.random.stateless_normal(tf.shape(img), noise_seed, dtype=img.dtype) / math.sqrt(
            height * width
        )
        out = tf.reduce_sum(img * noise)
    grads = tape.gradient(out, ws)
    return tf.sqrt(tf.reduce_mean(tf.reduce_sum(tf.square(grads), axis=2), axis=1))


def pl_penalty(lengths: tf.Tensor, pl_mean: tf.Tensor) -> tf.Tensor:
    """Path-length penalty per example: (length - running mean)^2."""
    return tf.square(lengths - pl_mean)


def lazy_regularization(
    lr: float, betas: tuple[float, float], interval: int
) -> tuple[float, tuple[float, float]]:
    """Adam settings when a regularizer runs every `interval` steps (ratio interval/(interval+1)).

    Returns:
        (lr * ratio, (beta1 ** ratio, beta2 ** ratio)).
    """
    ratio = interval / (interval + 1)
    return lr * ratio, (betas[0] ** ratio, betas[1] ** ratio)


def lr_factor(schedule: str, cur_nimg: int, total_nimg: int, start: float = 0.0) -> float:
    """Learning-rate multiplier at `cur_nimg` of `total_nimg` images.

    `none` keeps 1 (the reference). `linear` and `cosine` hold 1 until the fraction `start`
    of the run, then decay to 0 at its end (linear decay to 0 is SNGAN's CIFAR schedule):
    the GAN game settles instead of ending mid-oscillation.
    """
    if schedule == "none" or total_nimg <= 0:
        return 1.0
    p = min(max((cur_nimg / total_nimg - start) / max(1.0 - start, 1e-8), 0.0), 1.0)
    if schedule == "linear":
        return 1.0 - p
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")


def ema_beta(batch: int, ema_kimg: float, ema_rampup: float, cur_nimg: int) -> float:
    """Decay of the G_ema update p_ema <- p + (p_ema - p) * beta.

    The half-life is `ema_kimg` thousand images, limited to `cur_nimg * ema_rampup` early in
    training when `ema_rampup` > 0.
    """
    ema_nimg = ema_kimg * 1000
    if ema_rampup:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))
