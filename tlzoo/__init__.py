"""tlzoo: transfer learning for Keras 3 / TensorFlow: a backbone zoo, domain plugins, adaptation.

The public API is loaded on first use: ``import tlzoo`` (and so ``tlzoo --help``) does not import
TensorFlow; ``tlzoo.adapt`` does.
"""
from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from tlzoo._version import __version__

# TensorFlow's C++ start-up chatter (CUDA probes on CPU machines) buries real messages; `--verbose` lifts it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# public name -> the module that defines it
_API: dict[str, str] = {
    "AdaptConfig": "tlzoo.train.config",
    "RunResult": "tlzoo.train.recipe",
    "adapt": "tlzoo.train.recipe",
    "evaluate": "tlzoo.train.recipe",
    "load_run": "tlzoo.train.recipe",
    "BackboneSpec": "tlzoo.zoo",
    "WeightsInfo": "tlzoo.zoo",
    "backbone_info": "tlzoo.zoo",
    "create_backbone": "tlzoo.zoo",
    "list_backbones": "tlzoo.zoo",
    "register_backbone": "tlzoo.zoo",
    "HubLayer": "tlzoo.zoo.hub",
    "keras_to_hub_savedmodel": "tlzoo.zoo.hub_savedmodel",
    "PretrainConfig": "tlzoo.zoo.pretrain",
    "PretrainResult": "tlzoo.zoo.pretrain",
    "pretrain": "tlzoo.zoo.pretrain",
    "CurveConfig": "tlzoo.analysis.curve",
    "label_curve": "tlzoo.analysis.curve",
    "ExplainResult": "tlzoo.analysis.explain",
    "explain": "tlzoo.analysis.explain",
    "RankResult": "tlzoo.analysis.rank",
    "rank": "tlzoo.analysis.rank",
    "TuneConfig": "tlzoo.analysis.tune",
    "TuneResult": "tlzoo.analysis.tune",
    "tune": "tlzoo.analysis.tune",
    "ExportFormat": "tlzoo.deploy.formats",
    "ExportResult": "tlzoo.deploy.export",
    "export": "tlzoo.deploy.export",
    "load_export": "tlzoo.deploy.export",
    "verify": "tlzoo.deploy.export",
    "PredictResult": "tlzoo.deploy.predict",
    "predict": "tlzoo.deploy.predict",
    "DriftMonitor": "tlzoo.extensions.forgetting",
    "linear_cka": "tlzoo.extensions.forgetting",
    "FreezeSchedule": "tlzoo.train.schedule",
    "Stage": "tlzoo.train.schedule",
    "TaskSpec": "tlzoo.model.multitask",
    "DomainPlugin": "tlzoo.plugin",
    "get_plugin": "tlzoo.plugin",
    "list_plugins": "tlzoo.plugin",
    "register_plugin": "tlzoo.plugin",
    "TlzooError": "tlzoo.errors",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'tlzoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # the names, for type checkers and IDEs
    from tlzoo.analysis.curve import CurveConfig, label_curve  # noqa: F401
    from tlzoo.analysis.explain import ExplainResult, explain  # noqa: F401
    from tlzoo.analysis.rank import RankResult, rank  # noqa: F401
    from tlzoo.analysis.tune import TuneConfig, TuneResult, tune  # noqa: F401
    from tlzoo.deploy.export import (  # noqa: F401
        ExportResult,
        export,
        load_export,
        verify,
    )
    from tlzoo.deploy.formats import ExportFormat  # noqa: F401
    from tlzoo.deploy.predict import PredictResult, predict  # noqa: F401
    from tlzoo.errors import TlzooError  # noqa: F401
    from tlzoo.extensions.forgetting import DriftMonitor, linear_cka  # noqa: F401
    from tlzoo.model.multitask import TaskSpec  # noqa: F401
    from tlzoo.plugin import DomainPlugin, get_plugin, list_plugins, register_plugin  # noqa: F401
    from tlzoo.train.config import AdaptConfig  # noqa: F401
    from tlzoo.train.recipe import RunResult, adapt, evaluate, load_run  # noqa: F401
    from tlzoo.train.schedule import FreezeSchedule, Stage  # noqa: F401
    from tlzoo.zoo import (  # noqa: F401
        BackboneSpec,
        WeightsInfo,
        backbone_info,
        create_backbone,
        list_backbones,
        register_backbone,
    )
    from tlzoo.zoo.hub import HubLayer  # noqa: F401
    from tlzoo.zoo.hub_savedmodel import keras_to_hub_savedmodel  # noqa: F401
    from tlzoo.zoo.pretrain import PretrainConfig, PretrainResult, pretrain  # noqa: F401
