"""Multi-task heads: label derivation, masked losses and metrics, a run, its export."""
from __future__ import annotations

import json

import numpy as np
import pytest

from support import fast_config, two_task_npz


def test_multitask_run_trains_both_heads_and_exports_named_outputs(tmp_path, weights_dir):
    from tlzoo.deploy.export import export, verify
    from tlzoo.train.recipe import adapt, evaluate, load_model

    data = two_task_npz(tmp_path / "two.npz")
    tasks = [{"name": "finding", "kind": "binary"},
             {"name": "exposure", "kind": "binary", "labels": "exposure", "classes": {"0": "dark", "1": "bright"},
              "loss_weight": 0.5}]
    cfg = fast_config(data=str(data), out=str(tmp_path / "run"), tasks=tasks, weights="imagenet", input_size=48,
                      schedule={"kind": "feature_extraction", "epochs": 10, "lr": 2e-2},
                      plugin_options={"brightness": 0.0, "contrast": 0.0})  # exposure is the signal: keep it
    result = adapt(cfg)
    test = result.metrics["test"]
    assert set(test) == {"finding", "exposure"}
    assert test["exposure"]["n_labelled"] < test["finding"]["n_labelled"] == 40  # masked samples are not scored
    assert test["exposure"]["roc_auc"] > 0.9  # brightness is easy from pretrained features
    assert test["finding"]["roc_auc"] > 0.75
    row = result.history[-1]
    assert {"finding_loss", "exposure_loss", "val_finding_auc", "val_exposure_auc"} <= set(row)
    assert (result.run_dir / "confusion_matrix_exposure.png").is_file()
    model = load_model(result.run_dir / "model.keras")
    out = model.predict(np.load(data)["images"][:5], verbose=0)
    assert set(out) == {"finding", "exposure"} and out["finding"].shape == (5, 1)
    # re-evaluation reads the same tasks and thresholds
    again = evaluate(result.run_dir)
    assert again["exposure"]["roc_auc"] == pytest.approx(test["exposure"]["roc_auc"], abs=1e-6)

    exported = export(result.run_dir, formats=["savedmodel", "onnx"], out=tmp_path / "export", verbose=0)
    info = json.loads((exported.out / "export.json").read_text())
    assert {"finding", "finding_label", "exposure", "exposure_label"} <= set(info["contract"]["outputs"])
    rule = json.loads((exported.out / "model_card.json").read_text())["model"]["decision_rule"]
    assert rule.startswith("Decision rules per task: finding: ") and "; exposure: " in rule, rule
    for fmt in ("savedmodel", "onnx"):
        assert exported.parity[fmt]["max_abs_diff"] <= 1e-4
        assert exported.test_metrics[fmt]["exposure"]["roc_auc"] == pytest.approx(test["exposure"]["roc_auc"], abs=1e-3)
    assert verify(exported.out)["hashes"] == "ok"
