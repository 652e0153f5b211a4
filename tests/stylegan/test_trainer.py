"""GAN losses, phases, EMA, replica parity and exact resume, on tiny networks."""

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from tfkit.config import ExperimentConfig, GanConfig
from tfkit.errors import UserError
from tfkit.stylegan import losses
from tfkit.stylegan.discriminator import Discriminator
from tfkit.stylegan.synthesis import Generator
from tfkit.stylegan.trainer import Trainer

TINY = dict(
    preset="shapes16",
    z_dim=8,
    w_dim=8,
    map_layers=1,
    channel_base=64,
    channel_max=8,
    batch=8,
    mbstd_group=2,
    kimg=0.048,
    tick_kimg=0.016,
    snapshot_ticks=1,
    grid=(2, 2),
)


def _data(n=32, res=8, seed=0):
    rs = np.random.RandomState(seed)
    x = rs.uniform(-1, 1, (n, res, res, 3)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, rs.randint(0, 3, n).astype("int32")))


def _cfg(**gan):
    return ExperimentConfig(name="tiny", gan=GanConfig(**{**TINY, **gan}))


def _trainer(tmp_path, strategy=None, resume=False, run="run", **gan):
    return Trainer(
        _cfg(**gan),
        tmp_path / run,
        dataset=_data(),
        strategy=strategy or tf.distribute.get_strategy(),
        resume=resume,
        log=lambda s: None,
    )


def test_nonsaturating_losses():
    logits = tf.constant([[-2.0], [0.0], [3.0]])
    np.testing.assert_allclose(
        losses.g_main_loss(logits), np.log1p(np.exp([2.0, 0.0, -3.0])), rtol=1e-6
    )
    np.testing.assert_allclose(
        losses.d_main_loss(logits, -logits), 2 * np.log1p(np.exp([2.0, 0.0, -3.0])), rtol=1e-6
    )


def test_r1_penalty_matches_per_example_gradients():
    D = Discriminator(8, channel_base=64, channel_max=8, mbstd_group=1)
    x = tf.random.normal([3, 8, 8, 3], seed=1)
    penalty, _ = losses.r1_penalty(D, x)
    for i in range(3):
        xi = x[i : i + 1]
        with tf.GradientTape() as tape:
            tape.watch(xi)
            out = D(xi)[0, 0]
        g = tape.gradient(out, xi).numpy()
        np.testing.assert_allclose(penalty[i], np.sum(g**2), rtol=1e-4)


def test_path_length_matches_jacobian():
    G = Generator(8, z_dim=4, w_dim=4, mapping_layers=1, channel_base=32, channel_max=4)
    ws = G.mapping(tf.random.normal([2, 4], seed=2))
    seed = tf.constant([7, 8])
    lengths = losses.path_lengths(G.synthesis, ws, seed, noise_mode="const").numpy()
    y = (tf.random.stateless_normal([2, 8, 8, 3], seed) / 8.0).numpy()
    for i in range(2):
        wi = ws[i : i + 1]
        with tf.GradientTape() as tape:
            tape.watch(wi)
            img = G.synthesis(wi, noise_mode="const")
        jac = tape.jacobian(img, wi).numpy()[0]  # [8, 8, 3, 1, num_ws, w_dim]
        jty = np.einsum("hwc,hwcnlk->lk", y[i], jac)
        np.testing.assert_allclose(
            lengths[i], math.sqrt(np.mean(np.sum(jty**2, axis=1))), rtol=1e-3
        )
    np.testing.assert_allclose(losses.pl_penalty(tf.constant([1.0, 3.0]), 2.0), [1.0, 1.0])


def test_lazy_regularization_and_ema_beta():
    lr, betas = losses.lazy_regularization(0.0025, (0.0, 0.99), 16)
    assert lr == pytest.approx(0.0025 * 16 / 17) and betas == (
        0.0,
        pytest.approx(0.99 ** (16 / 17)),
    )
    assert losses.ema_beta(32, 10.0, 0.0, 0) == pytest.approx(0.5 ** (32 / 10000))
    assert losses.ema_beta(64, 500.0, 0.05, 20000) == pytest.approx(
        0.5 ** (64 / 1000)
    )  # ramp-up limits


