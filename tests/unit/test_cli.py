"""The command line: listings, and errors that exit 2 with one clear line."""
import json

from tlzoo.cli.main import main


def test_backbones_json_and_glob(capsys):
    assert main(["backbones", "mobilenet*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = [r["name"] for r in rows]
    assert "mobilenet_v2" in names and all(n.startswith("mobilenet") for n in names)
    v2 = next(r for r in rows if r["name"] == "mobilenet_v2")
    assert v2["feature_dim"] == 1280 and v2["min_size"] == 32 and v2["weights"]["imagenet"]["licence"]
    assert v2["preprocess"] == "keras.applications.mobilenet_v2.preprocess_input"


def test_plugins_table(capsys):
    assert main(["plugins"]) == 0
    assert "medical-imaging" in capsys.readouterr().out


def test_errors_exit_2_with_one_line(capsys, scans_npz, tmp_path):
    code = main(["adapt", "--plugin", "medical-imaging", "--data", str(scans_npz), "--backbone", "mobilenet_v3",
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("tlzoo: error: unknown backbone 'mobilenet_v3'")
    assert len(err.strip().splitlines()) == 1
    code = main(["adapt", "--plugin", "medical-imaging", "--data", str(tmp_path / "none.npz")])
    assert code == 2 and "does not exist" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "is not a tlzoo run directory" in capsys.readouterr().err
