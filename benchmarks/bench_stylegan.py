"""StyleGAN benchmark: training images/s of the GAN trainer on this machine.

Times whole training iterations (all active phases + the G_ema update) after a warm-up
iteration that traces every phase, over 16 iterations (so G-reg runs 4 times and D-reg
once, as in training). Figures: img/s of the `shapes32` preset (batch 32) and the `cifar`
preset at batch 16 (32x32), G and D parameter counts. Ratio: shapes32 with its lazy
regularization vs the same without regularizers (the cost of R1 + path length).

    python benchmarks/bench_stylegan.py [--quick] --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _rate(gan: dict, iterations: int) -> tuple[float, int, int]:
    import numpy as np
    import tensorflow as tf

    from tfkit.config import ExperimentConfig, GanConfig
    from tfkit.stylegan.trainer import Trainer

    x = np.random.RandomState(0).uniform(-1, 1, (256, 32, 32, 3)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(256, np.int32)))
    cfg = ExperimentConfig(name="bench", gan=GanConfig(**gan))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        t = Trainer(cfg, tmp, dataset=ds, strategy=tf.distribute.get_strategy(), log=lambda s: None)
        t.train_iteration()  # traces every phase
        start = time.perf_counter()
        for _ in range(iterations):
            t.train_iteration()
        seconds = time.perf_counter() - start
    return t.batch * iterations / seconds, t.G.count_params(), t.D.count_params()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--json", required=True, help="write the results here")
    args = parser.parse_args(argv)
    n = 8 if args.quick else 16
    shapes, g32, d32 = _rate(dict(preset="shapes32"), n)
    plain, _, _ = _rate(dict(preset="shapes32", pl_weight=0.0, gamma=0.0), n)
    cifar, gc, dc = _rate(dict(preset="cifar", batch=16), max(n // 2, 4))
    result = {
        "ratios": {"shapes32_reg_vs_noreg": shapes / plain},
        "figures": {
            "shapes32_img_per_s": round(shapes, 1),
            "shapes32_noreg_img_per_s": round(plain, 1),
            "cifar_b16_img_per_s": round(cifar, 2),
            "shapes32_G_params": g32,
            "shapes32_D_params": d32,
            "cifar_G_params": gc,
            "cifar_D_params": dc,
        },
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    print(json.dumps(result, indent=2))
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
