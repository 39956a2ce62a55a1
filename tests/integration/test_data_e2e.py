"""The four layouts end to end: adapt -> evaluate -> predict, --group-by on a table column and on a
DICOM field, and predict from a run and from its ONNX export giving identical labels."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from layouts import (
    dicom_folders,
    image_table,
    mixed_class_folders,
    save_image,
    scan_pixels,
    split_folders,
)
from support import fast_config
from tlzoo.deploy.predict import predict
from tlzoo.train.recipe import adapt, evaluate

# The layouts' plumbing, not accuracy: small_cnn (random init, head stage only) traces fastest, and unlike a
# random-init mobilenet_025 (frozen BatchNorm = identity) its outputs vary with the input, so the run and
# ONNX predictions compared below are not a constant.
HEAD_ONLY = {"stages": [{"name": "head", "epochs": 2, "trainable": 0, "learning_rate": 3e-3}]}


def _run(tmp_path, data, **kw):
    cfg = fast_config(data=str(data), out=str(tmp_path / "run"), backbone="small_cnn", schedule=HEAD_ONLY,
                      calibration="none", batch_size=16, **kw)
    return adapt(cfg)


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_mixed_class_folders_adapt_evaluate_predict(tmp_path):
    root = mixed_class_folders(tmp_path / "scans", n_per_class=20)
    result = _run(tmp_path, root)
    data_cfg = result.config["data"]
    assert data_cfg["reader"]["channels"]["count"] == 3 and data_cfg["train"]["shape"] == [32, 32, 3]
    assert "train: found" in data_cfg["reader"]["summary"][0]
    metrics = evaluate(result.run_dir)
    assert metrics["n"] == result.metrics["test"]["n"]
    assert metrics["roc_auc"] == pytest.approx(result.metrics["test"]["roc_auc"], abs=1e-6)
    good = (root / "normal" / "normal_000.jpg").read_bytes()
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "broken.jpg").write_bytes(good[:200])
    save_image(tmp_path / "new" / "wide.png", scan_pixels(1, 300, 500, np.random.default_rng(0)), "RGBA")
    tiff = save_image(tmp_path / "new" / "scan.tif", scan_pixels(1, 200, 200, np.random.default_rng(1)), "RGB")
    tiff.write_bytes(tiff.read_bytes()[:60_000])  # its header is whole: only decoding finds the cut
    out = predict(result.run_dir, [root / "pneumonia", tmp_path / "new"], tmp_path / "pred.csv", verbose=0,
                  batch_size=4)
    rows = _rows(tmp_path / "pred.csv")
    assert len(rows) == 23 and out.n_errors == 2
    broken = next(r for r in rows if r["path"].endswith("broken.jpg"))
    assert broken["label"] == "" and "truncated" in broken["error"]
    cut = next(r for r in rows if r["path"].endswith("scan.tif"))
    assert cut["label"] == "" and cut["error"].startswith("cannot decode")
    scored = [r for r in rows if not r["error"]]
    assert all(r["label"] in ("normal", "pneumonia") and 0 <= float(r["p_pneumonia"]) <= 1 for r in scored)


def test_split_folders_with_case_differences_train(tmp_path):
    names = {"train": ("NORMAL", "PNEUMONIA"), "val": ("normal", "pneumonia"), "Test": ("Normal", "pneumonia")}
    root = split_folders(tmp_path / "xr", {"train": 16, "val": 6, "Test": 6}, names)
    result = _run(tmp_path, root)
    assert result.config["data"]["val"]["per_class"] == [6, 6]
    assert evaluate(result.run_dir, split="val")["n"] == 12
    predict(result.run_dir, root / "Test", tmp_path / "p.csv", verbose=0)
    assert len(_rows(tmp_path / "p.csv")) == 12


def test_image_table_with_group_by_a_column(tmp_path):
    table = image_table(tmp_path / "derm", n=80)
    result = _run(tmp_path, table, group_by="sex")
    groups = result.metrics["subgroups"]
    assert set(groups["groups"]) == {"F", "M"}
    assert result.config["data"]["reader"]["attribute_columns"] == ["sex", "site"]
    assert evaluate(result.run_dir)["n"] == result.metrics["test"]["n"]
    predict(result.run_dir, table, tmp_path / "p.csv", verbose=0)
    assert len(_rows(tmp_path / "p.csv")) == 80
    from tlzoo.deploy.export import export

    export(result.run_dir, formats=["savedmodel"], out=tmp_path / "export", verbose=0)
    card = (tmp_path / "export" / "model_card.md").read_text()
    assert "read as label table, 3 channel(s); per-sample attributes: sex, site" in card


def test_dicom_folder_with_group_by_a_header_field(tmp_path):
    root = dicom_folders(tmp_path / "cr", n_per_class=20)
    result = _run(tmp_path, root, group_by="PatientSex")
    assert set(result.metrics["subgroups"]["groups"]) == {"F", "M"}
    assert result.config["data"]["train"]["shape"] == [32, 32, 1]
    assert evaluate(result.run_dir)["n"] == result.metrics["test"]["n"]
    predict(result.run_dir, root / "normal", tmp_path / "p.csv", verbose=0)
    rows = _rows(tmp_path / "p.csv")
    assert len(rows) == 20 and not any(r["error"] for r in rows)


def test_predict_from_run_and_onnx_export_give_identical_labels(tmp_path):
    pytest.importorskip("tf2onnx")
    from tlzoo.deploy.export import export

    result = _run(tmp_path, mixed_class_folders(tmp_path / "scans", n_per_class=16))
    export(result.run_dir, formats=["onnx"], out=tmp_path / "export", verbose=0)
    rng = np.random.default_rng(3)
    photos = tmp_path / "photos"
    for i, (h, w) in enumerate([(3024, 4032), (1080, 1920), (4032, 3024), (960, 1280)] * 2):
        gray = scan_pixels(i % 2, h // 8, w // 8, rng)
        img = Image.fromarray(np.stack([gray] * 3, -1)).resize((w, h))
        exif = Image.Exif()
        exif[0x0112] = (1, 6)[i % 2]  # half of them stored sideways, as phones do
        photos.mkdir(exist_ok=True)
        img.save(photos / f"IMG_{i:04d}.JPG", exif=exif, quality=85)
    from_run = predict(result.run_dir, photos, tmp_path / "run.csv", verbose=0)
    from_onnx = predict(tmp_path / "export", photos, tmp_path / "onnx.csv", fmt="onnx", verbose=0)
    assert from_onnx.source == "onnx" and from_run.source == "run"
    a, b = _rows(tmp_path / "run.csv"), _rows(tmp_path / "onnx.csv")
    assert [r["path"] for r in a] == [r["path"] for r in b] and len(a) == 8
    assert [r["label"] for r in a] == [r["label"] for r in b]
    diffs = [abs(float(x["p_pneumonia"]) - float(y["p_pneumonia"])) for x, y in zip(a, b)]
    assert max(diffs) < 1e-4


def test_python_sources_arrays_dataframe_and_tf_data(tmp_path, monkeypatch):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    x = np.stack([scan_pixels(int(v), 24, 24, rng) for v in y])[..., None]
    plain = dict(backbone="small_cnn", schedule=HEAD_ONLY, calibration="none")
    run = adapt(fast_config(data=(x, y), out=str(tmp_path / "arrays"), **plain))
    assert run.config["adapt"]["data"]["source"] == "<in-memory builtins.tuple>" and run.metrics["test"]["n"] == 12

    ds = tf.data.Dataset.from_tensor_slices({"image": x, "label": y})
    run = adapt(fast_config(data=ds, out=str(tmp_path / "tfdata"), **plain))
    assert run.metrics["test"]["n"] == 12 and run.config["data"]["train"]["shape"] == [32, 32, 1]

    table = image_table(tmp_path / "derm", n=40)
    columns = {"path": [], "diagnosis": [], "site": []}  # a table of paths from Python (a DataFrame reads alike)
    for line in table.read_text().splitlines()[1:]:
        name, diagnosis, _, site = line.split(",")
        columns["path"].append(name)
        columns["diagnosis"].append(diagnosis)
        columns["site"].append(site)
    monkeypatch.chdir(tmp_path / "derm" / "images")  # paths are relative to the working directory
    run = adapt(fast_config(data=columns, out=str(tmp_path / "frame"), group_by="site", **plain))
    assert run.config["data"]["reader"]["attribute_columns"] == ["site"]
    assert set(run.metrics["subgroups"]["groups"]) == {"north", "south"}


def test_domain_adaptation_target_and_hybrid_source_as_folders(tmp_path):
    source = mixed_class_folders(tmp_path / "source", n_per_class=16)
    target = mixed_class_folders(tmp_path / "target", n_per_class=6, seed=1)  # unlabelled: its folders are ignored
    hybrid = mixed_class_folders(tmp_path / "hybrid", n_per_class=10, seed=2)
    run = _run(tmp_path, source, domain_adaptation="coral", target_data=str(target), hybrid_source=str(hybrid),
               hybrid_ratio=0.3)
    method = run.config["adaptation_method"]
    assert method["methods"] == ["coral", "hybrid"]
    assert method["coral"]["target_data"]["n"] == 12 and method["coral"]["target_data"]["shape"] == [32, 32, 3]
    assert len(method["coral"]["target_data"]["fingerprint"]) == 64
    assert run.metrics["test"]["n"] > 0
