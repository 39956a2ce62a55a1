"""BatchNormalization statistics that match the weights, however few steps a run had.

A BatchNormalization layer keeps moving averages of its inputs' mean and variance, starting from 0 and 1, with
``momentum`` 0.99: after n steps the starting value still weighs 0.99**n (0.13 after 200 steps). A tiny training
set gives few steps per epoch, so the statistics used at validation and test time can stay far from the real ones
(a UCR set with 36 training series kept a variance of 0.14 against a true 0.007 and predicted one class). Two
remedies, for every BN layer a stage trains:

1. while the stage trains, the momentum is at most ``1 - 1/steps_per_epoch``: the averages span about an epoch, so
   validation (and the epoch kept) sees statistics of the current weights;
2. after training, on the weights kept, the statistics are re-estimated over the training images: a running
   average of the batch statistics weighted by batch size, as ``torch.optim.swa_utils.update_bn`` does.
   Frozen BN layers (Keras 3 runs them in inference mode) are not touched.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np

MAX_SAMPLES = 4096  # the statistics settle well before; bounds the cost on a large training set


def training_batchnorm_layers(model: Any) -> list[Any]:
    """The BatchNormalization layers of ``model`` (nested models included) that update their statistics."""
    import keras

    from tlzoo.compat import flatten_layers

    return [layer for layer in flatten_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]


@contextlib.contextmanager
def momentum_for_steps(model: Any, steps_per_epoch: int) -> Iterator[list[Any]]:
    """Within the block, each training BN layer's momentum is at most ``1 - 1/steps_per_epoch`` (remedy 1);
    the layers' own values come back afterwards (they are what the saved model records)."""
    layers = training_batchnorm_layers(model)
    originals = [layer.momentum for layer in layers]
    cap = 1.0 - 1.0 / max(int(steps_per_epoch), 2)
    for layer in layers:
        layer.momentum = min(layer.momentum, cap)
    try:
        yield layers
    finally:
        for layer, momentum in zip(layers, originals):
            layer.momentum = momentum


def reestimate(model: Any, x: Any, layers: list[Any] | None = None, batch_size: int = 64,
               max_samples: int = MAX_SAMPLES, seed: int = 0) -> dict[str, Any]:
    """Remedy 2: exact moving statistics of ``layers`` (default: every training BN layer of ``model``) over
    (up to ``max_samples`` of) the inputs ``x``, an array or a streamed split of image files. The model runs in
    training mode; every other layer keeps its weights. Returns what was done, for the run's record."""
    layers = training_batchnorm_layers(model) if layers is None else list(layers)
    if not layers:
        return {"layers": 0}
    originals = [(layer.momentum, layer.trainable) for layer in layers]
    others = [layer for layer in training_batchnorm_layers(model) if not any(layer is t for t in layers)]
    for layer in others:  # frozen for the pass: their statistics stay as trained
        layer.trainable = False
    k = n = 0
    try:
        for layer in layers:
            layer.trainable = True  # a frozen BN layer runs in inference mode and would not update
        for xb in _batches(x, batch_size, max_samples, seed):
            for layer in layers:  # a running mean over inputs: the first batch replaces the old value outright
                layer.momentum = n / (n + len(xb))
            model(xb, training=True)
            n, k = n + len(xb), k + 1
    finally:
        for layer, (momentum, trainable) in zip(layers, originals):
            layer.momentum, layer.trainable = momentum, trainable
        for layer in others:
            layer.trainable = True
    return {"layers": len(layers), "samples": n, "batches": k}


def _batches(x: Any, batch_size: int, max_samples: int, seed: int) -> Iterator[Any]:
    """A random subset of the split (data is often stored class by class), in index order."""
    from tlzoo.data import is_lazy

    pick = np.sort(np.random.default_rng(seed).permutation(len(x))[:max_samples])
    if is_lazy(x):  # image files: decoded in parallel, as the training stream does
        yield from x.elements(pick).map(lambda i, img: img).batch(batch_size).prefetch(2).as_numpy_iterator()
        return
    for start in range(0, len(pick), batch_size):
        yield np.asarray(x[pick[start:start + batch_size]])
