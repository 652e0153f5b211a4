"""Mapping, synthesis, generator and discriminator: shapes, truncation, style mixing."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfkit.stylegan import losses, ops
from tfkit.stylegan.discriminator import Discriminator
from tfkit.stylegan.mapping import MappingNetwork
from tfkit.stylegan.synthesis import Generator, SynthesisNetwork, num_ws_for

SMALL = dict(channel_base=128, channel_max=16)


@pytest.mark.parametrize("arch", ["stylegan2", "stylegan"])
@pytest.mark.parametrize("resolution", [8, 16, 64])
def test_generator_and_discriminator_shapes(arch, resolution):
    G = Generator(resolution, z_dim=16, w_dim=16, mapping_layers=2, arch=arch, **SMALL)
    D = Discriminator(resolution, arch=arch, mbstd_group=2, **SMALL)
    assert G.num_ws == num_ws_for(resolution) == 2 * int(np.log2(resolution)) - 2
    img = G(tf.random.normal([4, 16]))
    assert img.shape == (4, resolution, resolution, 3)
    logits = D(img)
    assert logits.shape == (4, 1) and np.all(np.isfinite(logits))
    # config round trip
    G2 = Generator.from_config(G.get_config())
    G2.set_weights(G.get_weights())
    z = tf.random.normal([2, 16])
    np.testing.assert_allclose(G2(z, noise_mode="const"), G(z, noise_mode="const"), atol=1e-5)
    D2 = Discriminator.from_config(D.get_config())
    assert D2.count_params() == D.count_params()


def test_bad_resolution_and_arch():
    with pytest.raises(ValueError, match="power of two.*resolution=48"):
        SynthesisNetwork(48)
    with pytest.raises(ValueError, match="arch"):
        Discriminator(32, arch="biggan")


def test_mapping_truncation_and_w_avg():
    m = MappingNetwork(8, 8, num_ws=6, num_layers=2)
    m.build()
    z = tf.random.normal([5, 8])
    ws = m(z)
    assert ws.shape == (5, 6, 8)
    np.testing.assert_allclose(ws[:, 0], ws[:, 5])  # broadcast
    m.update_w_avg(tf.reduce_mean(ws[:, 0], 0))
    np.testing.assert_allclose(m.w_avg, 0.005 * tf.reduce_mean(ws[:, 0], 0), rtol=1e-4)
    m.w_avg.assign(tf.range(8, dtype=tf.float32))
    t = m(z, psi=0.0)
    np.testing.assert_allclose(t, np.broadcast_to(np.arange(8.0), (5, 6, 8)), atol=1e-6)
    half = m(z, psi=0.0, cutoff=2)
    np.testing.assert_allclose(half[:, :2], t[:, :2])
    np.testing.assert_allclose(half[:, 2:], ws[:, 2:])


def test_conditional_mapping_and_projection_discriminator():
    G = Generator(8, z_dim=8, w_dim=8, num_classes=3, mapping_layers=1, **SMALL)
    D = Discriminator(8, num_classes=3, mbstd_group=2, **SMALL)
    z = tf.random.normal([2, 8])
    a, b = (
        G(z, tf.constant([0, 0]), noise_mode="const"),
        G(z, tf.constant([1, 2]), noise_mode="const"),
    )
    assert not np.allclose(a, b)  # the label changes the image
    assert D(a, tf.constant([0, 1])).shape == (2, 1)
    with pytest.raises(ValueError, match="conditional"):
        D(a)


def test_style_mixing_switches_at_crossover():
    G = Generator(16, z_dim=8, w_dim=8, mapping_layers=2, **SMALL)
    z1, z2 = tf.random.normal([3, 8], seed=1), tf.random.normal([3, 8], seed=2)
    ws1, ws2 = G.mapping(z1), G.mapping(z2)
    mixed = G.mix(ws1, ws2, tf.constant([0, 2, G.num_ws]))
    np.testing.assert_allclose(mixed[0], ws2[0])  # all from z2
    np.testing.assert_allclose(mixed[1, :2], ws1[1, :2])
    np.testing.assert_allclose(mixed[1, 2:], ws2[1, 2:])
    np.testing.assert_allclose(mixed[2], ws1[2])  # no mixing
    img = G(z1, mix_z=z2, mix_cutoff=tf.constant([G.num_ws] * 3), noise_mode="const")
    np.testing.assert_allclose(img, G(z1, noise_mode="const"), atol=1e-6)


def test_noise_seed_reproducible():
    G = Generator(8, z_dim=8, w_dim=8, mapping_layers=1, **SMALL)
    for v in G.weights:
        if "strength" in v.path:
            v.assign(1.0)
    z = tf.random.normal([2, 8])
    seed = tf.constant([3, 4])
    np.testing.assert_array_equal(G(z, seed=seed), G(z, seed=seed))
    assert not np.allclose(G(z, seed=seed), G(z, seed=tf.constant([5, 6])))


def test_checkpoint_tracks_every_weight(tmp_path):
    G = Generator(16, z_dim=8, w_dim=8, mapping_layers=2, **SMALL)
    D = Discriminator(16, mbstd_group=2, **SMALL)
    path = tf.train.Checkpoint(G=G, D=D).write(str(tmp_path / "ck"))
    saved = [n for n, _ in tf.train.list_variables(path) if n.startswith(("G/", "D/"))]
    assert len(saved) == len(G.weights) + len(D.weights)
    G2 = Generator(16, z_dim=8, w_dim=8, mapping_layers=2, **SMALL)
    tf.train.Checkpoint(G=G2).read(path).expect_partial()
    for a, b in zip(G.weights, G2.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("arch, per_channel", [("stylegan", True), ("stylegan2", False)])
def test_noise_strength_per_channel_in_the_original_arch_only(arch, per_channel, tmp_path):
    """As in the reference: StyleGAN scales the noise per channel, StyleGAN2 per layer. A
    GAN run's networks follow its options; options and a G_ema.keras saved before the
    per-channel strength (no `noise_per_channel`) still build and load with one per layer."""
    from tfkit.config import validate
    from tfkit.stylegan.checkpoints import load_options
    from tfkit.stylegan.presets import resolve_options
    from tfkit.stylegan.trainer import build_networks

    gan = validate({"gan": {"preset": "shapes16", "arch": arch, **SMALL}}).gan
    opts = resolve_options(gan, 8)
    assert opts.noise_per_channel == per_channel
    G, _ = build_networks(opts)

    def strengths(model):
        return [tuple(v.shape) for v in model.weights if "strength" in v.path]

    assert strengths(G) and all((len(s) == 1) == per_channel for s in strengths(G))
    G.save(tmp_path / "G.keras")
    assert strengths(keras.saving.load_model(tmp_path / "G.keras")) == strengths(G)
    # written before the option existed: one strength per layer, from options and from .keras
    older = {k: v for k, v in opts.as_dict().items() if k != "noise_per_channel"}
    (tmp_path / "gan_options.json").write_text(json.dumps(older))
    assert load_options(tmp_path).noise_per_channel is False
    config = G.get_config()
    del config["noise_per_channel"]
    old = Generator.from_config(config)
    assert all(s == () for s in strengths(old)) and len(strengths(old)) == len(strengths(G))


def _docs_preset_rows() -> dict[str, list[str]]:
    """The StyleGAN guide's `gan.preset` table: preset name -> its cells after the name."""
    import os
    import re

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "docs", "guides", "stylegan.md"), encoding="utf-8") as f:
        return {
            m.group(1): [c.strip() for c in m.group(2).split("|")]
            for m in re.finditer(r"^\| `(\w+)` \|(.*)\|$", f.read(), re.M)
        }


