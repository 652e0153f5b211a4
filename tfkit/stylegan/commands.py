"""`tfkit gan train`, `tfkit gan generate` and `tfkit gan metrics`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tfkit.errors import UserError


def train_command(args: argparse.Namespace) -> int:
    """Train a StyleGAN: resolve and check everything, then run (or print with --dry-run).

    `--resume RUN_DIR` continues the run with its own saved config; `--set` (or a CONFIG
    given along) may change only the keys of `tfkit.runs.RESUMABLE_KEYS`.
    """
    from tfkit.config import load_config
    from tfkit.runs import Run, check_config_kind

    run = changes = None
    if args.resume:
        if getattr(args, "run_dir", None):
            raise UserError("--resume and --run-dir cannot be combined: --resume names the run dir")
        run = Run.open(args.resume, "resume", flag="--resume", kind="gan")
        cfg, changes = run.plan_resume(args.overrides, args.config)
    elif args.config:
        cfg = load_config(args.config, args.overrides)
        check_config_kind(cfg, "gan", args.config)
    else:
        raise UserError("tfkit gan train needs a CONFIG file (or --resume RUN_DIR)")
    if cfg.gan is None:
        raise UserError(
            f"{args.config or args.resume} has no `gan` section; add one (e.g. `gan: {{preset: shapes32}}`)."
        )

    from tfkit.cluster import announce, for_runtime

    if not args.dry_run:
        announce(cfg.runtime)  # first line: where this process runs (tfkit.cluster)
    import tensorflow as tf

    from tfkit import distribute
    from tfkit.stylegan.trainer import Trainer

    distribute.setup_runtime(cfg.runtime, quiet=args.dry_run)
    strategy = distribute.strategy(cfg.runtime)
    if args.dry_run:
        from tfkit.data.gan_images import load_images
        from tfkit.stylegan.presets import resolve_options

        _, resolution, num_classes = load_images(cfg)
        opts = resolve_options(
            cfg.gan,
            resolution,
            strategy.num_replicas_in_sync,
            num_classes,
            cfg.runtime.mixed_precision,
        )
        from tfkit.config import to_dict
        from tfkit.stylegan.presets import resolved_yaml

        print(resolved_yaml(to_dict(cfg), opts.as_dict()), end="")
        print("# resolved gan options")
        print(json.dumps(opts.as_dict(), indent=2))
        return 0
    chief = not distribute.wants_multi_worker(cfg.runtime) or for_runtime(cfg.runtime).is_chief
    if run is not None:
        run.check_resume_state()
    else:  # multi-worker: the chief creates the run dir, the other workers wait for it
        run = Run.for_worker(cfg, args.run_dir, args.runs_root, chief=chief)
    with run.training(chief=chief):  # the chief holds the run's lock
        if chief and (line := run.record_resume(changes)):
            print(f"tfkit gan train: {line}", flush=True)
        try:
            trainer = Trainer(cfg, run.path, strategy=strategy, resume=bool(args.resume))
            status = trainer.run()  # its first line names the run directory
        except tf.errors.OpError as err:
            lost = distribute.lost_worker(err, cfg.runtime)
            if lost is None:
                raise
            lost.resume_hint = f"tfkit gan train --resume {run.path}"
            raise lost from None
    if status in ("stopped", "interrupted"):  # the CLI prints the line and exits 143 / 130
        import signal

        from tfkit.errors import Stopped
        from tfkit.training.banner import kimg_position

        signum = signal.SIGTERM if status == "stopped" else signal.SIGINT
        err = Stopped(signum, int(trainer.tick.numpy()), int(trainer.step.numpy()))
        err.position = kimg_position(int(trainer.nimg.numpy()))
        err.resume_hint = f"tfkit gan train --resume {run.path}"
        raise err
    return 0


def augment_grid_command(args: argparse.Namespace) -> int:
    """Write a grid of training images (odd rows) and what D sees of them at p (even rows)."""
    from tfkit.config import GanConfig, load_config
    from tfkit.stylegan.presets import parse_augpipe

    cfg = load_config(args.config, args.overrides)
    augpipe = args.augpipe or (cfg.gan or GanConfig()).augpipe
    try:
        parse_augpipe(augpipe)
    except ValueError as err:
        raise UserError(f"--augpipe: {err}") from None
    import numpy as np
    import tensorflow as tf

    from tfkit.data.gan_images import load_images
    from tfkit.data.imageio import make_grid
    from tfkit.stylegan.augment import AugmentPipe
    from tfkit.stylegan.generate import save_png

    dataset, _, _ = load_images(cfg)
    reals = np.stack([x.numpy() for x, _ in dataset.take(args.count)])
    pipe = AugmentPipe(augpipe, initial_p=args.p)
    seen = pipe(reals, seed=tf.constant([args.seed, 0])).numpy()
    cols = min(args.cols, len(reals))
    rows = -(-len(reals) // cols)
    pad = rows * cols - len(reals)
    pairs = [
        np.concatenate([reals, np.zeros((pad, *reals.shape[1:]), np.float32)]),
        np.concatenate([seen, np.zeros((pad, *seen.shape[1:]), np.float32)]),
    ]
    # row r of the originals, then the same images augmented below it
    images = np.stack(pairs, 1).reshape(rows, cols, 2, *reals.shape[1:]).swapaxes(1, 2)
    grid = make_grid(images.reshape(-1, *reals.shape[1:]), cols, rows * 2)
    out = save_png(grid, args.out)
    print(
        f"wrote {out}: {len(reals)} images, {augpipe} at p={args.p:g} (rows 2, 4, ...: augmented)"
    )
    return 0


def generate_command(args: argparse.Namespace) -> int:
    """Write a seed grid, a style-mixing figure or an interpolation strip from a GAN run."""
    from tfkit.stylegan import generate

    if Path(args.out).suffix.lower() != ".png":
        raise UserError(f"--out must name a .png file. Received: --out {args.out}")
    G, _ = generate.load_generator(args.run_dir)
    kw = dict(psi=args.trunc, class_idx=args.class_idx, noise_mode=args.noise_mode)
    if args.style_mix:
        grid = generate.style_mix_figure(
            G,
            generate.parse_seeds(args.style_mix[0]),
            generate.parse_seeds(args.style_mix[1]),
            **kw,
        )
    elif args.interpolate:
        grid = generate.interpolation_strip(
            G, args.interpolate[0], args.interpolate[1], args.steps, **kw
        )
    else:
        grid = generate.seed_grid(
            G, generate.parse_seeds(args.seeds), cutoff=args.trunc_cutoff, cols=args.cols, **kw
        )
    out = generate.save_png(grid, args.out)
    print(f"wrote {out} ({grid.shape[1]}x{grid.shape[0]})")
    return 0


def _metric_options(args: argparse.Namespace) -> tuple[list[str], int, int, int, Path]:
    """(metrics, images per set, batch size, seed, cache folder) of `tfkit gan metrics`,
    checked before any work (the cache folder is created).

    Raises:
        UserError: an unknown metric, a count below its minimum, an uncreatable cache.
    """
    from tfkit.stylegan.metrics import (
        DEFAULT_NUM_IMAGES,
        METRICS,
        check_metric_names,
        default_cache_dir,
    )

    metrics = check_metric_names(getattr(args, "metrics", None) or ",".join(METRICS))
    num_images = int(getattr(args, "num_images", None) or DEFAULT_NUM_IMAGES)
    if num_images < 2:
        raise UserError(f"--num-images must be >= 2. Received: --num-images {num_images}")
    batch_size = int(getattr(args, "batch_size", None) or 64)
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1. Received: --batch-size {batch_size}")
    seed = int(getattr(args, "seed", None) or 0)
    cache_dir = Path(getattr(args, "cache_dir", None) or default_cache_dir())
    try:  # before any work: the statistics are written there after minutes of computing
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        flag = "--cache-dir" if getattr(args, "cache_dir", None) else "the default --cache-dir"
        raise UserError(
            f"{flag} {cache_dir}: cannot create it ({err.strerror or err}); pass --cache-dir "
            "with a writable folder"
        ) from None
    return metrics, num_images, batch_size, seed, cache_dir


def metrics_command(args: argparse.Namespace) -> int:
    """`tfkit gan metrics RUN_DIR [--metrics fid,kid] [--features SPEC] [--num-images N]`.

    Measures the G_ema of a GAN run's latest checkpoint against the run's training images
    (as the trainer reads them, in [-1, 1]), prints one line per metric and a line naming
    the feature network and whether its values compare with published ones, and appends
    them to `RUN_DIR/metrics.jsonl` (with `fid_network` / `kid_network`) and TensorBoard
    (`Metrics/fid`, `Metrics/kid` at the checkpoint's kimg). Real statistics are cached in
    `--cache-dir` (default `$TFKIT_METRICS_CACHE` or ~/.cache/tfkit/metrics).

    Arguments read from `args`: run_dir, metrics ("fid,kid"), features
    ("inception_2015_12_05"), num_images (50000), fid_inception (None), inception_weights
    (None), batch_size (64), cache_dir (None), seed (0).
    """
    from tfkit.config import to_dict
    from tfkit.data.gan_images import load_images
    from tfkit.runs import Run
    from tfkit.stylegan.checkpoints import load_g_ema
    from tfkit.stylegan.features import DEFAULT_SPEC, feature_network
    from tfkit.stylegan.metrics import comparability, display_name, evaluate_generator, log_metrics

    run_dir = Path(args.run_dir)
    metrics, num_images, batch_size, seed, cache_dir = _metric_options(args)
    run = Run.open(run_dir)  # no checkpoint yet: load_g_ema says so
    config = run.load_config()
    spec = getattr(args, "features", None) or DEFAULT_SPEC
    # the feature network first: a missing network file fails before any other work
    network = feature_network(
        spec,
        inception_weights=getattr(args, "inception_weights", None),
        fid_inception_path=getattr(args, "fid_inception", None),
    )
    real, resolution, num_classes = load_images(config)
    generator = load_g_ema(run_dir, config, resolution, num_classes)
    print(
        f"gan metrics: {', '.join(metrics)} of {generator.checkpoint} (kimg {generator.kimg:g}) "
        f"with {network.name} features, {num_images} images"
    )
    started = time.perf_counter()
    results = evaluate_generator(
        lambda z: generator.generate(z, seed),
        real.map(lambda image, label: image),
        network,
        metrics,
        num_images,
        batch_size,
        cache_dir,
        data_key=to_dict(config.data),
        z_dim=generator.z_dim,
        seed=seed,
        verbose=True,
    )
    seconds = time.perf_counter() - started
    for name in metrics:
        print(
            f"{display_name(name, network.name)}: {results[name]:.6g}  ({results['num_fake']} "
            f"generated vs {results['num_real']} real images)"
        )
    print(comparability(metrics, network.name, results["num_fake"]))
    print(f"time: {seconds:.1f} s")
    log_metrics(
        run_dir,
        results,
        step=int(generator.kimg),
        extra={"kimg": generator.kimg, "features": spec, "metrics_seconds": round(seconds, 2)},
    )
    return 0
