"""Export a trained run for serving: a SavedModel and a LiteRT (TFLite) flatbuffer.

`tfkit export RUN_DIR --format saved_model|litert --out DIR [--overwrite]` reads the run's
`model.keras` (or, for a GAN run, the EMA generator of its latest checkpoint) and writes:

    saved_model   DIR/saved_model.pb, DIR/variables/ : a SavedModel whose `serving_default`
                  signature takes the data schema's named inputs (batch dimension None)
    litert        DIR/model.tflite : the same signature converted with TFLiteConverter
                  (float32, no quantization)

plus `DIR/export.json`, a manifest of the format, inputs, outputs, source run and versions.
`tfkit predict DIR ...` accepts an exported SavedModel directory (see `predict_exported`).

Example:
    >>> export_run("runs/binary_mlp/00000", "export/binary_mlp", "saved_model")
    >>> served = load_exported("export/binary_mlp")
    >>> served.predict(x)
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfkit.arguments import PREDICT_OUTPUTS
from tfkit.errors import UserError, unknown_name
from tfkit.runs import EXPORT_MANIFEST_FILE as MANIFEST_FILE
from tfkit.runs import SAVED_MODEL_FILE, Run

FORMATS = ("saved_model", "litert")
LITERT_FILE = "model.tflite"
SIGNATURE = "serving_default"


# --------------------------------------------------------------------------------------
# what to export: the serving function of a run
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """One named input or output of an exported signature (shape includes the batch axis)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        """JSON data for the manifest."""
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass
class Servable:
    """A model ready to export: the object that owns its variables and a serving function.

    Attributes:
        model: the Keras model (tracked so the SavedModel holds its variables).
        fn: takes one tensor per input, in `inputs` order, and returns `{name: tensor}`.
        inputs: the signature's named inputs.
        kind: `model` (a trained Keras model) or `gan_generator` (a GAN run's G_ema).
        source: the file or checkpoint the weights came from.
    """

    model: Any
    fn: Any
    inputs: list[TensorInfo]
    kind: str
    source: str


def _as_output_dict(outputs: Any) -> dict[str, Any]:
    if isinstance(outputs, dict):
        return dict(outputs)
    if isinstance(outputs, (list, tuple)):
        return {f"output_{i}": y for i, y in enumerate(outputs)}
    return {"output_0": outputs}


def _data_inputs(run: Run, config: Any) -> list[TensorInfo]:
    """The model inputs from the data schema: the run's data spec, else `data.build`."""
    inputs = run.spec_inputs()
    if inputs is not None:
        return [TensorInfo(name, shape, dtype) for name, shape, dtype in inputs]
    import tfkit.data

    spec = tfkit.data.build(config.data, seed=config.runtime.seed, input_context=None).spec
    return [TensorInfo(i.name, (None, *i.shape), i.dtype) for i in spec.inputs]


def model_servable(run_dir: str | Path, config: Any) -> Servable:
    """The trained Keras model of a run with a serving function over its named inputs.

    Raises:
        UserError: the run holds no `model.keras` (nor `checkpoints/last.keras`).
    """
    run = Run.open(run_dir, "export")
    source = run.model_path()
    from tfkit.saving import registered_objects

    model = run.load_model(registered_objects())
    inputs = _data_inputs(run, config)
    names = [i.name for i in inputs]

    def serve(*tensors):
        x = tensors[0] if len(tensors) == 1 else dict(zip(names, tensors, strict=True))
        return _as_output_dict(model(x, training=False))

    return Servable(model, serve, inputs, "model", str(source))


def gan_servable(run_dir: str | Path) -> Servable:
    """The EMA generator of a GAN run: input `z` (and `c`, class labels, when conditional).

    The generator is restored as `tfkit gan generate` does (`stylegan.generate`). The export
    uses constant noise (`noise_mode="const"`) and no truncation, so the same `z` always
    gives the same image: float32 in [-1, 1], shape (N, H, W, 3), output `image`.

    Raises:
        UserError: the run has no GAN options or no checkpoint yet.
    """

    from tfkit.stylegan.checkpoints import load_g_ema
    from tfkit.stylegan.ops import conv_algorithm

    loaded = load_g_ema(run_dir)
    generator, opts, checkpoint = loaded.G, loaded.opts, loaded.checkpoint
    inputs = [TensorInfo("z", (None, opts.z_dim), "float32")]
    if opts.num_classes:
        inputs.append(TensorInfo("c", (None,), "int32"))

    def serve(z, c=None):
        # plain tf.nn.conv2d in the exported graph (not the CPU training path's Winograd
        # form): LiteRT builtins and GPU runtimes take it as it is; same images within 1e-5
        with conv_algorithm("direct"):
            return {"image": generator(z, c, noise_mode="const", training=False)}

    return Servable(generator, serve, inputs, "gan_generator", str(checkpoint))


