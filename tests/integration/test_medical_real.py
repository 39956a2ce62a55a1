"""The medical-imaging plugin on real PneumoniaMNIST with real ImageNet weights (skips without ../shared).

A short recipe only (the full figures come from benchmarks/pneumonia_transfer.py)."""
from support import shared_data_path
from tlzoo.train.recipe import AdaptConfig, adapt


def test_pneumoniamnist_few_labels(weights_dir, tmp_path):
    data = shared_data_path("pneumoniamnist.npz")
    result = adapt(AdaptConfig(
        plugin="medical-imaging", data=str(data), backbone="mobilenet_v2", weights="imagenet",
        labels_per_class=50, input_size=64, out=str(tmp_path / "r"), verbose=0,
        schedule={"kind": "fine_tune", "freeze_epochs": 2, "epochs": 4, "base_lr": 1e-3},
    ))
    test = result.metrics["test"]
    assert test["n"] == 624  # the official test split
    assert result.metrics["n_train"] == 100
    assert test["roc_auc"] > 0.85, test
    assert result.config["weights"]["sha256"] == "ae4e50beb0eca359853b053c48fbcf2401902451edfa03c0561853ed0d64228d"
