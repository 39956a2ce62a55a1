"""tlzoo: transfer learning for Keras 3 / TensorFlow: a backbone zoo, domain plugins, adaptation."""
from __future__ import annotations

import os

# TensorFlow's C++ start-up chatter (CUDA probes on CPU machines) buries real messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tlzoo.adapt import AdaptConfig, RunResult, adapt, evaluate, load_run  # noqa: E402
from tlzoo.backbones import (  # noqa: E402
    BackboneSpec,
    WeightsInfo,
    backbone_info,
    create_backbone,
    list_backbones,
    register_backbone,
)
from tlzoo.errors import TlzooError  # noqa: E402
from tlzoo.export import ExportFormat, ExportResult, load_export, verify  # noqa: E402
from tlzoo.export import export  # noqa: E402  (the function; the module stays importable as `from tlzoo.export import ...`)
from tlzoo.freeze import FreezeSchedule, Stage  # noqa: E402
from tlzoo.plugin import DomainPlugin, get_plugin, list_plugins, register_plugin  # noqa: E402

from tlzoo._version import __version__  # noqa: E402,F401

__all__ = [
    "AdaptConfig",
    "BackboneSpec",
    "DomainPlugin",
    "ExportFormat",
    "ExportResult",
    "FreezeSchedule",
    "RunResult",
    "Stage",
    "TlzooError",
    "WeightsInfo",
    "adapt",
    "backbone_info",
    "create_backbone",
    "evaluate",
    "export",
    "get_plugin",
    "list_backbones",
    "list_plugins",
    "load_export",
    "load_run",
    "register_backbone",
    "register_plugin",
    "verify",
]