def test_lr_decay_schedules():
    assert [losses.lr_factor("none", n, 100) for n in (0, 50, 100)] == [1.0, 1.0, 1.0]
    assert [losses.lr_factor("linear", n, 100) for n in (0, 25, 100, 150)] == [1, 0.75, 0, 0]
    cosine = [losses.lr_factor("cosine", n, 100, start=0.5) for n in (0, 50, 75, 100)]
    assert cosine == pytest.approx([1.0, 1.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="step"):
        losses.lr_factor("step", 1, 100)


def test_lr_decay_reaches_the_optimizers_and_survives_resume(tmp_path):
    gan = dict(kimg=0.048, lr_decay="linear", g_reg_interval=4, d_reg_interval=16)
    t = _trainer(tmp_path, **gan)
    g_base, d_base = t._base_lrs
    assert float(t.g_opt.learning_rate) == pytest.approx(g_base)
    t.train_iteration()  # at nimg 0: full rate
    assert float(t.g_opt.learning_rate) == pytest.approx(g_base)
    t.train_iteration()  # at nimg 8 of 48
    assert float(t.g_opt.learning_rate) == pytest.approx(g_base * (1 - 8 / 48))
    assert float(t.d_opt.learning_rate) == pytest.approx(d_base * (1 - 8 / 48))
    t.save(wait=True)
    resumed = _trainer(tmp_path, resume=True, **gan)
    resumed.train_iteration()  # at nimg 16
    assert float(resumed.d_opt.learning_rate) == pytest.approx(d_base * (1 - 16 / 48))


def test_phases_intervals_scaling_and_ema_update(tmp_path):
    t = _trainer(tmp_path, g_reg_interval=4, d_reg_interval=16, lr=0.002)
    names = {s: [p.name for p in t.active_phases(s)] for s in (0, 1, 4, 16)}
    assert names[0] == ["G-main", "G-reg", "D-main", "D-reg"]
    assert names[1] == ["G-main", "D-main"]
    assert names[4] == ["G-main", "G-reg", "D-main"]
    assert names[16] == names[0]
    assert float(t.g_opt.learning_rate) == pytest.approx(0.002 * 0.8)
    assert float(t.g_opt.beta_2) == pytest.approx(0.99**0.8)
    assert float(t.d_opt.learning_rate) == pytest.approx(0.002 * 16 / 17)
    t2 = _trainer(tmp_path, run="r2", pl_weight=0.0, gamma=0.0)
    assert [p.name for p in t2.active_phases(0)] == ["G-main", "D-main"]
    # EMA: p_ema <- p + (p_ema - p) * beta
    p, p_ema = t.G.trainable_variables[0], t.G_ema.trainable_variables[0]
    p.assign(tf.ones_like(p))
    p_ema.assign(tf.zeros_like(p_ema))
    t._ema_fn(tf.constant(0.25))
    np.testing.assert_allclose(p_ema.numpy(), 0.75)


def _copy(dst, src):
    for a, b in zip(dst.weights, src.weights, strict=True):
        a.assign(b)


def _assert_same_phases(a_trainer, b_trainer, rel: float) -> None:
    """D-main, G-main and D-reg on the same real batch give the same statistics and G/D
    weights (within `rel` / 1e-5) in both trainers."""
    reals, labels = a_trainer.next_reals()
    for name in ("D-main", "G-main", "D-reg"):
        a = a_trainer.run_phase(name, a_trainer.make_inputs(name, reals, labels))
        b = b_trainer.run_phase(name, b_trainer.make_inputs(name, reals, labels))
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=rel, abs=1e-6), k
    for net in ("G", "D"):
        pairs = zip(getattr(a_trainer, net).weights, getattr(b_trainer, net).weights, strict=True)
        diff = max(np.max(np.abs(x.numpy() - y.numpy())) for x, y in pairs)
        assert diff <= 1e-5, (net, diff)


def test_two_replicas_match_one(tmp_path, two_replicas):
    gan = dict(noise_mode="const", style_mixing=0.0, mbstd_group=1)
    one = _trainer(tmp_path, run="one", **gan)
    two = _trainer(tmp_path, two_replicas, run="two", **gan)
    for net in ("G", "D", "G_ema"):
        _copy(getattr(two, net), getattr(one, net))
    _assert_same_phases(one, two, rel=1e-4)


def _state(t):
    return [
        v.numpy()
        for v in t.G.weights + t.D.weights + t.G_ema.weights + t.g_opt.variables + t.d_opt.variables
    ]


