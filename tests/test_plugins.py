"""Plugin contract, registration by decorator and by entry point (first and third party)."""
import json
import os
import subprocess
import sys
from pathlib import Path

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

REPO = Path(__file__).resolve().parents[1]


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
    assert "RandomFlip" in [type(l).__name__ for l in get_plugin("medical-imaging", horizontal_flip=True).augmentations()]
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


@pytest.fixture(scope="module")
def toy_site(tmp_path_factory):
    """The third-party package, really installed (pip, into its own target directory)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(REPO / "tests" / "thirdparty_plugin")],
        check=True, capture_output=True,
    )
    return target


def _tlzoo(args, site, **kw):
    env = dict(os.environ, PYTHONPATH=str(site), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "tlzoo.cli.main", *args], env=env, capture_output=True, text=True, **kw)


def test_thirdparty_plugin_is_discovered_and_adapts(toy_site, scans_npz, tmp_path):
    listed = _tlzoo(["plugins", "--json"], toy_site)
    assert listed.returncode == 0, listed.stderr
    plugins = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
    assert plugins["toy-scans"]["class"] == "tlzoo_toy_plugin.ToyScansPlugin"
    assert "medical-imaging" in plugins

    out = tmp_path / "toy-run"
    run = _tlzoo(["adapt", "--plugin", "toy-scans", "--data", str(scans_npz), "--weights", "none",
                  "--out", str(out)], toy_site)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "roc_auc" in run.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["n"] == 64
    import yaml

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["plugin"]["name"] == "toy-scans" and config["adapt"]["model"]["backbone"] == "mobilenet_025"
    assert [s["trainable"] for s in config["schedule"]["stages"]] == [0, 2]


def test_thirdparty_plugin_is_absent_without_its_package(scans_npz):
    assert "toy-scans" not in list_plugins()