def run_servable(run_dir: str | Path) -> tuple[Servable, Any]:
    """The servable of a run (a GAN run's G_ema, else its model) and the run's config."""
    config = Run.open(run_dir, "export").load_config()
    if getattr(config, "gan", None) is not None:
        return gan_servable(run_dir), config
    return model_servable(run_dir, config), config


# --------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------


def write_saved_model(servable: Servable, path: str | Path) -> list[TensorInfo]:
    """Write `servable` as a SavedModel with one `serving_default` signature.

    The signature's inputs are named as `servable.inputs` (batch dimension None).

    Returns:
        The signature's outputs.
    """
    import keras
    import tensorflow as tf

    specs = [tf.TensorSpec(i.shape, i.dtype, name=i.name) for i in servable.inputs]
    archive = keras.export.ExportArchive()
    archive.track(servable.model)
    archive.add_endpoint(SIGNATURE, servable.fn, input_signature=specs)
    archive.write_out(str(path), verbose=False)
    concrete = tf.saved_model.load(str(path)).signatures[SIGNATURE]
    return [
        TensorInfo(name, tuple(spec.shape.as_list()), spec.dtype.name)
        for name, spec in sorted(concrete.structured_outputs.items())
    ]


def convert_to_litert(saved_model_dir: str | Path, path: str | Path) -> Path:
    """Convert a SavedModel's `serving_default` to a float32 LiteRT flatbuffer at `path`.

    Raises:
        UserError: the model uses operations LiteRT's builtin kernels do not have.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=[SIGNATURE]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        flatbuffer = converter.convert()
    except Exception as err:  # the converter raises ConverterError and friends
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"--format litert: this model cannot be converted to LiteRT builtin ops ({first}). "
            "Export it with --format saved_model instead"
        ) from err
    path = Path(path)
    path.write_bytes(flatbuffer)
    return path


def _tfkit_version() -> str:
    try:
        from importlib.metadata import version

        return version("tfkit")
    except Exception:  # noqa: BLE001 - not installed: running from a checkout
        return "unknown"


def _check_out_dir(out: Path, run_dir: Path, overwrite: bool) -> None:
    if out.is_file():
        raise UserError(f"--out {out} is a file, expected a directory")
    if not out.exists():
        return
    resolved, run = out.resolve(), run_dir.resolve()
    if resolved == run or resolved in run.parents or Run(out).config_file.exists():
        raise UserError(
            f"--out {out} is (or holds) a run directory; choose a new directory for the export"
        )
    if any(out.iterdir()) and not overwrite:
        raise UserError(
            f"--out {out} already exists; pass --overwrite to replace it, or choose another "
            "directory"
        )


def check_request(
    run_dir: str | Path, out: str | Path, format: str, *, overwrite: bool = False
) -> None:
    """Check an export request without TensorFlow: a known format, a run directory, and
    an `out` that may be written.

    Raises:
        UserError: naming the argument at fault.
    """
    if format not in FORMATS:
        raise unknown_name("export format", format, FORMATS)
    Run.open(run_dir, "export", kind=("fit", "gan"))  # missing, not a run, a search, untrained
    _check_out_dir(Path(out), Path(run_dir), overwrite)


def export_run(
    run_dir: str | Path,
    out: str | Path,
    format: str = "saved_model",
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export a run's model (or a GAN run's G_ema) to `out` in `format`.

    Args:
        run_dir: a run directory written by `tfkit train` (or `tfkit gan train`).
        out: the export directory, created; it must not exist unless `overwrite`.
        format: `saved_model` or `litert`.
        overwrite: replace an existing `out`.

    Returns:
        The manifest written to `out/export.json`.

    Raises:
        UserError: unknown format, a run without a model, or `out` exists.
    """
    check_request(run_dir, out, format, overwrite=overwrite)
    run_dir = Path(run_dir)
    out = Path(out)
    servable, config = run_servable(run_dir)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; an export is meant to be shared
    try:
        if format == "saved_model":
            outputs = write_saved_model(servable, staging)
            artifact = "."
        else:
            with tempfile.TemporaryDirectory(prefix=".saved_model.", dir=out.parent) as tmp:
                outputs = write_saved_model(servable, tmp)
                convert_to_litert(tmp, staging / LITERT_FILE)
            artifact = LITERT_FILE
        manifest = _manifest(format, artifact, servable, outputs, run_dir, config)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _manifest(
    format: str,
    artifact: str,
    servable: Servable,
    outputs: list[TensorInfo],
    run_dir: Path,
    config: Any,
) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from tfkit.config import to_dict

    return {
        "format": format,
        "artifact": artifact,
        "signature": SIGNATURE,
        "kind": servable.kind,
        "inputs": [i.to_dict() for i in servable.inputs],
        "outputs": [o.to_dict() for o in outputs],
        "source_run": str(run_dir.resolve()),
        "source": servable.source,
        "config": to_dict(config),
        # what `data.normalize` does to raw inputs before they reach the model
        "normalization": Run(run_dir).normalization(),
        "tfkit_version": _tfkit_version(),
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --------------------------------------------------------------------------------------
# loading an export
# --------------------------------------------------------------------------------------


def is_saved_model_dir(path: str | Path) -> bool:
    """Whether `path` is a SavedModel directory (it holds `saved_model.pb`)."""
    return (Path(path) / SAVED_MODEL_FILE).is_file()


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The `export.json` of an export directory.

    Raises:
        UserError: `path` has no `export.json` (not written by `tfkit export`).
    """
    file = Path(path) / MANIFEST_FILE
    if not file.is_file():
        raise UserError(f"{path} is not a tfkit export: {file} not found")
    return json.loads(file.read_text())


class ExportedModel:
    """An exported SavedModel, callable like the Keras model it came from.

    Args:
        path: a directory written by `tfkit export --format saved_model`.

    Attributes:
        inputs: objects with `name` and `shape` (batch axis first), in the data schema's
            order, like `keras.Model.inputs`.
        manifest: the export's `export.json`.
    """

    def __init__(self, path: str | Path):
        import tensorflow as tf

        self.path = Path(path)
        self.manifest = read_manifest(path)
        if self.manifest.get("format") != "saved_model" or not is_saved_model_dir(path):
            raise UserError(
                f"{path} is a `{self.manifest.get('format')}` export; pass a directory written "
                "by `tfkit export --format saved_model`"
            )
        self._loaded = tf.saved_model.load(str(self.path))
        self.signature = self._loaded.signatures[self.manifest.get("signature", SIGNATURE)]
        self.inputs = [
            TensorInfo(i["name"], tuple(i["shape"]), i["dtype"]) for i in self.manifest["inputs"]
        ]
        self.output_names = [o["name"] for o in self.manifest["outputs"]]

    def __call__(self, x: Any) -> dict[str, np.ndarray]:
        """Outputs `{name: array}` for one batch `x` (an array, or a dict by input name)."""
        import tensorflow as tf

        arrays = x if isinstance(x, dict) else {self.inputs[0].name: x}
        feed = {
            i.name: tf.convert_to_tensor(np.asarray(arrays[i.name]), dtype=i.dtype)
            for i in self.inputs
        }
        return {k: v.numpy() for k, v in self.signature(**feed).items()}

    def predict(self, x: Any, batch_size: int = 256) -> np.ndarray | dict[str, np.ndarray]:
        """Predictions for all of `x` in batches: one array, or a dict for several outputs."""
        arrays = x if isinstance(x, dict) else {self.inputs[0].name: x}
        count = len(next(iter(arrays.values())))
        batches = [
            self({k: v[start : start + batch_size] for k, v in arrays.items()})
            for start in range(0, count, batch_size)
        ]
        outputs = {name: np.concatenate([b[name] for b in batches]) for name in self.output_names}
        return outputs[self.output_names[0]] if len(outputs) == 1 else outputs


def load_exported(path: str | Path) -> ExportedModel:
    """Load a SavedModel written by `tfkit export` (see `ExportedModel`)."""
    return ExportedModel(path)


# --------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------


def predict_exported(args: argparse.Namespace) -> int:
    """`tfkit predict EXPORT_DIR --input F --output F`: predict with an exported SavedModel.

    Reads `--input` as `tfkit predict` does for the source run (the run's config is kept in
    the manifest) and writes the same kind of `--output`.
    """
    from tfkit.config import validate
    from tfkit.training.predict import read_inputs, write_predictions

    if Path(args.output).suffix not in PREDICT_OUTPUTS:
        raise UserError(f"--output {args.output}: unknown file type. Expected .npy, .npz or .csv")
    model = load_exported(args.run_dir)
    config = validate(model.manifest["config"], str(Path(args.run_dir) / MANIFEST_FILE))
    x = read_inputs(
        args.input,
        model,
        config,
        normalization=model.manifest.get("normalization"),
        normalized=getattr(args, "normalized", False),
        resize=getattr(args, "resize", False),
    )
    predictions = model.predict(x, batch_size=args.batch_size)
    if isinstance(predictions, dict):
        raise UserError(
            f"{args.run_dir} has {len(predictions)} outputs {list(predictions)}; "
            "tfkit predict writes one"
        )
    out = write_predictions(args.output, predictions)
    print(
        f"wrote {len(predictions)} predictions of shape {tuple(np.shape(predictions)[1:])} to {out}"
    )
    return 0


def export_command(args: argparse.Namespace) -> int:
    """`tfkit export RUN_DIR --format saved_model|litert --out DIR [--overwrite]`."""
    manifest = export_run(args.run_dir, args.out, args.format, overwrite=args.overwrite)
    inputs = ", ".join(f"{i['name']} {tuple(i['shape'])}" for i in manifest["inputs"])
    outputs = ", ".join(f"{o['name']} {tuple(o['shape'])}" for o in manifest["outputs"])
    target = Path(args.out) / (LITERT_FILE if args.format == "litert" else "")
    print(f"exported {args.run_dir} as {args.format} to {target}: {inputs} -> {outputs}")
    return 0
