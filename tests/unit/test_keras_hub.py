"""KerasHub presets as backbones (tlzoo.zoo.keras_hub*): the catalogue, offline-first resolution, the flat
backbone (one layer per block) against KerasHub's own forward pass, pooling, position-embedding resampling,
layer groups, freezing, saving, the weights mirror, and bad input. Presets are tiny random ones written with
``save_to_preset`` (these machines cannot download the published ones)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_hub_support import (
    SIZE,
    save_tiny_clip,
    save_tiny_dinov2,
    save_tiny_efficientnet,
    save_tiny_mobilenet,
    save_tiny_resnet,
    save_tiny_siglip,
    save_tiny_text_model,
    save_tiny_vit,
)
from support import rng_images
from tlzoo.errors import ConfigError, WeightsError

keras_hub = pytest.importorskip("keras_hub")


@pytest.fixture(scope="module")
def presets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("presets")
    return {"vit": save_tiny_vit(root / "vit"), "resnet": save_tiny_resnet(root / "resnet")}


def _reference(preset: Path, x: np.ndarray) -> np.ndarray:
    """KerasHub's own forward pass: its image converter's scaling (at the images' size), then its backbone."""
    backbone = keras_hub.models.Backbone.from_preset(str(preset))
    converter = keras_hub.layers.ImageConverter.from_preset(str(preset))
    scaled = x * np.asarray(converter.scale, "float32") + np.asarray(converter.offset, "float32")
    return np.asarray(backbone(scaled))


# ---------------------------------------------------------------- the catalogue


def test_listing_the_curated_presets_imports_neither_keras_nor_keras_hub():
    code = ("import sys, json; from tlzoo.zoo import list_backbones, backbone_info; "
            "infos = [backbone_info(n) for n in list_backbones('keras_hub*')]; "
            "print(json.dumps({'n': len(infos), 'keras': 'keras' in sys.modules, "
            "'keras_hub': 'keras_hub' in sys.modules, 'infos': infos}))")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    cwd=Path(__file__).parents[2]).stdout)
    assert not out["keras"] and not out["keras_hub"]
    infos = {i["name"]: i for i in out["infos"]}
    assert out["n"] == len(infos) >= 12
    for family in ("vit_base_patch16_224_imagenet21k", "dinov2_small", "siglip2_base_patch16_224",
                   "clip_vit_base_patch16", "resnet_50_imagenet", "efficientnet_b0_ra_imagenet"):
        assert f"keras_hub:{family}" in infos
    dino = infos["keras_hub:dinov2_small"]
    assert dino["weights"]["pretrained"]["licence"] == "Apache-2.0" and dino["patch_size"] == 14
    assert dino["pooling"] == "cls+mean" and dino["feature_dim"] == 2 * 384
    assert dino["layer_groups"] == "patch embedding, 12 blocks, final norm"
    assert infos["keras_hub:clip_vit_base_patch16"]["weights"]["pretrained"]["licence"] == "MIT"
    for info in infos.values():
        assert info["weights"]["pretrained"]["licence"] and info["layer_groups"]
        assert info["default_size"] % (info.get("patch_size") or 1) == 0


def test_a_bare_curated_name_is_the_keras_hub_backbone():
    from tlzoo.zoo import get_backbone_spec

    assert get_backbone_spec("dinov2_small") is get_backbone_spec("keras_hub:dinov2_small")


# ---------------------------------------------------------------- the flat backbone


