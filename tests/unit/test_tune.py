"""tlzoo tune: search space, cached vs naive path, results, resume after a kill, distributed chief + workers."""
from __future__ import annotations

from pathlib import Path

import pytest

from tlzoo.analysis.tune import resolve_space, tune
from tlzoo.cli.main import main as cli_main
from tlzoo.errors import ConfigError, TlzooError
from tlzoo.plugin import get_plugin
from tune_support import tune_config, write_space


def test_space_defaults_overrides_and_bad_input(scans_npz: Path, tmp_path: Path, capsys) -> None:
    plugin = get_plugin("medical-imaging")
    space = resolve_space(plugin, {"hidden_units": [0, 64], "dropout": 0.3, "label_smoothing": None})
    assert space["hidden_units"] == {"choice": [0, 64]} and space["dropout"] == {"fixed": 0.3}
    assert "label_smoothing" not in space and space["backbone"] == {"choice": ["mobilenet_v2"]}
    assert "augment_strength" in space  # the medical plugin declares augmentation options
    with pytest.raises(ConfigError, match="empty choice"):
        resolve_space(plugin, {"hidden_units": []})
    with pytest.raises(ConfigError, match="min 0.5 > max 0.1"):
        resolve_space(plugin, {"dropout": {"min": 0.5, "max": 0.1}})
    with pytest.raises(ConfigError, match="'dropuot' is neither"):
        resolve_space(plugin, {"dropuot": [0.1]})
    with pytest.raises(TlzooError, match="did you mean"):
        resolve_space(plugin, {"backbone": ["mobilenet_v3"]})
    with pytest.raises(ConfigError, match="'val_f1' is not reported"):
        tune(tune_config(scans_npz, tmp_path / "s", objective="val_f1"))
    with pytest.raises(ConfigError, match="unknown tuner"):
        tune(tune_config(scans_npz, tmp_path / "s", tuner="grid"))
    assert not (tmp_path / "s").exists()  # nothing written for a refused search
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds no tlzoo search"):
        tune(tune_config(scans_npz, tmp_path / "other"))
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    bad = write_space(tmp_path / "bad.yaml", unfreeze_groups=[])
    code = cli_main(["tune", "--plugin", "medical-imaging", "--data", str(scans_npz), "--out", str(tmp_path / "c"),
                     "--space", str(bad)])
    assert code == 2 and "'unfreeze_groups' has an empty choice []: no valid point" in capsys.readouterr().err


