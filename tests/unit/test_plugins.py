"""Plugin contract, registration by decorator and by entry point (first and third party)."""

import numpy as np
import pytest

from tlzoo.errors import ConfigError
from tlzoo.plugin import (
    PLUGINS,
    DomainPlugin,
    get_plugin,
    list_plugins,
    register_plugin,
)


def test_first_party_plugin_comes_through_the_entry_point():
    from importlib import metadata

    eps = {ep.name: ep.value for ep in metadata.entry_points(group="tlzoo.plugins")}
    assert eps.get("medical-imaging") == "tlzoo_medical:MedicalImagingPlugin"
    assert "medical-imaging" in list_plugins()


def test_decorator_registration_and_options():
    @register_plugin
    class Petri(DomainPlugin):
        name = "test-petri"
        task = "multiclass"
        default_options = {"colonies": 3}

    try:
        p = get_plugin("test-petri", colonies=5, dropout=0.5)
        assert p.options["colonies"] == 5 and p.options["dropout"] == 0.5
        assert p.options["threshold"] == 0.5  # inherited defaults
        with pytest.raises(ConfigError, match=r"no option\(s\) \['colonys'\]"):
            get_plugin("test-petri", colonys=1)
    finally:
        PLUGINS.unregister("test-petri")


def test_invalid_plugin_classes_are_refused():
    with pytest.raises(ConfigError, match="sets no `name`"):
        register_plugin(type("Nameless", (DomainPlugin,), {}))
    with pytest.raises(ConfigError, match="task must be one of"):
        register_plugin(type("Bad", (DomainPlugin,), {"name": "bad", "task": "regression"}))


def test_medical_plugin_declares_its_domain():
    p = get_plugin("medical-imaging")
    assert p.task == "binary" and p.default_backbone == "mobilenet_v2"
    kinds = [type(layer).__name__ for layer in p.augmentations()]
    assert kinds == ["RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast"]  # no flips
    flipping = get_plugin("medical-imaging", horizontal_flip=True)
    assert "RandomFlip" in [type(layer).__name__ for layer in flipping.augmentations()]
    assert p.class_weights(np.array([0] * 30 + [1] * 90), 2) == {0: 2.0, 1: 2 / 3}
    m = p.evaluate(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.7, 0.9]), threshold=0.5)
    assert (m["sensitivity"], m["specificity"], m["accuracy"], m["roc_auc"]) == (1.0, 0.5, 0.75, 1.0)
    assert p.freeze_schedule(18).stages[0].trainable == 0


def test_youden_threshold_is_chosen_on_validation():
    p = get_plugin("medical-imaging", threshold="youden")
    t = p.choose_threshold(np.array([0, 0, 0, 1, 1, 1]), np.array([0.1, 0.2, 0.3, 0.35, 0.8, 0.9]))
    assert 0.3 < t <= 0.35
    with pytest.raises(ConfigError, match="threshold must be"):
        get_plugin("medical-imaging", threshold="high").choose_threshold(np.array([0, 1]), np.array([0.2, 0.8]))


def test_thirdparty_plugin_is_absent_without_its_package(scans_npz):
    assert "toy-scans" not in list_plugins()


def test_a_multiclass_plugin_that_declares_no_monitor_keeps_its_best_accuracy():
    """The default monitor, auc, is not among a multiclass plugin's default metrics: such a plugin trained
    every epoch and then failed ("no epoch produced a finite val_auc"). Declared monitors are kept."""
    @register_plugin
    class Gestures(DomainPlugin):
        name = "test-gestures"
        task = "multiclass"

    @register_plugin
    class GesturesAuc(Gestures):
        name = "test-gestures-auc"
        monitor = "auc"

    try:
        assert Gestures.resolved_monitor() == "accuracy" and get_plugin("test-gestures").monitor == "accuracy"
        assert get_plugin("test-gestures").describe()["monitor"] == "accuracy"
        assert GesturesAuc.resolved_monitor() == "auc"  # declared: kept, and checked against metrics() by adapt
        assert get_plugin("medical-imaging").monitor == "auc"  # binary
    finally:
        PLUGINS.unregister("test-gestures")
        PLUGINS.unregister("test-gestures-auc")


def test_defect_classification_on_two_classes_gets_its_roc_auc():
    """defect-detection's classify mode is multiclass; on two defect types the model's two-column softmax
    crashed the end of the run ("y should be a 1d array, got an array of shape (150, 2)")."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 75)
    p1 = np.clip(y * 0.6 + rng.uniform(0, 0.4, 150), 0, 1)
    m = get_plugin("defect-detection").evaluate(y, np.stack([1 - p1, p1], axis=1))
    assert m["accuracy"] == pytest.approx(((p1 >= 0.5) == y).mean()) and m["roc_auc_ovr"] == pytest.approx(1.0)


def test_the_example_package_installs_without_an_index_and_the_guide_names_what_the_card_reads():
    """tlzoo is on no package index: the example plugin package must not list it (pip could not resolve
    it). Every plugin attribute the model card reads is in the README's plugin guide."""
    import re
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "tests/thirdparty_plugin/pyproject.toml").read_text())["project"]
    assert not [d for d in project.get("dependencies", []) if re.match(r"tlzoo\b", d)], project["dependencies"]
    card = (root / "tlzoo/deploy/card.py").read_text()
    read = set(re.findall(r"getattr\(plugin, \"(\w+)\"", card)) - {"plugin"}  # "plugin": a multi-task wrapper's
    assert {"intended_use", "limitations"} <= read
    readme = (root / "README.md").read_text()
    guide = readme[readme.index("## Writing a plugin"):readme.index("## Writing an extension")]
    assert [a for a in sorted(read) if f"`{a}`" not in guide] == []
