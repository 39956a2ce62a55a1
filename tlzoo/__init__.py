"""tlzoo: transfer learning for Keras 3 / TensorFlow: a backbone zoo, domain plugins, adaptation."""
from __future__ import annotations

import os

# TensorFlow's C++ start-up chatter (CUDA probes on CPU machines) buries real messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tlzoo.backbones import (  # noqa: E402
    BackboneSpec,
    WeightsInfo,
    backbone_info,
    create_backbone,
    list_backbones,
    register_backbone,
)
from tlzoo.errors import TlzooError  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "BackboneSpec",
    "TlzooError",
    "WeightsInfo",
    "backbone_info",
    "create_backbone",
    "list_backbones",
    "register_backbone",
]
