"""What every benchmark script shares: the machine description and the JSON it writes.

Convention: each `bench_*.py` accepts `--quick` and `--json PATH` and writes
`{"ratios": {...}, "figures": {...}, "machine": {...}}`, each ratio against a baseline
measured in the same run.
"""

from __future__ import annotations

import json
import os
import platform


def machine() -> dict:
    """CPU count, platform, Python and TensorFlow versions, and visible GPUs."""
    info = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    except ImportError:  # pragma: no cover - benchmarks run in the project's venv
        pass
    return info


def write_result(path: str | None, ratios: dict, figures: dict) -> dict:
    """Print the benchmark result as JSON and write it to `path` (when given); return it."""
    out = {"ratios": ratios, "figures": figures, "machine": machine()}
    print(json.dumps(out, indent=1))
    if path:
        with open(path, "w") as f:
            json.dump(out, f, indent=1)
    return out
