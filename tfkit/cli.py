"""The `tfkit` command.

Every subcommand is a function `(args) -> int` living next to the code it drives; this
module only parses arguments and imports the handler when the command runs, so `tfkit
--help` and `tfkit config ...` never import TensorFlow.

Exit status: 0 success, 2 user error (one message on stderr), 1 internal error, 75 a peer
worker of a multi-worker run was lost (the run resumes from its last checkpoint).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from tfkit import arguments as A
from tfkit.console import end_line, tracking_stdout
from tfkit.errors import Stopped, UserError, WorkerLost

# command path -> "module:function"; imported only when that command runs
HANDLERS = {
    "config show": "tfkit.cli:config_show",
    "config validate": "tfkit.cli:config_validate",
    "data convert": "tfkit.data.tools:convert_command",
    "data inspect": "tfkit.data.tools:inspect_command",
    "train": "tfkit.training.commands:train_command",
    "evaluate": "tfkit.training.commands:evaluate_command",
    "predict": "tfkit.training.commands:predict_command",
    "export": "tfkit.export:export_command",
    "launch": "tfkit.launch:launch_command",
    "tune": "tfkit.tuning.commands:tune_command",
    "gan train": "tfkit.stylegan.commands:train_command",
    "gan generate": "tfkit.stylegan.commands:generate_command",
    "gan metrics": "tfkit.stylegan.commands:metrics_command",
    "gan augment-grid": "tfkit.stylegan.commands:augment_grid_command",
}
# `tfkit predict DIR` where DIR was written by `tfkit export`
PREDICT_EXPORT_HANDLER = "tfkit.export:predict_exported"


def _add_set(
    p: argparse.ArgumentParser,
    help: str = "override a config key, e.g. --set train.epochs=3 (repeatable)",
) -> None:
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def _add_config_args(p: argparse.ArgumentParser, config_required: bool = True) -> None:
    if config_required:
        p.add_argument("config", help="experiment YAML file")
    _add_set(p)


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--run-dir", type=A.output_dir, help="write the run here instead of runs/<name>/<NNNNN>"
    )
    p.add_argument(
        "--runs-root",
        type=A.output_dir,
        default="runs",
        help="parent of numbered run dirs (default: runs)",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (`tfkit train: error: ...`), status 2."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_config_commands(sub: argparse._SubParsersAction) -> None:
    """Add `tfkit config show|validate`."""
    cfg = sub.add_parser("config", help="show or validate an experiment config")
    cfg_sub = cfg.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    p = cfg_sub.add_parser("show", help="print the resolved config (every default filled in)")
    _add_config_args(p)
    p = cfg_sub.add_parser("validate", help="check a config and report every problem")
    _add_config_args(p)


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    """Add `tfkit data convert|inspect`."""
    data = sub.add_parser("data", help="convert data to TFRecords, inspect datasets")
    data_sub = data.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    p = data_sub.add_parser("convert", help="write sharded TFRecords plus a schema file")
    p.add_argument(
        "--from", dest="source_format", required=True, choices=["npz", "csv", "parquet", "images"]
    )
    p.add_argument("src", help="source file or image directory")
    p.add_argument("--out", type=A.output_dir, required=True, help="output directory")
    p.add_argument(
        "--shard-mb", type=A.float_above(0), default=64.0, help="target shard size in MB"
    )
    p.add_argument("--compression", default="", choices=["", "GZIP", "ZLIB"])
    p.add_argument("--resolution", type=A.power_of_two, help="images: square size (power of two)")
    p.add_argument(
        "--image-size",
        type=A.int_at_least(1),
        nargs=2,
        metavar=("H", "W"),
        help="images: resize to H W",
    )
    p.add_argument("--color-mode", default="rgb", choices=["rgb", "grayscale"])
    p.add_argument(
        "--fit",
        default="crop",
        choices=["crop", "pad"],
        help="images: make square by centre crop or pad",
    )
    p.add_argument("--labels", default="inferred", choices=["inferred", "none"])
    p.add_argument("--label", help="csv/parquet: label column")
    p.add_argument(
        "--features", nargs="+", help="csv/parquet: feature columns (default: all but label)"
    )
    p.add_argument("--x", default="x", help="npz: feature array name")
    p.add_argument("--y", default="y", help="npz: label array name")
    p.add_argument("--overwrite", action="store_true")
    p = data_sub.add_parser("inspect", help="read every record, print schema, count and examples")
    p.add_argument(
        "path",
        help="TFRecord directory, file or glob; or an experiment YAML: its train split as "
        "the model (or the GAN) sees it",
    )
    p.add_argument("--examples", type=A.int_at_least(0), default=3)
    p.add_argument(
        "--grid", type=A.output_file, metavar="OUT_PNG", help="write a PNG grid of image examples"
    )
    _add_config_args(p, config_required=False)
    p.add_argument(
        "--ignore-errors", action="store_true", help="skip corrupt records and count them"
    )


def _add_train_commands(sub: argparse._SubParsersAction) -> None:
    """Add `tfkit train` and `tfkit evaluate`."""
    p = sub.add_parser("train", help="train a model from a config")
    p.add_argument("config", nargs="?", help="experiment YAML file (optional with --resume)")
    _add_config_args(p, config_required=False)
    _add_run_args(p)

    p = sub.add_parser("evaluate", help="evaluate a trained run on a split")
    p.add_argument("run_dir")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    _add_set(
        p,
        "override a data key of the run's saved config, e.g. --set data.source.path=NEW "
        "when the data moved (repeatable)",
    )


def _add_predict_command(sub: argparse._SubParsersAction) -> None:
    """Add `tfkit predict`."""
    p = sub.add_parser("predict", help="predict with a trained run")
    p.add_argument("run_dir", help="run directory (or exported SavedModel directory)")
    p.add_argument(
        "--input",
        type=A.input_file(A.PREDICT_INPUTS, directory="images"),
        required=True,
        help=".npy, .npz, .csv, .parquet or image directory",
    )
    p.add_argument(
        "--output",
        type=A.output_file_of(A.PREDICT_OUTPUTS),
        required=True,
        help=".npy, .npz or .csv",
    )
    p.add_argument("--batch-size", type=A.int_at_least(1), default=256)
    p.add_argument(
        "--normalized",
        action="store_true",
        help="the inputs are normalized already (default: raw; the run's data.normalize "
        "is applied with its training statistics)",
    )
    p.add_argument(
        "--resize",
        action="store_true",
        help="image directory: resize images (bilinear) to the model's input size (default: "
        "an image of another size is refused)",
    )


def _add_tune_command(sub: argparse._SubParsersAction) -> None:
    """Add `tfkit tune`, alone or as a distributed search's chief or worker."""
    p = sub.add_parser("tune", help="Keras Tuner search over the config's `tune:` space")
    _add_config_args(p)
    p.add_argument(
        "--run-dir",
        type=A.output_dir,
        help="tune run directory (default: runs/<name>/tune); re-run to continue",
    )
    p.add_argument(
        "--runs-root", type=A.output_dir, default="runs", help="parent of run dirs (default: runs)"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="discard a search made for another space/objective"
    )
    p.add_argument(
        "--role", choices=["chief", "worker"], help="distributed search: this process's role"
    )
    p.add_argument(
        "--oracle", metavar="HOST:PORT", help="distributed search: the chief's oracle address"
    )
    p.add_argument("--tuner-id", help="distributed search: this worker's id (default worker<pid>)")
    p.add_argument(
        "--oracle-timeout",
        type=A.float_above(0),
        default=60.0,
        help="seconds a worker waits for the oracle",
    )