def _tb_steps(run_dir) -> dict[str, list[int]]:
    """The TensorBoard steps of every tag of a run, in the order they were written."""
    steps: dict[str, list[int]] = {}
    from tfkit.runs import TENSORBOARD_DIR

    events = (run_dir / TENSORBOARD_DIR).glob("events.*")
    for path in sorted(events, key=lambda p: p.stat().st_mtime):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(event.step)
    return steps


def test_signal_checkpoint_then_resume_is_exact(tmp_path):
    """SIGTERM mid-tick, resume, Ctrl-C, resume to the end: the same weights, optimizer
    state, ADA probability and accumulator as the uninterrupted run, each signal's status
    and the handler from before put back, and TensorBoard steps in images, each logged once.
    ADA is on: a run without augmentation saves and restores a subset of this state."""
    import signal

    gan = dict(
        g_reg_interval=2,
        d_reg_interval=3,
        ema_kimg=0.01,
        ema_rampup=0.0,  # G_ema far from G
        augment="ada",
        ada_kimg=1.0,  # p starts at 0.5 and moves by 0.032 every 4 iterations
        ada_interval=4,
    )

    def new_run(run):
        trainer = _trainer(tmp_path, run=run, **gan)
        trainer.augment_pipe.p.assign(0.5)  # D sees augmented images from the start
        return trainer

    def run_until(trainer, signum, step) -> str:
        before = signal.getsignal(signum)
        status = trainer.run(
            hook=lambda tr: signal.raise_signal(signum) if int(tr.step.numpy()) == step else None
        )
        assert signal.getsignal(signum) is before  # the handler from before the run is back
        return status

    full = new_run("full")
    assert full.run() == "done"
    assert int(full.nimg.numpy()) == 48 and int(full.step.numpy()) == 6
    part = new_run("part")
    assert run_until(part, signal.SIGTERM, 3) == "stopped"
    assert int(part.ada_count.numpy()) > 0  # the checkpoint holds a partial interval
    resumed = _trainer(tmp_path, run="part", resume=True, **gan)
    assert int(resumed.nimg.numpy()) == 24 and int(resumed.step.numpy()) == 3
    assert run_until(resumed, signal.SIGINT, 5) == "interrupted"
    resumed = _trainer(tmp_path, run="part", resume=True, **gan)
    assert int(resumed.nimg.numpy()) == 40 and int(resumed.step.numpy()) == 5
    assert resumed.run() == "done"
    worst = max(np.max(np.abs(a - b)) for a, b in zip(_state(full), _state(resumed), strict=True))
    assert worst <= 1e-5
    assert float(full.pl_mean.numpy()) == pytest.approx(float(resumed.pl_mean.numpy()), abs=1e-6)
    p_full, p_resumed = float(full.augment_pipe.p.numpy()), float(resumed.augment_pipe.p.numpy())
    assert p_full != 0.5 and p_resumed == p_full
    assert float(resumed.ada_sum.numpy()) == float(full.ada_sum.numpy())
    ticks = [json.loads(line) for line in (tmp_path / "part" / "metrics.jsonl").open()]
    assert [t["kimg"] for t in ticks] == [0.016, 0.024, 0.04, 0.048]
    assert "augment_p" in ticks[0] and "augment_rt" in ticks[0]
    tb = _tb_steps(tmp_path / "part")
    assert tb["img_per_sec"] == [16, 24, 40, 48]  # images, before and after each resume
    assert tb["fakes"] == [0, 16, 24, 40, 48]  # the initial grid once, then each snapshot
    assert list((tmp_path / "full").glob("fakes*.png"))


def test_bad_input_errors(tmp_path):
    with pytest.raises(UserError, match="divisible by the number of replicas"):
        from tfkit.stylegan.presets import resolve_options

        resolve_options(GanConfig(**{**TINY, "batch": 7}), 8, replicas=2)
    with pytest.raises(UserError, match="mbstd_group"):
        resolve_options(GanConfig(**{**TINY, "batch": 6, "mbstd_group": 4}), 8)
    with pytest.raises(UserError, match="power of two.*=48"):
        resolve_options(GanConfig(**TINY), 48)
    with pytest.raises(UserError, match="no class labels"):
        resolve_options(GanConfig(**{**TINY, "conditional": True}), 8, num_classes=0)
    with pytest.raises(ValueError, match="Valid presets: auto, stylegan2"):
        GanConfig(preset="paper128")
    rect = tf.data.Dataset.from_tensor_slices(
        (np.zeros((4, 8, 16, 3), "float32"), np.zeros(4, "int32"))
    )
    with pytest.raises(UserError, match="square"):
        Trainer(_cfg(), tmp_path / "r", dataset=rect, strategy=tf.distribute.get_strategy())


