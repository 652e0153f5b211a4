"""The `tfkit` command: instant help, exit codes, one-line user errors."""

import subprocess
import sys

from tfkit.cli import main


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "tfkit.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_help_and_config_commands_do_not_import_tensorflow(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: x\n")
    code = (
        "import sys\n"
        "from tfkit.cli import main\n"
        f"rc = main(['config', 'validate', {str(cfg)!r}])\n"
        "assert rc == 0, rc\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
        "assert 'keras' not in sys.modules, 'keras imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout


def test_help_lists_commands():
    out = run_cli("--help")
    assert out.returncode == 0
    for command in ("config", "data", "train", "evaluate", "predict", "launch"):
        assert command in out.stdout


def test_config_show_prints_resolved_config_with_overrides(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: x\ntrain: {epochs: 2}\n")
    assert main(["config", "show", str(cfg), "--set", "train.epochs=7"]) == 0
    out = capsys.readouterr().out
    assert "epochs: 7" in out
    assert "batch_size: 32" in out  # defaults filled in


def test_user_error_exits_2_with_one_line(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("train: {epocs: 3}\n")
    out = run_cli("config", "validate", str(cfg))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1, out.stderr
    assert "unknown key `train.epocs`" in out.stderr
    assert "Did you mean `epochs`?" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_config_file_exits_2(tmp_path):
    out = run_cli("config", "validate", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2
    assert "Config file not found" in out.stderr


def test_internal_error_exits_1(monkeypatch, capsys):
    import tfkit.cli as cli

    def boom(args):
        raise RuntimeError("bug")

    monkeypatch.setattr(cli, "config_show", boom)
    monkeypatch.setitem(cli.HANDLERS, "config show", "tfkit.cli:config_show")
    assert main(["config", "show", "x.yaml"]) == 1
    assert "internal error" in capsys.readouterr().err


def test_unknown_name_lists_valid_names_with_a_suggestion():
    from tfkit.errors import unknown_name

    msg = str(unknown_name("loss", "mse2", ["mse", "mae", "huber"]))
    assert msg == "Unknown loss `mse2`. Did you mean `mse`? Valid losses: huber, mae, mse"


def test_bad_config_fails_before_tensorflow_is_imported(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: {name: cnn, filtres: [8]}\n")
    code = (
        "import sys\n"
        "from tfkit.cli import main\n"
        f"for command in ('train', 'tune'):\n"
        f"    assert main([command, {str(cfg)!r}]) == 2\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("unknown key `model.filtres`") == 2


def test_custom_loop_options_on_the_fit_path_are_refused_by_validate_and_train(tmp_path):
    # `train.loop: fit` would ignore them: both commands exit 2 with one line naming the key
    # and the loop that reads it, before TensorFlow is imported
    cfg = tmp_path / "fit.yaml"
    cfg.write_text("name: x\ntrain: {epochs: 1}\n")
    code = (
        "import sys\n"
        "from tfkit.cli import main\n"
        f"cfg = {str(cfg)!r}\n"
        "for option in ('train.nan_policy=skip_step', 'train.steps_per_loop=4'):\n"
        "    for command in (['config', 'validate'], ['train']):\n"
        "        assert main([*command, cfg, '--set', option]) == 2, (command, option)\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
        # the values the fit path reads as they are stay accepted
        "for option in ('train.nan_policy=stop', 'train.steps_per_loop=auto'):\n"
        "    assert main(['config', 'validate', cfg, '--set', option]) == 0, option\n"
        # the custom loop reads both; a multi-worker run trains with it whatever train.loop
        "both = ['--set', 'train.nan_policy=skip_step', '--set', 'train.steps_per_loop=4']\n"
        "assert main(['config', 'validate', cfg, *both, '--set', 'train.loop=custom']) == 0\n"
        "multi = ['--set', 'runtime.strategy=multi_worker']\n"
        "assert main(['config', 'validate', cfg, *both, *multi]) == 0\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(lines) == 4 and len(out.stderr.splitlines()) == 4, out.stderr
    for line, (command, option) in zip(
        lines,
        [
            ("config validate", "nan_policy: skip_step"),
            ("train", "nan_policy: skip_step"),
            ("config validate", "steps_per_loop: 4"),
            ("train", "steps_per_loop: 4"),
        ],
        strict=True,
    ):
        assert line.startswith(f"tfkit {command}: error: {cfg} (with --set overrides): "), line
        assert f"`train.{option}` is read by the custom loop only" in line
        assert "set `train.loop: custom`" in line
