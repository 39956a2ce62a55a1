"""Forgetting control: linear CKA, the drift monitor in real runs, the drift bound, its errors."""

import keras
import numpy as np
import pytest

from support import fast_config
from tlzoo.errors import ConfigError, DataError
from tlzoo.extensions.forgetting import (
    linear_cka,
)
from tlzoo.train.recipe import adapt
from tlzoo.train.schedule import get_lr_scale, make_optimizer, set_lr_scale

RNG = np.random.default_rng(0)


# --- linear CKA -------------------------------------------------------------------------------------

def test_linear_cka_properties():
    x = RNG.normal(size=(64, 40))
    q, _ = np.linalg.qr(RNG.normal(size=(40, 40)))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-10)  # orthogonal transform
    assert linear_cka(x, 7.5 * x) == pytest.approx(1.0, abs=1e-12)  # isotropic scaling
    assert linear_cka(x, x + 3.0) == pytest.approx(1.0, abs=1e-12)  # a shift (features are centred)
    # conv maps of any shape compare: (n, h, w, c) is flattened per example
    maps = RNG.normal(size=(16, 6, 6, 8))
    assert linear_cka(maps, maps.reshape(16, -1) @ np.linalg.qr(RNG.normal(size=(288, 288)))[0]) == pytest.approx(1.0)
    # independent features: low when n is well above d; with d > n only the debiased estimator is
    big = RNG.normal(size=(2000, 10))
    assert linear_cka(big, RNG.normal(size=(2000, 10))) < 0.02
    wide = RNG.normal(size=(64, 500))
    other = RNG.normal(size=(64, 500))
    assert linear_cka(wide, other) > 0.5  # the known small-n bias of the plain estimator
    assert abs(linear_cka(wide, other, debiased=True)) < 0.1
    assert linear_cka(wide, wide, debiased=True) == pytest.approx(1.0)
    # partly related: strictly between
    assert 0.2 < linear_cka(x, x + 1.5 * RNG.normal(size=x.shape)) < 0.9
    assert np.isnan(linear_cka(np.ones((8, 3)), x[:8]))  # constant features: undefined


def test_linear_cka_bad_input():
    with pytest.raises(DataError, match=r"same number of rows.*\(5, 3\) and \(6, 3\)"):
        linear_cka(np.zeros((5, 3)), np.zeros((6, 3)))
    with pytest.raises(DataError, match="at least 2 examples, got 1"):
        linear_cka(np.zeros((1, 3)), np.zeros((1, 3)))


# --- the global learning-rate scale -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_lr_scale_takes_effect_inside_the_compiled_train_step(name):
    keras.utils.set_random_seed(0)
    x, y = np.ones((8, 3), "float32"), np.full((8, 1), 100.0, "float32")  # MAE far from target: constant gradient
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    opt = make_optimizer(name, 0.1)
    set_lr_scale(opt, 1.0)  # before build: becomes the variable's initial value
    model.compile(optimizer=opt, loss="mae")
    steps = []
    for i in range(3):
        before = model.get_weights()[0].copy()
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)  # the same compiled train function
        steps.append(float(np.abs(model.get_weights()[0] - before).max()))
        set_lr_scale(opt, 0.5 ** (i + 1))
    assert steps[1] == pytest.approx(steps[0] / 2, rel=1e-3) and steps[2] == pytest.approx(steps[0] / 4, rel=1e-3)
    assert get_lr_scale(opt) == 0.125 and "lr_scale" in opt.lr_scale.path
    with pytest.raises(ConfigError, match="must be > 0, got 0"):
        set_lr_scale(opt, 0)
    with pytest.raises(ConfigError, match="SGD has no learning-rate scale"):
        set_lr_scale(keras.optimizers.SGD(), 0.5)


# --- bad input: one clear error before any training ---------------------------------------------------

@pytest.mark.parametrize("options, message", [
    ({"forgetting": True, "on_drift": "slow"}, r"on_drift must be one of \['stop', 'lower_lr'\], got 'slow'"),
    ({"forgetting": True, "max_drift": 1.5}, r"max_drift bounds 1 - CKA and must lie in \(0, 1\), got 1.5"),
    ({"forgetting": True, "max_drift": 0}, r"must lie in \(0, 1\), got 0"),
    ({"max_drift": 0.2}, r"max_drift=0.2 needs forgetting tracking: set forgetting=True \(--track-forgetting\)"),
    ({"forgetting": True, "forgetting_reference": 2}, "forgetting_reference .* integer >= 4, got 2"),
    ({"forgetting": True, "on_drift": "lower_lr"}, "on_drift='lower_lr' acts only .* give max_drift too"),
])
def test_bad_forgetting_options_fail_before_training(scans_npz, tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        adapt(fast_config(data=str(scans_npz), out=str(tmp_path / "r"), **options))
    assert not (tmp_path / "r").exists()


def test_refused_where_it_cannot_work(scans_npz, tmp_path, capsys):
    from types import SimpleNamespace

    from tlzoo.extensions.base import Run, check_support
    from tlzoo.extensions.forgetting import Forgetting
    from tlzoo.plugin import get_plugin

    cfg = fast_config(data=str(scans_npz), forgetting=True)
    ext = Forgetting(cfg)
    run = Run(cfg, get_plugin("medical-imaging"), spec=None, dist=SimpleNamespace(kind="multiworker"),
              out=tmp_path / "r", extensions=[ext])
    with pytest.raises(ConfigError, match="not supported with strategy 'multiworker'"):
        check_support(ext, run)
    run.plugin = SimpleNamespace(name="p", task="binary", modality="image", custom_recipe=lambda: print,
                                 options={"mode": "anomaly"})
    with pytest.raises(ConfigError, match="runs its own recipe"):
        check_support(ext, run)
    from tlzoo.cli.main import main

    code = main(["adapt", "--plugin", "medical-imaging", "--data", str(scans_npz), "--backbone", "mobilenet_025",
                 "--weights", "none", "--input-size", "32", "--track-forgetting", "--max-drift", "2",
                 "--out", str(tmp_path / "c")])
    assert code == 2 and "max_drift bounds 1 - CKA" in capsys.readouterr().err
    with pytest.raises(DataError, match="at least 4 training examples, got 3"):
        from tlzoo.extensions.forgetting import reference_indices

        reference_indices(3, 64, 0)