def test_vit_matches_keras_hub_and_has_a_layer_per_block(presets):
    from tlzoo.zoo import build_backbone, layer_groups

    model, spec, record = build_backbone(f"keras_hub:{presets['vit']}", "imagenet", (SIZE, SIZE, 3))
    assert record.source == "local" and len(record.sha256) == 64 and "keras_hub 0.32" in record.origin
    x = rng_images(4, SIZE, seed=1)
    np.testing.assert_allclose(np.asarray(model(x)), _reference(presets["vit"], x)[:, 0], atol=1e-5)
    groups = layer_groups(model, spec)
    assert [g.name for g in groups] == ["stem", "block_1", "block_2", "final_norm"]
    assert groups[0].layers == ("preset_rescaling", "vit_patching_and_embedding")
    # every layer with weights or computation is in exactly one group
    layers = [lyr.name for lyr in model.layers[1:]]
    grouped = [name for g in groups for name in g.layers]
    assert sorted(grouped) == sorted(layers) and len(set(grouped)) == len(grouped)
    assert sum(len(model.get_layer(n).weights) for n in grouped) == len(model.weights)


def test_resnet_matches_keras_hub_and_groups_cover_every_layer(presets):
    from tlzoo.zoo import build_backbone, layer_groups

    model, spec, _ = build_backbone(f"keras_hub:{presets['resnet']}", "imagenet", (48, 48, 3))
    x = rng_images(3, 48, seed=2)
    np.testing.assert_allclose(np.asarray(model(x)), _reference(presets["resnet"], x), atol=1e-4)
    groups = layer_groups(model, spec)
    assert [g.name for g in groups] == ["stem", "stack0_block0", "stack1_block0"]
    grouped = [name for g in groups for name in g.layers]
    assert sorted(grouped) == sorted(lyr.name for lyr in model.layers[1:])


def _vision_reference(preset: Path, x: np.ndarray) -> np.ndarray:
    """The image tower's own output for an image-text preset (tokens, or SigLIP's pooled vector)."""
    backbone = keras_hub.models.Backbone.from_preset(str(preset))
    converter = keras_hub.layers.ImageConverter.from_preset(str(preset))
    scaled = x * np.asarray(converter.scale, "float32") + np.asarray(converter.offset, "float32")
    tower = getattr(backbone, "vision_encoder", backbone)
    return np.asarray(tower({"images": scaled} if isinstance(tower.input, dict) else scaled))


@pytest.mark.parametrize("family, save, pooled, blocks", [
    ("dinov2", save_tiny_dinov2, lambda t: np.concatenate([t[:, 0], t[:, 3:].mean(1)], 1), "layers_{}"),
    ("clip", save_tiny_clip, lambda t: t[:, 0], "clip_vision_encoder_encoder_block_{}"),
    ("siglip", save_tiny_siglip, lambda t: t, "sig_lip_vision_encoder_encoder_block_{}"),
])
def test_other_transformer_families_match_their_towers(family, save, pooled, blocks, tmp_path):
    """DINOv2 (2 register tokens, default pooling cls + mean of the patch tokens), the CLIP vision tower (class
    token) and the SigLIP one (its attention-pooling head): the same features as KerasHub's, a group per block."""
    from tlzoo.zoo import build_backbone, layer_groups

    preset = save(tmp_path / family)
    model, spec, _ = build_backbone(f"keras_hub:{preset}", "imagenet", (SIZE, SIZE, 3))
    x = rng_images(2, SIZE, seed=6)
    np.testing.assert_allclose(np.asarray(model(x)), pooled(_vision_reference(preset, x)), atol=1e-4)
    groups = layer_groups(model, spec)
    assert [g.name for g in groups] == ["stem", "block_0", "block_1", "final_norm"]
    assert [g.layers[-1] for g in groups[1:3]] == [blocks.format(0), blocks.format(1)]
    assert sorted(n for g in groups for n in g.layers) == sorted(lyr.name for lyr in model.layers[1:])
    bigger, _, _ = build_backbone(f"keras_hub:{preset}", "imagenet", (48, 48, 3))  # position embeddings resampled
    assert bigger.output_shape == model.output_shape and np.isfinite(np.asarray(bigger(rng_images(1, 48)))).all()
    for ids in (w for w in bigger.weights if "position_ids" in w.path):  # CLIP builds them as zeros
        np.testing.assert_array_equal(np.asarray(ids).ravel(), np.arange(int(np.prod(ids.shape))))
    if family == "siglip":  # its head pools; the tokens, meaned, are the other choice
        mean, _, _ = build_backbone(f"keras_hub:{preset}", "imagenet", (SIZE, SIZE, 3), pooling="mean")
        assert mean.output_shape == (None, 16) and "head" not in [lyr.name for lyr in mean.layers]


