"""Every ``keras.applications`` architecture, registered with sizes, weights and layer groups.

One table per family. ``feature_dim`` and ``num_params`` are measured (Keras 3.15, built with
``include_top=False, weights=None``), and ``min_size`` is the smallest side the constructor
accepts without its top; ``tests/test_backbone_catalog.py`` rebuilds every entry and checks them.

Layer groups follow the natural blocks of each architecture, bottom to top. Two conventions
hold across the catalogue:

* Layers that change resolution between stages open the next stage, as Keras itself does in
  ResNet (stride in ``conv3_block1``), EfficientNet (``block2a``) and MobileNetV2 (``block_1``):
  DenseNet transition layers (``pool2_*``) join ``conv3_block1`` and ConvNeXt downsampling
  layers join the first block of the following stage.
* A head that follows the last block without being one (EfficientNet ``top_*``, MobileNet v2/v3
  last 1x1 conv, DenseNet final ``bn``/``relu``, ConvNeXt final norm, Inception-ResNet
  ``conv_7b``) is its own group, ``final`` (``post`` for ResNetV2, after Keras' own names).

Keras 3.15 has no RegNet (only ``tf_keras``, i.e. Keras 2, has it), so none is registered here.

Builders and ``preprocess_input`` functions are named by dotted path and imported when a backbone
is built: listing the catalogue does not import Keras.
"""
from __future__ import annotations

from typing import Any

from tlzoo.zoo.spec import BackboneSpec, WeightsInfo

IMAGENET_1K = "ImageNet-1k"


def _imagenet(licence: str, source: str, dataset: str = IMAGENET_1K) -> WeightsInfo:
    return WeightsInfo("imagenet", dataset, licence, source)


# The licence is that of the weights as published by their source; the source names the
# repository the Keras files were trained in or ported from.
TF_SLIM = _imagenet(
    "Apache-2.0", "tensorflow/models research/slim (TF-slim) checkpoints, ported by Keras"
)


def _register(
    name: str,
    family: str,
    builder: str,  # dotted path of the keras.applications constructor
    preprocess_module: str,
    *,
    weights: WeightsInfo,
    **fields: Any,
) -> None:
    from tlzoo.zoo import register_backbone

    preprocess = f"keras.applications.{preprocess_module}.preprocess_input"
    register_backbone(
        BackboneSpec(
            name=name,
            family=family,
            builder=builder,
            preprocess=preprocess,
            preprocess_name=preprocess,
            weights=(weights,),
            **fields,
        )
    )


# --- ConvNeXt (preprocessing is inside the model; preprocess_input is a pass-through) -------
_CONVNEXT_RULES = (
    (r"^convnext_\w+?_stage_(\d+)_block_(\d+)_", "stage_{1}_block_{2}"),
    # downsampling_block_k sits between stage k and stage k+1: it opens stage k+1.
    *((rf"^convnext_\w+?_downsampling_block_{k}$", f"stage_{k + 1}_block_0") for k in range(3)),
    # The head LayerNormalization Keras keeps without the top is unnamed (layer_normalization_N).
    (r"^layer_normalization(?:_\d+)?$", "final"),
)
for _variant, _builder, _dim, _params, _dataset in [
    ("tiny", "keras.applications.ConvNeXtTiny", 768, 27820128, IMAGENET_1K),
    ("small", "keras.applications.ConvNeXtSmall", 768, 49454688, IMAGENET_1K),
    ("base", "keras.applications.ConvNeXtBase", 1024, 87566464, "ImageNet-21k, fine-tuned on ImageNet-1k"),
    ("large", "keras.applications.ConvNeXtLarge", 1536, 196230336, "ImageNet-21k, fine-tuned on ImageNet-1k"),
    ("xlarge", "keras.applications.ConvNeXtXLarge", 2048, 348147968, "ImageNet-21k, fine-tuned on ImageNet-1k"),
]:
    _register(
        f"convnext_{_variant}",
        "convnext",
        _builder,
        "convnext",
        weights=_imagenet(
            "MIT", "facebookresearch/ConvNeXt, converted by Keras (keras-convnext-conversion)",
            _dataset,
        ),
        default_size=224,
        min_size=32,
        feature_dim=_dim,
        num_params=_params,
        group_rules=_CONVNEXT_RULES,
        description=f"ConvNeXt-{_variant.capitalize()} (Liu et al. 2022, A ConvNet for the 2020s)",
    )

