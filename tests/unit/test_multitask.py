"""Multi-task heads: label derivation, masked losses and metrics, a run, its export."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from support import fast_config, two_task_npz
from tlzoo.data import DataSplits, Split
from tlzoo.errors import ConfigError, DataError
from tlzoo.model.multitask import MaskedAUC, MaskedTaskLoss, parse_tasks, task_labels

TASKS = [
    {"name": "finding", "kind": "binary", "classes": {"clear": "no", "*": "yes"}},
    {"name": "exposure", "kind": "multiclass", "labels": "exposure"},
]


def _splits(class_names=("clear", "opacity", "opacity_big")) -> DataSplits:
    def split(y, exposure):
        return Split(np.zeros((len(y), 4, 4, 1), np.uint8), np.asarray(y),
                     attributes={"exposure": np.asarray(exposure)})

    return DataSplits(split([0, 1, 2, 0], [0, 1, -1, 2]), split([0, 2], [1, 0]), split([1, 0], [-1, 2]),
                      list(class_names), "mem")


def test_task_labels_map_classes_and_mark_missing_ones():
    tasks = parse_tasks(TASKS)
    data = task_labels(_splits(), tasks)
    # finding: clear -> 0, every other class -> 1; exposure: its own integer values, -1 stays missing
    assert data.train.y.tolist() == [[0, 0], [1, 1], [1, -1], [0, 2]]
    assert data.test.y.tolist() == [[1, -1], [0, 2]]
    assert tasks[0].class_names == ["no", "yes"] and tasks[1].class_names == ["0", "1", "2"]
    # a list keeps only the named classes, in order; the others have no label for the task
    only = parse_tasks([{"name": "size", "kind": "binary", "classes": ["opacity", "opacity_big"]}, TASKS[0]])
    assert task_labels(_splits(), only).train.y[:, 0].tolist() == [-1, 0, 1, -1]


@pytest.mark.parametrize("tasks, error, message", [
    ([TASKS[0], {"name": "site", "kind": "binary", "labels": "site"}], DataError, "reads labels from 'site'"),
    ([TASKS[0], {"name": "t", "kind": "binary", "classes": ["opacity", "nodule"]}], DataError, "'nodule'"),
    ([TASKS[0], {"name": "t", "kind": "binary"}], DataError, "binary but has 3 classes"),
])
def test_bad_task_labels_name_the_problem(tasks, error, message):
    with pytest.raises(error, match=message):
        task_labels(_splits(), parse_tasks(tasks))


@pytest.mark.parametrize("tasks, message", [
    ([TASKS[0]], "at least two tasks"),
    ([TASKS[0], TASKS[0]], "unique"),
    ([TASKS[0], {"name": "x", "kind": "regression"}], "kind must be one of"),
    ([TASKS[0], {"name": "x-y", "kind": "binary"}], "identifier"),
    ([TASKS[0], {"name": "x", "kind": "binary", "loss_weight": 0}], "loss_weight"),
    ([TASKS[0], {"name": "x", "kind": "binary", "colour": 1}], "unknown key"),
])
def test_bad_task_specs_are_refused(tasks, message):
    with pytest.raises(ConfigError, match=message):
        parse_tasks(tasks)


def test_masked_loss_ignores_samples_without_a_label():
    y = np.array([1, -1, 0, -1, 2])
    logits = tf.Variable(np.random.default_rng(0).normal(size=(5, 3)).astype("float32"))
    loss_fn = MaskedTaskLoss("multiclass", weight=2.0)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, tf.nn.softmax(logits))
    grad = tape.gradient(loss, logits).numpy()
    has = y >= 0
    expected = 2.0 * keras.losses.sparse_categorical_crossentropy(y[has], tf.nn.softmax(logits)[has]).numpy().mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert np.all(grad[~has] == 0) and np.all(np.abs(grad[has]).sum(-1) > 0)
    # predictions on unlabelled samples do not matter at all
    other = tf.tensor_scatter_nd_update(tf.nn.softmax(logits), [[1], [3]], [[1.0, 0, 0], [0, 0, 1.0]])
    assert float(loss_fn(y, other)) == pytest.approx(float(loss), rel=1e-6)
    # binary, with class weights: the weighted mean over labelled samples
    yb, pb = np.array([1, -1, 0]), np.array([[0.8], [0.01], [0.3]], "float32")
    got = float(MaskedTaskLoss("binary", class_weights=[1.0, 3.0])(yb, pb))
    assert got == pytest.approx((3 * -np.log(0.8) + 1 * -np.log(0.7)) / 2, rel=1e-4)
    assert float(MaskedTaskLoss("binary")(np.array([-1, -1]), pb[:2])) == 0.0


def test_masked_metric_counts_labelled_samples_only():
    m = MaskedAUC()
    m.update_state(np.array([1, 0, -1, -1]), np.array([[0.9], [0.1], [0.0], [1.0]]))
    assert float(m.result()) == pytest.approx(1.0)


def test_multitask_refuses_what_it_cannot_do(tmp_path):
    from tlzoo.train.recipe import adapt

    data = two_task_npz(tmp_path / "two.npz", n=60)
    with pytest.raises(DataError, match="reads labels from 'site'"):
        adapt(fast_config(data=str(data), out=str(tmp_path / "r"), tasks=[TASKS[0], {"name": "s", "kind": "binary",
                                                                                       "labels": "site"}]))
    with pytest.raises(ConfigError, match="group_by"):
        adapt(fast_config(data=str(data), out=str(tmp_path / "r"), tasks=TASKS, group_by="brightness"))
    assert not (tmp_path / "r").exists()
