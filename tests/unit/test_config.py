"""The run configuration: sections and flat keys, typed early validation, and CLI flags generated from it.
No training: every check here runs before any data is read."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from tlzoo.cli.config_flags import add_config_flags, apply_none_words, config_overrides
from tlzoo.errors import ConfigError
from tlzoo.train.config import FIELDS, SECTION_KEYS, AdaptConfig, recorded

DATA = Path(__file__).parent / "data"


def test_sections_and_flat_keys_are_one_config():
    flat = AdaptConfig.from_dict({"plugin": "medical-imaging", "data": "x.npz", "backbone": "mobilenet_025",
                                  "batch_size": 16, "group_by": "brightness", "forgetting": True, "max_drift": 0.2})
    sectioned = AdaptConfig.from_dict({
        "plugin": {"name": "medical-imaging"}, "data": {"source": "x.npz"}, "model": {"backbone": "mobilenet_025"},
        "training": {"batch_size": 16}, "subgroups": {"group_by": "brightness"}, "forgetting": {"max_drift": 0.2}})
    assert flat == sectioned
    sections = flat.to_sections()
    assert sections["training"]["batch_size"] == 16 and sections["subgroups"]["group_by"] == "brightness"
    assert "enabled" not in sections["forgetting"] and sections["forgetting"]["max_drift"] == 0.2  # present = on
    assert "tensorboard" not in sections and "domain_adaptation" not in sections  # off: absent
    assert AdaptConfig.from_dict(sections) == flat  # round trip
    # an empty extension section switches it on
    assert AdaptConfig.from_dict({**sections, "tensorboard": None, "resume": {}}).tensorboard is True


def test_every_field_has_one_section_key_and_a_declared_kind():
    keys = [(f.metadata["section"], f.metadata["key"]) for f in FIELDS.values()]
    assert len(keys) == len(set(keys)) == len(FIELDS)
    assert all(f.metadata["kind"] in ("int", "float", "str", "bool", "dict", "list", "path", "data", "schedule")
               for f in FIELDS.values())
    assert set(SECTION_KEYS) >= {"plugin", "data", "model", "training", "output", "calibration", "resume",
                                 "tensorboard"}


def test_a_flat_config_yaml_of_an_earlier_version_loads():
    cfg = AdaptConfig.from_yaml(DATA / "flat_config_v0.yaml")
    assert cfg.plugin == "medical-imaging" and cfg.seed == 3 and cfg.plugin_options == {"epochs": 1, "head_epochs": 1}
    assert cfg.backbone == "mobilenet_025" and cfg.calibration == "temperature" and cfg.resume is False
    import yaml

    assert recorded(yaml.safe_load((DATA / "flat_config_v0.yaml").read_text())) == cfg


@pytest.mark.parametrize("change, message", [
    (dict(label_fraction="0.1"), r"label_fraction must be a number, got '0.1' \(str\)"),
    (dict(batch_size="32"), r"batch_size must be an integer, got '32' \(str\)"),
    (dict(input_size=64.5), r"input_size must be an integer, got 64.5"),
    (dict(batch_size=True), r"batch_size must be an integer, got True"),
    (dict(label_fraction=1.5), r"label_fraction must be > 0 and <= 1, got 1.5"),
    (dict(label_fraction=0), r"label_fraction must be > 0 and <= 1, got 0"),
    (dict(seed=-1), r"seed must be >= 0, got -1"),
    (dict(strategy="gpu"), r"strategy must be one of \['auto', 'one', 'mirrored', 'multiworker'\], got 'gpu'"),
    (dict(calibration="platt"), r"calibration must be one of \['temperature', 'none'\], got 'platt'"),
    (dict(schedule="warm_start"), r"unknown freeze schedule 'warm_start'; choose one of feature_extraction"),
    (dict(schedule=["head"]), r"schedule must be a schedule name"),
    (dict(schedule={"epochs": 0}), r"schedule epochs must be >= 1, got 0"),
    (dict(schedule={"epochs": 3, "warmup": 1}), r"adjusts the plugin's default schedule, which takes only"),
    (dict(data=np.zeros((4, 8, 8, 3))), r"data is a single array: give \(images, labels\)"),
    (dict(data=3), r"data must be a path, tfds:NAME.*got int"),
    (dict(plugin=None), r"plugin is required"),
    (dict(tensorboard="yes"), r"tensorboard must be true or false, got 'yes'"),
])
def test_bad_values_are_refused_naming_field_and_value(change, message):
    with pytest.raises(ConfigError, match=message):
        AdaptConfig.from_dict({"plugin": "medical-imaging", "data": "x.npz", **change})


def test_a_schedule_name_is_a_schedule():
    assert AdaptConfig.from_dict({"plugin": "p", "data": "d", "schedule": "feature_extraction"}).schedule == \
        {"kind": "feature_extraction"}


def test_yaml_errors_name_the_file_and_the_key(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("plugin: medical-imaging\ndata: x.npz\ninput_size: sixty-four\n")
    with pytest.raises(ConfigError, match=r"c.yaml': input_size must be an integer, got 'sixty-four'"):
        AdaptConfig.from_yaml(bad)
    bad.write_text("plugin: medical-imaging\ndata: x.npz\nepochs: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'epochs': it belongs under `training: schedule:`"):
        AdaptConfig.from_yaml(bad)
    bad.write_text("plugin: {name: medical-imaging}\ndata: {source: x.npz}\ntraining: {epochs: 3}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'epochs' in section 'training'.*belongs under `training: sch"):
        AdaptConfig.from_yaml(bad)
    bad.write_text("plugin: {name: medical-imaging}\ndata: {source: x.npz}\nmodel: {max_gap: 0.1}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'max_gap' in section 'model'"):
        AdaptConfig.from_yaml(bad)
    bad.write_text("plugin: medical-imaging\ndata: x.npz\nmax_gap: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'max_gap': it belongs under `subgroups:`"):
        AdaptConfig.from_yaml(bad)


def _parse(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    return config_overrides(parser.parse_args(argv))


def test_every_field_with_a_flag_reaches_the_config():
    """A flag per field, generated; each given flag arrives in the config (none silently dropped)."""
    values = {"int": "7", "float": "0.5", "str": None, "path": "somewhere", "data": "x.npz"}
    argv, expected = [], {}
    for name, f in FIELDS.items():
        meta = f.metadata
        if meta["flag"] is None:
            continue
        flag = meta["flag"] or "--" + name.replace("_", "-")
        if meta["kind"] == "bool":  # on by default: --no-NAME turns it off
            on = f.default is True
            argv.append("--no-" + flag[2:] if on else flag)
            expected[name] = not on
            continue
        text = meta["choices"][-1] if meta["choices"] else values[meta["kind"]] or f"{name}-value"
        argv += [flag, text]
        expected[name] = {"int": int, "float": float}.get(meta["kind"], str)(text)
    overrides = _parse(argv)
    assert {k: overrides[k] for k in expected} == expected


def test_schedule_flags_without_a_schedule_adjust_the_plugins_default():
    overrides = _parse(["--epochs", "3", "--head-epochs", "1", "--lr", "0.01", "--lr-decay", "0.7", "--patience", "2"])
    assert overrides["schedule"] == {"epochs": 3, "head_epochs": 1, "lr": 0.01, "lr_decay": 0.7, "patience": 2}
    from tlzoo.train.schedule import FreezeSchedule

    default = FreezeSchedule.fine_tune(epochs=8, freeze_epochs=2, base_lr=2e-3)  # the base plugin's
    adjusted = default.adjusted(**overrides["schedule"])
    assert [(s.name, s.epochs) for s in adjusted.stages] == [("head", 1), ("all", 3)]
    assert adjusted.stages[1].learning_rate == 0.01 and adjusted.stages[1].lr_decay == 0.7
    assert adjusted.stages[1].patience == 2 and adjusted.stages[0].learning_rate == default.stages[0].learning_rate
    assert _parse(["--schedule", "top:2", "--epochs", "4"])["schedule"] == {"kind": "top", "groups": 2, "epochs": 4}
    assert _parse(["--schedule", "fine_tune", "--lr", "0.1"])["schedule"] == {"kind": "fine_tune", "base_lr": 0.1}
    assert _parse([])["schedule"] is None


def test_flags_override_a_config_file_and_adjust_its_schedule(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("plugin: {name: medical-imaging}\ndata: {source: x.npz}\nmodel: {weights: imagenet}\n"
                    "training: {batch_size: 8, schedule: {epochs: 5}}\n")
    given = _parse(["--batch-size", "4", "--head-epochs", "2", "--weights", "none"])
    cfg = apply_none_words(AdaptConfig.from_yaml(path, **given))
    assert cfg.batch_size == 4 and cfg.schedule == {"epochs": 5, "head_epochs": 2} and cfg.weights is None


def test_gradual_schedule_adjustment_spreads_epochs():
    from tlzoo.train.schedule import FreezeSchedule

    gradual = FreezeSchedule.gradual(steps=2, epochs_per_step=2)  # head 2, top2 2, top4 2, all 2
    adjusted = gradual.adjusted(epochs=12)
    assert sum(s.epochs for s in adjusted.stages[1:]) == 12 and adjusted.stages[0].epochs == 2
    feature = FreezeSchedule.feature_extraction(epochs=10).adjusted(epochs=3, lr=0.01)
    assert [(s.epochs, s.learning_rate) for s in feature.stages] == [(3, 0.01)]
    with pytest.raises(ConfigError, match="only trains the head: use epochs"):
        FreezeSchedule.feature_extraction().adjusted(head_epochs=2)


def test_a_bad_operating_point_is_refused_before_any_data_is_read(tmp_path, capsys):
    missing_later = tmp_path / "scans.npz"
    missing_later.write_bytes(b"not an npz: reading it would fail with another error")
    from tlzoo.cli.main import main

    code = main(["adapt", "--plugin", "medical-imaging", "--data", str(missing_later), "--backbone", "mobilenet_025",
                 "--target-sensitivity", "1.5", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "threshold='sensitivity:1.5'" in err and "must be in (0, 1], got 1.5" in err
    assert not (tmp_path / "r").exists()
