"""``tlzoo weights list|verify|import|fetch``: what this machine has, pins, and the mirror."""
from __future__ import annotations

from support import cli_json
from tlzoo.cli.main import main
from tlzoo.zoo import list_backbones
from tlzoo.zoo.keras_weight_files import KERAS_WEIGHT_FILES

V1_FILE = "mobilenet_2_5_224_tf_no_top.h5"
V2_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


def test_list_shows_what_this_offline_machine_has(weights_dir, clean_env, capsys):
    code, entries = cli_json(capsys, ["weights", "list", "--json"])
    assert code == 0
    by_name = {e["backbone"]: e for e in entries}
    hub_names, keras_hub_names = list_backbones("hub_*"), list_backbones("keras_hub:*")
    assert len(entries) == len(KERAS_WEIGHT_FILES) + len(hub_names) + len(keras_hub_names)
    assert len(hub_names) >= 10 and len(keras_hub_names) >= 12
    present = {n for n, e in by_name.items() if e["present"]}
    assert present == {"mobilenet_025", "mobilenet_v2"}
    assert by_name["mobilenet_v2"]["path"] == str(weights_dir / V2_FILE)
    assert by_name["mobilenet_025"]["source"] == "mirror" and by_name["mobilenet_025"]["needs"] == V1_FILE
    assert by_name["resnet50"]["needs"] == "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert by_name["hub_mobilenet_v2_100"]["kind"] == "hub-savedmodel"
    assert not by_name["hub_mobilenet_v2_100"]["present"]
    dino = by_name["keras_hub:dinov2_small"]
    assert dino["kind"] == "keras-hub-preset" and not dino["present"] and dino["needs"] == "dinov2_small"
    assert dino["origin"] == "kaggle://keras/dinov2/keras/dinov2_small/1"
    assert main(["weights", "list"]) == 0
    text = capsys.readouterr().out
    assert f"2 of {len(entries)} present" in text
    assert any(line.startswith("mobilenet_025 ") and " present " in line for line in text.splitlines())
    assert any(line.startswith("resnet50 ") and " absent " in line for line in text.splitlines())


def test_import_refuses_a_wrong_hash_or_a_file_that_does_not_load(mirror, made_v1, weights_dir, capsys):
    assert main(["weights", "import", str(made_v1), "--backbone", "mobilenet_025", "--sha256", "ab" * 32]) == 2
    assert "sha256 mismatch" in capsys.readouterr().err
    # MobileNetV2's file is a real weights file, but not mobilenet_025's
    assert main(["weights", "import", str(weights_dir / V2_FILE), "--backbone", "mobilenet_025"]) == 2
    assert "does not load as 'mobilenet_025' weights" in capsys.readouterr().err
    assert not (mirror / V1_FILE).exists() and not (mirror / "SHA256SUMS").exists()
