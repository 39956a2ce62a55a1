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