def test_presets_published_values():
    from tfkit.stylegan.presets import PRESETS, auto_preset, resolve_options

    assert PRESETS["paper256"]["batch"] == 64 and PRESETS["paper256"]["gamma"] == 1.0
    assert PRESETS["cifar"]["ema_kimg"] == 500 and PRESETS["cifar"]["pl_weight"] == 0
    assert PRESETS["stylegan2"]["map_layers"] == 8 and PRESETS["paper1024"]["channel_base"] == 65536
    a = auto_preset(256, 8)
    assert (
        a["batch"] == 64
        and a["mbstd_group"] == 4
        and a["gamma"] == pytest.approx(0.0002 * 256**2 / 64)
    )
    opts = resolve_options(GanConfig(preset="cifar", gamma=0.05, batch=16), 32)
    assert opts.gamma == 0.05 and opts.batch == 16 and opts.lr == 0.0025 and opts.map_layers == 2
    # the tick and snapshot intervals are preset data: the reference's 4 kimg and 50 ticks,
    # the CPU presets' 1 kimg and 5 ticks; gan.* overrides them
    assert (opts.tick_kimg, opts.snapshot_ticks) == (4.0, 50)
    assert all(p["tick_kimg"] > 0 and p["snapshot_ticks"] >= 1 for p in PRESETS.values())
    small = resolve_options(GanConfig(preset="shapes16"), 16)
    assert (small.tick_kimg, small.snapshot_ticks) == (1.0, 5)
    small = resolve_options(GanConfig(preset="shapes16", tick_kimg=2, snapshot_ticks=3), 16)
    assert (small.tick_kimg, small.snapshot_ticks) == (2, 3)
    # the ADA defaults of an older run's options file (and of AugmentPipe) are GanConfig's
    from dataclasses import fields

    from tfkit.stylegan.augment import AugmentPipe
    from tfkit.stylegan.presets import GanOptions

    defaults = {f.name: f.default for f in fields(GanOptions)}
    for name in ("augpipe", "ada_target", "ada_kimg", "ada_interval"):
        assert defaults[name] == GanConfig.model_fields[name].default, name
    assert AugmentPipe().augpipe == GanConfig().augpipe


@pytest.mark.parametrize(
    "precision", ["float16", pytest.param("bfloat16", marks=pytest.mark.property)]
)
def test_mixed_precision_step_is_finite_and_close_to_float32(tmp_path, precision):
    gan = dict(g_reg_interval=1, d_reg_interval=1)  # every phase in the first iteration
    mixed = _trainer(tmp_path, run=precision, mixed_precision=precision, **gan)
    assert mixed.opts.num_fp16_res == 4 and mixed.opts.clamp == 256.0
    # 8x8: the top block computes in reduced precision, the 4x4 block and D's epilogue not
    assert mixed.G.synthesis.b8_conv1.dtype_policy.name == f"mixed_{precision}"
    assert mixed.G.synthesis.b4_conv1.dtype_policy.name == "float32"
    assert mixed.D.b8_conv0.dtype_policy.name == f"mixed_{precision}"
    assert mixed.D.conv.dtype_policy.name == "float32"
    assert all(v.dtype == "float32" for v in mixed.G.weights + mixed.D.weights)
    full = _trainer(tmp_path, run="fp32", **gan)
    a, b = mixed.train_iteration(), full.train_iteration()
    assert set(a) == set(b) and len(a) == 8
    for k in a:
        assert math.isfinite(a[k]), k
        assert a[k] == pytest.approx(b[k], rel=0.05, abs=0.02), k
    img = mixed.G(tf.random.normal([2, 8], seed=0))
    assert img.dtype == tf.float32 and mixed.D(img).dtype == tf.float32
    assert np.isfinite(img.numpy()).all()


