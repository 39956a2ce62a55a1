"""Time-series backbones, the timeseries-fraud plugin, `tlzoo pretrain` and their round trip."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tlzoo.errors import ConfigError, DataError
from tlzoo.plugin import get_plugin
from tlzoo.zoo import (
    build_backbone,
    check_input_shape,
    get_backbone_spec,
    layer_groups,
    list_backbones,
)

TS_BACKBONES = ["ts_fcn", "ts_inception", "ts_resnet", "ts_transformer"]


def event_table(path: Path, n: int = 600, f: int = 4, seed: int = 0, accounts: int = 0, **override) -> Path:
    """Events with a learnable fraud signal: frauds (10%) have shifted first two features."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(np.int64)
    x = rng.normal(size=(n, f))
    x[:, :2] += 2.5 * y[:, None]
    x[:, -1] = np.abs(x[:, -1]) * 100  # an "amount" on another scale
    arrays = {"features": x, "labels": y, "time": np.arange(n, dtype=float),
              "feature_names": np.array([f"v{i}" for i in range(f - 1)] + ["amount"])}
    if accounts:
        arrays["account"] = rng.integers(0, accounts, n)
    arrays.update(override)
    np.savez(path, **arrays)
    return path


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TLZOO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


# ---------------------------------------------------------------- backbones


@pytest.mark.parametrize("name", TS_BACKBONES)
def test_backbone_any_length_and_groups(name):
    spec = get_backbone_spec(name)
    assert spec.modality == "timeseries" and name in list_backbones("ts_*")
    model, _, record = build_backbone(name, None, (None, 3))
    assert record is None
    for t in (spec.min_size, 50):
        out = model(np.zeros((2, t, 3), np.float32))
        assert tuple(out.shape) == (2, t, spec.feature_dim)
    groups = layer_groups(model, spec)
    assert len(groups) >= 3 and groups[-1].name in ("block3", "block6", "final")


def test_window_shorter_than_receptive_field():
    with pytest.raises(ConfigError, match="shorter than 'ts_inception'.*40"):
        check_input_shape(get_backbone_spec("ts_inception"), (16, 3))
    check_input_shape(get_backbone_spec("ts_inception"), (1, 3))  # tabular mode: a single event
    check_input_shape(get_backbone_spec("ts_fcn"), (8, 3))


# ---------------------------------------------------------------- data and bad input


def test_windows_hold_only_current_and_past_events_of_the_account(tmp_path):
    from tlzoo_timeseries import events

    table = events.read_table(event_table(tmp_path / "e.npz", n=200, accounts=5))
    idx = events.window_index(table, 6)
    for i in range(len(idx)):
        assert (idx[i] <= i).all() and idx[i, -1] == i
        assert (table.account[idx[i]] == table.account[i]).all()
    plugin = get_plugin("timeseries-fraud", window=6)
    data = plugin.read_data(str(tmp_path / "e.npz"), seed=0)
    assert data.train.x.shape[1:] == (6, 4)
    assert sum(len(data.split(s)) for s in ("train", "val", "test")) == 200


def test_nan_named_by_row_and_column_then_imputed(tmp_path):
    x = np.random.default_rng(0).normal(size=(300, 3))
    x[17, 1] = np.nan
    x[42, 2] = np.inf
    path = event_table(tmp_path / "nan.npz", n=300, f=3, features=x)
    with pytest.raises(DataError, match=r"row 17 column 'v1'.*row 42 column 'amount'.*impute=median"):
        get_plugin("timeseries-fraud").read_data(str(path))
    data = get_plugin("timeseries-fraud", impute="median").read_data(str(path))
    assert all(np.isfinite(data.split(s).x).all() for s in ("train", "val", "test"))
    assert any("imputed 2 NaN/inf" in n for n in data.notes)


def test_single_class_labels(tmp_path):
    path = event_table(tmp_path / "one.npz", n=100, labels=np.zeros(100, np.int64))
    with pytest.raises(DataError, match="single class"):
        get_plugin("timeseries-fraud").read_data(str(path))


def test_out_of_order_timestamps(tmp_path):
    t = np.arange(100, dtype=float)
    t[[30, 31]] = t[[31, 30]]
    path = event_table(tmp_path / "order.npz", n=100, time=t)
    with pytest.raises(DataError, match=r"out of order: row 31 \(time 30\) comes after row 30 \(time 31\)"):
        get_plugin("timeseries-fraud", window=4).read_data(str(path))
    data = get_plugin("timeseries-fraud", window=4, sort_by_time=True).read_data(str(path))
    assert any("sorted by time" in n for n in data.notes)


def test_fp_budget_threshold_and_fraud_metrics():
    from tlzoo_timeseries.fraud_metrics import fraud_metrics, precision_at_k

    from tlzoo.evaluation.metrics import threshold_for_max_fpr

    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.05).astype(int)
    p = np.clip(rng.normal(0.3 + 0.4 * y, 0.15), 0, 1)
    t = threshold_for_max_fpr(y, p, 0.02)
    fpr = ((p >= t) & (y == 0)).sum() / (y == 0).sum()
    assert fpr <= 0.02 and ((p >= np.nextafter(t, 0) - 1e-3) & (y == 0)).sum() / (y == 0).sum() > 0.015
    assert precision_at_k(np.array([0, 1, 1, 0]), np.array([0.1, 0.9, 0.8, 0.7]), 2) == 1.0
    m = fraud_metrics(y, p, threshold=t, fpr=0.02, top_k=50)
    assert m["false_positive_rate"] <= 0.02 and 0 < m["recall_at_fpr_0.02"] <= 1 and m["positives"] == y.sum()


def test_augmentations_training_only_and_shape():
    from tlzoo_timeseries.augment import AUGMENTATIONS, SeriesAugmenter

    x = np.random.default_rng(0).normal(size=(4, 20, 3)).astype("float32")
    for name in AUGMENTATIONS:
        out = np.asarray(SeriesAugmenter([name], np.ones(3))(x))
        assert out.shape == x.shape and np.isfinite(out).all() and not np.allclose(out, x), name
    plugin = get_plugin("timeseries-fraud", augment=list(AUGMENTATIONS))
    plugin._scale = np.ones(3)
    (layer,) = plugin.augmentations()
    assert np.array_equal(layer(x, training=False), x)
    with pytest.raises(ConfigError, match="unknown augmentation"):
        SeriesAugmenter(["flip"], np.ones(3))


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