# --- DenseNet ---------------------------------------------------------------------------------
_DENSENET_RULES = (
    (r"^(conv\d_block\d+)_", "{1}"),
    # Transition k (pool{k}_bn/relu/conv/pool) halves the resolution: it opens dense block k+1.
    *((rf"^pool{k}_", f"conv{k + 1}_block1") for k in (2, 3, 4)),
    (r"^(?:bn|relu)$", "final"),
)
for _depth, _builder, _dim, _params in [
    (121, "keras.applications.DenseNet121", 1024, 7037504),
    (169, "keras.applications.DenseNet169", 1664, 12642880),
    (201, "keras.applications.DenseNet201", 1920, 18321984),
]:
    _register(
        f"densenet{_depth}",
        "densenet",
        _builder,
        "densenet",
        weights=_imagenet("BSD-3-Clause", "liuzhuang13/DenseNet (Torch), ported by Keras"),
        default_size=224,
        min_size=32,
        feature_dim=_dim,
        num_params=_params,
        group_rules=_DENSENET_RULES,
        description=f"DenseNet-{_depth} (Huang et al. 2017, Densely Connected Convolutional "
        "Networks)",
    )

# --- EfficientNet B0-B7 and EfficientNetV2 (preprocessing inside the model) -------------------
_EFFICIENTNET_RULES = ((r"^(block\d+[a-z]+)_", "{1}"), (r"^top_", "final"))
for _variant, _builder, _size, _dim, _params in [
    ("b0", "keras.applications.EfficientNetB0", 224, 1280, 4049571),
    ("b1", "keras.applications.EfficientNetB1", 240, 1280, 6575239),
    ("b2", "keras.applications.EfficientNetB2", 260, 1408, 7768569),
    ("b3", "keras.applications.EfficientNetB3", 300, 1536, 10783535),
    ("b4", "keras.applications.EfficientNetB4", 380, 1792, 17673823),
    ("b5", "keras.applications.EfficientNetB5", 456, 2048, 28513527),
    ("b6", "keras.applications.EfficientNetB6", 528, 2304, 40960143),
    ("b7", "keras.applications.EfficientNetB7", 600, 2560, 64097687),
]:
    _register(
        f"efficientnet_{_variant}",
        "efficientnet",
        _builder,
        "efficientnet",
        weights=_imagenet(
            "Apache-2.0", "tensorflow/tpu models/official/efficientnet checkpoints, ported by Keras"
        ),
        default_size=_size,
        min_size=32,
        feature_dim=_dim,
        num_params=_params,
        group_rules=_EFFICIENTNET_RULES,
        description=f"EfficientNet-{_variant.upper()} (Tan & Le 2019)",
    )

for _variant, _builder, _size, _dim, _params in [
    ("b0", "keras.applications.EfficientNetV2B0", 224, 1280, 5919312),
    ("b1", "keras.applications.EfficientNetV2B1", 240, 1280, 6931124),
    ("b2", "keras.applications.EfficientNetV2B2", 260, 1408, 8769374),
    ("b3", "keras.applications.EfficientNetV2B3", 300, 1536, 12930622),
    ("s", "keras.applications.EfficientNetV2S", 384, 1280, 20331360),
    ("m", "keras.applications.EfficientNetV2M", 480, 1280, 53150388),
    ("l", "keras.applications.EfficientNetV2L", 480, 1280, 117746848),
]:
    _register(
        f"efficientnet_v2_{_variant}",
        "efficientnet_v2",
        _builder,
        "efficientnet_v2",
        weights=_imagenet("Apache-2.0", "google/automl efficientnetv2 checkpoints, ported by Keras"),
        default_size=_size,
        min_size=32,
        feature_dim=_dim,
        num_params=_params,
        group_rules=_EFFICIENTNET_RULES,
        description=f"EfficientNetV2-{_variant.upper()} (Tan & Le 2021)",
    )

# --- Inception v3 and Inception-ResNet v2 -----------------------------------------------------
# Keras leaves the layers inside these modules unnamed (conv2d_N, batch_normalization_N, whose
# numbers depend on what else the session built) and names only each module's *closing* layer
# (concatenation ``mixedK``; ``block35_K_ac`` etc.). Rules see names only and a layer joins the
# group of the layer before it, so each module's group is opened by the previous module's
# closing layer: group ``mixedK`` holds all weighted layers of the module whose output is
# ``mixedK``, while the weightless closing concat/activation itself sits at the head of the next
# group. The first module (``mixed0`` / ``mixed_5b``) cannot be told apart from the stem and is
# part of the "stem" group.
_INCEPTION_V3_RULES = (
    *((rf"^mixed{k}$", f"mixed{k + 1}") for k in range(10)),
    (r"^mixed10$", "mixed10"),
)


