"""Every benchmark follows the convention `make bench` relies on."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def test_every_benchmark_takes_quick_and_json_and_writes_the_shared_format():
    scripts = sorted(BENCH.glob("bench_*.py"))
    assert {s.stem for s in scripts} >= {"bench_data", "bench_fit", "bench_loop", "bench_stylegan"}
    for script in scripts:
        text = script.read_text()
        assert '"--quick"' in text and '"--json"' in text, script.name


def test_write_result_and_run_all_table(tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        from common import write_result
    finally:
        sys.path.remove(str(BENCH))
    out = tmp_path / "r.json"
    result = write_result(str(out), {"x_vs_y": 1.5}, {"x_per_s": 3})
    assert json.loads(out.read_text()) == result
    assert result["machine"]["cpus"] >= 1
    # TensorFlow's CPU speed depends on the model and on native bfloat16 (oneDNN): recorded
    assert "cpu_model" in result["machine"]
    assert result["machine"]["cpu_native_bfloat16"] in (True, False, None)
    # run_all on a fake benchmark directory: one table row per ratio, merged JSON
    fake = tmp_path / "benchmarks"
    fake.mkdir()
    (fake / "run_all.py").write_text((BENCH / "run_all.py").read_text())
    (fake / "bench_fake.py").write_text(
        "import argparse, json\n"
        "p = argparse.ArgumentParser(); p.add_argument('--quick', action='store_true')\n"
        "p.add_argument('--json'); a = p.parse_args()\n"
        "json.dump({'ratios': {'fake_vs_base': 2.0}, 'figures': {}, 'machine': {'cpus': 2}}, open(a.json, 'w'))\n"
    )
    merged = tmp_path / "all.json"
    proc = subprocess.run(
        [sys.executable, str(fake / "run_all.py"), "--quick", "--json", str(merged)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| fake | fake_vs_base | 2.000 |" in proc.stdout
    assert json.loads(merged.read_text())["benchmarks"]["fake"]["ratios"] == {"fake_vs_base": 2.0}


@pytest.mark.quality  # the paper-size (256x256) benchmark code: a GPU figure, minutes on CPU
def test_paper256_figure_code_runs_on_cpu_with_tiny_channels():
    """`--device gpu` measures paper256 s/kimg; no GPU here, so run the same function on CPU
    with tiny channels and batch: the 256x256 networks, the phases and the keys it reports."""
    sys.path.insert(0, str(BENCH))
    try:
        import bench_stylegan
    finally:
        sys.path.remove(str(BENCH))
    tiny = dict(batch=8, channel_base=512, channel_max=8, z_dim=16, w_dim=16)
    figures = bench_stylegan.gpu_s_per_kimg(tiny, iterations=1)
    assert 0 < figures["paper256_s_per_kimg"] < float("inf")
    # the counts are those of the paper256 networks with these options, built here apart
    from tfkit.config import GanConfig
    from tfkit.stylegan.presets import resolve_options
    from tfkit.stylegan.trainer import build_networks

    G, D = build_networks(resolve_options(GanConfig(preset="paper256", **tiny), 256))
    assert G.resolution == 256
    assert figures["paper256_G_params"] == G.count_params()
    assert figures["paper256_D_params"] == D.count_params()
    published = {k for k in figures if k.startswith("published_")}
    assert published == {"published_paper256_v100_s_per_kimg", "published_paper256_a100_s_per_kimg"}


def _git(cwd, *args):
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_run_all_writes_results_page_with_commit_machine_runs_median_and_target(tmp_path):
    """`make bench`'s page: date, the commit measured, the machine, and one row per figure
    with its runs, their median, its target and whether the median meets it."""
    repo = tmp_path / "repo"
    fake = repo / "benchmarks"
    fake.mkdir(parents=True)
    (fake / "run_all.py").write_text((BENCH / "run_all.py").read_text())
    (fake / "bench_fit.py").write_text(
        "import argparse, json\n"
        "p = argparse.ArgumentParser(); p.add_argument('--quick', action='store_true')\n"
        "p.add_argument('--json'); a = p.parse_args()\n"
        "json.dump({'ratios': {'tfkit_fit_vs_keras_fit_same_spe': 0.95, 'odd_vs_even': 1.5},\n"
        "           'runs': {'tfkit_fit_vs_keras_fit_same_spe': [1.0, 0.8, 0.95]},\n"
        "           'figures': {'demo_start_to_first_step_s': 7.5,\n"
        "                       'demo_start_to_first_step_s_runs': [7.0, 8.0, 7.5, 9.0],\n"
        "                       'unrelated_figure': 3},\n"
        "           'machine': {'cpus': 2, 'cpu_model': 'Fake CPU'}}, open(a.json, 'w'))\n"
    )
    (fake / "bench_zbroken.py").write_text("import sys; sys.exit(3)\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "fake")
    commit = _git(repo, "rev-parse", "HEAD")
    page = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, str(fake / "run_all.py"), "--quick", "--json", str(tmp_path / "a.json"),
         "--results", str(page)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # one benchmark failed
    text = page.read_text()
    assert f"- commit: `{commit}`" in text  # a clean tree: no +changes
    assert "- cpu model: Fake CPU" in text and "- mode: quick" in text
    assert re.search(r"^- date: \d{4}-\d{2}-\d{2}$", text, re.M)
    rows = {line.split("|")[2].strip(" `"): line for line in text.splitlines() if "| `" in line}
    # median over the listed runs, target met
    same = [c.strip() for c in rows["tfkit_fit_vs_keras_fit_same_spe"].split("|")]
    assert same[3] == "1.000, 0.800, 0.950" and same[4] == "0.950"
    assert same[5].startswith(">= 0.9 ") and same[6] == "yes"
    # a figure with a target and `<name>_runs`: median of four runs, target missed
    start = [c.strip() for c in rows["demo_start_to_first_step_s"].split("|")]
    assert start[4] == "7.750" and start[5].startswith("<= 5 ") and start[6] == "**no**"
    # a ratio without a target is informative; a figure without one is left out
    odd = [c.strip() for c in rows["odd_vs_even"].split("|")]
    assert odd[3] == "1.500" and odd[5] == "informative" and odd[6] == ""
    assert "unrelated_figure" not in text
    assert "Failed (no figures): `zbroken`" in text
    # an uncommitted change to the code is named; the results page itself is not one
    (fake / "bench_fit.py").write_text((fake / "bench_fit.py").read_text() + "\n")
    sys.path.insert(0, str(fake))
    try:
        import run_all as fake_run_all
    finally:
        sys.path.remove(str(fake))
        sys.modules.pop("run_all", None)
    assert fake_run_all.git_commit(fake) == f"{commit} +changes"
    _git(repo, "checkout", "-q", "--", ".")
    (fake / "RESULTS.md").write_text("old\n")
    _git(repo, "add", "benchmarks/RESULTS.md")
    _git(repo, "commit", "-qm", "results")
    (fake / "RESULTS.md").write_text("new\n")
    assert fake_run_all.git_commit(fake) == _git(repo, "rev-parse", "HEAD")
    assert fake_run_all.git_commit(tmp_path / "nowhere") == "unknown"


def test_bench_fit_reports_equal_settings_overhead_beside_the_default_gain(tmp_path, monkeypatch):
    """bench_fit's JSON: tfkit / bare fit at the steps_per_execution tfkit resolves to (its
    overhead) and tfkit / bare fit at Keras' default (the gain of its defaults), each the
    median of the per-run ratios listed under `runs`. The timed arms are stood in for by
    fixed rates (the real ones are `make bench`'s), so only the arithmetic and names run."""
    sys.path.insert(0, str(BENCH))
    try:
        import bench_fit
    finally:
        sys.path.remove(str(BENCH))
    seen_spe = []

    def keras_fit(x, y, xv, yv, epochs, seed, spe=1):
        seen_spe.append(spe)
        return {1: 100.0, 4: 200.0}[spe] + seed  # runs 0, 1, 2 -> +0, +1, +2

    def demo_keras(epochs, spe=1):
        seen_spe.append(("demo", spe))
        return 50.0 if spe == 1 else 80.0

    monkeypatch.setattr(bench_fit, "_keras_fit", keras_fit)
    monkeypatch.setattr(bench_fit, "_tfkit_fit", lambda *a: 180.0)
    monkeypatch.setattr(bench_fit, "_demo_keras", demo_keras)
    monkeypatch.setattr(bench_fit, "_demo_tfkit", lambda root, epochs: 72.0)
    starts = iter([(4.0, 900.0), (4.4, 950.0), (3.9, 900.0), (5.0, 910.0), (4.1, 900.0)])
    monkeypatch.setattr(bench_fit, "_start_up", lambda root: next(starts))
    bares = iter([3.0, 3.5, 2.5, 3.2, 3.3])
    monkeypatch.setattr(bench_fit, "_bare_import", lambda: next(bares))
    monkeypatch.setattr(bench_fit, "_precompile", lambda: None)
    monkeypatch.setattr(bench_fit, "_tfkit_steps_per_execution", lambda n, b: 4)
    monkeypatch.setattr(bench_fit, "_demo_train_count", lambda config: 1258)
    out = tmp_path / "fit.json"
    assert bench_fit.main(["--quick", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    ratios, runs = result["ratios"], result["runs"]
    assert runs["tfkit_fit_vs_keras_fit_same_spe"] == [
        0.9,
        round(180 / 201, 3),
        round(180 / 202, 3),
    ]
    assert ratios["tfkit_fit_vs_keras_fit_same_spe"] == round(180 / 201, 3)  # the median
    assert runs["tfkit_fit_vs_keras_default_fit"] == [1.8, round(180 / 101, 3), round(180 / 102, 3)]
    assert ratios["tfkit_fit_vs_keras_default_fit"] == round(180 / 101, 3)
    assert ratios["tfkit_demo_vs_keras_fit_same_spe"] == 0.9
    assert ratios["tfkit_demo_vs_keras_default_fit"] == 1.44
    assert result["figures"]["tfkit_steps_per_execution"] == 4
    # start-up: 5 pairs; own start-up = median of the per-pair differences, not the
    # difference of the medians (4.1 - 3.2 = 0.9)
    assert runs["demo_start_to_first_step_s"] == [4.0, 4.4, 3.9, 5.0, 4.1]
    assert runs["bare_import_s"] == [3.0, 3.5, 2.5, 3.2, 3.3]
    assert runs["own_start_s"] == [1.0, 0.9, 1.4, 1.8, 0.8]
    assert result["figures"]["own_start_s"] == 1.0
    assert result["figures"]["demo_start_to_first_step_s"] == 4.1
    assert result["figures"]["bare_import_s"] == 3.2
    assert result["figures"]["demo_peak_rss_mb"] == 950.0
    # every run timed the bare fit at both settings, and the demo likewise
    assert seen_spe.count(4) == 3 and seen_spe.count(1) == 3
    assert seen_spe.count(("demo", 4)) == 3 and seen_spe.count(("demo", 1)) == 3


def test_tfkit_steps_per_execution_is_what_tfkit_compiles_with():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_fit
    finally:
        sys.path.remove(str(BENCH))
    # 40 steps an epoch: the largest divisor <= 16 is 10; 313 steps (prime): 1
    assert bench_fit._tfkit_steps_per_execution(40 * 32, 32) == 10
    assert bench_fit._tfkit_steps_per_execution(80_000, 256) == 1
