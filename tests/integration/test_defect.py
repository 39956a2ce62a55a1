"""Defect-detection plugin: PatchCore pieces, anomaly recipe + export, classify mode, bad input.

Small generated textures; a randomly initialised small_cnn backbone keeps it fast. Real-data figures
come from benchmarks/defect_detection.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from defect_support import write_tiles_npz
from tlzoo.errors import ConfigError


@pytest.fixture(scope="module")
def tiles_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiles_npz(tmp_path_factory.mktemp("tiles") / "tiles.npz")


# ---------------------------------------------------------------- the anomaly recipe and its export


def anomaly_config(data: Path, out: Path, **options):
    from tlzoo.train.recipe import AdaptConfig

    opts = {"mode": "anomaly", "levels": "block2,block3", "max_false_alarm": 0.05, "coreset_ratio": 0.2,
            "heatmaps": 3, **options}
    return AdaptConfig(plugin="defect-detection", data=str(data), out=str(out), backbone="small_cnn", weights=None,
                       input_size=32, batch_size=16, verbose=0, plugin_options=opts)


@pytest.fixture(scope="module")
def anomaly_run(tiles_npz: Path, tmp_path_factory: pytest.TempPathFactory):
    """One anomaly run for the module's tests, which only read it: with quarter-turn views (each in the bank
    and averaged at scoring), so the exports carry the view ops (turns are transposes and reversals)."""
    import tlzoo

    return tlzoo.adapt(anomaly_config(tiles_npz, tmp_path_factory.mktemp("anomaly") / "run", views="rot90"))


def test_anomaly_run_directory_and_onnx_export(anomaly_run, tiles_npz, tmp_path):
    import tlzoo
    from tlzoo.anomaly.patchcore import MAP_OUTPUT
    from tlzoo.train.recipe import load_model

    res = anomaly_run
    run = res.run_dir
    for name in ("config.yaml", "metrics.json", "model.keras", "roc_curve.png", "score_histogram.png",
                 "heatmaps.png", "report.md", "test_predictions.npz"):
        assert (run / name).is_file(), name
    m = json.loads((run / "metrics.json").read_text())
    # protocol: 80 normals for training (60 fit + 20 threshold), 80 normals + 40 defective in test
    assert (m["n_train"], m["val"]["n"], m["test"]["n"]) == (60, 20, 120)
    assert m["val"]["false_alarm_rate"] <= 0.05
    assert m["test"]["roc_auc"] > 0.95 and m["test"]["recall"] > 0.8
    assert set(m["test"]["per_type_recall"]) == {"spot", "spot2"}
    assert m["bank"]["bank_size"] == round(0.2 * 60 * 4 * 8 * 8) and m["bank"]["views"] == "rot90"
    report = (run / "report.md").read_text()
    pngs = [line.split("(")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]
    assert "heatmaps.png" in pngs and sum(p.startswith("heatmaps/") for p in pngs) == 3
    assert all((run / p).is_file() for p in pngs)
    cfg = (run / "config.yaml").read_text()
    assert "views rot90 (in the bank, and averaged at scoring)" in report
    assert "recipe: anomaly/patchcore" in cfg and "fingerprint:" in cfg and "normal_class: good" in cfg
    assert "  task: binary" in cfg

    # the saved model reproduces the run's test scores
    pred = np.load(run / "test_predictions.npz")
    model = load_model(run / "model.keras")
    out = model(_test_images(tiles_npz)[:8], training=False)
    np.testing.assert_allclose(np.asarray(out["probabilities"])[:, 0], pred["probs"][:8], atol=1e-5)

    from tlzoo.train.recipe import evaluate

    assert evaluate(run)["roc_auc"] == pytest.approx(m["test"]["roc_auc"], abs=1e-6)  # `tlzoo evaluate` works too

    exp = tlzoo.export(run, formats=["savedmodel", "onnx", "openvino", "tflite"], out=tmp_path / "export", verbose=0)
    for fmt in ("savedmodel", "onnx", "openvino", "tflite"):
        assert exp.parity[fmt]["passed"] and exp.parity[fmt]["max_abs_diff"] <= 1e-4
        assert all(c[f"{MAP_OUTPUT}_max_abs_diff"] <= 1e-4 for c in exp.parity[fmt]["cases"].values())
    info = json.loads((tmp_path / "export" / "export.json").read_text())
    assert info["contract"]["input"]["dtype"] == "uint8"
    assert set(info["contract"]["outputs"]) == {"score", "raw_score", "label", MAP_OUTPUT}
    rule = json.loads((tmp_path / "export" / "model_card.json").read_text())["model"]["decision_rule"]
    assert rule.startswith(f"The anomaly threshold ({m['threshold']:.4g} on the raw score) was set from a false-alarm "
                           f"budget: the lowest that flags at most {m['val']['max_false_alarm']:g} of the "
                           f"{m['val']['n']} held-out normal images")
    # the normalised score: the threshold at 0.5, within [0, 1]
    runner = tlzoo.load_export(tmp_path / "export", "onnx")
    outputs = runner(_test_images(tiles_npz))
    assert ((outputs["score"] >= 0.5) == (outputs["raw_score"] >= m["threshold"])).all()
    assert outputs["score"].min() >= 0 and outputs["score"].max() <= 1
    np.testing.assert_array_equal(outputs["label"], (outputs["raw_score"] >= m["threshold"]).astype(np.int64))
    assert abs(info["test_metrics"]["onnx"]["roc_auc"] - m["test"]["roc_auc"]) < 1e-6
    import onnx

    proto = onnx.load(str(tmp_path / "export" / info["formats"]["onnx"]["path"]))
    size = m["bank"]["bank_size"]
    banks = [t for t in proto.graph.initializer if sorted(t.dims) == sorted((size, 192))]
    assert len(banks) == 1 and not [i for i in proto.graph.input if i.name != "image"]  # the bank is a graph constant
    amap = next(o for o in proto.graph.output if o.name == MAP_OUTPUT)
    assert all(d.dim_param or d.dim_value for d in amap.type.tensor_type.shape.dim)  # no unnamed dims


def _test_images(npz: Path) -> np.ndarray:
    from tlzoo_defect.anomaly_data import anomaly_splits, read_labelled

    splits, _ = anomaly_splits(read_labelled(str(npz)), 0)
    return splits.test.x


def test_classify_mode_trains_and_reports_confusion_matrix(tmp_path, weights_dir):
    import tlzoo
    from tlzoo.train.recipe import AdaptConfig

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    # quarter-turn invariant classes
    patterns = [np.sin(xx / 1.5), np.sin(xx / 5.0), np.sin(xx / 1.5) * np.sin(yy / 1.5)]
    x = np.concatenate([128 + 60 * p + rng.normal(0, 10, (90, 32, 32)) for p in patterns])
    path = tmp_path / "cls.npz"
    np.savez(path, images=np.clip(x, 0, 255).astype(np.uint8)[..., None], labels=np.repeat([0, 1, 2], 90),
             class_names=np.array(["fine", "coarse", "checker"]))
    cfg = AdaptConfig(plugin="defect-detection", data=str(path), out=str(tmp_path / "run"), backbone="mobilenet_025",
                      weights="imagenet", input_size=64, batch_size=32, verbose=0,
                      plugin_options={"epochs": 2, "head_epochs": 2, "base_lr": 3e-3})
    res = tlzoo.adapt(cfg)
    t = res.metrics["test"]
    assert set(t) >= {"accuracy", "macro_f1", "per_class_recall", "confusion_matrix"}
    assert len(t["per_class_recall"]) == 3 and np.asarray(t["confusion_matrix"]).sum() == 54
    assert t["accuracy"] > 0.8, t
    assert (res.run_dir / "confusion_matrix.png").is_file()


def test_predict_scores_anomaly_image_files_and_writes_heat_maps(anomaly_run, tiles_npz, tmp_path):
    """``tlzoo predict`` on an anomaly run: a score per file (equal to the run's model on the same
    pixels), the label at the run's threshold, and one heat-map PNG per file on request."""
    import csv

    from PIL import Image

    import tlzoo
    from tlzoo.train.recipe import load_model

    run = anomaly_run.run_dir
    threshold = json.loads((run / "metrics.json").read_text())["test"]["threshold"]
    with np.load(tiles_npz) as f:
        x = f["images"]
    picks = [0, 1, 170, 190]  # two defect-free tiles, two defective
    for i in picks:
        Image.fromarray(x[i][..., 0]).save(tmp_path / f"tile_{i}.png")
    out = tlzoo.predict(run, [tmp_path / f"tile_{i}.png" for i in picks], tmp_path / "p.csv",
                        heatmaps=tmp_path / "maps", verbose=0)
    rows = list(csv.DictReader(open(out.out)))
    model_scores = np.asarray(load_model(run / "model.keras")(x[picks].astype(np.float32))["probabilities"])[:, 0]
    np.testing.assert_allclose([float(r["score"]) for r in rows], model_scores, rtol=1e-4)
    assert [r["label_index"] for r in rows] == [str(int(s >= threshold)) for s in model_scores]
    assert sorted(p.name for p in (tmp_path / "maps").glob("*.png")) == sorted(f"tile_{i}.png" for i in picks)
    from support import fast_config

    head_only = {"stages": [{"name": "head", "epochs": 1, "trainable": 0, "learning_rate": 1e-3}]}  # any classify run
    clf = tlzoo.adapt(fast_config(data=str(tiles_npz), plugin="defect-detection", out=str(tmp_path / "clf"),
                                  calibration="none", schedule=head_only)).run_dir
    with pytest.raises(ConfigError, match="heat maps come with anomaly runs"):
        tlzoo.predict(clf, tmp_path / "tile_0.png", heatmaps=tmp_path / "m2", verbose=0)


def test_evaluate_an_anomaly_run_in_a_fresh_process(anomaly_run):
    """``tlzoo evaluate`` loads the run's model with the anomaly layers registered (it failed in a new process,
    where nothing had imported them)."""
    import os
    import subprocess
    import sys

    metrics = json.loads((anomaly_run.run_dir / "metrics.json").read_text())
    proc = subprocess.run([sys.executable, "-c", "from tlzoo.cli import main; raise SystemExit(main())", "evaluate",
                           str(anomaly_run.run_dir), "--json"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["roc_auc"] == pytest.approx(metrics["test"]["roc_auc"], abs=1e-6)
