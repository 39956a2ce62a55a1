"""Time-series backbones, the timeseries-fraud plugin, `tlzoo pretrain` and their round trip."""
from __future__ import annotations

import json

import numpy as np
import pytest

from timeseries_support import event_table
from tlzoo.errors import ConfigError, DataError
from tlzoo.zoo import (
    build_backbone,
    get_backbone_spec,
    list_backbones,
)


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TLZOO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


# ---------------------------------------------------------------- pretrain -> zoo -> adapt -> export


def test_pretrain_adapt_export_round_trip(tmp_path, home):
    from tlzoo.deploy.export import export
    from tlzoo.train.recipe import adapt, evaluate
    from tlzoo.zoo.pretrain import pretrain

    data = str(event_table(tmp_path / "cc.npz", n=300))
    p = pretrain(plugin="timeseries-fraud", data=data, name="toy_fcn", backbone="ts_fcn", epochs=2,
                 batch_size=32, verbose=0)
    entry = json.loads((home / "zoo" / "toy_fcn" / "entry.json").read_text())
    assert entry["lineage"]["objective"] == "masked" and entry["lineage"]["epochs"] == 2
    assert len(entry["lineage"]["data_fingerprint"]) == 64 and not entry["lineage"]["labels_used"]
    assert p.history[-1] < p.history[0]  # reconstruction improves
    assert "toy_fcn" in list_backbones() and get_backbone_spec("toy_fcn").weight_names == ("pretrained",)
    with pytest.raises(ConfigError, match="exists"):
        pretrain(plugin="timeseries-fraud", data=data, name="toy_fcn", epochs=1, verbose=0)

    run = adapt(plugin="timeseries-fraud", data=data, backbone="toy_fcn", out=str(tmp_path / "run"), batch_size=32,
                verbose=0, schedule={"kind": "full", "epochs": 2, "head_epochs": 1},
                plugin_options={"loss": "focal", "augment": ["jitter", "scaling"]})
    assert run.config["weights"]["source"] == "pretrained" and "masked" in run.config["weights"]["lineage"]
    m = json.loads((run.run_dir / "metrics.json").read_text())
    assert m["test"]["pr_auc"] > 0.5 and m["baseline"]["test"]["pr_auc"] > 0.5  # prevalence is 0.1
    assert "recall_at_fpr_0.01" in m["test"] and "precision_at_top_50" in m["baseline"]["test"]
    assert (run.run_dir / "pr_curve.png").stat().st_size > 1000

    # the pretrained weights arrived in the adapted model before training changed them
    zoo_bb, _, _ = build_backbone("toy_fcn", "pretrained", (None, 4))
    assert zoo_bb.get_layer("block1_conv").get_weights()[0].shape == (8, 4, 128)

    ex = export(run.run_dir, formats=["savedmodel", "onnx"], out=tmp_path / "export", verbose=0, heldout=16)
    assert ex.parity["onnx"]["max_abs_diff"] <= 1e-4 and ex.parity["savedmodel"]["max_abs_diff"] <= 1e-4
    assert "the plugin's fp_budget" in ex.card["model"]["decision_rule"]
    # series of any length, named as series: the exported graph fixes neither the length nor the name "image"
    import onnxruntime as ort

    from tlzoo.train.recipe import load_run

    session = ort.InferenceSession(str(ex.out / "model.onnx"))
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("series", ["batch", "time", 4])]
    assert ex.card["model"]["input"]["preprocessing"].startswith("float32 [batch, time, 4 features], any length")
    _, model = load_run(run.run_dir)
    for length in (9, 40):
        x = np.random.default_rng(length).normal(size=(3, length, 4)).astype("float32")
        got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"series": x})))
        np.testing.assert_allclose(got["probabilities"], model.predict(x, verbose=0), atol=1e-4)

    # a feature used in training missing at inference
    x = np.load(data)["features"][:, :3]
    moved = event_table(tmp_path / "missing.npz", n=300, f=3, features=x,
                        feature_names=np.array(["v0", "v1", "v2"]))
    with pytest.raises(DataError, match=r"feature\(s\) \['amount'\] used in training are missing"):
        evaluate(run.run_dir, data=str(moved))


