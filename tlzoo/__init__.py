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
from tlzoo.backbones.hub import HubLayer  # noqa: E402  (registers the layer for load_model)
from tlzoo.backbones.hub_savedmodel import keras_to_hub_savedmodel  # noqa: E402
from tlzoo.curve import CurveConfig, label_curve  # noqa: E402
from tlzoo.errors import TlzooError  # noqa: E402
from tlzoo.explain import ExplainResult  # noqa: E402
from tlzoo.explain import explain  # noqa: E402  (the function, as with export below)
from tlzoo.export import ExportFormat, ExportResult, load_export, verify  # noqa: E402
from tlzoo.export import export  # noqa: E402  (the function; the module stays importable as `from tlzoo.export import ...`)
from tlzoo.forgetting import DriftMonitor, linear_cka  # noqa: E402
from tlzoo.freeze import FreezeSchedule, Stage  # noqa: E402
from tlzoo.multitask import TaskSpec  # noqa: E402
from tlzoo.predict import PredictResult, predict  # noqa: E402
from tlzoo.plugin import DomainPlugin, get_plugin, list_plugins, register_plugin  # noqa: E402
from tlzoo.pretrain import PretrainConfig, PretrainResult, pretrain  # noqa: E402
from tlzoo.rank import RankResult  # noqa: E402
from tlzoo.rank import rank  # noqa: E402  (the function; the module stays importable as `from tlzoo.rank import ...`)
from tlzoo.tune import TuneConfig, TuneResult, tune  # noqa: E402

from tlzoo._version import __version__  # noqa: E402,F401

__all__ = [
    "AdaptConfig",
    "BackboneSpec",
    "CurveConfig",
    "DomainPlugin",
    "DriftMonitor",
    "ExplainResult",
    "ExportFormat",
    "ExportResult",
    "FreezeSchedule",
    "HubLayer",
    "RunResult",
    "Stage",
    "TaskSpec",
    "TlzooError",
    "TuneConfig",
    "TuneResult",
    "WeightsInfo",
    "adapt",
    "backbone_info",
    "create_backbone",
    "evaluate",
    "explain",
    "export",
    "get_plugin",
    "keras_to_hub_savedmodel",
    "label_curve",
    "linear_cka",
    "list_backbones",
    "list_plugins",
    "load_export",
    "load_run",
    "predict",
    "PredictResult",
    "pretrain",
    "PretrainConfig",
    "PretrainResult",
    "RankResult",
    "rank",
    "register_backbone",
    "register_plugin",
    "tune",
    "verify",
]