def _add_export_command(sub: argparse._SubParsersAction) -> None:
    """Add `tfkit export`."""
    p = sub.add_parser("export", help="export a run as a SavedModel or a LiteRT flatbuffer")
    p.add_argument("run_dir", help="run directory (a GAN run exports its EMA generator)")
    p.add_argument(
        "--format", default="saved_model", help="saved_model (default) or litert (model.tflite)"
    )
    p.add_argument(
        "--out", type=A.output_dir, required=True, help="export directory (must not exist)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def _add_launch_command(sub: argparse._SubParsersAction) -> None:
    """Add `tfkit launch`."""
    p = sub.add_parser("launch", help="run a tfkit command as N local workers (multi-worker)")
    p.add_argument("--workers", type=A.int_at_least(1), default=2)
    p.add_argument(
        "--tune-workers",
        type=A.int_at_least(0),
        default=0,
        metavar="N",
        help="distributed search: a tune chief plus N tune workers on 127.0.0.1",
    )
    p.add_argument("--base-port", type=A.port, default=0, help="first port (default: free ports)")
    p.add_argument(
        "--timeout",
        type=A.float_above(0),
        default=None,
        help="stop all workers after this many seconds (default: no limit)",
    )
    p.add_argument(
        "--max-restarts",
        type=A.int_at_least(0),
        default=0,
        metavar="N",
        help="when a worker fails, restart all workers from the run's last checkpoint, "
        "up to N times (default: 0, stop)",
    )
    p.add_argument("rest", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")


def _add_gan_commands(sub: argparse._SubParsersAction) -> None:
    """Add `tfkit gan train|generate|augment-grid|metrics`."""
    gan = sub.add_parser("gan", help="StyleGAN: train, generate images")
    gan_sub = gan.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    p = gan_sub.add_parser("train", help="train a StyleGAN from a config (gan section)")
    p.add_argument("config", nargs="?", help="experiment YAML file (optional with --resume)")
    _add_config_args(p, config_required=False)
    _add_run_args(p)
    _add_gan_generate(gan_sub)
    _add_gan_augment_grid(gan_sub)
    _add_gan_metrics(gan_sub)


def _add_gan_generate(gan_sub: argparse._SubParsersAction) -> None:
    """Add `tfkit gan generate`."""
    p = gan_sub.add_parser("generate", help="images from a trained GAN run (G_ema)")
    p.add_argument("run_dir", help="GAN run directory")
    p.add_argument(
        "--seeds",
        type=A.seeds,
        default="0-31",
        help="latent seeds, e.g. 0-63 or 1,5,9 (default 0-31)",
    )
    p.add_argument(
        "--trunc", type=A.finite_float, default=1.0, help="truncation psi (default 1: none)"
    )
    p.add_argument(
        "--trunc-cutoff", type=A.int_at_least(1), help="truncate only the first N style layers"
    )
    p.add_argument(
        "--class", dest="class_idx", type=A.int_at_least(0), help="class label (conditional models)"
    )
    p.add_argument("--noise-mode", default="const", choices=["const", "random", "none"])
    p.add_argument("--cols", type=A.int_at_least(1), help="grid columns (default: square-ish)")
    p.add_argument(
        "--style-mix",
        nargs=2,
        metavar=("ROWS", "COLS"),
        help="style-mixing figure: row seeds, column seeds",
    )
    p.add_argument(
        "--interpolate",
        nargs=2,
        type=A.int_at_least(0, A.MAX_SEED),
        metavar=("A", "B"),
        help="interpolation strip between seeds A and B",
    )
    p.add_argument(
        "--steps",
        type=A.int_at_least(2, A.MAX_SEEDS),
        default=8,
        help="images in the interpolation strip",
    )
    p.add_argument(
        "--out",
        type=A.output_file_of((".png",), ignore_case=True),
        required=True,
        help="output PNG",
    )


def _add_gan_augment_grid(gan_sub: argparse._SubParsersAction) -> None:
    """Add `tfkit gan augment-grid`."""
    p = gan_sub.add_parser(
        "augment-grid", help="what D sees: training images and their ADA augmentation at p"
    )
    _add_config_args(p)
    p.add_argument("--p", type=A.probability, default=0.5, help="augmentation probability")
    p.add_argument("--augpipe", help="pipeline (default: the config's gan.augpipe)")
    p.add_argument("--count", type=A.int_at_least(1, 1024), default=32, help="images shown")
    p.add_argument("--cols", type=A.int_at_least(1), default=8, help="grid columns")
    p.add_argument("--seed", type=A.int_at_least(0, A.MAX_SEED), default=0)
    p.add_argument(
        "--out",
        type=A.output_file_of((".png",), ignore_case=True),
        required=True,
        help="output PNG",
    )


def _add_gan_metrics(gan_sub: argparse._SubParsersAction) -> None:
    """Add `tfkit gan metrics`."""
    p = gan_sub.add_parser("metrics", help="FID/KID of a GAN run's G_ema against its data")
    p.add_argument("run_dir", help="GAN run directory (its latest checkpoint is measured)")
    p.add_argument("--metrics", default="fid,kid", help="comma-separated: fid, kid (default both)")
    p.add_argument(
        "--features",
        default="inception_2015_12_05",
        help="feature network: inception_2015_12_05 (the standard FID Inception graph, "
        "comparable with published FIDs; default), inception_v3 (Keras' ImageNet weights, "
        "not comparable) or classifier:RUN_DIR (a tfkit classifier, not comparable)",
    )
    p.add_argument(
        "--num-images",
        type=A.int_at_least(2),
        default=50_000,
        help="images per set (default 50000)",
    )
    p.add_argument(
        "--fid-inception",
        metavar="PATH",
        help="classify_image_graph_def.pb from inception-2015-12-05.tgz (default: "
        "$TFKIT_FID_INCEPTION or ~/.keras/models/classify_image_graph_def.pb)",
    )
    p.add_argument("--inception-weights", metavar="PATH", help="InceptionV3 no-top .h5 weights")
    p.add_argument("--batch-size", type=A.int_at_least(1), default=64)
    p.add_argument(
        "--cache-dir",
        type=A.output_dir,
        help="real-statistics cache (default ~/.cache/tfkit/metrics)",
    )
    p.add_argument("--seed", type=int, default=0, help="latent and KID-subset seed")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every tfkit command."""
    parser = _Parser(
        prog="tfkit",
        description="Keras-first TensorFlow toolkit: data, models, training, tuning, StyleGAN.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    _add_config_commands(sub)
    _add_data_commands(sub)
    _add_train_commands(sub)
    _add_predict_command(sub)
    _add_tune_command(sub)
    _add_export_command(sub)
    _add_launch_command(sub)
    _add_gan_commands(sub)
    for leaf in _leaf_parsers(parser):
        leaf.add_argument(
            "--verbose",
            action="store_true",
            help="also show TensorFlow's own log lines (C++ notices, CUDA, Grappler)",
        )
    return parser


def _leaf_parsers(parser: argparse.ArgumentParser):
    """The parsers of runnable commands (those without subcommands), each once."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield parser
    for action in subs:
        for child in dict.fromkeys(action.choices.values()):
            yield from _leaf_parsers(child)


# --------------------------------------------------------------------------------------
# checks that need no TensorFlow: they run before it loads, so such an error answers at once
# --------------------------------------------------------------------------------------


def _check_trained_run(args: argparse.Namespace) -> None:
    from tfkit.runs import Run

    # missing, not a run, a GAN run or a search, failed or untrained
    Run.open(args.run_dir, args.command, kind="fit")


def _check_gan_run(purpose: str):
    def check(args: argparse.Namespace) -> None:
        from tfkit.runs import Run

        run = Run.open(args.run_dir, purpose, kind="gan")  # missing, not a GAN run, untrained
        num_classes = run.effective_values().get("gan.num_classes")
        if purpose == "generate" and num_classes is not None:
            from tfkit.stylegan.presets import check_class

            check_class(num_classes, args.class_idx)

    return check


def _check_predict(args: argparse.Namespace) -> None:
    from pathlib import Path

    from tfkit.runs import Run

    if not Path(args.run_dir).exists() or Run(args.run_dir).config_file.exists():
        _check_trained_run(args)  # else it may be an export directory
        inputs = Run(args.run_dir).spec_inputs()
        if Path(args.input).is_dir() and inputs and len(inputs[0][1]) == 4:
            from tfkit.data.imageio import check_image_sizes, image_files

            files = image_files(args.input)
            if not args.resize:
                check_image_sizes(files, *inputs[0][1][1:3], hint=A.PREDICT_RESIZE_HINT)


def _check_train(kind: str):
    """`tfkit train` (kind `fit`) or `tfkit gan train` (`gan`): the config or the run to
    resume is of that kind, and `--resume` follows the resume policy."""

    def check(args: argparse.Namespace) -> None:
        from tfkit.runs import Run, check_config_kind

        if not getattr(args, "resume", None):
            if not args.config:
                command = "tfkit train" if kind == "fit" else "tfkit gan train"
                raise UserError(f"{command} needs a CONFIG file (or --resume RUN_DIR)")
            from tfkit.config import load_config  # the config was validated by `main`

            check_config_kind(load_config(args.config, args.overrides), kind, args.config)
            return
        if getattr(args, "run_dir", None):
            raise UserError("--resume and --run-dir cannot be combined: --resume names the run dir")
        # the resume policy: every refused change is named before TensorFlow loads
        run = Run.open(args.resume, "resume", flag="--resume", kind=kind)
        run.plan_resume(getattr(args, "overrides", None), getattr(args, "config", None))
        if kind == "fit" and not getattr(args, "dry_run", False):
            run.refuse_finished()  # a GAN run may be extended; a fit run may not

    return check


def _check_export(args: argparse.Namespace) -> None:
    from tfkit.export import check_request

    check_request(args.run_dir, args.out, args.format, overwrite=args.overwrite)


def _check_data(args: argparse.Namespace) -> None:
    from tfkit.data.tools import check_request

    check_request(args)  # the source or the path exists, an inspected config validates


def _check_augment_grid(args: argparse.Namespace) -> None:
    from tfkit.config import parse_augpipe

    if args.augpipe is not None:
        try:
            parse_augpipe(args.augpipe)
        except ValueError as err:
            raise UserError(f"--augpipe: {err}") from None


def _check_tune(args: argparse.Namespace) -> None:
    from tfkit.tuning.commands import check_request

    check_request(args)  # the config, its space, and whether the search may continue


PRECHECKS = {
    "train": _check_train("fit"),
    "gan train": _check_train("gan"),
    "evaluate": _check_trained_run,
    "predict": _check_predict,
    "export": _check_export,
    "gan generate": _check_gan_run("generate"),
    "gan metrics": _check_gan_run("measure"),
    "tune": _check_tune,
    "data convert": _check_data,
    "data inspect": _check_data,
    "gan augment-grid": _check_augment_grid,
}
# commands that never load TensorFlow in this process
NO_TENSORFLOW = {"config show", "config validate", "launch"}


def _handler(name: str, args: argparse.Namespace):
    target = HANDLERS[name]
    if name == "predict":
        from tfkit.runs import is_export_dir

        if is_export_dir(args.run_dir):  # an exported SavedModel, not a run directory
            target = PREDICT_EXPORT_HANDLER
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def config_show(args: argparse.Namespace) -> int:
    """Print the resolved config as YAML."""
    from tfkit.config import dump_yaml, load_config, to_dict

    config = load_config(args.config, args.overrides)
    if config.gan is None:
        print(dump_yaml(config), end="")
        return 0
    from tfkit.stylegan import presets  # no TensorFlow there

    values = presets.preset_values(config.gan, presets.data_resolution(config))
    print(presets.resolved_yaml(to_dict(config), values), end="")
    return 0


def _config_source(args: argparse.Namespace) -> str:
    """How config errors name the config (as `load_config` does)."""
    overrides = getattr(args, "overrides", None)
    return f"{args.config}{' (with --set overrides)' if overrides else ''}"


def _multi_worker(runtime) -> bool:
    """Whether `runtime` trains on several workers (as `distribute.wants_multi_worker`,
    without importing TensorFlow): such a run uses the custom loop whatever `train.loop`."""
    from tfkit.cluster import for_runtime

    if runtime.strategy == "multi_worker":
        return True
    return runtime.strategy == "auto" and for_runtime(runtime).multi_worker


def check_loop_options(args: argparse.Namespace, config) -> None:
    """`tfkit train` and `tfkit config validate` refuse the same custom-loop options."""
    from tfkit.config import check_loop_options as check

    check(config, _config_source(args), lambda: _multi_worker(config.runtime))


def config_validate(args: argparse.Namespace) -> int:
    """Validate a config; print OK or raise a UserError listing every problem."""
    from tfkit.config import load_config

    cfg = load_config(args.config, args.overrides)
    check_loop_options(args, cfg)
    if cfg.gan is not None:
        what = f"gan preset={cfg.gan.preset}, arch={cfg.gan.arch}"
    else:
        what = f"model={cfg.model.name}, loop={cfg.train.loop}"
    tune = f", tune={cfg.tune.tuner}" if cfg.tune is not None else ""
    print(f"{args.config}: OK ({cfg.name}: data={cfg.data.source.kind}, {what}{tune})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tfkit` command; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a bad argument (2, one line printed)
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    name = args.command
    if getattr(args, "subcommand", None):
        name = f"{name} {args.subcommand}"
    if name not in HANDLERS:
        parser.parse_args([*(argv if argv is not None else sys.argv[1:]), "--help"])
        return 2
    verbose = bool(getattr(args, "verbose", False))
    if not verbose:  # TensorFlow's C++ INFO and WARNING lines would bury tfkit's messages
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if args.command != "config" and getattr(args, "config", None):
            # a bad config fails in well under a second, before the handler imports TensorFlow
            from tfkit.config import load_config

            config = load_config(args.config, getattr(args, "overrides", None))
            if name == "train" and not getattr(args, "resume", None):
                check_loop_options(args, config)  # as `tfkit config validate`
            if name in ("train", "gan train", "tune") and not (
                getattr(args, "dry_run", False) or getattr(args, "role", None)
            ):
                from tfkit.cluster import for_runtime

                for_runtime(config.runtime)  # a missing SLURM variable, a TF_CONFIG with ps
        if name in PRECHECKS:
            PRECHECKS[name](args)
        if name not in NO_TENSORFLOW:
            from tfkit.quiet import import_tensorflow

            import_tensorflow(verbose)  # without its start-up notices on stderr
        with tracking_stdout():
            try:
                return int(_handler(name, args)(args) or 0)
            except BaseException:
                end_line()  # a progress bar's open line ends before the message below
                raise
    except UserError as err:
        print(f"tfkit {name}: error: {err}", file=sys.stderr)
        return err.exit_code
    except Stopped as err:  # a signal stopped training after saving what --resume needs
        sys.stdout.flush()
        print(f"tfkit {name}: {err}", file=sys.stderr, flush=True)
        return err.exit_code
    except WorkerLost as err:  # a peer of a multi-worker run died; the run is resumable
        sys.stdout.flush()
        print(f"tfkit {name}: error: {err}", file=sys.stderr, flush=True)
        # A normal exit would wait for the lost peer at TensorFlow's coordination-service
        # shutdown barrier (up to runtime.collective_timeout_s); everything tfkit writes is
        # already on disk, so the process ends here.
        from tfkit.quiet import flush_stderr

        flush_stderr()
        os._exit(err.exit_code)
    except KeyboardInterrupt:
        print(f"tfkit {name}: interrupted", file=sys.stderr)
        return 130
    except Exception:
        if os.environ.get("TFKIT_DEBUG") != "1":
            import traceback

            traceback.print_exc()
            print(
                f"tfkit {name}: internal error (a bug in tfkit; the traceback above helps us fix it)",
                file=sys.stderr,
            )
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
