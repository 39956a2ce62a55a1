"""Grad-CAM explanations (tlzoo.analysis.explain, `tlzoo explain`): files, the recomposed forward pass, the
Adebayo et al. (2018) model-randomisation sanity check, anomaly-map overlays, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from support import SHARED, fast_config
from tlzoo.errors import ConfigError, DataError

LAYER_4X4 = "conv_pw_11_relu"  # mobilenet_025 at 64 px: a 4x4 map (the default, the last group's, is 2x2)


def _has_imagenet_weights() -> bool:
    import os

    return any((Path(d) / "mobilenet_2_5_224_tf_no_top.h5").is_file()
               for d in (os.environ.get("TLZOO_WEIGHTS_DIR"), SHARED / "weights" / "keras" / "models") if d)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One small run shared by the tests: mobilenet_025 at 64 px, head trained for one epoch on
    ImageNet features (random features where the shared weights are absent)."""
    from tlzoo.data.synthetic import write_opacity_npz
    from tlzoo.train.recipe import adapt

    tmp = tmp_path_factory.mktemp("explain")
    data = write_opacity_npz(tmp / "scans.npz", n_train=96, n_val=32, n_test=32, size=64, contrast=60)
    weights = "imagenet" if _has_imagenet_weights() else None
    cfg = fast_config(data=str(data), out=str(tmp / "run"), input_size=64, weights=weights,
                      schedule={"stages": [{"name": "head", "epochs": 1, "trainable": 0, "learning_rate": 3e-3}]})
    return adapt(cfg).run_dir, weights


def test_explain_writes_overlays_and_index(run):
    from tlzoo.analysis.explain import explain

    run_dir, _ = run
    res = explain(run_dir, n=4)
    assert res.out == run_dir / "explanations" and res.method == "grad-cam"
    assert res.layer == "conv_pw_13_relu"  # the last layer group's map (2x2 at 64 px)
    assert res.maps.shape == (4, 64, 64) and res.maps.min() >= 0 and res.maps.max() <= 1
    assert all(m.max() == 1 and m.std() > 0.01 for m in res.maps if m.max() > 0)
    assert sum(m.max() > 0 for m in res.maps) >= 3
    index = json.loads((res.out / "explanations.json").read_text())
    assert [e["file"] for e in index["images"]] == res.files and index["feature_grid"] == [2, 2]
    assert all((res.out / f).is_file() for f in res.files + ["grid.png"])
    assert all(e["true"] in ("clear", "opacity") for e in index["images"])
    # again, into the same place: an earlier explanation is replaced
    res = explain(run_dir, n=2, class_index=1, layer=LAYER_4X4)
    assert sorted(p.name for p in res.out.iterdir() if p.suffix == ".png") == sorted(res.files + ["grid.png"])
    assert (res.explained == 1).all() and json.loads((res.out / "explanations.json").read_text())["layer"] == LAYER_4X4


def test_recomposed_forward_pass_and_cam_equivalence(run):
    """The split model reproduces model(x); and at the backbone's output, under a global-average-pool
    + Dense head, Grad-CAM is CAM (Selvaraju et al., sec. 3.1): ReLU(sum_k w_k A_k), w the Dense
    weights (signed for the explained class)."""
    import tensorflow as tf

    from tlzoo.analysis.explain import GradCAM
    from tlzoo.train.recipe import load_run

    run_dir, _ = run
    config, model = load_run(run_dir)
    x = np.load(config["adapt"]["data"]["source"])["test_images"][:8]
    cam = GradCAM(model, "mobilenet_025")
    fmap, _, probs = cam.forward(x)
    np.testing.assert_allclose(np.asarray(probs), model.predict(x, verbose=0), atol=1e-5)
    maps, _, predicted, explained = cam(x, class_index=None)
    assert (predicted == explained).all()
    w = np.asarray(model.get_layer("probabilities").kernel)[:, 0]
    for k in (0, 1):
        maps, *_ = cam(x, class_index=k)
        raw = np.maximum(np.einsum("nhwc,c->nhw", np.asarray(fmap), w if k else -w), 0)[..., None]
        want = tf.image.resize(raw, (64, 64), method="bilinear")[..., 0].numpy()
        want /= np.where(want.max((1, 2), keepdims=True) > 0, want.max((1, 2), keepdims=True), 1)
        np.testing.assert_allclose(maps, want, atol=1e-4)


def test_model_randomisation_changes_the_maps(run):
    """Adebayo et al. 2018: maps that survive re-initialising the weights do not explain the model.
    Every weight, backbone and head, is re-drawn from its initializer (``clone_model``), and each
    image's map of the "opacity" class (nonzero for nearly all images, unlike the predicted class's)
    is rank-correlated (Spearman) with the trained model's. Measured on this set-up (4x4 maps, 32
    test images): mean correlation -0.16, -0.01, -0.40, -0.02, -0.36, 0.18 for seeds 0-5, against 1
    for an unchanged model; a bound of 0.5 sits well clear of both."""
    import keras
    from scipy.stats import spearmanr

    from tlzoo.analysis.explain import GradCAM
    from tlzoo.train.recipe import load_run

    run_dir, weights = run
    if weights is None:
        pytest.skip("the sanity check needs ImageNet features (../shared/weights absent)")
    config, model = load_run(run_dir)
    x = np.load(config["adapt"]["data"]["source"])["test_images"]
    trained, *_ = GradCAM(model, "mobilenet_025", LAYER_4X4)(x, class_index=1)
    for seed in (0, 1):
        keras.utils.set_random_seed(seed)
        random, *_ = GradCAM(keras.models.clone_model(model), "mobilenet_025", LAYER_4X4)(x, class_index=1)
        both = (trained.max((1, 2)) > 0) & (random.max((1, 2)) > 0)
        assert both.sum() >= 24
        rho = np.mean([spearmanr(a.ravel(), b.ravel())[0] for a, b in zip(trained[both], random[both])])
        assert rho < 0.5, (seed, rho)


