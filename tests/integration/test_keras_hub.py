"""KerasHub presets end to end: a ViT and a CNN preset (tiny, random, written with ``save_to_preset``) adapted
with layer-wise learning-rate decay, exported in every format and verified; ``rank`` and ``explain`` (Grad-CAM on
the patch-token grid, with the model-randomisation sanity check) on the ViT; the licence gate."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from keras_hub_support import SIZE, save_tiny_resnet, save_tiny_vit
from support import fast_config
from tlzoo.errors import ConfigError

pytest.importorskip("keras_hub")

FORMATS = ["savedmodel", "onnx", "tflite", "tflite_int8", "tflite_fp16", "tflite_int8_full", "openvino"]
FLOAT_FORMATS = ["savedmodel", "onnx", "tflite", "openvino"]
LLRD = {"stages": [{"name": "head", "epochs": 1, "trainable": 0, "learning_rate": 1e-2},
                   {"name": "all", "epochs": 2, "trainable": "all", "learning_rate": 3e-3, "lr_decay": 0.7}]}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    from tlzoo.data.synthetic import write_opacity_npz

    root = tmp_path_factory.mktemp("keras_hub")
    save_tiny_vit(root / "vit")
    save_tiny_resnet(root / "resnet")
    write_opacity_npz(root / "scans.npz", n_train=96, n_val=48, n_test=64, size=SIZE, contrast=60)
    return root


@pytest.fixture(scope="module")
def runs(root) -> dict[str, Path]:
    """Both presets adapted: head first, then every block with layer-wise decay 0.7. The ViT through the
    command line (with --pooling), the CNN through the Python API."""
    from tlzoo.cli.main import main
    from tlzoo.train.recipe import adapt

    code = main(["adapt", "--plugin", "medical-imaging", "--data", str(root / "scans.npz"), "--backbone",
                 f"keras_hub:{root / 'vit'}", "--input-size", str(SIZE), "--pooling", "cls+mean", "--schedule", "full",
                 "--head-epochs", "1", "--epochs", "2", "--lr", "3e-3", "--lr-decay", "0.7", "--calibration", "none",
                 "--out", str(root / "run_vit")])
    assert code == 0
    adapt(fast_config(data=str(root / "scans.npz"), out=str(root / "run_resnet"),
                      backbone=f"keras_hub:{root / 'resnet'}", weights="imagenet", calibration="none", schedule=LLRD))
    return {"vit": root / "run_vit", "resnet": root / "run_resnet"}


@pytest.mark.parametrize("kind", ["vit", "resnet"])
def test_adapt_export_every_format_and_verify(runs, kind):
    from tlzoo.deploy import export as E
    from tlzoo.train.recipe import load_run

    config, model = load_run(runs[kind])
    assert config["adapt"]["model"]["backbone"].startswith("keras_hub:")
    stages = config["schedule"]["stages"]
    assert stages[-1]["trainable"] == "all" and stages[-1]["lr_decay"] == pytest.approx(0.7)
    if kind == "vit":
        assert config["adapt"]["model"]["pooling"] == "cls+mean"
    probs = np.load(runs[kind] / "test_predictions.npz")["probs"]
    assert probs.std() > 1e-3, "a model whose output ignores its input would make parity vacuous"

    result = E.export(runs[kind], formats=FORMATS, out=runs[kind].parent / f"export_{kind}", verbose=0)
    checked = E.verify(result.out)
    assert checked["hashes"] == "ok"
    parity = checked["parity"]
    assert set(parity) == set(FORMATS) and all(p["passed"] for p in parity.values())
    for fmt in FORMATS:  # the figures, with -s
        print(f"{kind} {fmt}: max abs diff {parity[fmt]['max_abs_diff']:.3g}, label agreement "
              f"{parity[fmt]['agreement']:.3f} (n={parity[fmt]['n']})")
    for fmt in FLOAT_FORMATS:
        assert parity[fmt]["max_abs_diff"] <= 1e-4 and parity[fmt]["agreement"] == 1.0, (fmt, parity[fmt])
    card = (result.out / "model_card.md").read_text()
    weights = json.loads((result.out / "model_card.json").read_text())["lineage"]["weights"]
    assert weights["sha256"] and weights["licence"] == "Apache-2.0"
    assert "keras_hub 0.32" in weights["origin"] and f"origin: KerasHub preset {runs[kind].parent / kind}" in card


def test_rank_scores_both_presets(root, tmp_path):
    from tlzoo.analysis.rank import rank

    result = rank("medical-imaging", str(root / "scans.npz"), [f"keras_hub:{root / 'vit'}",
                                                               f"keras_hub:{root / 'resnet'}"],
                  input_size=SIZE, out=tmp_path / "rank")
    assert {r.backbone for r in result.rows} == {f"keras_hub:{root / 'vit'}", f"keras_hub:{root / 'resnet'}"}
    assert not result.skipped and all(0 <= r.knn <= 1 and np.isfinite(r.logme) for r in result.rows)
    vit = next(r for r in result.rows if r.backbone.endswith("vit"))
    assert vit.feature_dim == 16 and vit.weights_source["source"] == "local"  # the class token (its default)
    assert (tmp_path / "rank" / "rank.json").is_file() and (tmp_path / "rank" / "rank.png").is_file()


def test_explain_maps_the_patch_token_grid(runs):
    from tlzoo.analysis.explain import explain

    res = explain(runs["vit"], n=4)
    assert res.method == "grad-cam" and res.layer == "transformer_block_1"  # the last block's input
    assert res.maps.shape == (4, SIZE, SIZE) and res.maps.min() >= 0 and res.maps.max() <= 1
    assert sum(m.max() > 0 for m in res.maps) >= 3
    index = json.loads((res.out / "explanations.json").read_text())
    assert index["feature_grid"] == [SIZE // 8, SIZE // 8]
    with pytest.raises(ConfigError, match="does not output patch tokens"):
        explain(runs["vit"], n=1, layer="token_pool")


def test_model_randomisation_changes_the_vit_maps(runs):
    """Adebayo et al. 2018, as for CNNs (test_explain.py): every weight re-drawn (``clone_model`` rebuilds the
    preset encoder from its config), the maps of the "opacity" class must change. A 4x4 patch grid gives noisy
    rank correlations, so the bound is on the mean over six re-draws. Measured here (64 test images), seeds 0-5:
    0.37, -0.10, -0.18, -0.06, 0.05, 0.05 (mean 0.02; seed 0 reached 0.42 in another training of the fixture),
    against 1 for an unchanged model."""
    import keras
    from scipy.stats import spearmanr

    from tlzoo.analysis.explain import GradCAM
    from tlzoo.train.recipe import load_run

    config, model = load_run(runs["vit"])
    x = np.load(config["adapt"]["data"]["source"])["test_images"]
    backbone = config["adapt"]["model"]["backbone"]
    trained, *_ = GradCAM(model, backbone)(x, class_index=1)
    again, *_ = GradCAM(model, backbone)(x, class_index=1)
    np.testing.assert_allclose(again, trained, atol=1e-6)
    rhos = []
    for seed in range(6):
        keras.utils.set_random_seed(seed)
        random, *_ = GradCAM(keras.models.clone_model(model), backbone)(x, class_index=1)
        both = (trained.max((1, 2)) > 0) & (random.max((1, 2)) > 0)
        assert both.sum() >= 32
        rhos.append(np.mean([spearmanr(a.ravel(), b.ravel())[0] for a, b in zip(trained[both], random[both])]))
    assert np.mean(rhos) < 0.25 and max(rhos) < 0.7, rhos


def test_the_licence_gate_reads_the_presets_licence(root, tmp_path):
    from tlzoo.train.recipe import adapt

    save_tiny_vit(tmp_path / "nc_vit", licence="CC-BY-NC-4.0")
    cfg = fast_config(data=str(root / "scans.npz"), out=str(tmp_path / "run"),
                      backbone=f"keras_hub:{tmp_path / 'nc_vit'}", weights="imagenet", intended_use="commercial",
                      data_licence="CC-BY-4.0")
    with pytest.raises(ConfigError, match=r"licensed 'CC-BY-NC-4.0', which allows research use only, not commercial"):
        adapt(cfg)
    assert not (tmp_path / "run").exists()
