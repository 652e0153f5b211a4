"""What every benchmark script shares: the machine description and the JSON it writes.

Convention: each `bench_*.py` accepts `--quick` and `--json PATH` and writes
`{"ratios": {...}, "figures": {...}, "machine": {...}}`, each ratio against a baseline
measured in the same run, plus `"runs": {figure: [values]}` for figures that are the median
of several runs (`run_all.py` shows them in benchmarks/RESULTS.md).
"""

from __future__ import annotations

import json
import os
import platform


def cpu_model() -> str | None:
    """The CPU's model name from Linux's /proc/cpuinfo (None elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None
            )
    except OSError:
        return None


def machine() -> dict:
    """CPU count and model, platform, Python and TensorFlow versions, visible GPUs, and
    whether the CPU has native bfloat16 (TensorFlow's speed on a CPU depends on it: it turns
    oneDNN on only on CPUs with AVX512_VNNI, AVX512_BF16 or AMX)."""
    info = {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        import tensorflow as tf

        from tfkit.distribute import cpu_has_native_bfloat16

        info["cpu_native_bfloat16"] = cpu_has_native_bfloat16()
        info["tensorflow"] = tf.__version__
        info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    except ImportError:  # pragma: no cover - benchmarks run in the project's venv
        pass
    return info


def write_result(path: str | None, ratios: dict, figures: dict, runs: dict | None = None) -> dict:
    """Print the benchmark result as JSON and write it to `path` (when given); return it.

    `runs` maps a ratio or figure to the values of the runs behind its median."""
    out = {"ratios": ratios, "figures": figures, "machine": machine()}
    if runs:
        out["runs"] = runs
    print(json.dumps(out, indent=1))
    if path:
        with open(path, "w") as f:
            json.dump(out, f, indent=1)
    return out
