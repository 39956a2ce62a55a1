"""Small-data BatchNormalization (tlzoo/train/batchnorm.py): the collapse reproduced on generated series and
shown gone, by the momentum cap while training and by re-estimation after it."""
from __future__ import annotations

import numpy as np
import pytest

from tlzoo.train import batchnorm

N_TRAIN, LENGTH, CLASSES, BATCH = 36, 64, 3, 16  # 3 steps per epoch, as on the UCR set that collapsed


def _series(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes of small-amplitude noisy sines (periods 8, 16, 32): a first BN layer whose inputs have a
    variance far below its starting value of 1, as z-normalised sensor series through a fresh convolution."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % CLASSES
    t = np.arange(LENGTH)
    phase = rng.uniform(0, 2 * np.pi, n)[:, None]
    x = np.sin(2 * np.pi * t[None] / (8 * 2 ** y[:, None]) + phase) + 0.3 * rng.normal(size=(n, LENGTH))
    return (0.05 * x[..., None]).astype("float32"), y


def _model(seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((LENGTH, 1))
    x = keras.layers.Conv1D(16, 8, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.ReLU()(x))
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(x))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    return model


def _accuracy(model, x, y) -> float:
    return float((model.predict(x, verbose=0).argmax(1) == y).mean())


@pytest.fixture(scope="module")
def data():
    return _series(N_TRAIN, 0), _series(150, 1)


def _bn_input_variance(model, x) -> np.ndarray:
    import keras

    conv = keras.Model(model.inputs, model.get_layer("conv").output)
    return np.asarray(conv(x)).reshape(-1, 16).var(0)


def test_few_steps_leave_stale_statistics_and_reestimation_makes_them_exact(data):
    (x, y), (xt, yt) = data
    model = _model()
    model.fit(x, y, batch_size=BATCH, epochs=30, verbose=0)  # 90 steps at the default momentum 0.99
    bn = model.get_layer("bn")
    true_var = _bn_input_variance(model, x)
    stale = np.asarray(bn.moving_variance)
    assert np.median(stale / true_var) > 10  # still mostly the starting value of 1
    train_mode = float((np.asarray(model(xt, training=True)).argmax(1) == yt).mean())
    collapsed = _accuracy(model, xt, yt)
    assert train_mode >= 0.8 and collapsed <= 0.5, (train_mode, collapsed)  # the collapse, reproduced

    done = batchnorm.reestimate(model, x, batch_size=64)  # one batch holds all 36: the exact statistics
    assert done == {"layers": 1, "samples": N_TRAIN, "batches": 1}
    np.testing.assert_allclose(np.asarray(bn.moving_variance), true_var, rtol=1e-3)
    assert bn.momentum == 0.99 and _accuracy(model, xt, yt) >= 0.8  # gone


def test_reestimation_in_batches_weighs_them_by_size_and_touches_nothing_else(data):
    (x, _), _ = data
    model = _model()
    before = [np.array(w) for w in model.trainable_weights]
    batchnorm.reestimate(model, x, batch_size=10)  # batches of 10, 10, 10, 6
    bn = model.get_layer("bn")
    feats = np.asarray(model.get_layer("conv")(x))
    pick = np.sort(np.random.default_rng(0).permutation(N_TRAIN))
    batches = [feats[pick[i:i + 10]].reshape(-1, 16) for i in range(0, N_TRAIN, 10)]
    sizes = np.array([len(b) for b in batches], float)
    want_mean = sum(s * b.mean(0) for s, b in zip(sizes, batches)) / sizes.sum()
    np.testing.assert_allclose(np.asarray(bn.moving_mean), want_mean, rtol=1e-4, atol=1e-7)
    assert all(np.array_equal(a, np.array(w)) for a, w in zip(before, model.trainable_weights))


def test_the_momentum_cap_keeps_validation_statistics_current(data):
    (x, y), (xt, yt) = data
    model = _model()
    with batchnorm.momentum_for_steps(model, steps_per_epoch=3) as layers:
        assert [layer.momentum for layer in layers] == [pytest.approx(2 / 3)]
        model.fit(x, y, batch_size=BATCH, epochs=30, verbose=0)
    assert model.get_layer("bn").momentum == 0.99  # the layer's own value back for the saved model
    ratio = np.asarray(model.get_layer("bn").moving_variance) / _bn_input_variance(model, x)
    assert 0.5 < np.median(ratio) < 2 and _accuracy(model, xt, yt) >= 0.8


def test_frozen_batchnorm_is_left_alone(data):
    (x, _), _ = data
    model = _model()
    model.get_layer("bn").trainable = False
    assert batchnorm.training_batchnorm_layers(model) == []
    assert batchnorm.reestimate(model, x) == {"layers": 0}
    np.testing.assert_array_equal(np.asarray(model.get_layer("bn").moving_variance), np.ones(16))