def test_gradient_accumulation_matches_full_batch(tmp_path):
    gan = dict(noise_mode="const", style_mixing=0.0, mbstd_group=2)
    full = _trainer(tmp_path, run="full", **gan)
    acc = _trainer(tmp_path, run="acc", batch_per_replica=4, **gan)
    assert (full.rounds, acc.rounds) == (1, 2) and acc.opts.batch_per_replica == 4
    for net in ("G", "D", "G_ema"):
        _copy(getattr(acc, net), getattr(full, net))
    initial_d = [v.numpy() for v in full.D.weights]
    _assert_same_phases(full, acc, rel=1e-5)
    moved = max(
        np.max(np.abs(x.numpy() - y)) for x, y in zip(acc.D.weights, initial_d, strict=True)
    )
    assert moved > 1e-4  # the steps did train
    # a round that does not divide the per-replica batch is refused up front
    from tfkit.stylegan.presets import resolve_options

    with pytest.raises(UserError, match=r"`gan.batch_per_replica` \(3\) must divide"):
        resolve_options(GanConfig(**{**TINY, "batch_per_replica": 3}), 8)


def test_non_chief_worker_writes_only_to_a_removed_temp_dir(tmp_path, monkeypatch):
    import json
    import tempfile

    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}})
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    lines = []
    t = Trainer(
        _cfg(kimg=0.016, tick_kimg=0.008, pl_weight=0.0, gamma=0.0),
        tmp_path / "run",
        dataset=_data(),
        strategy=tf.distribute.get_strategy(),
        log=lines.append,
    )
    assert not t.chief and t.out_dir.parent == scratch
    assert t.run() == "done"
    assert not (tmp_path / "run").exists()  # the chief's run dir is left to the chief
    # the worker's own checkpoints, grids and logs went to a temp dir, removed at the end
    assert t.out_dir.name.startswith("tfkit-worker1") and not t.out_dir.exists()
    assert not [p for p in scratch.iterdir() if p.name.startswith("tfkit-")]
    sums = t.weights_checksums()
    assert lines[-1] == "final weights checksum: " + " ".join(
        f"{k} {v:.6f}" for k, v in sums.items()
    )
    ticks = [line for line in lines if line.startswith("tick ")]
    assert len(ticks) == 2 and all("peak rss" in line for line in ticks)
    # path length and R1 are off: their statistics are left out, not printed as nan
    assert all(" G " in line and " D " in line for line in ticks)
    assert not any(" pl " in line or " R1 " in line or "nan" in line for line in ticks)


