"""A third-party domain plugin: a small class, not a fork."""
from typing import Any, ClassVar

import keras

from tlzoo.plugin import DomainPlugin
from tlzoo.train.schedule import FreezeSchedule


class ToyScansPlugin(DomainPlugin):
    name: ClassVar[str] = "toy-scans"
    task: ClassVar[str] = "binary"
    default_backbone: ClassVar[str] = "mobilenet_025"
    default_input_size: ClassVar[int | None] = 32
    description: ClassVar[str] = "third-party test plugin"
    default_options: ClassVar[dict[str, Any]] = {"flip": True}

    def augmentations(self) -> list:
        return [keras.layers.RandomFlip("horizontal_and_vertical")] if self.options["flip"] else []

    def freeze_schedule(self, backbone_groups: int) -> FreezeSchedule:
        return FreezeSchedule.top(2, epochs=1, head_epochs=1)


@keras.saving.register_keras_serializable(package="tlzoo_toy_plugin")
class ToyPool(keras.layers.Layer):
    """The plugin's own head layer: global max + average pooling, concatenated."""

    def call(self, x):
        return keras.ops.concatenate([keras.ops.max(x, axis=(1, 2)), keras.ops.mean(x, axis=(1, 2))], axis=-1)

    def compute_output_shape(self, shape):
        return (shape[0], 2 * shape[-1])


class MacroF1(keras.metrics.Metric):
    """A metric of the plugin's own: macro-F1 over sparse labels and softmax outputs."""

    def __init__(self, num_classes: int, name: str = "macro_f1", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.confusion = self.add_variable(shape=(num_classes, num_classes), initializer="zeros", name="confusion")

    def update_state(self, y_true, y_pred, sample_weight=None):
        true = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"), self.num_classes)
        pred = keras.ops.one_hot(keras.ops.argmax(y_pred, axis=-1), self.num_classes)
        self.confusion.assign_add(keras.ops.matmul(keras.ops.transpose(true), pred))

    def result(self):
        tp = keras.ops.diagonal(self.confusion)
        precision = tp / keras.ops.maximum(keras.ops.sum(self.confusion, axis=0), 1)
        recall = tp / keras.ops.maximum(keras.ops.sum(self.confusion, axis=1), 1)
        return keras.ops.mean(2 * precision * recall / keras.ops.maximum(precision + recall, 1e-9))

    def reset_state(self):
        self.confusion.assign(keras.ops.zeros_like(self.confusion))


class ToyShapesPlugin(DomainPlugin):
    """A multiclass plugin with its own head layer and metric, as third parties write them."""

    name: ClassVar[str] = "toy-shapes"
    task: ClassVar[str] = "multiclass"
    monitor: ClassVar[str] = "macro_f1"
    default_backbone: ClassVar[str] = "small_cnn"
    default_input_size: ClassVar[int | None] = 32
    description: ClassVar[str] = "third-party multiclass test plugin"

    def adjust_backbone(self, backbone, spec):
        """The hook for the backbone it is given: a faster BatchNormalization momentum."""
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.9

    def build_head(self, features, num_classes: int):
        return keras.layers.Dense(num_classes, activation="softmax", name="probabilities", dtype="float32")(
            ToyPool(name="toy_pool")(features))

    def metrics(self, num_classes: int) -> list:
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy"), MacroF1(num_classes)]

    def freeze_schedule(self, backbone_groups: int) -> FreezeSchedule:
        return FreezeSchedule.top(2, epochs=1, head_epochs=1)


class ToyShapesDefaultMonitorPlugin(ToyShapesPlugin):
    """The same, with the contract's default monitor ("auc") left as it is: its metrics have no AUC."""

    name: ClassVar[str] = "toy-shapes-auc"
    monitor: ClassVar[str] = "auc"
