"""Quiet by default: no TensorFlow start-up or Grappler lines on stderr, and errors that need
no TensorFlow answer before it is imported."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tfkit.quiet import drop_noise, filtered_stderr

ROOT = Path(__file__).resolve().parent.parent
# what TensorFlow, absl, CUDA and Grappler print (absl's line format, and known notices)
FRAMEWORK_LINE = re.compile(
    r"^[IWEF]\d{4} |absl::|cpu_feature_guard|oneDNN|cuInit|cuda drivers|remapper|"
    r"meta_optimizer|To enable the following instructions",
    re.MULTILINE,
)
CAPTURED = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796075495.633661    5731 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results.
I0000 00:00:1796075495.635782    5731 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1796075495.700000    5731 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
W0000 00:00:1796075495.800000    5731 some_file.cc:12] a warning the default level hides
E0000 00:00:1796075501.412857    5731 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
E0000 00:00:1796075501.500000    5731 other.cc:1] a real error
a line of the user's own
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def test_drop_noise_keeps_everything_but_known_notices():
    kept = drop_noise(CAPTURED)
    assert kept == (
        "E0000 00:00:1796075501.500000    5731 other.cc:1] a real error\na line of the user's own\n"
    )
    # with a CUDA driver present, a failing cuInit is a real problem and is kept
    with_driver = "\n".join(line for line in CAPTURED.splitlines() if "cuda drivers" not in line)
    assert "failed call to cuInit" in drop_noise(with_driver)
    assert drop_noise("") == "" and drop_noise("no newline at the end") == "no newline at the end"


def test_filtered_stderr_replays_what_is_not_noise_in_order(capfd):
    with filtered_stderr():
        os.write(2, CAPTURED.encode())
        os.write(2, b"a later line\n")
    err = capfd.readouterr().err
    assert err.splitlines() == [
        "E0000 00:00:1796075501.500000    5731 other.cc:1] a real error",
        "a line of the user's own",
        "a later line",
    ]


def test_run_dir_errors_answer_before_tensorflow_loads(tmp_path):
    """A missing or non-run directory exits 2 with one line, TensorFlow never imported."""
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    (tmp_path / "x.npy").write_bytes(b"")
    commands = [
        ["evaluate", "{d}"],
        ["predict", "{d}", "--input", str(tmp_path / "x.npy"), "--output", "y.npy"],
        ["export", "{d}", "--out", str(tmp_path / "export")],
        ["gan", "generate", "{d}", "--out", str(tmp_path / "a.png")],
        ["gan", "metrics", "{d}"],
        ["train", "--resume", "{d}"],
    ]
    cases = [
        [a.format(d=d) for a in command]
        for command in commands
        for d in (tmp_path / "missing", not_a_run)
        if not (command[0] == "predict" and d == not_a_run)  # may be an export directory
    ]
    code = (
        "import json, sys\n"
        "from tfkit.cli import main\n"
        "codes = [main(argv) for argv in json.loads(sys.argv[1])]\n"
        "print(json.dumps({'codes': codes, 'tf': 'tensorflow' in sys.modules}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(cases)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result == {"codes": [2] * len(cases), "tf": False}, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == len(cases), proc.stderr  # one line each
    for line, argv in zip(lines, cases, strict=True):
        name = "missing" if "missing" in " ".join(argv) else "empty"
        assert line.startswith(f"tfkit {argv[0]}") and name in line, line
        assert "not found" in line or "not a tfkit run directory" in line, line


def test_resuming_a_finished_run_is_refused_before_tensorflow_loads(tmp_path):
    """`train --resume` on a finished run (result written, backup gone) exits 2 with one
    line, TensorFlow never imported; `--dry-run` still prints its config."""
    from tfkit.config import load_config
    from tfkit.runs import Run

    run = Run.create(load_config(str(ROOT / "configs" / "digits_cnn.yaml")), tmp_path / "done")
    run.result_file.write_text("{}\n")
    code = (
        "import json, sys\n"
        "from tfkit.cli import main\n"
        "codes = [main(['train', '--resume', sys.argv[1]])]\n"
        "tf = 'tensorflow' in sys.modules\n"
        "codes.append(main(['train', '--resume', sys.argv[1], '--dry-run']))\n"
        "print(json.dumps({'codes': codes, 'tf': tf}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(run.path)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result == {"codes": [2, 0], "tf": False}, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("tfkit train: error: --resume") and "already finished" in line, line
    assert "name: digits_cnn" in proc.stdout  # the dry run printed the run's config


@pytest.mark.parametrize(
    "command",
    [
        [
            "train",
            str(ROOT / "configs" / "digits_cnn.yaml"),
            "--set",
            "train.epochs=1",
            "--set",
            "train.steps_per_epoch=2",
            "--set",
            "train.validation_steps=1",
        ],
        ["gan", "train", "{gan}"],
    ],
    ids=["train", "gan-train"],
)
def test_training_prints_no_framework_line(tmp_path, command):
    from stylegan.test_commands import CONFIG as GAN_CONFIG

    gan = tmp_path / "gan.yaml"
    gan.write_text(GAN_CONFIG)
    argv = [a.format(gan=gan) for a in command] + ["--run-dir", str(tmp_path / "run")]
    proc = subprocess.run(
        [sys.executable, "-m", "tfkit.cli", *argv],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not FRAMEWORK_LINE.search(proc.stderr), proc.stderr