def _inception_resnet_rules() -> tuple[tuple[str, str], ...]:
    rules: list[tuple[str, str]] = []
    for opener, block, repeats, closer in [
        ("mixed_5b", "block35", 10, "mixed_6a"),
        ("mixed_6a", "block17", 20, "mixed_7a"),
        ("mixed_7a", "block8", 10, None),
    ]:
        rules.append((rf"^{opener}$", f"{block}_1"))
        for k in range(1, repeats):
            rules.append((rf"^{block}_{k}_ac$", f"{block}_{k + 1}"))
        if closer:
            rules.append((rf"^{block}_{repeats}_ac$", closer))
    rules.append((r"^conv_7b", "final"))  # block8_10 has no activation; conv_7b is the head
    return tuple(rules)


_register(
    "inception_v3",
    "inception_v3",
    "keras.applications.InceptionV3",
    "inception_v3",
    weights=TF_SLIM,
    default_size=299,
    min_size=75,
    feature_dim=2048,
    num_params=21802784,
    group_rules=_INCEPTION_V3_RULES,
    description="Inception v3 (Szegedy et al. 2016, Rethinking the Inception Architecture)",
)
_register(
    "inception_resnet_v2",
    "inception_resnet_v2",
    "keras.applications.InceptionResNetV2",
    "inception_resnet_v2",
    weights=TF_SLIM,
    default_size=299,
    min_size=75,
    feature_dim=1536,
    num_params=54336736,
    group_rules=_inception_resnet_rules(),
    description="Inception-ResNet v2 (Szegedy et al. 2017, Inception-v4, Inception-ResNet)",
)

# --- MobileNet v1 / v2 / v3 -------------------------------------------------------------------
# MobileNet v1 and v2: Keras picks its weight file by input size (v1: 128..224, v2: 96..224),
# so weights load at 224 and are copied onto the model built at the asked size.
for _alpha, _suffix, _dim, _params in [
    (1.0, "", 1024, 3228864),
    (0.25, "_025", 256, 218544),
    (0.5, "_050", 512, 829536),
    (0.75, "_075", 768, 1832976),
]:
    _register(
        f"mobilenet{_suffix}",
        "mobilenet",
        "keras.applications.MobileNet",
        "mobilenet",
        weights=TF_SLIM,
        builder_kwargs={"alpha": _alpha},
        default_size=224,
        min_size=32,
        feature_dim=_dim,
        num_params=_params,
        weights_size=224,
        group_rules=((r"^conv_(?:pad|dw|pw)_(\d+)", "block_{1}"),),
        description=f"MobileNet v1, width multiplier {_alpha} (Howard et al. 2017)",
    )

for _alpha, _suffix, _dim, _params in [
    (1.0, "", 1280, 2257984),
    (0.35, "_035", 1280, 410208),
    (0.5, "_050", 1280, 706224),
    (0.75, "_075", 1280, 1382064),
    (1.3, "_130", 1664, 3766048),
    (1.4, "_140", 1792, 4363712),
]:
    _register(
        f"mobilenet_v2{_suffix}",
        "mobilenet_v2",
        "keras.applications.MobileNetV2",
        "mobilenet_v2",
        weights=TF_SLIM,
        builder_kwargs={"alpha": _alpha},
        default_size=224,
        min_size=32,
        feature_dim=_dim,
        num_params=_params,
        weights_size=224,
        # block 0 (expanded_conv_*) has no number in Keras and stays with the stem.
        group_rules=((r"^block_(\d+)_", "block_{1}"), (r"^(Conv_1|out_relu)", "final")),
        description=f"MobileNetV2, width multiplier {_alpha} (Sandler et al. 2018)",
    )

# MobileNetV3: Keras' include_preprocessing=True (its default) puts a Rescaling(1/127.5, -1)
# layer in the model, so it takes raw [0, 255] pixels and mobilenet_v3.preprocess_input is a
# pass-through. We keep it True, as for EfficientNet and ConvNeXt, so that preprocess_input
# stays the family's own and the model gets the same [0, 255] input as every other entry.
# (With include_preprocessing=False the model would expect [-1, 1] and the pass-through would
# silently feed it unscaled pixels.) Weights are one 224 file whatever the input size.
for _size_name, _builder, _dim, _params in [
    ("small", "keras.applications.MobileNetV3Small", 576, 939120),
    ("large", "keras.applications.MobileNetV3Large", 960, 2996352),
]:
    _register(
        f"mobilenet_v3_{_size_name}",
        "mobilenet_v3",
        _builder,
        "mobilenet_v3",
        weights=_imagenet(
            "Apache-2.0", "tensorflow/models research/slim/nets/mobilenet (v3), ported by Keras"
        ),
        builder_kwargs={"include_preprocessing": True},
        default_size=224,
        min_size=32,
        feature_dim=_dim,
        num_params=_params,
        # As for v2, block 0 (expanded_conv_*, no number) stays with the stem.
        group_rules=((r"^expanded_conv_(\d+)_", "block_{1}"), (r"^conv_1(?:_bn)?$", "final")),
        description=f"MobileNetV3-{_size_name.capitalize()} (Howard et al. 2019, "
        "Searching for MobileNetV3)",
    )