@pytest.mark.parametrize("save, groups", [
    (save_tiny_efficientnet, ["stem", "block1a", "block2a", "block2b", "top"]),
    (save_tiny_mobilenet, ["stem", "block_0_0", "block_1_0", "block_2_0", "block_2_1", "block_3_0"]),
])
def test_cnn_families_group_by_block(save, groups, tmp_path):
    from tlzoo.zoo import build_backbone, layer_groups

    preset = save(tmp_path / "cnn")
    model, spec, _ = build_backbone(f"keras_hub:{preset}", "imagenet", (64, 64, 3))
    x = rng_images(2, 64, seed=7)
    np.testing.assert_allclose(np.asarray(model(x)), _reference(preset, x), atol=1e-4)
    assert [g.name for g in layer_groups(model, spec)] == groups


def test_pooling_choices(presets):
    from tlzoo.zoo import build_backbone

    ref = f"keras_hub:{presets['vit']}"
    x = rng_images(2, SIZE, seed=3)
    tokens = _reference(presets["vit"], x)  # [2, 1 + 16, 16]
    got = {p: np.asarray(build_backbone(ref, "imagenet", (SIZE, SIZE, 3), pooling=p)[0](x))
           for p in ("cls", "mean", "cls+mean")}
    np.testing.assert_allclose(got["cls"], tokens[:, 0], atol=1e-5)
    np.testing.assert_allclose(got["mean"], tokens[:, 1:].mean(1), atol=1e-5)
    np.testing.assert_allclose(got["cls+mean"], np.concatenate([tokens[:, 0], tokens[:, 1:].mean(1)], 1), atol=1e-5)
    with pytest.raises(ConfigError, match="'map' is SigLIP's attention-pooling head"):
        build_backbone(ref, "imagenet", (SIZE, SIZE, 3), pooling="map")
    with pytest.raises(ConfigError, match="pooling 'cls' applies to KerasHub vision transformers"):
        build_backbone("mobilenet_025", None, (SIZE, SIZE, 3), pooling="cls")


def test_another_input_size_resamples_the_position_embeddings(presets):
    from tlzoo.zoo import build_backbone
    from tlzoo.zoo.keras_hub import resample_position_embedding

    table = np.arange(17 * 2, dtype="float32").reshape(1, 17, 2)
    np.testing.assert_allclose(resample_position_embedding(table, 17), table, atol=1e-4)  # same grid: unchanged
    ramp = np.zeros((1, 17, 1), "float32")
    ramp[0, 1:, 0] = np.repeat(np.arange(4, dtype="float32"), 4)  # rows 0..3 of a 4x4 grid
    resized = resample_position_embedding(ramp, 1 + 36)
    assert resized.shape == (1, 37, 1) and resized[0, 0, 0] == 0  # the class token kept
    rows = resized[0, 1:, 0].reshape(6, 6)
    assert (np.diff(rows.mean(1)) > 0).all()  # still increasing down the grid
    model, _, _ = build_backbone(f"keras_hub:{presets['vit']}", "imagenet", (48, 48, 3))
    assert model.get_layer("vit_patching_and_embedding").num_positions == 1 + 36
    assert np.isfinite(np.asarray(model(rng_images(1, 48)))).all()


def test_random_init_keeps_the_architecture_not_the_weights(presets):
    from tlzoo.zoo import build_backbone

    ref = f"keras_hub:{presets['vit']}"
    pretrained, _, record = build_backbone(ref, "imagenet", (SIZE, SIZE, 3))
    random, _, none = build_backbone(ref, None, (SIZE, SIZE, 3))
    assert none is None and [w.shape for w in random.weights] == [w.shape for w in pretrained.weights]
    kernel = "vit_patching_and_embedding"
    assert not np.allclose(random.get_layer(kernel).weights[1], pretrained.get_layer(kernel).weights[1])


