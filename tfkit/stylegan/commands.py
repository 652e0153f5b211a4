"""`tfkit gan train` and `tfkit gan generate`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tfkit.errors import UserError

# keys that may change when resuming (training length and reporting only)
RESUMABLE_CHANGES = {"gan.kimg", "gan.max_minutes", "gan.tick_kimg", "gan.snapshot_ticks"}


def train_command(args: argparse.Namespace) -> int:
    """Train a StyleGAN: resolve and check everything, then run (or print with --dry-run)."""
    from tfkit.config import diff_keys, load_config, to_dict
    from tfkit.runs import load_run_config

    if args.config:
        cfg = load_config(args.config, args.overrides)
    elif args.resume:  # continue with the run's own resolved config (plus any --set)
        from tfkit.config import apply_overrides, read_yaml, validate
        from tfkit.runs import CONFIG_FILE

        saved_path = Path(args.resume) / CONFIG_FILE
        load_run_config(args.resume)  # names a directory that is not a run
        raw = apply_overrides(read_yaml(saved_path), args.overrides)
        cfg = validate(raw, str(saved_path))
    else:
        raise UserError("tfkit gan train needs a CONFIG file (or --resume RUN_DIR)")
    if cfg.gan is None:
        raise UserError(
            f"{args.config or args.resume} has no `gan` section; add one (e.g. `gan: {{preset: shapes32}}`)."
        )
    if args.resume:
        saved = to_dict(load_run_config(args.resume))
        new = to_dict(cfg)
        changed = [k for s in ("data", "gan") for k in diff_keys(saved.get(s), new.get(s), f"{s}.")]
        changed = [k for k in changed if k not in RESUMABLE_CHANGES]
        if changed:
            raise UserError(
                f"Cannot resume {args.resume}: the config changed at {', '.join(changed)}. Start a new run instead."
            )

    if not args.dry_run:
        from tfkit.cluster import announce

        announce(cfg.runtime)  # first line: where this process runs (tfkit.cluster)
    from tfkit import distribute
    from tfkit.stylegan.trainer import Trainer

    distribute.setup_runtime(cfg.runtime)
    strategy = distribute.strategy(cfg.runtime)
    if args.dry_run:
        from tfkit.stylegan.presets import resolve_options
        from tfkit.stylegan.trainer import load_images

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
    # multi-worker: the chief creates the run dir, the other workers wait for it
    run_dir = (
        Path(args.resume)
        if args.resume
        else distribute.worker_run_dir(cfg, args.run_dir, args.runs_root)
    )
    trainer = Trainer(cfg, run_dir, strategy=strategy, resume=bool(args.resume))
    print(
        f"run directory: {run_dir}{'' if trainer.chief else ' (chief writes; this worker: temp)'}"
    )
    status = trainer.run()
    if status in ("stopped", "interrupted"):  # the CLI prints the line and exits 143 / 130
        import signal

        from tfkit.errors import Stopped

        signum = signal.SIGTERM if status == "stopped" else signal.SIGINT
        err = Stopped(signum, int(trainer.tick.numpy()), int(trainer.step.numpy()))
        err.position = f"kimg {trainer.nimg.numpy() / 1000:g}"
        err.resume_hint = f"tfkit gan train --resume {run_dir}"
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

    from tfkit.stylegan.augment import AugmentPipe
    from tfkit.stylegan.generate import save_png
    from tfkit.stylegan.trainer import load_images, make_grid

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