# --- NASNet -----------------------------------------------------------------------------------
# Cell layers end in the cell id: _stem_1/_stem_2 (stem reduction cells), _reduce_K (reduction
# cells) or _K (normal cells). The prefixes keep unnamed layers (activation_N, add_N, ...) out.
# adjust_relu_1_K (weightless) is left out too: Keras' layer order puts it, the ReLU on cell K's
# second input, inside cell K-1, and matching it would interleave the two groups; unmatched, it
# joins cell K-1 and every group stays one contiguous run of layers.
_NASNET_CELL = r"^(?:normal|reduction|adjust(?!_relu)|separable_conv)_\S*?"
_NASNET_RULES = (
    (_NASNET_CELL + r"_stem_(\d+)$", "stem_cell_{1}"),
    (_NASNET_CELL + r"_reduce_(\d+)$", "reduce_{1}"),
    (_NASNET_CELL + r"_(\d+)$", "cell_{1}"),
)
for _variant, _builder, _size, _dim, _params in [
    ("mobile", "keras.applications.NASNetMobile", 224, 1056, 4269716),
    ("large", "keras.applications.NASNetLarge", 331, 4032, 84916818),
]:
    _register(
        f"nasnet_{_variant}",
        "nasnet",
        _builder,
        "nasnet",
        weights=TF_SLIM,
        default_size=_size,
        min_size=32,
        feature_dim=_dim,
        num_params=_params,
        group_rules=_NASNET_RULES,
        description=f"NASNet-A {_variant.capitalize()} (Zoph et al. 2018)",
    )

# --- ResNet v1 / v2 ---------------------------------------------------------------------------
for _depth, _builder, _params in [
    (50, "keras.applications.ResNet50", 23587712),
    (101, "keras.applications.ResNet101", 42658176),
    (152, "keras.applications.ResNet152", 58370944),
]:
    _register(
        f"resnet{_depth}",
        "resnet",
        _builder,
        "resnet",
        weights=_imagenet("MIT", "KaimingHe/deep-residual-networks (Caffe), ported by Keras"),
        default_size=224,
        min_size=32,
        feature_dim=2048,
        num_params=_params,
        group_rules=((r"^(conv\d_block\d+)_", "{1}"),),
        description=f"ResNet-{_depth} (He et al. 2016, Deep Residual Learning)",
    )

for _depth, _builder, _params in [
    (50, "keras.applications.ResNet50V2", 23564800),
    (101, "keras.applications.ResNet101V2", 42626560),
    (152, "keras.applications.ResNet152V2", 58331648),
]:
    _register(
        f"resnet{_depth}_v2",
        "resnet_v2",
        _builder,
        "resnet_v2",
        # Not Kaiming He's release (which is v1 only): Keras' v2 files are the TF-slim
        # resnet_v2 checkpoints, ported via taehoonlee/tensornets ("tf" [-1, 1] preprocessing).
        weights=_imagenet(
            "Apache-2.0",
            "tensorflow/models research/slim resnet_v2 checkpoints, ported via "
            "taehoonlee/tensornets",
        ),
        default_size=224,
        min_size=32,
        feature_dim=2048,
        num_params=_params,
        group_rules=((r"^(conv\d_block\d+)_", "{1}"), (r"^post_", "post")),
        description=f"ResNet-{_depth} v2, pre-activation (He et al. 2016, Identity Mappings)",
    )

# --- VGG, Xception ----------------------------------------------------------------------------
for _depth, _builder, _params in [
    (16, "keras.applications.VGG16", 14714688),
    (19, "keras.applications.VGG19", 20024384),
]:
    _register(
        f"vgg{_depth}",
        "vgg",
        _builder,
        f"vgg{_depth}",
        weights=_imagenet(
            "CC-BY-4.0", "Oxford VGG (robots.ox.ac.uk/~vgg/research/very_deep), ported by Keras"
        ),
        default_size=224,
        min_size=32,
        feature_dim=512,
        num_params=_params,
        group_rules=((r"^block(\d+)_", "block{1}"),),
        description=f"VGG-{_depth} (Simonyan & Zisserman 2015)",
    )

_register(
    "xception",
    "xception",
    "keras.applications.Xception",
    "xception",
    weights=_imagenet("MIT", "trained by the Keras team (keras-team/keras-applications)"),
    default_size=299,
    min_size=71,
    feature_dim=2048,
    num_params=20861480,
    # The unnamed residual shortcuts (conv2d_N, batch_normalization_N, add_N) follow their
    # block's separable convolutions in Keras' layer order and so join that block.
    group_rules=((r"^block(\d+)_", "block{1}"),),
    description="Xception (Chollet 2017)",
)
