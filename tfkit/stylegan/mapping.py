"""Mapping network: z (+ class embedding) -> PixelNorm -> N equalized dense layers -> w."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfkit.stylegan.layers import EqualizedDense, PixelNorm


@keras.saving.register_keras_serializable(package="tfkit")
class MappingNetwork(keras.layers.Layer):
    """z (and an optional class label) to the intermediate latent w, broadcast to `num_ws`.

    z and the class embedding are each normalized to unit second moment (PixelNorm) and
    concatenated, then `num_layers` equalized dense layers with leaky ReLU and learning rate
    x `lr_multiplier` give w. During training `update_w_avg` keeps a moving average of w
    (`w_avg`), used for the truncation trick.

    Args:
        z_dim: latent size.
        w_dim: intermediate latent size.
        num_ws: copies of w returned (one per synthesis layer).
        num_layers: dense layers (8 in StyleGAN2, 2 in the cifar preset).
        num_classes: 0 for unconditional; else labels are class indices.
        lr_multiplier: learning-rate multiplier of the dense layers (0.01).
        w_avg_beta: decay of the w moving average.

    Call arguments:
        z: (N, z_dim). c: integer labels (N,) or None. psi: truncation (1 = none).
        cutoff: truncate only the first `cutoff` ws (None = all).
    """

    def __init__(
        self,
        z_dim: int = 512,
        w_dim: int = 512,
        num_ws: int = 14,
        num_layers: int = 8,
        num_classes: int = 0,
        lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.995,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.z_dim = int(z_dim)
        self.w_dim = int(w_dim)
        self.num_ws = int(num_ws)
        self.num_layers = int(num_layers)
        self.num_classes = int(num_classes)
        self.lr_multiplier = float(lr_multiplier)
        self.w_avg_beta = float(w_avg_beta)
        self.norm = PixelNorm(name="pixel_norm")
        self.embed = EqualizedDense(self.w_dim, name="embed") if self.num_classes else None
        self.dense = [
            EqualizedDense(
                self.w_dim, activation="lrelu", lr_multiplier=self.lr_multiplier, name=f"fc{i}"
            )
            for i in range(self.num_layers)
        ]
        for layer in self.dense:  # direct attributes, tracked by tf.train.Checkpoint
            setattr(self, layer.name, layer)

    def build(self, input_shape=None):
        self.w_avg = self.add_weight(
            shape=(self.w_dim,),
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",
            name="w_avg",
        )
        x_dim = self.z_dim
        if self.embed is not None:
            self.embed.build((None, self.num_classes))
            x_dim += self.w_dim
        for layer in self.dense:
            layer.build((None, x_dim))
            x_dim = self.w_dim

    def call(self, z, c=None, psi=1.0, cutoff=None):
        x = self.norm(z)
        if self.embed is not None:
            if c is None:
                raise ValueError("This mapping network is conditional: pass class labels `c`.")
            y = self.norm(
                self.embed(
                    tf.one_hot(
                        tf.cast(tf.reshape(c, [-1]), tf.int32), self.num_classes, dtype=x.dtype
                    )
                )
            )
            x = tf.concat([x, y], axis=-1)
        for layer in self.dense:
            x = layer(x)
        ws = tf.tile(x[:, None, :], [1, self.num_ws, 1])
        if not (isinstance(psi, (int, float)) and psi == 1):
            w_avg = tf.cast(self.w_avg, ws.dtype)
            truncated = w_avg + (ws - w_avg) * tf.cast(psi, ws.dtype)
            if cutoff is None:
                ws = truncated
            else:
                keep = tf.range(self.num_ws)[None, :, None] < cutoff
                ws = tf.where(keep, truncated, ws)
        return ws

    def update_w_avg(self, w_batch_mean: tf.Tensor) -> None:
        """w_avg <- lerp(batch mean of w, w_avg, w_avg_beta) (mean over the global batch)."""
        self.w_avg.assign(w_batch_mean + (self.w_avg - w_batch_mean) * self.w_avg_beta)

    def get_config(self):
        return {
            **super().get_config(),
            "z_dim": self.z_dim,
            "w_dim": self.w_dim,
            "num_ws": self.num_ws,
            "num_layers": self.num_layers,
            "num_classes": self.num_classes,
            "lr_multiplier": self.lr_multiplier,
            "w_avg_beta": self.w_avg_beta,
        }