def test_anomaly_run_explains_with_its_anomaly_maps(tmp_path):
    from tlzoo.analysis.explain import explain
    from tlzoo.data.synthetic import opacity_scans
    from tlzoo.train.recipe import AdaptConfig, adapt

    x, y = opacity_scans(200, 32, seed=3, contrast=60)
    np.savez(tmp_path / "parts.npz", images=x, labels=y, class_names=np.array(["good", "opacity"]))
    opts = {"mode": "anomaly", "levels": "block2,block3", "max_false_alarm": 0.1, "coreset_ratio": 0.2, "heatmaps": 2}
    run_dir = adapt(AdaptConfig(plugin="defect-detection", data=str(tmp_path / "parts.npz"), out=str(tmp_path / "run"),
                                backbone="small_cnn", weights=None, input_size=32, batch_size=16, verbose=0,
                                plugin_options=opts)).run_dir
    assert (run_dir / "heatmaps.png").is_file()  # the recipe's own overlays: the same plots.overlay_grid
    res = explain(run_dir, n=3, out=tmp_path / "maps")
    assert res.method == "anomaly-map" and res.layer is None and res.maps.shape == (3, 32, 32)
    index = json.loads((tmp_path / "maps" / "explanations.json").read_text())
    assert index["method"] == "anomaly-map" and len(index["images"]) == 3
    assert all((tmp_path / "maps" / f).is_file() for f in res.files)
    with pytest.raises(ConfigError, match="do not apply"):
        explain(run_dir, n=1, layer="block3_relu2", out=tmp_path / "other")


def test_cli_explain_on_an_image_folder(run, tmp_path, capsys):
    from PIL import Image

    from tlzoo.cli.main import main

    run_dir, _ = run
    (tmp_path / "imgs").mkdir()
    for i, im in enumerate(_images(run_dir, 3)):
        Image.fromarray(im[..., 0]).save(tmp_path / "imgs" / f"scan{i}.png")
    assert main(["explain", str(run_dir), "--images", str(tmp_path / "imgs"), "-n", "2", "--out",
                 str(tmp_path / "out")]) == 0
    assert str(tmp_path / "out") in capsys.readouterr().out
    index = json.loads((tmp_path / "out" / "explanations.json").read_text())
    assert [e["source"] for e in index["images"]] == ["scan0.png", "scan1.png"]
    assert index["images"][0]["true"] is None


def _images(run_dir: Path, n: int) -> np.ndarray:
    from tlzoo.train.recipe import load_run

    return np.load(load_run(run_dir)[0]["adapt"]["data"]["source"])["test_images"][:n]


def test_bad_input_names_the_value(run, tmp_path):
    import keras

    from tlzoo.analysis.explain import explain, target_layer
    from tlzoo.zoo import get_backbone_spec

    run_dir, _ = run
    with pytest.raises(ConfigError, match="'conv_pw_99' is not in backbone 'mobilenet_025'.*conv_pw_13_relu"):
        explain(run_dir, n=1, layer="conv_pw_99", out=tmp_path / "a")
    with pytest.raises(DataError, match="3 channel.*takes 1"):
        explain(run_dir, np.zeros((2, 64, 64, 3), np.uint8), out=tmp_path / "a")
    with pytest.raises(DataError, match="no_such_dir"):
        explain(run_dir, tmp_path / "no_such_dir", out=tmp_path / "a")
    with pytest.raises(ConfigError, match="class_index must be in 0..1"):
        explain(run_dir, n=1, class_index=2, out=tmp_path / "a")
    with pytest.raises(ConfigError, match="split must be"):
        explain(run_dir, split="tset", out=tmp_path / "a")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        explain(run_dir, n=1, out=tmp_path / "busy")
    assert not (tmp_path / "a").exists()
    with pytest.raises(ConfigError, match="needs a CNN.*ts_fcn"):
        target_layer(keras.Sequential([keras.Input((16, 2))]), get_backbone_spec("ts_fcn"))
    inputs = keras.Input((8, 8, 3))
    flat = keras.layers.Flatten(name="block1_flat")(inputs)  # a backbone without spatial maps (a transformer's)
    flat = keras.Model(inputs, keras.layers.Dense(4, name="block1_dense")(flat))
    with pytest.raises(ConfigError, match="no layer group with a spatial feature map.*needs a CNN"):
        target_layer(flat, get_backbone_spec("small_cnn"))