def test_contrastive_pretraining_and_channel_mismatch(tmp_path, home):
    from tlzoo.train.recipe import adapt
    from tlzoo.zoo.pretrain import pretrain

    data = str(event_table(tmp_path / "w.npz", n=300, accounts=4))
    p = pretrain(plugin="timeseries-fraud", data=data, name="toy_tr", backbone="ts_transformer",
                 objective="contrastive", epochs=1, batch_size=32, verbose=0,
                 plugin_options={"window": 8, "augment": ["jitter", "magnitude_warp", "time_warp"]})
    assert np.isfinite(p.history).all() and p.lineage["objective"] == "contrastive"
    other = str(event_table(tmp_path / "other.npz", n=300, f=5))
    with pytest.raises(ConfigError, match="pretrained on 4 channel"):
        adapt(plugin="timeseries-fraud", data=other, backbone="toy_tr", out=str(tmp_path / "r"), verbose=0,
              plugin_options={"window": 8})
    with pytest.raises(ConfigError, match="timeseries backbone"):
        adapt(plugin="medical-imaging", data=other, backbone="ts_fcn", out=str(tmp_path / "r2"), verbose=0)


# ---------------------------------------------------------------- timeseries-classification


def test_supervised_pretraining_on_three_classes_is_a_softmax_cross_entropy(tmp_path, home):
    """``pretrain --objective supervised`` on three classes: a softmax and sparse categorical cross-entropy
    (binary cross-entropy on labels 0, 1, 2 was trained silently before), recorded in the entry's lineage."""
    from timeseries_support import shapes_ts
    from tlzoo.zoo.pretrain import pretrain

    train = shapes_ts(tmp_path / "data", n_train=60)
    p = pretrain(plugin="timeseries-classification", data=str(train), name="shapes_sup", backbone="ts_fcn",
                 objective="supervised", epochs=6, batch_size=16, learning_rate=3e-3, verbose=0)
    assert p.lineage["loss"] == "sparse_categorical_crossentropy" and p.lineage["classes"] == 3
    assert 0.7 < p.history[0] < 1.6  # about ln 3 = 1.10 for a near-uniform first guess over three classes
    assert p.history[-1] < 0.8 * p.history[0]


def test_series_classification_adapt_export_verify_any_length(tmp_path):
    """The first-party classification plugin on a UCR-style .ts pair of variable-length series, through the
    command line: adapt -> export ONNX -> verify; the exported model takes series of other lengths."""
    import onnxruntime as ort

    from timeseries_support import shapes_ts
    from tlzoo.cli.main import main
    from tlzoo.deploy.export import verify
    from tlzoo.train.recipe import load_run

    train = shapes_ts(tmp_path / "data")
    run_dir = tmp_path / "run"
    assert main(["adapt", "--plugin", "timeseries-classification", "--data", str(train), "--backbone", "ts_fcn",
                 "--weights", "none", "--option", "epochs=25", "--option", "patience=25", "--batch-size", "16",
                 "--out", str(run_dir)]) == 0
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["class_names"] == ["bump", "dip", "step"] and m["monitor"]["name"] == "val_loss"
    assert m["test"]["n"] == 60 and m["test"]["accuracy"] >= 0.8, m["test"]
    config, model = load_run(run_dir)
    assert config["batchnorm"]["reestimated"] and config["batchnorm"]["samples"] == m["n_train"]
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(tmp_path / "export")]) == 0
    checked = verify(tmp_path / "export")
    assert checked["parity"]["onnx"]["passed"] and checked["parity"]["onnx"]["max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(str(tmp_path / "export" / "model.onnx"))
    for length in (24, 90):
        x = np.random.default_rng(length).normal(size=(2, length, 1)).astype("float32")
        got = session.run(["probabilities"], {"series": x})[0]
        np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=1e-4)
