"""The command line: listings, and errors that exit 2 with one clear line."""
import json

from tlzoo.cli.main import main


def test_adapt_and_evaluate_through_the_cli(capsys, scans_npz, tmp_path):
    out = tmp_path / "r"
    code = main(["adapt", "--plugin", "medical-imaging", "--data", str(scans_npz), "--backbone", "mobilenet_025",
                 "--weights", "none", "--input-size", "32", "--schedule", "top:2", "--epochs", "1",
                 "--head-epochs", "1", "--labels-per-class", "20", "--option", "dropout=0.3", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "test metrics (40 training labels)" in printed and str(out) in printed
    assert main(["evaluate", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "metrics.json").read_text())["test"]
    assert abs(metrics["roc_auc"] - saved["roc_auc"]) < 1e-6