def test_a_frozen_stage_leaves_the_backbone_bit_identical_and_decay_scales_blocks(presets):
    import keras

    from tlzoo.train.schedule import Stage, apply_stage, make_optimizer
    from tlzoo.zoo import build_backbone, layer_groups

    model, spec, _ = build_backbone(f"keras_hub:{presets['vit']}", "imagenet", (SIZE, SIZE, 3))
    groups = layer_groups(model, spec)
    x, y = rng_images(8, SIZE, seed=4), np.array([0, 1] * 4, "float32")

    def step(stage: Stage) -> dict[str, bool]:
        multipliers = apply_stage(model, groups, stage)
        before = {g.name: [np.array(w) for n in g.layers for w in model.get_layer(n).weights] for g in groups}
        inputs = keras.Input((SIZE, SIZE, 3))
        full = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(model(inputs)))
        full.compile(optimizer=make_optimizer("sgd", 0.5, multipliers), loss="binary_crossentropy")
        full.train_on_batch(x, y)
        changed = {g.name: any(not np.array_equal(a, np.array(w)) for a, w in zip(
            before[g.name], [w for n in g.layers for w in model.get_layer(n).weights])) for g in groups}
        return changed, multipliers

    changed, multipliers = step(Stage("head", 1, 0, 1e-3))
    assert not any(changed.values()) and multipliers == {}
    changed, multipliers = step(Stage("top2", 1, 2, 1e-3, lr_decay=0.7))
    assert changed == {"stem": False, "block_1": False, "block_2": True, "final_norm": True}
    by_group = {"final_norm" if "/ln/" in path else path.split("/")[1]: m for path, m in multipliers.items()}
    assert by_group == {"final_norm": pytest.approx(0.7), "transformer_block_2": pytest.approx(0.49)}


def test_a_saved_model_reloads_in_safe_mode(presets, tmp_path):
    import keras

    from tlzoo.train.recipe import load_model
    from tlzoo.zoo import build_backbone

    model, _, _ = build_backbone(f"keras_hub:{presets['vit']}", "imagenet", (SIZE, SIZE, 3), pooling="cls+mean")
    inputs = keras.Input((SIZE, SIZE, 3))
    full = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(model(inputs)))
    full.save(tmp_path / "model.keras")
    x = rng_images(3, SIZE, seed=5)
    np.testing.assert_allclose(np.asarray(load_model(tmp_path / "model.keras")(x)), np.asarray(full(x)), atol=1e-6)


# ---------------------------------------------------------------- resolution and the mirror


@pytest.fixture
def offline(tmp_path, monkeypatch) -> Path:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("TLZOO_WEIGHTS_DIR", str(mirror))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kaggle"))
    monkeypatch.setenv("TLZOO_OFFLINE", "1")
    return mirror


def test_missing_preset_offline_names_what_to_mirror_and_where(offline):
    from tlzoo.zoo import build_backbone

    with pytest.raises(WeightsError) as err:
        build_backbone("keras_hub:dinov2_small", "imagenet", (224, 224, 3))
    msg = str(err.value)
    assert "not available offline" in msg and str(offline / "keras_hub" / "dinov2_small") in msg
    assert "tlzoo weights fetch keras_hub:dinov2_small" in msg and "$TLZOO_WEIGHTS_DIR/keras_hub/dinov2_small/" in msg


