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
