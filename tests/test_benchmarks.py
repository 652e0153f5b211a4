"""Every benchmark follows the convention `make bench` relies on."""

import json
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
