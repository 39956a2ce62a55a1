"""Domain adaptation (CORAL, DANN), L2-SP and hybrid source+target data: the runs, end to end.

The runs train small_cnn from random initialisation: they check the plumbing (losses logged, the saved model
free of the domain head, the records), not what a backbone gains; a small CNN traces in a third of the time."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from support import fast_config, shifted_npz
from tlzoo.extensions import domain_adaptation as domain

# ---------------------------------------------------------------- runs


def _one_stage(epochs: int) -> dict:
    return {"stages": [{"name": "all", "epochs": epochs, "trainable": "all", "learning_rate": 1e-3}]}


def _check_saved_run(run_dir: Path) -> dict:
    """model.keras is the plain network (no trainer, no domain head) and gives the run's test predictions."""
    from tlzoo.data import read_npz
    from tlzoo.train.recipe import load_model

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    model = load_model(run_dir / "model.keras")
    names = {layer.name for layer in model.layers}
    assert not names & {"grl", "domain_head", "da_pool"}, names
    saved = np.load(run_dir / "test_predictions.npz")
    test_x = read_npz(config["adapt"]["data"]["source"], seed=config["adapt"]["training"]["seed"]).test.x
    np.testing.assert_allclose(model.predict(test_x, verbose=0), saved["probs"], atol=1e-5)
    return config


def test_coral_run(tmp_path, scans_npz):
    from tlzoo.train.recipe import adapt

    target = shifted_npz(tmp_path / "target.npz")
    result = adapt(fast_config(data=str(scans_npz), out=str(tmp_path / "run"), backbone="small_cnn",
                               domain_adaptation="coral", target_data=str(target), da_weight=5.0,
                               schedule=_one_stage(1)))
    config = _check_saved_run(result.run_dir)
    rec = config["adaptation_method"]
    assert rec["methods"] == ["coral"] and rec["coral"]["weight"] == 5.0
    assert rec["coral"]["target_data"]["n"] == 64 and len(rec["coral"]["target_data"]["fingerprint"]) == 64
    assert config["adapt"]["domain_adaptation"]["method"] == "coral"
    assert all(np.isfinite(row["coral_loss"]) and row["coral_loss"] >= 0 for row in result.history)
    assert "val_coral_loss" not in result.history[0]
    lines = "\n".join(domain.card_lines(rec))
    assert "## Adaptation method" in lines and "Deep CORAL, weight 5.0" in lines


def test_dann_run(tmp_path, scans_npz):
    from tlzoo.train.recipe import adapt

    target = shifted_npz(tmp_path / "target.npz", size=40)  # another size: fine, the model resizes
    result = adapt(fast_config(data=str(scans_npz), out=str(tmp_path / "run"), backbone="small_cnn",
                               domain_adaptation="dann", target_data=str(target), schedule=_one_stage(2)))
    config = _check_saved_run(result.run_dir)
    lambdas = [row["grl_lambda"] for row in result.history]
    assert 0 < lambdas[0] < lambdas[1] <= 1  # annealed over the whole schedule
    assert all(0 <= row["domain_accuracy"] <= 1 and row["domain_loss"] > 0 for row in result.history)
    assert any("resized" in n for n in config["adaptation_method"]["notes"])


def test_l2sp_run(tmp_path, scans_npz):
    from tlzoo.train.recipe import adapt

    result = adapt(fast_config(data=str(scans_npz), out=str(tmp_path / "run"), backbone="small_cnn", l2sp=0.5))
    _check_saved_run(result.run_dir)
    head, full = result.history
    assert head["l2sp"] == 0.0  # backbone frozen: nothing to pull back
    assert full["l2sp"] > 0
    assert result.config["adaptation_method"]["l2sp"]["alpha"] == 0.5
    assert any("random init" in n for n in result.config["adaptation_method"]["notes"])


def test_hybrid_run_anneals_ratio(tmp_path, scans_npz):
    from tlzoo.data.synthetic import write_opacity_npz
    from tlzoo.train.recipe import adapt

    source = write_opacity_npz(tmp_path / "source.npz", n_train=128, n_val=32, n_test=32, size=48, seed=3)
    result = adapt(fast_config(data=str(scans_npz), out=str(tmp_path / "run"), backbone="small_cnn",
                               hybrid_source=str(source), hybrid_ratio=0.75, hybrid_ratio_end=0.25))
    config = _check_saved_run(result.run_dir)
    stages = config["adaptation_method"]["stages"]
    assert [s["hybrid_ratio"] for s in stages] == [0.75, 0.25]
    assert [s["steps_per_epoch"] for s in stages] == [12, 4]  # 96 target samples, batch 32
    assert any("resized from 48x48" in n for n in config["adaptation_method"]["notes"])
    assert "hybrid data" in "\n".join(domain.card_lines(config["adaptation_method"]))
