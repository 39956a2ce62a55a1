"""`tlzoo demo`, the README's main job, end to end (needs the shared ImageNet weights)."""
import json

from tlzoo.cli.main import main


def test_demo_adapts_a_pretrained_backbone(weights_dir, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "demo done in" in printed and str(out) in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["n"] == 200
    assert metrics["test"]["roc_auc"] > 0.9  # opacities are learnable from 300 labels with ImageNet features
    assert (out / "learning_curves.png").stat().st_size > 10_000
