"""Time-series backbones, the timeseries-fraud plugin, `tlzoo pretrain` and their round trip."""
from __future__ import annotations

import numpy as np
import pytest

from timeseries_support import event_table
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


def test_transformer_tokens_see_a_neighbourhood_and_older_entries_still_load(tmp_path, monkeypatch):
    """ts_transformer's tokens are 8-step convolutions: on one channel, per-step tokens all lie on one line
    (the README's UCR table has the accuracies before and after). An entry pretrained with per-step tokens,
    written before entries recorded how they were built, loads as it was."""
    import json

    from tlzoo.zoo.timeseries import ENTRY_FILE, transformer, write_local_entry

    model, _, _ = build_backbone("ts_transformer", None, (None, 1))
    assert model.get_layer("stem_proj").kernel.shape == (8, 1, 64)
    x = np.zeros((1, 32, 1), np.float32)
    x[0, 16] = 1.0  # an impulse changes the tokens of the steps within the kernel's reach only, before attention
    stem = model.get_layer("stem_proj")
    moved = np.abs(np.asarray(stem(x)) - np.asarray(stem(np.zeros_like(x))))[0].max(-1) > 0
    assert moved.sum() == 8

    monkeypatch.setenv("TLZOO_HOME", str(tmp_path))
    lineage = {"source": "x.npz", "data_fingerprint": "0" * 16, "objective": "masked", "epochs": 1}
    path = write_local_entry("new_tr", "ts_transformer", model, 1, ["v"], lineage)
    assert json.loads((path / ENTRY_FILE).read_text())["builder_kwargs"] == {"stem_kernel": 8}
    old = transformer(input_shape=(None, 1), stem_kernel=1)
    path = write_local_entry("old_tr", "ts_transformer", old, 1, ["v"], lineage, builder_kwargs={"stem_kernel": 1})
    entry = json.loads((path / ENTRY_FILE).read_text())
    del entry["builder_kwargs"]  # as entries were written before they recorded it
    (path / ENTRY_FILE).write_text(json.dumps(entry))
    from tlzoo.zoo.timeseries import register_local_entries

    register_local_entries()
    loaded, _, _ = build_backbone("old_tr", "pretrained", (None, 1))
    series = np.random.default_rng(0).normal(size=(2, 20, 1)).astype(np.float32)
    np.testing.assert_allclose(loaded(series), old(series), atol=1e-6)


def test_window_shorter_than_receptive_field():
    spec = get_backbone_spec("ts_inception")
    with pytest.warns(UserWarning, match="shorter than 'ts_inception'.*40") as said:
        check_input_shape(spec, (16, 3))
    assert "window" not in str(said[0].message).replace("(or windows)", "")  # no other plugin's option named
    out = spec.builder(input_shape=(None, 3))(np.zeros((2, 16, 3), np.float32))  # it runs ('same' padding)
    assert tuple(out.shape) == (2, 16, spec.feature_dim)
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
    from tlzoo.evaluation.metrics import threshold_for_max_fpr
    from tlzoo_timeseries.fraud_metrics import fraud_metrics, precision_at_k

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