def test_presets_resolve_from_the_mirror_then_the_kaggle_cache(presets, offline, tmp_path):
    from tlzoo.zoo import build_backbone
    from tlzoo.zoo.keras_hub_catalogue import kaggle_cache_path, resolve_preset

    name = "vit_base_patch16_224_imagenet21k"
    cached = kaggle_cache_path("kaggle://keras/vit/keras/vit_base_patch16_224_imagenet21k/3")
    assert cached == tmp_path / "kaggle" / "models" / "keras" / "vit" / "keras" / name / "3"
    shutil.copytree(presets["vit"], cached)
    assert resolve_preset(name) == (cached, "kaggle-cache")
    shutil.copytree(presets["vit"], offline / "keras_hub" / name)
    assert resolve_preset(name) == (offline / "keras_hub" / name, "mirror")
    model, spec, record = build_backbone(name, "imagenet", (SIZE, SIZE, 3))  # the bare curated name
    assert record.source == "mirror" and record.origin.startswith(f"KerasHub preset {name} (kaggle://")
    assert spec.name == f"keras_hub:{name}" and model.output_shape == (None, 16)


def test_weights_list_import_and_verify_cover_presets(presets, offline):
    from tlzoo.zoo import mirror

    name = "keras_hub:vit_base_patch16_224_imagenet21k"
    entry = mirror.entry_for(name)
    assert entry.kind == "keras-hub-preset" and not entry.present and entry.origin.startswith("kaggle://")
    with pytest.raises(WeightsError, match="is not a KerasHub preset directory"):
        mirror.import_weights(presets["vit"] / "assets", name)
    imported = mirror.import_weights(presets["vit"], name)
    assert imported.present and imported.source == "mirror" and imported.pin
    assert (offline / "keras_hub" / "vit_base_patch16_224_imagenet21k" / "config.json").is_file()
    assert {r["backbone"]: r["status"] for r in mirror.verify_weights("keras_hub*")} == {name: "ok"}
    assert name in [e.backbone for e in mirror.list_weights("keras_hub*")]
    (offline / "keras_hub" / "vit_base_patch16_224_imagenet21k" / "metadata.json").write_text("{}")
    assert mirror.verify_weights("keras_hub*")[0]["status"] == "mismatch"
    with pytest.raises(WeightsError, match="downloads are disabled"):
        mirror.fetch_weights(name)


# ---------------------------------------------------------------- bad input


def test_unknown_preset_suggests_close_names(offline):
    from tlzoo.zoo import get_backbone_spec

    with pytest.raises(ConfigError, match=r"unknown KerasHub preset 'dinov2_smal'; did you mean "
                                          r"keras_hub:dinov2_small"):
        get_backbone_spec("keras_hub:dinov2_smal")


def test_a_text_model_is_not_an_image_backbone(tmp_path, offline):
    from tlzoo.zoo import get_backbone_spec

    text = save_tiny_text_model(tmp_path / "bert")
    with pytest.raises(ConfigError, match=r"is a BertBackbone, not an image backbone"):
        get_backbone_spec(f"keras_hub:{text}")
    with pytest.raises(ConfigError, match=r"'bert_base_en' is a bert model, not an image backbone"):
        get_backbone_spec("keras_hub:bert_base_en")


def test_input_size_must_be_a_multiple_of_the_patch_size(presets):
    from tlzoo.zoo import build_backbone

    with pytest.raises(ConfigError, match=r"input size 36x36 is not a multiple of .* patch size 8; use input_size 32 "
                                          r"or 40"):
        build_backbone(f"keras_hub:{presets['vit']}", "imagenet", (36, 36, 3))


def test_a_preset_without_its_image_converter_is_refused(presets, tmp_path):
    from tlzoo.zoo import build_backbone

    bare = shutil.copytree(presets["vit"], tmp_path / "bare")
    (bare / "image_converter.json").unlink()
    with pytest.raises(WeightsError, match="has no image_converter.json"):
        build_backbone(f"keras_hub:{bare}", "imagenet", (SIZE, SIZE, 3))


def test_other_weights_names_are_refused(presets):
    from tlzoo.zoo import build_backbone

    with pytest.raises(ConfigError, match="carries its own weights"):
        build_backbone(f"keras_hub:{presets['vit']}", "/tmp/some.weights.h5", (SIZE, SIZE, 3))
