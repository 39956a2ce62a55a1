"""Every ``keras.applications`` architecture, registered with sizes, weights and layer groups."""
from __future__ import annotations

from typing import Any, Callable

import keras

from tlzoo.backbones.spec import BackboneSpec, WeightsInfo

IMAGENET_APACHE = WeightsInfo(
    "imagenet", "ImageNet-1k", "Apache-2.0", "TensorFlow model garden / Keras"
)


def _register(
    name: str,
    family: str,
    builder: Callable[..., keras.Model],
    preprocess_module: str,
    *,
    weights: WeightsInfo,
    **fields: Any,
) -> None:
    from tlzoo.backbones import register_backbone

    module = getattr(keras.applications, preprocess_module)
    register_backbone(
        BackboneSpec(
            name=name,
            family=family,
            builder=builder,
            preprocess=module.preprocess_input,
            preprocess_name=f"keras.applications.{preprocess_module}.preprocess_input",
            weights=(weights,),
            **fields,
        )
    )


# MobileNet v1: Keras picks its weight file by input size (128..224), so weights load at 224.
for _alpha, _suffix, _dim, _params in [
    (0.25, "_025", 256, 218544),
]:
    _register(
        f"mobilenet{_suffix}",
        "mobilenet",
        keras.applications.MobileNet,
        "mobilenet",
        weights=IMAGENET_APACHE,
        builder_kwargs={"alpha": _alpha},
        default_size=224,
        min_size=32,
        feature_dim=_dim,
        num_params=_params,
        weights_size=224,
        group_rules=((r"^conv_(?:pad|dw|pw)_(\d+)", "block_{1}"),),
        description=f"MobileNet v1, width multiplier {_alpha} (Howard et al. 2017)",
    )

_register(
    "mobilenet_v2",
    "mobilenet_v2",
    keras.applications.MobileNetV2,
    "mobilenet_v2",
    weights=IMAGENET_APACHE,
    builder_kwargs={"alpha": 1.0},
    default_size=224,
    min_size=32,
    feature_dim=1280,
    num_params=2257984,
    weights_size=224,
    group_rules=((r"^block_(\d+)_", "block_{1}"), (r"^(Conv_1|out_relu)", "final")),
    description="MobileNetV2, width multiplier 1.0 (Sandler et al. 2018)",
)
