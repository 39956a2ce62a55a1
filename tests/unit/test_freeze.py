"""Freeze schedules do what they say: trainable sets, BN in inference mode, frozen weights
untouched, and per-group learning rates."""
import keras
import numpy as np
import pytest

from support import rng_images
from tlzoo.errors import ConfigError
from tlzoo.train.schedule import (
    FreezeSchedule,
    Stage,
    apply_stage,
    make_optimizer,
    trainable_groups,
)
from tlzoo.zoo import build_backbone, layer_groups


@pytest.fixture
def parts():
    backbone, spec, _ = build_backbone("mobilenet_025", None, (32, 32, 3))
    groups = layer_groups(backbone, spec)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    out = keras.layers.Dense(1, activation="sigmoid", name="head")(x)
    return backbone, groups, keras.Model(inputs, out)


def _bn_layers(backbone):
    return [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]


def test_layer_groups_of_mobilenet_025(parts):
    backbone, groups, _ = parts
    assert [g.name for g in groups] == ["stem"] + [f"block_{i}" for i in range(1, 14)]
    assert groups[-1].layers[-1] == backbone.layers[-1].name


def test_trainable_sets_per_stage(parts):
    backbone, groups, model = parts
    head_only = apply_stage(backbone, groups, Stage("head", 1, 0))
    assert head_only == {}
    assert [w.path for w in model.trainable_weights] == ["head/kernel", "head/bias"]

    apply_stage(backbone, groups, Stage("top2", 1, 2))
    top2 = {layer.name for g in groups[-2:] for name in g.layers for layer in [backbone.get_layer(name)]}
    trainable_layers = {layer.name for layer in backbone.layers if layer.trainable and layer.weights}
    assert trainable_layers == {n for n in top2 if backbone.get_layer(n).weights
                                and not isinstance(backbone.get_layer(n), keras.layers.BatchNormalization)}
    assert all(not layer.trainable for layer in _bn_layers(backbone))

    apply_stage(backbone, groups, Stage("all", 1, "all"))
    n_conv = sum(1 for layer in backbone.layers
                 if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)))
    assert sum(1 for layer in backbone.layers if layer.trainable and layer.weights) == n_conv  # every conv, no BN
    assert all(not layer.trainable for layer in _bn_layers(backbone))
    apply_stage(backbone, groups, Stage("all_bn", 1, "all", train_batchnorm=True))
    assert all(layer.trainable for layer in _bn_layers(backbone))


def test_batchnorm_stays_in_inference_mode_when_unfrozen(parts):
    backbone, groups, model = parts
    x = rng_images(16)
    apply_stage(backbone, groups, Stage("all", 1, "all"))
    # fit() calls the model with training=True; frozen BN layers must ignore that.
    np.testing.assert_array_equal(model(x, training=True).numpy(), model(x, training=False).numpy())
    stats = [w.numpy().copy() for layer in _bn_layers(backbone) for w in layer.non_trainable_weights]
    model.compile(optimizer=make_optimizer("adam", 1e-3), loss="binary_crossentropy")
    model.fit(x, np.arange(16) % 2, epochs=1, verbose=0)
    after = [w.numpy() for layer in _bn_layers(backbone) for w in layer.non_trainable_weights]
    assert all(np.array_equal(a, b) for a, b in zip(stats, after))
    # ...whereas a stage that trains BN really runs it in training mode.
    apply_stage(backbone, groups, Stage("all_bn", 1, "all", train_batchnorm=True))
    assert not np.allclose(model(x, training=True).numpy(), model(x, training=False).numpy())


def test_frozen_weights_are_bit_identical_after_a_frozen_stage(parts):
    backbone, groups, model = parts
    x, y = rng_images(32), np.arange(32) % 2
    apply_stage(backbone, groups, Stage("top3", 1, 3))
    frozen_names = {n for g in groups[:-3] for n in g.layers}
    before = {w.path: w.numpy().copy()
              for layer in backbone.layers if layer.name in frozen_names for w in layer.weights}
    trained = {w.path: w.numpy().copy() for w in model.trainable_weights}
    model.compile(optimizer=make_optimizer("adamw", 1e-2), loss="binary_crossentropy")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    after = {w.path: w.numpy()
             for layer in backbone.layers if layer.name in frozen_names for w in layer.weights}
    assert before.keys() == after.keys() and len(before) > 10
    assert all(np.array_equal(before[k], after[k]) for k in before)
    changed = [w.path for w in model.trainable_weights if not np.array_equal(trained[w.path], w.numpy())]
    assert len(changed) == len(trained)  # and everything trainable did move


def test_layerwise_learning_rates_per_group(parts):
    backbone, groups, model = parts
    decay, lr = 0.5, 0.1
    mult = apply_stage(backbone, groups, Stage("top3", 1, 3, learning_rate=lr, lr_decay=decay))
    expected = {}
    for depth, group in enumerate(reversed(groups[-3:])):  # top group first
        for name in group.layers:
            for w in backbone.get_layer(name).trainable_weights:
                expected[w.path] = decay ** (depth + 1)
    assert mult == expected
    # One plain SGD step: each variable moves by lr * multiplier * gradient.
    x, y = rng_images(8), (np.arange(8) % 2).astype("float32")
    opt = make_optimizer("sgd", lr, mult)
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = keras.losses.binary_crossentropy(y[:, None], model(x))
        loss = tf.reduce_mean(loss)
    grads = tape.gradient(loss, model.trainable_variables)
    before = [v.numpy().copy() for v in model.trainable_variables]
    opt.apply_gradients(zip(grads, model.trainable_variables))
    for v, g, b in zip(model.trainable_variables, grads, before):
        m = mult.get(v.path, 1.0)  # head: full lr
        np.testing.assert_allclose(b - v.numpy(), lr * m * g.numpy(), rtol=1e-4, atol=1e-7)
    assert {round(m, 6) for m in mult.values()} == {0.5, 0.25, 0.125}


def test_schedule_recipes_and_validation():
    ft = FreezeSchedule.fine_tune(epochs=5, freeze_epochs=2, base_lr=2e-3, lr_decay=0.8)
    assert [(s.name, s.epochs, s.trainable, s.learning_rate) for s in ft.stages] == [
        ("head", 2, 0, 2e-3), ("all", 5, "all", 1e-3)]
    g = FreezeSchedule.gradual(steps=3, groups_per_step=2, epochs_per_step=1, head_epochs=1)
    assert [s.trainable for s in g.stages] == [0, 2, 4, 6, "all"]
    assert FreezeSchedule.feature_extraction(epochs=4).stages[0].trainable == 0
    assert FreezeSchedule.top(3).stages[-1].trainable == 3
    assert FreezeSchedule.full().stages[-1].trainable == "all"
    assert FreezeSchedule.from_dict(ft.to_dict()) == ft
    assert FreezeSchedule.from_dict({"kind": "top", "groups": 2}).stages[-1].trainable == 2
    with pytest.raises(ConfigError, match="unknown freeze schedule 'partial'"):
        FreezeSchedule.named("partial")
    with pytest.raises(ConfigError, match="lr_decay must be in"):
        Stage("x", 1, "all", lr_decay=1.5)
    with pytest.raises(ConfigError, match="trainable must be"):
        Stage("x", 1, -2)


def test_trainable_groups_counts_from_the_top(parts):
    _, groups, _ = parts
    assert [g.name for g in trainable_groups(groups, Stage("t", 1, 2))] == ["block_12", "block_13"]
    assert len(trainable_groups(groups, Stage("t", 1, 99))) == len(groups)