def test_snapshot_metrics_and_memory_are_logged(tmp_path, monkeypatch):
    import json

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from .test_metrics import saved_classifier

    monkeypatch.setenv("TFKIT_METRICS_CACHE", str(tmp_path / "cache"))
    clf_dir, _ = saved_classifier(tmp_path / "clf")
    t = _trainer(
        tmp_path,
        kimg=0.016,
        tick_kimg=0.008,
        snapshot_ticks=2,
        pl_weight=0.0,
        gamma=0.0,
        metrics=["fid", "kid"],
        metrics_features=f"classifier:{clf_dir}",
        metrics_num_images=16,
    )
    assert t.run() == "done"
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    ticks = [r for r in records if "sec_per_kimg" in r]
    snaps = [r for r in records if "fid" in r]
    assert len(ticks) == 2 and all(r["peak_rss_gb"] > 0.1 for r in ticks)
    assert "peak_gpu_mem_gb" not in ticks[0]  # CPU only
    assert [r["kimg"] for r in snaps] == [0.016]  # the snapshot at tick 2
    assert snaps[0]["fid"] > 0 and math.isfinite(snaps[0]["kid"])
    # each distance names the network that computed it
    assert snaps[0]["fid_network"] == snaps[0]["kid_network"] == f"classifier:{clf_dir}"
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1  # real statistics cached
    acc = EventAccumulator(str(tmp_path / "run" / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"] + acc.Tags()["tensors"]
    assert "Metrics/fid" in tags and "peak_rss_gb" in tags


def test_max_minutes_ends_training_early_and_counts_across_resumes(tmp_path, monkeypatch):
    import itertools
    import types

    from tfkit.stylegan import trainer as trainer_mod

    clock = itertools.count(0.0, 7.0)  # every reading of the clock: 7 seconds later
    monkeypatch.setattr(trainer_mod, "time", types.SimpleNamespace(time=lambda: next(clock)))
    lines = []
    cfg = _cfg(kimg=10.0, tick_kimg=0.016, snapshot_ticks=100, max_minutes=1.0)
    t = Trainer(cfg, tmp_path / "run", dataset=_data(), log=lines.append)
    assert t.opts.max_minutes == 1.0
    assert t.run() == "done"  # a normal end, long before 10 kimg
    nimg = int(t.nimg.numpy())
    assert 0 < nimg < 10_000
    assert float(t.train_seconds.numpy()) >= 60.0
    assert any(line.startswith("gan.max_minutes (1) reached at kimg") for line in lines)
    # the end writes the last snapshot and checkpoint, as at kimg
    assert (tmp_path / "run" / f"fakes{nimg:09d}.png").exists()
    assert (tmp_path / "run" / "checkpoints" / f"ckpt-{int(t.step.numpy())}.index").exists()
    lines.clear()
    again = Trainer(cfg, tmp_path / "run", dataset=_data(), resume=True, log=lines.append)
    assert again.run() == "done"
    assert int(again.nimg.numpy()) == nimg  # the time was spent already: nothing more
    assert "gan.max_minutes (1) was reached already" in lines


@pytest.mark.parametrize("metric_seconds", [70.0, 700.0])
def test_max_minutes_does_not_count_the_snapshot_metrics(tmp_path, monkeypatch, metric_seconds):
    """The run ends at the same iteration whether the snapshot metrics take no time or
    longer than the whole budget: gan.max_minutes counts training only."""
    import types

    from tfkit.stylegan import trainer as trainer_mod

    ends = []
    for name, spent in (("free", 0.0), ("slow", metric_seconds)):
        now = [0.0]

        def tick(now=now) -> float:
            now[0] += 7.0  # every reading of the clock: 7 seconds later
            return now[0]

        monkeypatch.setattr(trainer_mod, "time", types.SimpleNamespace(time=tick))
        cfg = _cfg(kimg=10.0, tick_kimg=0.016, snapshot_ticks=1, max_minutes=1.0)
        t = Trainer(cfg, tmp_path / name, dataset=_data(), log=lambda _: None)

        def measure(spent=spent, now=now) -> None:
            now[0] += spent

        t._evaluate_metrics = measure
        assert t.run() == "done"
        ends.append((int(t.nimg.numpy()), float(t.train_seconds.numpy())))
    assert ends[0] == ends[1]
    assert 0 < ends[0][0] < 10_000 and ends[0][1] >= 60.0


def test_resume_reads_checkpoints_written_before_max_minutes(tmp_path):
    t = _trainer(tmp_path)
    t.step.assign(2)
    t.nimg.assign(16)
    older = {k: v for k, v in t._legacy_checkpoint_items().items() if k != "train_seconds"}
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(**older), str(tmp_path / "run" / "checkpoints"), max_to_keep=1
    )
    manager.save(checkpoint_number=2)
    resumed = _trainer(tmp_path, resume=True)
    assert int(resumed.nimg.numpy()) == 16 and int(resumed.step.numpy()) == 2
    assert float(resumed.train_seconds.numpy()) == 0.0


def test_an_original_arch_run_from_before_per_channel_noise_resumes_with_its_networks(
    tmp_path, monkeypatch
):
    """A `gan.arch: stylegan` run whose options predate `noise_per_channel` (one noise
    strength per layer) resumes with those networks and trains on; a new run gets the
    reference's per-channel strengths."""
    import dataclasses
    import json

    import tfkit.stylegan.trainer as trainer_module

    def strengths(t):
        return sorted({tuple(v.shape) for v in t.G.weights if "strength" in v.path})

    original = trainer_module.resolve_options
    with monkeypatch.context() as patch:  # the older tfkit's networks
        patch.setattr(
            trainer_module,
            "resolve_options",
            lambda *a, **k: dataclasses.replace(original(*a, **k), noise_per_channel=False),
        )
        old = _trainer(tmp_path, arch="stylegan", kimg=0.016)
        assert old.run() == "done"
    options = tmp_path / "run" / "gan_options.json"
    saved = json.loads(options.read_text())
    del saved["noise_per_channel"]
    options.write_text(json.dumps(saved))
    resumed = _trainer(tmp_path, resume=True, arch="stylegan", kimg=0.032)
    assert strengths(resumed) == [()] and int(resumed.nimg.numpy()) == 16
    for a, b in zip(old.G.weights, resumed.G.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert resumed.run() == "done" and int(resumed.nimg.numpy()) == 32
    assert strengths(_trainer(tmp_path, run="new", arch="stylegan")) == [(8,)]
