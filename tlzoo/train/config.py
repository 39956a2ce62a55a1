"""The configuration of a run (``AdaptConfig``), as ``tlzoo.adapt``, YAML files and the CLI give it."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlzoo.errors import ConfigError
from tlzoo.runs import read_yaml


@dataclass
class AdaptConfig:
    """Everything that defines a run; written back, resolved, as the run's ``config.yaml``."""

    plugin: str
    data: Any  # a path, tfds:NAME, or in-memory data: arrays, a DataFrame, a tf.data.Dataset (tlzoo.data)
    out: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)  # how files are read (tlzoo.data.DataOptions)
    backbone: str | None = None  # default: the plugin's
    weights: str | None = "imagenet"  # a named set, a file path, or None (random init)
    weights_sha256: str | None = None
    input_size: int | None = None  # default: the plugin's, else the backbone's
    schedule: dict[str, Any] | None = None  # {"kind": ..., params} or {"stages": [...]}
    batch_size: int = 32
    label_fraction: float | None = None
    labels_per_class: int | None = None
    seed: int = 0
    plugin_options: dict[str, Any] = field(default_factory=dict)
    overwrite: bool = False
    verbose: int = 1
    strategy: str = "auto"  # auto | one | mirrored | multiworker (tlzoo.train.distribution)
    intended_use: str | None = None  # research | commercial: refuse weights / data whose licence forbids it
    data_licence: str | None = None  # the training data's licence (SPDX id), as the user knows it
    calibration: str = "temperature"  # temperature | none: fitted on validation, carried into the saved model
    max_samples_seen: int | None = None  # a compute budget: the schedule's epochs shrink to fit it
    group_by: str | None = None  # subgroup metrics by: the data's `groups` (None), an .npz key, or "brightness"
    max_group_gap: float | None = None  # largest acceptable metric gap between groups; beyond it the card warns
    # forgetting control (tlzoo.extensions.forgetting): backbone drift (CKA) and source-task agreement per epoch
    forgetting: bool = False
    forgetting_reference: int = 64  # reference training images (a seeded choice)
    max_drift: float | None = None  # bound on max over layer groups of 1 - CKA
    on_drift: str = "stop"  # stop | lower_lr: what passing max_drift does
    tasks: list[dict[str, Any]] | None = None  # multi-task heads (tlzoo.model.multitask.TaskSpec entries)
    # domain adaptation / source regularisation / hybrid data (tlzoo.extensions.domain_adaptation)
    domain_adaptation: str | None = None  # coral | dann, with unlabelled target images
    target_data: str | None = None  # unlabelled target images: .npz with `images`, or a folder
    da_weight: float = 1.0  # weight of the CORAL / DANN domain loss
    l2sp: float | None = None  # L2-SP alpha: pull the backbone toward its pretrained weights
    l2sp_beta: float = 0.0  # L2-SP beta: plain L2 on the head
    hybrid_source: str | None = None  # labelled source-domain data mixed into the (target) training batches
    hybrid_ratio: float | None = None  # share of source samples per batch (default 0.5)
    hybrid_ratio_end: float | None = None  # annealed linearly to this over the stages

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AdaptConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "AdaptConfig":
        raw = read_yaml(Path(path)) or {}
        section = raw.get("adapt", raw)  # a run's config.yaml keeps the inputs under "adapt"
        return cls.from_dict({**section, **{k: v for k, v in overrides.items() if v is not None}})