def test_docs_preset_table_lists_every_preset_with_its_augmentation():
    """The StyleGAN guide's `gan.preset` table has a row per preset and its ADA setting."""
    from tfkit.stylegan.presets import PRESETS

    rows = _docs_preset_rows()
    assert set(PRESETS) <= set(rows)
    for name, preset in PRESETS.items():
        assert rows[name][-1] == preset["augment"], name


# every preset with a fixed network (`auto` depends on the resolution and the GPU count)
FIXED_PRESETS = ["cifar", "paper256", "paper512", "paper1024", "stylegan2", "shapes16", "shapes32"]


@pytest.mark.parametrize("name", FIXED_PRESETS)
def test_preset_parameter_counts_equal_the_docs_table(name):
    """The trainable parameter counts of G and D that the StyleGAN guide's preset table
    prints, built
    at the preset's resolution (about 15 s for the 1024x1024 presets on 2 cores)."""
    from tfkit.config import validate
    from tfkit.stylegan.presets import resolve_options
    from tfkit.stylegan.trainer import build_networks

    row = _docs_preset_rows()[name]
    resolution = int(row[1])
    G, D = build_networks(resolve_options(validate({"gan": {"preset": name}}).gan, resolution))
    counts = [sum(int(np.prod(w.shape)) for w in m.trainable_weights) for m in (G, D)]
    assert [f"{c:,}" for c in counts] == row[2:4], name


@pytest.mark.parametrize("arch", ["stylegan2", "stylegan"])
@pytest.mark.parametrize("resolution", [8, 32])
def test_networks_equal_with_direct_and_winograd_convolutions(arch, resolution):
    """G's image, D's logits, G's gradients and D's R1 penalty (a second-order gradient)
    do not depend on how the 3x3 convolutions are computed (float32 rounding only)."""
    keras.utils.set_random_seed(resolution)
    G = Generator(resolution, z_dim=16, w_dim=16, mapping_layers=2, arch=arch, **SMALL)
    D = Discriminator(resolution, arch=arch, mbstd_group=2, **SMALL)
    z = tf.random.normal([4, 16], seed=3)
    reals = tf.random.normal([4, resolution, resolution, 3], seed=4)
    out = {}
    for name in ("direct", "auto"):
        with ops.conv_algorithm(name):
            with tf.GradientTape() as tape:
                img = G(z, noise_mode="const")
                logits = D(img)
                loss = tf.reduce_sum(logits)
            grads = tape.gradient(loss, G.trainable_variables)
            r1, _ = losses.r1_penalty(D, reals)
        out[name] = [img, logits, r1, *grads]

    # relative to each tensor's largest value; a logit, or the gradient of a bias or a noise
    # strength, is a sum over the batch and the pixels of many larger terms that mostly
    # cancel, so its rounding is relative to those terms, not to itself: 1e-4 of a logit and
    # of a bias or per-channel strength gradient (1.0e-5 measured for b8_act1/bias of the
    # original arch at 32x32 on an AMD EPYC), 1e-3 of a one-scalar-per-layer strength (1.5e-4
    # there, 1.1e-4 on an Intel CPU). A wrong transform moves every tensor by far more; the
    # images (4.3e-6 at most there) and the kernel gradients are held to 1e-5
    def tolerance(variable) -> float:
        if np.prod(variable.shape) == 1:
            return 1e-3
        return 1e-4 if variable.path.endswith(("bias", "strength")) else 1e-5

    tolerances = [1e-5, 1e-4, 1e-5] + [tolerance(v) for v in G.trainable_variables]
    for a, b, tol in zip(out["direct"], out["auto"], tolerances, strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert np.max(np.abs(a - b)) <= tol * max(np.max(np.abs(a)), 1e-30)
