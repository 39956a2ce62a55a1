"""Domain adaptation (CORAL, DANN), L2-SP and hybrid source+target data: mechanics, runs, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest

from support import fast_config, shifted_npz
from tlzoo.errors import ConfigError, DataError
from tlzoo.extensions import domain_adaptation as domain

# ---------------------------------------------------------------- mechanics


def test_gradient_reversal_negates_and_scales_gradients():
    import tensorflow as tf

    layer = domain.GradientReversal(0.5)
    x = tf.constant([[1.0, -2.0], [3.0, 4.0]])
    upstream = tf.constant([[1.0, 2.0], [3.0, 4.0]])

    @tf.function
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(layer(x) * upstream)
        return layer(x), tape.gradient(y, x)

    out, g = grad(x)
    np.testing.assert_array_equal(out.numpy(), x.numpy())  # identity forward
    np.testing.assert_allclose(g.numpy(), -0.5 * upstream.numpy())
    layer.set_lambda(2.0)  # a variable: the traced function sees the new value
    np.testing.assert_allclose(grad(x)[1].numpy(), -2.0 * upstream.numpy())
    assert domain.GradientReversal.from_config(layer.get_config()).get_config()["lambda_"] == 2.0


def test_grl_schedule_follows_ganin():
    assert domain.grl_schedule(0.0) == 0.0
    assert domain.grl_schedule(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    values = [domain.grl_schedule(p) for p in np.linspace(0, 1, 11)]
    assert all(b > a for a, b in zip(values, values[1:]))
    assert domain.grl_schedule(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)


def test_coral_loss_zero_for_same_covariance_positive_otherwise():
    rng = np.random.default_rng(0)
    fs = rng.normal(size=(50, 6)).astype(np.float32)
    assert float(domain.coral_loss(fs, fs)) == pytest.approx(0.0, abs=1e-7)
    # a mean shift is not a covariance change
    assert float(domain.coral_loss(fs, fs + 3.0)) == pytest.approx(0.0, abs=1e-5)
    ft = (rng.normal(size=(40, 6)) * np.array([1, 2, 1, 1, 3, 1])).astype(np.float32)
    expected = np.sum((np.cov(fs, rowvar=False) - np.cov(ft, rowvar=False)) ** 2) / (4 * 6 * 6)
    assert float(domain.coral_loss(fs, ft)) == pytest.approx(expected, rel=1e-4)
    assert expected > 0.05


def test_l2sp_penalty_zero_at_anchor_and_gradient_alpha_times_difference():
    import keras
    import tensorflow as tf

    w0 = np.array([[0.5, -1.0], [2.0, 0.0]], np.float32)
    w = keras.Variable(w0.copy())
    anchor = keras.Variable(w0.copy(), trainable=False)
    assert float(domain.l2sp_penalty([w], [anchor], 0.1)) == 0.0
    w.assign(w0 + np.array([[1.0, 0.0], [0.0, -2.0]], np.float32))
    with tf.GradientTape() as tape:
        p = domain.l2sp_penalty([w], [anchor], 0.1)
    assert float(p) == pytest.approx(0.05 * (1 + 4))
    np.testing.assert_allclose(tape.gradient(p, w.value).numpy(), 0.1 * (w.numpy() - w0), rtol=1e-6)


def test_domain_loss_behaves():
    import keras

    perfect = np.array([-8.0, -8.0, 8.0, 8.0], np.float32)  # source rows first, then target
    loss, acc = domain.domain_loss_and_accuracy(perfect, 2)
    assert float(loss) < 1e-3 and float(acc) == 1.0
    loss, acc = domain.domain_loss_and_accuracy(np.zeros(4, np.float32), 2)  # undecided: log 2
    assert float(loss) == pytest.approx(math.log(2), rel=1e-5) and float(acc) == 0.5
    loss, acc = domain.domain_loss_and_accuracy(-perfect, 2)
    assert float(loss) > 7 and float(acc) == 0.0
    head = domain.domain_classifier(8, hidden=4)
    assert head(keras.ops.zeros((3, 8))).shape == (3, 1)


def test_trainer_reverses_domain_gradient_into_backbone():
    """One DANN step: with lambda = 1 the backbone moves to *raise* the domain loss (reversal), while the
    domain head moves to lower it."""
    import keras
    import tensorflow as tf

    from tlzoo.model.assemble import build_model
    from tlzoo.plugin import get_plugin
    from tlzoo.zoo import build_backbone

    plugin = get_plugin("medical-imaging", dropout=0.0)
    backbone, spec, _ = build_backbone("mobilenet_025", None, (32, 32, 3))
    net = build_model(plugin, spec, backbone, (32, 32, 1), 32, 2)
    trainer = domain.AdaptationTrainer(net, backbone, method="dann", da_weight=1.0)
    trainer.grl.set_lambda(1.0)
    rng = np.random.default_rng(0)
    xs = rng.integers(0, 120, (8, 32, 32, 1)).astype(np.float32)
    xt = rng.integers(100, 255, (8, 32, 32, 1)).astype(np.float32)
    feats = trainer.features
    with tf.GradientTape() as tape:
        f = tf.concat([feats(xs), feats(xt)], 0)
        loss, _ = domain.domain_loss_and_accuracy(trainer.domain_head(trainer.grl(f)), 8)
    kernel = next(v for v in backbone.trainable_variables if "kernel" in v.path)
    g_rev, g_head = tape.gradient(loss, [kernel, trainer.domain_head.trainable_variables[0]])
    with tf.GradientTape() as tape:
        f = tf.concat([feats(xs), feats(xt)], 0)
        loss2, _ = domain.domain_loss_and_accuracy(trainer.domain_head(f), 8)
    g_plain, g_head2 = tape.gradient(loss2, [kernel, trainer.domain_head.trainable_variables[0]])
    np.testing.assert_allclose(g_rev.numpy(), -g_plain.numpy(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(g_head.numpy(), g_head2.numpy(), rtol=1e-5, atol=1e-8)  # head: not reversed
    assert float(np.abs(g_plain.numpy()).max()) > 0
    # the trainer trains the net's variables and the domain head's, nothing twice
    ids = [id(v) for v in trainer.trainable_variables]
    assert len(ids) == len(set(ids)) == len(net.trainable_variables) + len(trainer.domain_head.trainable_variables)
    assert keras.ops.shape(trainer(xs))[0] == 8


def test_hybrid_dataset_ratio_and_steps():
    from tlzoo.data import Split

    target = Split(np.zeros((40, 4, 4, 1), np.uint8), np.zeros(40, np.int64))
    source = Split(np.full((400, 4, 4, 1), 255, np.uint8), np.ones(400, np.int64))
    assert domain.hybrid_steps(40, 400, 0.75, 10) == 16  # 40 / (10 * 0.25)
    assert domain.hybrid_steps(40, 400, 1.0, 10) == 40  # source only: the source once
    ds = domain.hybrid_dataset(target, source, 0.75, 10, seed=1)
    ys = np.concatenate([y.numpy() for _, y in ds])
    assert len(ys) == 160
    assert 0.6 < ys.mean() < 0.9  # ~75% source
    only_target = np.concatenate([y.numpy() for _, y in domain.hybrid_dataset(target, source, 0.0, 10)])
    assert len(only_target) == 40 and only_target.sum() == 0
    with pytest.raises(ConfigError, match="within 0..1"):
        domain.hybrid_dataset(target, source, 1.5, 10)


# ---------------------------------------------------------------- bad input, before training


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(domain_adaptation="mmd", target_data="x.npz"), ConfigError,
     r"domain_adaptation must be one of \['coral', 'dann'\], got 'mmd'"),
    (dict(domain_adaptation="coral"), ConfigError, "needs unlabelled target images"),
    (dict(target_data="x.npz"), ConfigError, "does nothing without"),
    (dict(hybrid_source="s.npz", hybrid_ratio=1.5), ConfigError, "hybrid_ratio must be within 0..1.*1.5"),
    (dict(hybrid_source="s.npz", hybrid_ratio_end=-0.1), ConfigError, "hybrid_ratio_end must be within 0..1"),
    (dict(hybrid_ratio=0.3), ConfigError, "does nothing without --hybrid-source"),
    (dict(l2sp=0.1, hybrid_ratio=0.3), ConfigError, "no source-domain data"),
    (dict(l2sp=-1.0), ConfigError, "l2sp must be a finite number >= 0"),
    (dict(domain_adaptation="coral", target_data="x.npz", da_weight=float("nan")), ConfigError, "da_weight"),
    (dict(domain_adaptation="dann", target_data="missing.npz"), DataError, "does not exist"),
])
def test_bad_options_fail_before_training(tmp_path, scans_npz, kwargs, error, match):
    from tlzoo.train.recipe import adapt

    with pytest.raises(error, match=match):
        adapt(fast_config(data=str(scans_npz), out=str(tmp_path / "run"), **kwargs))
    assert not (tmp_path / "run").exists()


def test_channel_and_label_space_mismatch(tmp_path, scans_npz):
    from tlzoo.train.recipe import adapt

    rgb = shifted_npz(tmp_path / "rgb.npz", channels=3)
    with pytest.raises(DataError, match="3 channel.*source data 1.*Height and width may differ"):
        adapt(fast_config(data=str(scans_npz), out=str(tmp_path / "run"), domain_adaptation="coral",
                          target_data=str(rgb)))
    other = tmp_path / "other.npz"
    with np.load(scans_npz) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["class_names"] = np.array(["normal", "pneumonia"])
    np.savez(other, **arrays)
    with pytest.raises(DataError, match="share one label space"):
        adapt(fast_config(data=str(scans_npz), out=str(tmp_path / "run"), hybrid_source=str(other)))
    from tlzoo.plugin import get_plugin

    with pytest.raises(ConfigError, match="MultiWorkerMirroredStrategy.*--strategy one or mirrored"):
        domain.plan(fast_config(data=str(scans_npz), l2sp=0.1), get_plugin("medical-imaging"), None,
                    strategy_kind="multiworker")
    assert not (tmp_path / "run").exists()


def test_cli_flags_reach_the_config(tmp_path, scans_npz, capsys):
    from tlzoo.cli.main import main

    rc = main(["adapt", "--plugin", "medical-imaging", "--data", str(scans_npz), "--out", str(tmp_path / "run"),
               "--hybrid-source", str(scans_npz), "--hybrid-ratio", "2"])
    assert rc != 0
    assert "hybrid_ratio must be within 0..1" in capsys.readouterr().err
