"""The StyleGAN trainer: GAN phases in a GradientTape loop under any tf.distribute strategy.

One training iteration takes one global batch of real images and runs the phases whose
interval divides the iteration number:

    G-main   every step   non-saturating loss on D(G(z)), style mixing, w_avg update
    G-reg    every 4      path-length penalty on a batch shrunk by pl_batch_shrink
    D-main   every step   logistic loss on reals and fakes
    D-reg    every 16     R1 penalty on reals

then updates G_ema. With lazy regularization each optimizer's learning rate and Adam betas
are scaled by interval / (interval + 1) and each regularizer's loss is multiplied by its
interval, as in stylegan2-ada-pytorch. Per-example losses are averaged over the global batch
with `tf.nn.compute_average_loss`; the Keras optimizer sums the replicas' gradients.

Progress is counted in images (kimg). Every tick prints one line and logs the same values
to TensorBoard and `metrics.jsonl`; every `snapshot_ticks` ticks a fixed-seed image grid
(PNG + TensorBoard) and a checkpoint are written. The checkpoint holds G, D, G_ema, both
optimizers, the counters, the RNG state and the path-length mean (w_avg lives in G), and
the data order is a pure function of the step, so a resumed run continues exactly. SIGTERM
or Ctrl-C finishes the current iteration, writes a checkpoint and stops; a second one stops
at once (`tfkit.training.stop.StopSignals`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import resource
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfkit.data.gan_images import load_images
from tfkit.data.imageio import make_grid
from tfkit.errors import UserError
from tfkit.runs import (
    CHECKPOINT_DIR,
    G_EMA_FILE,
    GAN_GRID_FILE,
    METRICS_FILE,
    TENSORBOARD_DIR,
    restore_tf_checkpoint,
)
from tfkit.runs import GAN_OPTIONS_FILE as OPTIONS_FILE
from tfkit.stylegan import losses
from tfkit.stylegan.networks import build_networks
from tfkit.stylegan.presets import resolve_options
from tfkit.training.banner import kimg_position, start_line
from tfkit.training.checkpointing import CheckpointWriter, by_path, read_checkpoint
from tfkit.training.stop import StopSignals

# multi-worker runs agree on a stop request every this many iterations (a small all-reduce)
STOP_CHECK_EVERY = 4


@dataclass
class Phase:
    """One training phase: which network it trains, its optimizer and its interval."""

    name: str
    module: str  # "G" or "D"
    interval: int
    optimizer: keras.optimizers.Optimizer


class Trainer:
    """Train a StyleGAN from an experiment config into a run directory.

    Args:
        cfg: the experiment config (its `gan` section may be None: defaults are used).
        run_dir: the run directory (tb/, checkpoints/, grids, metrics.jsonl go here). Under
            MultiWorkerMirroredStrategy only the chief writes there; the other workers
            write to temporary directories removed by `close` (or at the end of `run`).
        strategy: a tf.distribute strategy (default: `tfkit.distribute.strategy(cfg.runtime)`).
        dataset: unbatched (image, label) dataset in [-1, 1] (default: from `cfg.data`).
        num_classes: classes of `dataset` (0: unlabelled).
        resume: restore the latest checkpoint of `run_dir`.
        log: where tick lines go.

    Example:
        >>> Trainer(cfg, run_dir).run()
    """

    def __init__(
        self,
        cfg,
        run_dir: str | Path,
        *,
        strategy: tf.distribute.Strategy | None = None,
        dataset: tf.data.Dataset | None = None,
        num_classes: int = 0,
        resume: bool = False,
        log: Callable[[str], None] = print,
    ):
        from tfkit.config import GanConfig

        self.cfg = cfg
        self.gan_cfg = cfg.gan or GanConfig()
        self.run_dir = Path(run_dir)
        self._exit_stack = contextlib.ExitStack()
        self.log = log
        if strategy is None:
            from tfkit import distribute

            strategy = distribute.strategy(cfg.runtime)
        self.strategy = strategy
        self.replicas = strategy.num_replicas_in_sync
        from tfkit import distribute as tfkit_distribute

        self.chief = tfkit_distribute.is_chief(strategy)
        # where this worker writes: run_dir on the chief, a temporary directory elsewhere
        self.out_dir = Path(
            self._exit_stack.enter_context(tfkit_distribute.worker_dir(self.run_dir, strategy))
        )
        if dataset is None:
            dataset, resolution, num_classes = load_images(cfg)
        else:
            shape = tuple(dataset.element_spec[0].shape)
            if len(shape) != 3 or shape[0] != shape[1]:
                raise UserError(
                    f"GAN training needs square images (H, W, C). Received: image shape {shape}"
                )
            resolution = int(shape[0])
        opts = resolve_options(
            self.gan_cfg, resolution, self.replicas, num_classes, cfg.runtime.mixed_precision
        )
        saved = self.run_dir / OPTIONS_FILE
        if resume and saved.is_file() and "noise_per_channel" not in json.loads(saved.read_text()):
            # a run started before the original arch's per-channel noise strength had one
            # strength per layer: it goes on with its own networks
            opts = dataclasses.replace(opts, noise_per_channel=False)
        self.opts = opts
        self.snapshot_metrics = self._build_metrics(dataset)
        self.batch = opts.batch
        self.per_replica = opts.batch // self.replicas
        self.rounds = opts.rounds  # gradient accumulation of batch_per_replica examples
        self.pl_per_replica = max(opts.batch_per_replica // opts.pl_batch_shrink, 1) * self.rounds
        seed = cfg.runtime.seed
        keras.utils.set_random_seed(seed)  # same seed: same initial weights and data order
        self.base_dataset = (
            dataset.repeat()
            .shuffle(4096, seed=seed, reshuffle_each_iteration=True)
            .batch(self.batch, drop_remainder=True)
        )
        self.rng = tf.random.Generator.from_seed(seed)
        with strategy.scope():
            self.G, self.D = build_networks(opts)
            self.G_ema, _ = build_networks(opts)
            for dst, src in zip(self.G_ema.weights, self.G.weights, strict=True):
                dst.assign(src)
            g_lr, g_betas = losses.lazy_regularization(opts.lr, opts.betas, opts.g_reg_interval)
            d_lr, d_betas = losses.lazy_regularization(opts.lr, opts.betas, opts.d_reg_interval)
            self._base_lrs = (g_lr, d_lr)  # times losses.lr_factor with gan.lr_decay
            self.g_opt = keras.optimizers.Adam(
                g_lr, beta_1=g_betas[0], beta_2=g_betas[1], epsilon=1e-8, name="g_opt"
            )
            self.d_opt = keras.optimizers.Adam(
                d_lr, beta_1=d_betas[0], beta_2=d_betas[1], epsilon=1e-8, name="d_opt"
            )
            self.g_opt.build(self.G.trainable_variables)
            self.d_opt.build(self.D.trainable_variables)
            self.pl_mean = tf.Variable(
                0.0, trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA
            )
            # what D sees: every image it is shown goes through the augmentation pipeline
            self.augment_pipe = None
            if opts.augment != "none":
                from tfkit.stylegan.augment import AugmentPipe

                initial_p = opts.augment_p if opts.augment == "fixed" else 0.0
                self.augment_pipe = AugmentPipe(opts.augpipe, initial_p, name="augment")
        # ADA: the sum and count of the mean sign(D(real)) per D phase since the last
        # adjustment of p (identical on every worker: the signs are all-reduced)
        self.ada_sum = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        self.ada_count = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.nimg = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.tick = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.tick_start_nimg = tf.Variable(0, dtype=tf.int64, trainable=False)
        # training seconds so far (for gan.max_minutes; kept across resumes)
        self.train_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        self.phases = [
            Phase("G-main", "G", 1, self.g_opt),
            Phase("G-reg", "G", opts.g_reg_interval, self.g_opt),
            Phase("D-main", "D", 1, self.d_opt),
            Phase("D-reg", "D", opts.d_reg_interval, self.d_opt),
        ]
        # written before training goes on: a snapshot (grid, G_ema.keras, metrics) is rare
        # and slow beside it, and once its line is out its checkpoint is on disk
        self.writer = CheckpointWriter(
            self.out_dir / CHECKPOINT_DIR,
            self._checkpoint_state(),
            max_to_keep=3,
            background=False,
        )
        if resume:
            # every worker restores the chief's checkpoint
            latest = tf.train.latest_checkpoint(str(self.run_dir / CHECKPOINT_DIR))
            if latest is None:
                raise UserError(
                    f"--resume {self.run_dir}: no checkpoint in {self.run_dir / CHECKPOINT_DIR}"
                )
            saved = self._restore(latest)
            if self.augment_pipe is not None and "augment" not in saved:
                p = float(self.augment_pipe.p.numpy())
                self.log(
                    f"{latest} was written before ADA: gan.augment {opts.augment} goes on "
                    f"from p = {p:g} (gan.augment: none trains on as before)"
                )
        self._fns = {
            "G-main": tf.function(self._g_main),
            "G-reg": tf.function(self._g_reg),
            "D-main": tf.function(self._d_main),
            "D-reg": tf.function(self._d_reg),
        }
        self._ema_fn = tf.function(self._ema_update)
        self._ada_fn = tf.function(self._ada_adjust)
        self._iterator = None
        self._lr_factor = 1.0
        self._stop_request: int | None = None  # `request_stop`'s signal
        # multi-worker: a SIGTERM to any worker stops every worker after the same iteration
        self._stop_agreement = tfkit_distribute.StopAgreement(strategy)
        self._writer = None

    def _build_metrics(self, dataset: tf.data.Dataset):
        """`SnapshotMetrics` for `gan.metrics` on the chief (None when off); the feature
        network is built now, so a bad `gan.metrics_features` fails before training."""
        if not self.gan_cfg.metrics or not self.chief:
            return None
        from tfkit.config import to_dict
        from tfkit.stylegan.metrics import SnapshotMetrics, default_cache_dir

        return SnapshotMetrics(
            dataset,
            metrics=tuple(self.gan_cfg.metrics),
            features=self.gan_cfg.metrics_features,
            fid_inception=self.gan_cfg.metrics_fid_inception,
            num_images=self.gan_cfg.metrics_num_images,
            cache_dir=default_cache_dir(),
            data_key=to_dict(self.cfg.data),
            seed=self.cfg.runtime.seed,
        )

    # ---------------------------------------------------------------- inputs

    def _iterator_at_step(self):
        # the data order is a function of the step: a resumed run sees the same batches
        return iter(self.base_dataset.skip(int(self.step.numpy())))

    def next_reals(self) -> tuple[tf.Tensor, tf.Tensor]:
        """The next global batch of real images and labels."""
        if self._iterator is None:
            self._iterator = self._iterator_at_step()
        return next(self._iterator)

    def _labels(self, n: int) -> tf.Tensor:
        if not self.opts.num_classes:
            return tf.zeros([n], tf.int32)
        return self.rng.uniform([n], 0, self.opts.num_classes, dtype=tf.int32)

    def make_inputs(
        self, phase: str, reals: tf.Tensor | None = None, labels: tf.Tensor | None = None
    ) -> dict[str, tf.Tensor]:
        """Global inputs of one phase: latents, mixing cutoffs, labels, noise seeds (and reals)."""
        n = self.pl_per_replica * self.replicas if phase == "G-reg" else self.batch
        num_ws = self.G.num_ws
        mix = self.rng.uniform([n]) < self.opts.style_mixing
        cutoff = self.rng.uniform([n], 1, num_ws, dtype=tf.int32)
        inputs = {
            "z": self.rng.normal([n, self.opts.z_dim]),
            "mix_z": self.rng.normal([n, self.opts.z_dim]),
            "mix_cutoff": tf.where(mix, cutoff, num_ws),
            "c": self._labels(n),
            "seed": self.rng.make_seeds(2)[:, 0],
            "seed2": self.rng.make_seeds(2)[:, 0],
        }
        if phase.startswith("D"):
            inputs["reals"] = reals
            inputs["real_c"] = labels if self.opts.num_classes else tf.zeros([n], tf.int32)
        if self.augment_pipe is not None and phase != "G-reg":
            # drawn per example for the global batch: the augmentation does not depend on
            # how the batch is split over replicas and accumulation rounds
            k = self.augment_pipe.num_randoms
            if phase != "D-reg":
                inputs["aug_fake"] = self.rng.uniform([n, k])
            if phase.startswith("D"):
                inputs["aug_real"] = self.rng.uniform([n, k])
        return inputs

    def distribute(self, inputs: dict[str, tf.Tensor]):
        """Split global per-example tensors over the replicas (seeds are shared)."""
        if self.replicas == 1:
            return inputs

        def fn(ctx):
            i = ctx.replica_id_in_sync_group
            out = {}
            for k, v in inputs.items():
                if k.startswith("seed"):
                    out[k] = v
                else:
                    n = v.shape[0] // self.replicas
                    out[k] = v[i * n : (i + 1) * n]
            return out

        return self.strategy.experimental_distribute_values_from_function(fn)

    # ---------------------------------------------------------------- replica steps

    @staticmethod
    def _replica_seed(seed):
        ctx = tf.distribute.get_replica_context()
        rid = ctx.replica_id_in_sync_group if ctx is not None else 0
        return tf.random.experimental.stateless_fold_in(seed, rid)

    def _seen(self, images, sub, key: str):
        """What D sees of `images`: augmented with the per-example draws `sub[key]`."""
        if self.augment_pipe is None:
            return images
        seed = tf.random.experimental.stateless_fold_in(sub["seed2"], _AUGMENT_SALT[key])
        return self.augment_pipe(images, seed=self._replica_seed(seed), randoms=sub[key])

    def _fake_ws(self, G, inp):
        ws = G.mapping(inp["z"], inp["c"])
        mixed = G.mix(ws, G.mapping(inp["mix_z"], inp["c"]), inp["mix_cutoff"])
        return ws, mixed

    def _round_inputs(self, inp, r: int, n_round: int):
        """Inputs of accumulation round `r` of a per-replica batch of `rounds * n_round`.

        Each round takes whole minibatch-stddev groups (examples i with equal
        i % (n / group)), so the rounds see the groups a full batch would see and their
        summed gradients equal the full batch's.
        """
        if self.rounds == 1:
            return inp
        group = min(self.opts.mbstd_group, n_round)
        m = n_round // group
        out = {}
        for k, v in inp.items():
            if k.startswith("seed"):
                out[k] = tf.random.experimental.stateless_fold_in(v, r)
            else:
                rest = tf.shape(v)[1:]
                grouped = tf.reshape(v, tf.concat([[group, -1], rest], 0))
                out[k] = tf.reshape(
                    grouped[:, r * m : (r + 1) * m], tf.concat([[n_round], rest], 0)
                )
        return out

    def _accumulate(self, optimizer, variables, round_loss, inp, n_round: int):
        """Sum the gradients of `round_loss` over the accumulation rounds, then apply them.

        `round_loss(sub_inputs, tape)` returns (loss, stats, extra); stats and extra are
        summed over the rounds and returned.
        """
        total_grads, total_stats, total_extra = None, {}, None
        for r in range(self.rounds):
            sub = self._round_inputs(inp, r, n_round)
            with tf.GradientTape() as tape:
                loss, stats, extra = round_loss(sub, tape)
            grads = tape.gradient(loss, variables)
            if total_grads is None:
                total_grads, total_stats, total_extra = grads, stats, extra
            else:
                total_grads = [
                    None if a is None else a + b for a, b in zip(total_grads, grads, strict=True)
                ]
                total_stats = {k: total_stats[k] + v for k, v in stats.items()}
                total_extra = None if extra is None else total_extra + extra
        _apply(optimizer, total_grads, variables, sanitize=self.opts.num_fp16_res > 0)
        return total_stats, total_extra

    def _g_main_replica(self, inp):
        G, D = self.G, self.D

        def round_loss(sub, tape):
            ws, mixed = self._fake_ws(G, sub)
            img = G.synthesis(mixed, seed=self._replica_seed(sub["seed"]))
            per = losses.g_main_loss(D(self._seen(img, sub, "aug_fake"), sub["c"]))
            loss = tf.nn.compute_average_loss(per, global_batch_size=self.batch)
            return loss, {"Loss/G/loss": loss}, tf.reduce_sum(ws[:, 0], 0)

        stats, w_sum = self._accumulate(
            self.g_opt, G.trainable_variables, round_loss, inp, self.opts.batch_per_replica
        )
        ctx = tf.distribute.get_replica_context()
        G.mapping.update_w_avg(ctx.all_reduce("sum", w_sum) / self.batch)
        return stats

    def _g_reg_replica(self, inp):
        G, opts = self.G, self.opts
        n_global = self.pl_per_replica * self.replicas
        n_round = self.pl_per_replica // self.rounds

        def round_loss(sub, tape):
            # the path-length mean moves every round, as in the reference
            _, mixed = self._fake_ws(G, sub)
            lengths = losses.path_lengths(
                G.synthesis,
                mixed,
                self._replica_seed(sub["seed2"]),
                self._replica_seed(sub["seed"]),
            )
            ctx = tf.distribute.get_replica_context()
            round_global = n_round * self.replicas
            mean = tf.stop_gradient(ctx.all_reduce("sum", tf.reduce_sum(lengths)) / round_global)
            pl_mean = self.pl_mean + (mean - self.pl_mean) * opts.pl_decay
            penalty = losses.pl_penalty(lengths, tf.stop_gradient(pl_mean))
            loss = tf.nn.compute_average_loss(
                penalty * opts.pl_weight * opts.g_reg_interval, global_batch_size=n_global
            )
            self.pl_mean.assign(pl_mean)
            stats = {
                "Loss/pl_penalty": tf.nn.compute_average_loss(penalty, global_batch_size=n_global),
                "Loss/pl_mean": pl_mean / (self.replicas * self.rounds),
            }
            return loss, stats, None

        stats, _ = self._accumulate(self.g_opt, G.trainable_variables, round_loss, inp, n_round)
        return stats

    def _d_main_replica(self, inp):
        G, D = self.G, self.D

        def round_loss(sub, tape):
            with tape.stop_recording():
                _, mixed = self._fake_ws(G, sub)
                fakes = G.synthesis(mixed, seed=self._replica_seed(sub["seed"]))
            fake_logits = D(self._seen(tf.stop_gradient(fakes), sub, "aug_fake"), sub["c"])
            real_logits = D(self._seen(sub["reals"], sub, "aug_real"), sub["real_c"])
            per = losses.d_main_loss(real_logits, fake_logits)
            loss = tf.nn.compute_average_loss(per, global_batch_size=self.batch)
            stats = {
                "Loss/D/loss": loss,
                "Loss/scores/real": tf.nn.compute_average_loss(
                    tf.reshape(real_logits, [-1]), global_batch_size=self.batch
                ),
                "Loss/scores/fake": tf.nn.compute_average_loss(
                    tf.reshape(fake_logits, [-1]), global_batch_size=self.batch
                ),
                **self._signs(real_logits),
            }
            return loss, stats, None

        stats, _ = self._accumulate(
            self.d_opt, D.trainable_variables, round_loss, inp, self.opts.batch_per_replica
        )
        return stats

    def _d_reg_replica(self, inp):
        D, opts = self.D, self.opts

        def round_loss(sub, tape):
            # the gradient of D(augment(x)) with respect to the un-augmented reals x
            penalty, real_logits = losses.r1_penalty(
                lambda x, c: D(self._seen(x, sub, "aug_real"), c), sub["reals"], sub["real_c"]
            )
            loss = tf.nn.compute_average_loss(
                penalty * (opts.gamma / 2) * opts.d_reg_interval, global_batch_size=self.batch
            )
            stats = {
                "Loss/r1_penalty": tf.nn.compute_average_loss(
                    penalty, global_batch_size=self.batch
                ),
                **self._signs(real_logits),
            }
            return loss, stats, None

        stats, _ = self._accumulate(
            self.d_opt, D.trainable_variables, round_loss, inp, self.opts.batch_per_replica
        )
        return stats

    def _signs(self, real_logits):
        """The mean sign of D(real) over the global batch (ADA's overfitting heuristic r_t)."""
        signs = tf.sign(tf.cast(tf.reshape(real_logits, [-1]), tf.float32))
        return {SIGNS: tf.nn.compute_average_loss(signs, global_batch_size=self.batch)}

    def _reduce(self, stats):
        return {k: self.strategy.reduce("sum", v, axis=None) for k, v in stats.items()}

    def _g_main(self, inp):
        return self._reduce(self.strategy.run(self._g_main_replica, args=(inp,)))

    def _g_reg(self, inp):
        return self._reduce(self.strategy.run(self._g_reg_replica, args=(inp,)))

    def _d_main(self, inp):
        return self._reduce(self.strategy.run(self._d_main_replica, args=(inp,)))

    def _d_reg(self, inp):
        return self._reduce(self.strategy.run(self._d_reg_replica, args=(inp,)))

    def _ema_update(self, beta):
        for p_ema, p in zip(
            self.G_ema.trainable_variables, self.G.trainable_variables, strict=True
        ):
            p_ema.assign(p + (p_ema - p) * beta)
        for b_ema, b in zip(
            self.G_ema.non_trainable_variables, self.G.non_trainable_variables, strict=True
        ):
            b_ema.assign(b)

    def _ada_adjust(self, step_size):
        """ADA: move p by `step_size` towards more augmentation when the mean sign of
        D(real) since the last adjustment is above `gan.ada_target`, else towards less."""
        rt = self.ada_sum / tf.cast(tf.maximum(self.ada_count, 1), tf.float64)
        direction = tf.sign(tf.cast(rt, tf.float32) - self.opts.ada_target)
        p = self.augment_pipe.p
        p.assign(tf.clip_by_value(p + direction * step_size, 0.0, 1.0))
        self.ada_sum.assign(0.0)
        self.ada_count.assign(0)

    # ---------------------------------------------------------------- loop

    def run_phase(self, name: str, inputs: dict[str, tf.Tensor]) -> dict[str, float]:
        """Run one phase on global inputs (see `make_inputs`); returns its statistics."""
        return {k: float(v) for k, v in self._phase(name, inputs).items()}

    def _phase(self, name: str, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        # statistics stay tensors: reading them would wait for the device after every phase
        return self._fns[name](self.distribute(inputs))

    def active_phases(self, step: int) -> list[Phase]:
        """The phases that run at iteration `step` (interval divides it; off when weight 0)."""
        out = []
        for phase in self.phases:
            if step % phase.interval:
                continue
            if phase.name == "G-reg" and not self.opts.pl_weight:
                continue
            if phase.name == "D-reg" and not self.opts.gamma:
                continue
            out.append(phase)
        return out

    def train_iteration(self) -> dict[str, float]:
        """One global batch: the active phases, then the G_ema update and the counters."""
        stats = self._iteration(int(self.step.numpy()), int(self.nimg.numpy()))
        return {k: float(v) for k, v in stats.items()}

    def _iteration(self, step: int, nimg: int) -> dict[str, tf.Tensor]:
        """`train_iteration` at a known `step`/`nimg`, without any read from the device."""
        self._set_lr(nimg)
        reals, labels = self.next_reals()
        stats: dict[str, tf.Tensor] = {}
        signs = []
        for phase in self.active_phases(step):
            phase_stats = self._phase(phase.name, self.make_inputs(phase.name, reals, labels))
            if SIGNS in phase_stats:  # D-main and D-reg: one r_t contribution each
                signs.append(phase_stats.pop(SIGNS))
            stats.update(phase_stats)
        if signs:
            stats[SIGNS] = tf.add_n(signs) / len(signs)
        if self.augment_pipe is not None and self.opts.augment == "ada":
            for value in signs:
                self.ada_sum.assign_add(tf.cast(value, tf.float64))
            self.ada_count.assign_add(len(signs))
            if step % self.opts.ada_interval == 0:  # as the reference: after iteration 0, 4, ...
                opts = self.opts
                self._ada_fn(tf.constant(self.batch * opts.ada_interval / (opts.ada_kimg * 1000)))
        beta = losses.ema_beta(self.batch, self.opts.ema_kimg, self.opts.ema_rampup, nimg)
        self._ema_fn(tf.constant(beta, tf.float32))
        self.step.assign_add(1)
        self.nimg.assign_add(self.batch)
        return stats

    def _set_lr(self, nimg: int) -> None:
        """Apply `gan.lr_decay` at `nimg` (a function of the image count: the same on every
        worker and after a resume)."""
        opts = self.opts
        factor = losses.lr_factor(opts.lr_decay, nimg, int(opts.kimg * 1000), opts.lr_decay_start)
        if factor != self._lr_factor:
            self._lr_factor = factor
            for optimizer, base in zip((self.g_opt, self.d_opt), self._base_lrs, strict=True):
                optimizer.learning_rate.assign(base * factor)

    def request_stop(self, interrupted: bool = False) -> None:
        """Stop after the current iteration and write a checkpoint, as on SIGTERM
        (`interrupted`: as on Ctrl-C, run() then returns "interrupted")."""
        self._stop_request = int(signal.SIGINT if interrupted else signal.SIGTERM)

    def _checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint holds: the networks' variables by path (G_ema's is what
        `stylegan.checkpoints` loads), both optimizers', the generator's state, the
        counters, the path-length mean and ADA's state."""
        state: dict[str, Any] = {
            "G": by_path(self.G.variables),
            "D": by_path(self.D.variables),
            "G_ema": by_path(self.G_ema.variables),
            "g_opt_variables": self.g_opt.variables,
            "d_opt_variables": self.d_opt.variables,
            "rng_state": self.rng.state,
            "pl_mean": self.pl_mean,
            "step": self.step,
            "nimg": self.nimg,
            "tick": self.tick,
            "tick_start_nimg": self.tick_start_nimg,
            "train_seconds": self.train_seconds,
        }
        if self.augment_pipe is not None:
            state.update(
                # by name ("p"): the same key as the pipeline object's attribute had
                augment=by_path(self.augment_pipe.variables, key="name"),
                ada_sum=self.ada_sum,
                ada_count=self.ada_count,
            )
        return state

    def _legacy_checkpoint_items(self) -> dict[str, Any]:
        """The object structure of checkpoints written by tfkit before the run engine (the
        networks, optimizers, generator and augmentation pipeline as objects)."""
        items = self._checkpoint_state()  # the counters and ADA's sums, as they were
        del items["g_opt_variables"], items["d_opt_variables"], items["rng_state"]
        items.update(G=self.G, D=self.D, G_ema=self.G_ema, g_opt=self.g_opt, d_opt=self.d_opt)
        items["rng"] = self.rng
        if self.augment_pipe is not None:
            items["augment"] = self.augment_pipe
        return items

    def _restore(self, path: str) -> set[str]:
        """Restore checkpoint `path`, written by this trainer or by an older tfkit; returns
        the names it holds. Items that older checkpoints lack (the training time, ADA's
        state) keep their values."""
        saved = {name.split("/")[0] for name, _ in tf.train.list_variables(path)}
        if "g_opt_variables" in saved:
            optional = {"augment", "ada_sum", "ada_count"}
            return read_checkpoint(path, self._checkpoint_state(), optional)
        items = self._legacy_checkpoint_items()
        optional = {"train_seconds", "augment", "ada_sum", "ada_count"}
        return restore_tf_checkpoint(tf.train.Checkpoint(**items), items, path, optional)

    def save(self, wait: bool = False) -> None:
        """Save a checkpoint now; it is written in the background (`wait`: until written;
        `wait_for_checkpoint` waits later)."""
        self.writer.save(int(self.step.numpy()), wait=wait)

    def wait_for_checkpoint(self) -> None:
        """Wait until the last checkpoint saved is written; raise the write's error."""
        self.writer.wait()

    def save_g_ema(self) -> Path:
        """Write G_ema as a `.keras` file (atomically), loadable in Keras safe mode."""
        path = self.out_dir / G_EMA_FILE
        tmp = path.with_name(f".{path.stem}.tmp.keras")
        self.G_ema.save(tmp)
        tmp.replace(path)
        return path

    def grid_images(self, G=None) -> np.ndarray:
        """The fixed-seed snapshot grid of `G` (default G_ema) as a uint8 (H, W, 3) array."""
        G = G or self.G_ema
        cols, rows = self.opts.grid
        n = cols * rows
        z = tf.random.stateless_normal([n, self.opts.z_dim], [self.gan_cfg.grid_seed, 0])
        c = tf.range(n) % max(self.opts.num_classes, 1)
        imgs = G(z, c, noise_mode="const").numpy()
        return make_grid(imgs, cols, rows)

    def _write_grid(self, tag: str) -> Path:
        from PIL import Image

        grid = self.grid_images()
        path = self.out_dir / GAN_GRID_FILE.format(tag=tag)
        Image.fromarray(grid).save(path)
        if self._writer is not None:
            with self._writer.as_default():
                tf.summary.image("fakes", grid[None], step=int(self.nimg.numpy()))
        return path

    def run(
        self, max_iterations: int | None = None, hook: Callable[[Trainer], None] | None = None
    ) -> str:
        """Train until `gan.kimg` (or `max_iterations` more iterations).

        SIGTERM and SIGINT stop the run after the current iteration, with a checkpoint; a
        second signal of the same kind stops at once (`tfkit.training.stop.StopSignals`).

        Returns:
            "done", "stopped" (SIGTERM or `request_stop`; a checkpoint was written),
            "interrupted" (Ctrl-C; a checkpoint was written) or "paused" (max_iterations).
        """
        opts = self.opts
        total_nimg = int(opts.kimg * 1000)
        tick_nimg = int(opts.tick_kimg * 1000)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / OPTIONS_FILE).write_text(json.dumps(opts.as_dict(), indent=2))
        self._writer = tf.summary.create_file_writer(str(self.out_dir / TENSORBOARD_DIR))
        if int(self.nimg.numpy()) == 0:
            self._write_grid("_init")
        self.log(self._start_line())
        # the counters live in Python during the loop: no read from the device until a tick ends
        step, nimg = int(self.step.numpy()), int(self.nimg.numpy())
        budget_s = opts.max_minutes * 60.0
        run_start, seconds_before = time.time(), float(self.train_seconds.numpy())
        # the snapshot metrics (FID/FCD) measure the run; their time is not training time
        measuring = 0.0
        tick_end = int(self.tick_start_nimg.numpy()) + tick_nimg
        sums: dict[str, list[tf.Tensor]] = {}
        tick_start = time.time()
        done = 0
        status = "done"
        stop = StopSignals().install()
        asked = None  # the signal (or `request_stop`) this worker was asked to stop by
        try:
            if budget_s and seconds_before >= budget_s:
                total_nimg = nimg  # resumed after the time limit: nothing left to train
                self.log(f"gan.max_minutes ({opts.max_minutes:g}) was reached already")
            while nimg < total_nimg:
                for k, v in self._iteration(step, nimg).items():
                    sums.setdefault(k, []).append(v)
                step, nimg = step + 1, nimg + self.batch
                done += 1
                if hook is not None:
                    hook(self)
                finished = nimg >= total_nimg
                # a stop request (SIGTERM) and the end of gan.max_minutes take effect where
                # every worker agrees on them: at once in one process, every
                # STOP_CHECK_EVERY iterations across workers
                stopping = False
                if not self._stop_agreement.enabled or step % STOP_CHECK_EVERY == 0:
                    elapsed = seconds_before + time.time() - run_start - measuring
                    asked = stop.requested or self._stop_request
                    stopping, time_up = self._stop_agreement.agree(
                        asked is not None, budget_s > 0 and elapsed >= budget_s
                    )
                    if time_up and not finished:
                        finished = True
                        self.log(
                            f"gan.max_minutes ({opts.max_minutes:g}) reached at kimg {nimg / 1000:.3f}"
                        )
                if nimg >= tick_end or finished or stopping:
                    self._end_tick(sums, tick_start)  # waits for the device: time it after
                    self.train_seconds.assign(seconds_before + time.time() - run_start - measuring)
                    tick_end = nimg + tick_nimg
                    sums = {}
                    if int(self.tick.numpy()) % opts.snapshot_ticks == 0 or finished:
                        self._write_grid(f"{nimg:09d}")
                        self.save()
                        self.save_g_ema()
                        measure_start = time.time()
                        self._evaluate_metrics()
                        measuring += time.time() - measure_start
                    tick_start = time.time()
                if stopping:
                    self.save()
                    status = "interrupted" if asked == signal.SIGINT else "stopped"
                    break
                if finished:
                    break
                if max_iterations is not None and done >= max_iterations:
                    self.train_seconds.assign(seconds_before + time.time() - run_start - measuring)
                    status = "paused"
                    break
            self.writer.wait()  # the run's last checkpoint is on disk
            if status == "done":
                sums_line = " ".join(f"{k} {v:.6f}" for k, v in self.weights_checksums().items())
                self.log(f"final weights checksum: {sums_line}")
        finally:
            self.writer.wait(raise_errors=False)  # a checkpoint being written completes first
            stop.restore()
            self._writer.flush()
            if status != "paused":
                self.close()
        return status

    def _start_line(self) -> str:
        """The run's banner (`tfkit.training.banner.start_line`)."""
        from tfkit import distribute

        opts = self.opts
        nimg = int(self.nimg.numpy())
        details = [
            distribute.describe(self.strategy),
            f"StyleGAN {opts.arch} {opts.resolution}x{opts.resolution}",
            f"preset {opts.preset}",
            f"batch {opts.batch}",
            f"G {self.G.count_params():,} / D {self.D.count_params():,} params",
            f"{opts.kimg:g} kimg",
        ]
        return start_line(
            "tfkit gan train",
            self.cfg.name,
            self.run_dir,
            details,
            chief=self.chief,
            resuming_at=kimg_position(nimg) if nimg else None,
        )

    def close(self) -> None:
        """Remove a non-chief worker's temporary output directory (no-op on the chief)."""
        self._exit_stack.close()

    def weights_checksums(self) -> dict[str, float]:
        """Sum of |w| over the weights of G, D and G_ema (equal on every worker)."""
        return {
            name: float(sum(np.abs(w.numpy()).astype("float64").sum() for w in net.weights))
            for name, net in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema))
        }

    def _evaluate_metrics(self) -> dict[str, float] | None:
        """`gan.metrics` of G_ema, logged to metrics.jsonl and TensorBoard (chief only)."""
        if self.snapshot_metrics is None:
            return None
        from tfkit.stylegan.metrics import log_metrics

        num_classes = self.opts.num_classes
        rng = np.random.default_rng(self.cfg.runtime.seed)

        def generate(z):
            c = rng.integers(0, num_classes, len(z)).astype(np.int32) if num_classes else None
            return self.G_ema(tf.convert_to_tensor(z), c, noise_mode="const").numpy()

        start = time.time()
        results = self.snapshot_metrics(generate, z_dim=self.opts.z_dim)
        nimg = int(self.nimg.numpy())
        log_metrics(
            self.out_dir,
            results,
            step=nimg,
            extra={"kimg": nimg / 1000, "tick": int(self.tick.numpy())},
        )
        shown = " ".join(
            f"{k} {v:.4f}"
            for k, v in results.items()
            if isinstance(v, (int, float)) and not k.startswith("num_")
        )
        self.log(
            f"metrics at kimg {nimg / 1000:.3f}: {shown} "
            f"({self.snapshot_metrics.network.name} features, "
            f"{int(results.get('num_fake', 0))} images, {time.time() - start:.1f} s)"
        )
        return results

    def _end_tick(self, sums: dict[str, list[tf.Tensor]], tick_start: float) -> None:
        # reading the statistics waits for the tick's last step: time it after that
        means = {k: float(np.mean([t.numpy() for t in v])) for k, v in sums.items()}
        if SIGNS in means:
            means["augment_rt"] = means.pop(SIGNS)
        if self.augment_pipe is not None:
            means["augment_p"] = float(self.augment_pipe.p.numpy())
        seconds = time.time() - tick_start
        nimg = int(self.nimg.numpy())
        tick_imgs = nimg - int(self.tick_start_nimg.numpy())
        self.tick.assign_add(1)
        self.tick_start_nimg.assign(nimg)
        record = {
            "tick": int(self.tick.numpy()),
            "kimg": nimg / 1000,
            "sec_per_tick": seconds,
            "sec_per_kimg": seconds / max(tick_imgs / 1000, 1e-9),
            "img_per_sec": tick_imgs / max(seconds, 1e-9),
            **memory_stats(),
            **means,
        }
        gpu = record.get("peak_gpu_mem_gb")
        self.log(
            f"tick {record['tick']:<4d} kimg {record['kimg']:<8.3f} sec/tick {seconds:<6.1f} "
            f"sec/kimg {record['sec_per_kimg']:<7.2f} img/s {record['img_per_sec']:<7.1f} "
            + "".join(
                f"{label} {means[key]:.{digits}f} "
                for label, key, digits in _TICK_STATS
                if key in means
            )
            + f"peak rss {record['peak_rss_gb']:.2f}GB"
            + ("" if gpu is None else f" peak gpumem {gpu:.2f}GB")
        )
        with self._writer.as_default():
            for k, v in record.items():
                if k not in ("tick", "kimg"):
                    tf.summary.scalar(k, v, step=nimg)
        with open(self.out_dir / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")


# the statistics of the tick line: label, key, decimals (a phase that is off shows nothing)
_TICK_STATS = (
    ("G", "Loss/G/loss", 3),
    ("D", "Loss/D/loss", 3),
    ("R1", "Loss/r1_penalty", 4),
    ("pl", "Loss/pl_mean", 3),
    ("augment", "augment_p", 3),
    ("rt", "augment_rt", 3),
)
# distinct pixel-noise seeds for the augmentation of fakes and reals
_AUGMENT_SALT = {"aug_fake": 1, "aug_real": 2}
# the mean sign of D(real) of a D phase (averaged over the tick: `augment_rt`)
SIGNS = "Loss/signs/real"


def memory_stats() -> dict[str, float]:
    """Peak resident memory of this process and, with GPUs, their peak memory (GB).

    The GPU peak covers the time since the previous call (its counters are reset), the
    reference's `peak_gpu_mem_gb` per tick; the RSS peak is the process's lifetime peak.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats = {"peak_rss_gb": peak / (2**30 if sys.platform == "darwin" else 2**20)}
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        peaks = []
        for i in range(len(gpus)):
            peaks.append(tf.config.experimental.get_memory_info(f"GPU:{i}")["peak"])
            tf.config.experimental.reset_memory_stats(f"GPU:{i}")
        stats["peak_gpu_mem_gb"] = max(peaks) / 2**30
    return stats


def _apply(optimizer, grads, variables, sanitize: bool = False) -> None:
    """Apply the gradients that exist (a regularizer does not reach every bias).

    With `sanitize` (mixed precision) NaN becomes 0 and +-inf +-1e5, as the reference's
    `nan_to_num` on reduced-precision gradients.
    """
    pairs = [(g, v) for g, v in zip(grads, variables, strict=True) if g is not None]
    if sanitize:
        pairs = [
            (tf.where(tf.math.is_nan(g), tf.zeros_like(g), tf.clip_by_value(g, -1e5, 1e5)), v)
            for g, v in pairs
        ]
    optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])


def train(cfg, run_dir: str | Path, *, resume: bool = False, **kwargs: Any) -> Trainer:
    """Build a `Trainer` for `cfg` and run it to completion; returns the trainer."""
    trainer = Trainer(cfg, run_dir, resume=resume, **kwargs)
    trainer.run()
    return trainer
