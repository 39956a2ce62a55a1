"""The declaration of one backbone: what it is, how to build it, and its layer groups.

Layer groups are declared once per backbone, as ordered regular-expression rules over
layer names (timm's ``group_matcher`` idea). Freeze schedules and layer-wise learning
rates both read them, so they never disagree about what "the top 3 blocks" means.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    import keras

STEM = "stem"


def import_object(dotted: str) -> Any:
    """The object a dotted path names: ``"keras.applications.MobileNetV2"``,
    ``"keras.applications.mobilenet_v2.preprocess_input"``."""
    module, _, attr = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"cannot import {dotted!r}: {exc}") from exc


class _ImportedOnUse:
    """A dataclass field that may hold a dotted path instead of the object: reading the field
    imports the object once. The catalogue names its builders this way, so that listing
    backbones (names, sizes, weights, licences) does not import Keras."""

    def __init__(self, default: Any = None, *, required: bool = False) -> None:
        self._default, self._required = default, required

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_{name}_value"

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            if self._required:  # dataclasses read the class attribute as the default: none
                raise AttributeError(self._slot)
            return self._default
        value = obj.__dict__[self._slot]
        if isinstance(value, str):
            value = import_object(value)
            obj.__dict__[self._slot] = value
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self._slot] = value


@dataclass(frozen=True)
class LayerGroup:
    """A named, contiguous run of backbone layers; groups are ordered bottom to top."""

    name: str
    layers: tuple[str, ...]


@dataclass(frozen=True)
class WeightsInfo:
    """A set of pretrained weights a backbone can load."""

    name: str  # "imagenet"
    dataset: str  # what the weights were trained on
    licence: str  # licence of the weights as published by their source
    source: str  # where they come from (paper / repository)


@dataclass(frozen=True)
class BackboneSpec:
    """Everything tlzoo needs to know about one registered backbone."""

    name: str
    family: str
    # a callable, or the dotted path of one (imported when first used)
    builder: Callable[..., keras.Model] = _ImportedOnUse(required=True)  # type: ignore[assignment]
    builder_kwargs: dict[str, Any] = field(default_factory=dict)
    default_size: int = 224
    min_size: int = 32
    # the family's preprocess_input: a callable, its dotted path, or None
    preprocess: Callable[[Any], Any] | None = _ImportedOnUse(None)  # type: ignore[assignment]
    preprocess_name: str = ""  # dotted import path of ``preprocess``, for the run config
    feature_dim: int = 0
    num_params: int = 0  # without the classification top
    weights: tuple[WeightsInfo, ...] = ()
    # Ordered (regex, template) rules; the first rule that matches a layer name gives
    # its group ("{1}" is the first capture). A layer that matches no rule stays in the
    # group of the layer before it; layers before the first match form the stem.
    group_rules: tuple[tuple[str, str], ...] = ()
    # Keras picks its weight file from the input size for some families (MobileNet v1/v2);
    # weights are then loaded at this size and copied onto the model built at the asked size.
    weights_size: int | None = None
    modality: str = "image"
    channels: int = 3
    description: str = ""
    # a vision transformer's patch size: the input size must be a multiple of it (0: no constraint)
    patch_size: int = 0
    layer_groups_summary: str = ""  # the groups the rules give, in words, for listings that build nothing

    @property
    def weight_names(self) -> tuple[str, ...]:
        return tuple(w.name for w in self.weights)

    def weights_name(self, asked: str | None) -> str | None:
        """The weights ``asked`` means: the default ``"imagenet"`` stands for the backbone's own pretrained
        weights where it has no ImageNet entry (a time-series encoder's, a KerasHub preset's)."""
        if asked == "imagenet" and asked not in self.weight_names:
            if self.weight_names:
                return self.weight_names[0]
            return None if self.modality == "timeseries" else asked
        return asked

    def weights_info(self, name: str | None) -> WeightsInfo | None:
        name = self.weights_name(name)
        return next((w for w in self.weights if w.name == name), None)

    def info(self) -> dict[str, Any]:
        """A JSON-friendly description, as printed by ``tlzoo backbones --json``."""
        return {
            "name": self.name,
            "family": self.family,
            "modality": self.modality,
            "default_size": self.default_size,
            "min_size": self.min_size,
            "channels": self.channels,
            "feature_dim": self.feature_dim,
            "num_params": self.num_params,
            "preprocess": self.preprocess_name,
            "weights": {
                w.name: {"dataset": w.dataset, "licence": w.licence, "source": w.source}
                for w in self.weights
            },
            "group_rules": [list(r) for r in self.group_rules],
            "description": self.description,
            **({"patch_size": self.patch_size} if self.patch_size else {}),
            **({"layer_groups": self.layer_groups_summary} if self.layer_groups_summary else {}),
            **({"pooling": self.builder_kwargs["pooling"]} if self.builder_kwargs.get("pooling") else {}),
        }


def assign_groups(layer_names: Sequence[str], rules: Sequence[tuple[str, str]]) -> list[LayerGroup]:
    """Split ordered layer names into groups by ``rules`` (see ``BackboneSpec.group_rules``)."""
    compiled = [(re.compile(p), t) for p, t in rules]
    groups: list[tuple[str, list[str]]] = []
    current = STEM
    for name in layer_names:
        for pattern, template in compiled:
            m = pattern.match(name)
            if m:
                current = template.format(*([m.group(0)] + list(m.groups())))
                break
        if groups and groups[-1][0] == current:
            groups[-1][1].append(name)
        elif any(g == current for g, _ in groups):
            # A group interrupted by another (rare: branchy graphs) stays one group.
            next(ls for g, ls in groups if g == current).append(name)
        else:
            groups.append((current, [name]))
    return [LayerGroup(g, tuple(ls)) for g, ls in groups]


def group_members(backbone: keras.Model) -> list[str]:
    """What group rules match, bottom to top: layer names, except that a layer holding a whole
    network (a TF-Hub SavedModel) contributes its variable names (its ``group_members()``)."""
    import keras

    names: list[str] = []
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        members = getattr(layer, "group_members", None)
        names.extend(members() if callable(members) else [layer.name])
    return names


def layer_groups(backbone: keras.Model, spec: BackboneSpec) -> list[LayerGroup]:
    """The backbone's layer groups, bottom to top. Input layers belong to no group. For a
    TF-Hub backbone a group's ``layers`` are variable names inside the SavedModel."""
    return assign_groups(group_members(backbone), spec.group_rules)
