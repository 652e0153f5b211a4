"""StyleGAN benchmark: training and generation images/s of tfkit's StyleGAN on this machine.

Figures (`--json` writes them with the ratios):
  shapes32_train_img_per_s   the full phase cycle of the trainer on the `shapes32` preset
                             (batch 32, 32x32): 16 iterations after a warm-up iteration that
                             traces every phase, so G-main and D-main run 16 times, G-reg 4,
                             D-reg once, and G_ema is updated 16 times, as in training.
  shapes32_noreg_train_img_per_s   the same without R1 and path length (baseline).
  cifar_b16_train_img_per_s  the `cifar` preset at batch 16, 32x32 (skipped with --quick):
                             each phase is timed on its own and the cycle is composed from them
                             (16 G-main + 16 D-main + 16 EMA + D-reg; cifar has no G-reg).
  narrow_b16_train_img_per_s the issue's reference-comparison network: the `cifar` preset with
                             channel_base 4096, channel_max 256 (G 5.24M / D 4.45M parameters),
                             batch 16, 32x32, float32, `augment: none`.
  narrow_b16_ada_train_img_per_s   the same with ADA's default pipeline (bgc) at fixed p = 0.5;
                             the two are timed in turns, 4 (--quick) or 8 rounds of 8
                             iterations each, in one process.
  generate_img_per_s         G_ema of shapes32 sampling batches of 64 (traced).
  *_G_params, *_D_params     parameter counts.
  conv3x3_*_ms               forward + backward of one 3x3 'SAME' convolution (batch 16, 32x32,
                             128 -> 128 channels): `tf.nn.conv2d` (direct) and Winograd
                             F(m x m, 3x3), m = 4 here (what the networks use in float32 on CPU).
  modconv_*_ms               forward + backward of one 3x3 modulated convolution (batch 32,
                             32x32, 64 -> 64 channels): unfused (modulate activations, one
                             shared convolution), fused as a grouped convolution, fused as a
                             batched einsum over patches.
  step_graph_ms, step_xla_ms a plain non-saturating G + D step (no regularization) traced
                             with tf.function, without and with XLA (`jit_compile=True`).
`--quick` (under a minute) skips cifar and XLA and repeats less.
Ratios (same run): winograd_vs_direct_conv (direct time / Winograd time: > 1 means Winograd
is faster), ada_cost_ratio (narrow iteration time with ADA at p = 0.5 / without:
1.15 means the augmentation costs 15 % of an iteration), shapes32_reg_vs_noreg, fused_vs_unfused_modconv (unfused time / grouped
time: > 1 means fused is faster), einsum_vs_unfused_modconv, xla_vs_graph (graph time / XLA
time: > 1 means XLA is faster).

`--device gpu` also measures s/kimg of the `paper256` preset (batch 64, 256x256) on the first
GPU, next to the published 21.6 s/kimg (1 V100) and 12.53 s/kimg (1 A100) of
stylegan2-ada-pytorch; it exits with status 2 when TensorFlow sees no GPU.

    python benchmarks/bench_stylegan.py [--quick] [--device cpu|gpu] --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from common import machine

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PUBLISHED_S_PER_KIMG = {"paper256_v100": 21.6, "paper256_a100": 12.53}


def _images(n: int, resolution: int):
    import numpy as np
    import tensorflow as tf

    x = np.random.RandomState(0).uniform(-1, 1, (n, resolution, resolution, 3)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, np.zeros(n, np.int32)))


def _trainer(gan: dict, resolution: int, tmp: str):
    import tensorflow as tf

    from tfkit.config import ExperimentConfig, GanConfig
    from tfkit.stylegan.trainer import Trainer

    cfg = ExperimentConfig(name="bench", gan=GanConfig(**gan))
    ds = _images(128 if resolution <= 64 else 64, resolution)
    return Trainer(cfg, tmp, dataset=ds, strategy=tf.distribute.get_strategy(), log=lambda s: None)


def cycle_rate(gan: dict, resolution: int = 32, iterations: int = 16) -> tuple[float, object]:
    """img/s of whole training iterations after one warm-up (16: one full phase cycle)."""
    with tempfile.TemporaryDirectory() as tmp:
        t = _trainer(gan, resolution, tmp)
        t.train_iteration()  # step 0 runs (and traces) every phase
        start = time.perf_counter()
        for _ in range(iterations):
            t.train_iteration()
        seconds = time.perf_counter() - start
    return t.batch * iterations / seconds, t


def interleaved_rates(
    gans: dict[str, dict], rounds: int, iterations: int = 8, resolution: int = 32
) -> tuple[dict[str, float], dict[str, object]]:
    """img/s of whole iterations of several trainers timed in turns: `rounds` rounds of
    `iterations` iterations each, every trainer in every round, so a slower spell of a shared
    machine falls on all of them. Each gets the same number of iterations, so the same
    regularization iterations; a rate is its images over its summed time."""
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {name: _trainer(gan, resolution, f"{tmp}/{name}") for name, gan in gans.items()}
        for t in trainers.values():
            t.train_iteration()  # step 0 runs (and traces) every phase
        seconds = dict.fromkeys(trainers, 0.0)
        for _ in range(rounds):
            for name, t in trainers.items():
                start = time.perf_counter()
                for _ in range(iterations):
                    t.train_iteration()
                seconds[name] += time.perf_counter() - start
    rates = {n: t.batch * rounds * iterations / seconds[n] for n, t in trainers.items()}
    return rates, trainers


def composed_rate(gan: dict, resolution: int = 32, repeats: int = 2) -> tuple[float, object]:
    """img/s of one 16-iteration cycle composed from per-phase times (for big networks)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        t = _trainer(gan, resolution, tmp)
        reals, labels = t.next_reals()
        seconds = {}
        for phase in t.active_phases(0):  # every phase that is on at step 0
            inputs = t.make_inputs(phase.name, reals, labels)
            t.run_phase(phase.name, inputs)  # trace
            start = time.perf_counter()
            for _ in range(repeats):
                t.run_phase(phase.name, inputs)
            seconds[phase.name] = (time.perf_counter() - start) / repeats
        t._ema_fn(tf.constant(0.99))
        start = time.perf_counter()
        t._ema_fn(tf.constant(0.99))
        ema = time.perf_counter() - start
        intervals = {p.name: p.interval for p in t.phases}
        cycle = sum(16 // intervals[name] * s for name, s in seconds.items()) + 16 * ema
    return t.batch * 16 / cycle, t


def generation_rate(G, z_dim: int, batch: int = 64, batches: int = 8) -> float:
    """img/s of `G` sampling traced batches (truncation 1, random noise)."""
    import tensorflow as tf

    fn = tf.function(lambda z: G(z, training=False))
    z = tf.random.stateless_normal([batch, z_dim], [0, 0])
    fn(z).numpy()
    start = time.perf_counter()
    for _ in range(batches):
        fn(z).numpy()
    return batch * batches / (time.perf_counter() - start)


def modconv_ms(repeats: int = 5) -> dict[str, float | None]:
    """Forward + backward ms of one modulated 3x3 conv: unfused, grouped conv, einsum.

    None for grouped where TensorFlow's CPU kernels have no gradient of a grouped
    convolution (without oneDNN, which TensorFlow turns on only on CPUs with AVX512_VNNI,
    AVX512_BF16 or AMX: "Gradients for grouped convolutions are not supported on CPU")."""
    import tensorflow as tf

    from tfkit.stylegan.layers import ModulatedConv2D

    x = tf.random.stateless_normal([32, 32, 32, 64], [0, 1])
    styles = tf.random.stateless_normal([32, 64], [0, 2]) + 1.0
    out = {}
    for name, fused in (("unfused", False), ("grouped", "grouped"), ("einsum", "einsum")):
        layer = ModulatedConv2D(64, fused=fused)
        layer.build((x.shape, styles.shape))

        @tf.function
        def step(x, s, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch([x, s])
                loss = tf.reduce_sum(tf.square(layer([x, s])))
            return tape.gradient(loss, [x, s, layer.kernel])

        try:
            step(x, styles)
        except tf.errors.InvalidArgumentError:
            if name != "grouped":
                raise
            out[name] = None
            continue
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            [g.numpy() for g in step(x, styles)]
            times.append(time.perf_counter() - start)
        out[name] = 1000 * sorted(times)[len(times) // 2]
    return out


def conv3x3_ms(repeats: int = 5) -> dict[str, float]:
    """Forward + backward ms of one 3x3 'SAME' convolution, direct and by Winograd."""
    import tensorflow as tf

    from tfkit.stylegan.ops import winograd_conv3x3

    x = tf.random.stateless_normal([16, 32, 32, 128], [0, 3])
    kernel = tf.random.stateless_normal([3, 3, 128, 128], [0, 4])
    out = {}
    for name, conv in (
        ("direct", lambda x, k: tf.nn.conv2d(x, k, 1, "SAME")),
        ("winograd", winograd_conv3x3),
    ):

        @tf.function
        def step(x, k, conv=conv):
            with tf.GradientTape() as tape:
                tape.watch([x, k])
                loss = tf.reduce_sum(tf.square(conv(x, k)))
            return tape.gradient(loss, [x, k])

        step(x, kernel)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            [g.numpy() for g in step(x, kernel)]
            times.append(time.perf_counter() - start)
        out[name] = 1000 * sorted(times)[len(times) // 2]
    return out


def plain_step_ms(G, D, z_dim: int, jit: bool, repeats: int = 5) -> float:
    """ms of a non-regularized G + D step (losses and gradients, no optimizer update)."""
    import tensorflow as tf

    reals = tf.random.stateless_uniform([32, 32, 32, 3], [1, 0], -1.0, 1.0)
    z = tf.random.stateless_normal([32, z_dim], [1, 1])

    @tf.function(jit_compile=jit)
    def step(z, reals):
        with tf.GradientTape(persistent=True) as tape:
            fakes = G(z, training=True)
            g_loss = tf.reduce_mean(tf.nn.softplus(-D(fakes)))
            d_loss = tf.reduce_mean(
                tf.nn.softplus(D(tf.stop_gradient(fakes))) + tf.nn.softplus(-D(reals))
            )
        return tape.gradient(g_loss, G.trainable_variables) + tape.gradient(
            d_loss, D.trainable_variables
        )

    [g.numpy() for g in step(z, reals) if g is not None]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        [g.numpy() for g in step(z, reals) if g is not None]
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def gpu_s_per_kimg(overrides: dict | None = None, iterations: int = 16) -> dict[str, float]:
    """s/kimg of the paper256 preset (batch 64, 256x256) on one GPU: one 16-iteration cycle.

    `overrides` (gan keys) and `iterations` shrink it for a check of this code path on CPU.
    """
    gan = dict(preset="paper256", **(overrides or {}))
    rate, t = cycle_rate(gan, resolution=256, iterations=iterations)
    s_per_kimg = 1000 / rate
    return {
        "paper256_s_per_kimg": round(s_per_kimg, 2),
        "paper256_G_params": t.G.count_params(),
        "paper256_D_params": t.D.count_params(),
        **{f"published_{k}_s_per_kimg": v for k, v in PUBLISHED_S_PER_KIMG.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="under a minute: no cifar, no XLA")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--json", required=True, help="write the results here")
    args = parser.parse_args(argv)

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if args.device == "gpu" and not gpus:
        print(
            "bench_stylegan: `--device gpu` needs a GPU, but TensorFlow sees none "
            "(tf.config.list_physical_devices('GPU') is empty). Run it on a GPU machine or "
            "drop --device gpu.",
            file=sys.stderr,
        )
        return 2
    if args.device == "cpu" and gpus:
        tf.config.set_visible_devices([], "GPU")

    start = time.perf_counter()
    n = 3 if args.quick else 1
    shapes, t = cycle_rate(dict(preset="shapes32"))
    # without regularization every iteration is alike: fewer iterations suffice
    plain, _ = cycle_rate(dict(preset="shapes32", pl_weight=0.0, gamma=0.0), iterations=16 // n)
    generate = generation_rate(t.G_ema, t.opts.z_dim, batches=8 // n)
    narrow_gan = dict(preset="cifar", batch=16, channel_base=4096, channel_max=256, augment="none")
    # with and without ADA in turns (rounds of 8 iterations): one pair of runs after the other
    # gave ratios from 1.02 to 1.23 on this shared machine
    rates, narrow_trainers = interleaved_rates(
        {"none": narrow_gan, "ada": dict(narrow_gan, augment="fixed", augment_p=0.5)},
        rounds=4 if args.quick else 8,
    )
    narrow, narrow_ada, tn = rates["none"], rates["ada"], narrow_trainers["none"]
    modconv = modconv_ms(7 // n)
    conv3x3 = conv3x3_ms(7 // n)
    graph_ms = plain_step_ms(t.G, t.D, t.opts.z_dim, jit=False)
    # XLA compiles slowly on CPU (the FIR depthwise convolutions): not in --quick
    xla_ms = None if args.quick else plain_step_ms(t.G, t.D, t.opts.z_dim, jit=True)
    figures = {
        "shapes32_train_img_per_s": round(shapes, 1),
        "shapes32_noreg_train_img_per_s": round(plain, 1),
        "cifar_b16_train_img_per_s": None,
        "generate_img_per_s": round(generate, 1),
        "narrow_b16_train_img_per_s": round(narrow, 2),
        "narrow_b16_ada_train_img_per_s": round(narrow_ada, 2),
        "narrow_G_params": tn.G.count_params(),
        "narrow_D_params": tn.D.count_params(),
        "shapes32_G_params": t.G.count_params(),
        "shapes32_D_params": t.D.count_params(),
        **{f"modconv_{k}_ms": v and round(v, 2) for k, v in modconv.items()},
        **{f"conv3x3_{k}_ms": round(v, 2) for k, v in conv3x3.items()},
        "step_graph_ms": round(graph_ms, 1),
        "step_xla_ms": xla_ms and round(xla_ms, 1),
    }
    if not args.quick:
        cifar, tc = composed_rate(dict(preset="cifar", batch=16))
        figures.update(
            cifar_b16_train_img_per_s=round(cifar, 2),
            cifar_G_params=tc.G.count_params(),
            cifar_D_params=tc.D.count_params(),
        )
    if args.device == "gpu":
        figures.update(gpu_s_per_kimg())
    result = {
        "ratios": {
            "winograd_vs_direct_conv": round(conv3x3["direct"] / conv3x3["winograd"], 3),
            "ada_cost_ratio": round(narrow / narrow_ada, 3),
            "shapes32_reg_vs_noreg": round(shapes / plain, 3),
            "fused_vs_unfused_modconv": modconv["grouped"]
            and round(modconv["unfused"] / modconv["grouped"], 3),
            "einsum_vs_unfused_modconv": round(modconv["unfused"] / modconv["einsum"], 3),
            "xla_vs_graph": xla_ms and round(graph_ms / xla_ms, 3),
        },
        "figures": figures,
        "seconds": round(time.perf_counter() - start, 1),
        "machine": {**machine(), "device": args.device},
    }
    print(json.dumps(result, indent=2))
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
