"""Plugin contract, registration by decorator and by entry point (first and third party)."""
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


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
    # the site first, then whatever PYTHONPATH the tests run with (a checkout that is not the installed one)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=path, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "tlzoo.cli.main", *args], env=env, capture_output=True, text=True,
                          **kw)


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


# ---------------------------------------------------------------- the contract, as third parties found it


def test_a_multiclass_plugin_on_two_classes_with_its_own_layer_evaluates(toy_site, scans_npz, tmp_path):
    """A multiclass plugin (its own head layer and macro-F1 metric) on two-class data: the run ends with its
    metrics (two-class ROC-AUC once crashed scikit-learn's one-vs-rest call, after every epoch had run), and
    `tlzoo evaluate` loads the run (the plugin is imported before the model, whose head needs its layer)."""
    out = tmp_path / "shapes"
    run = _tlzoo(["adapt", "--plugin", "toy-shapes", "--data", str(scans_npz), "--weights", "none", "--out", str(out)],
                 toy_site)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["monitor"]["name"] == "val_macro_f1" and 0 <= metrics["test"]["roc_auc_ovr"] <= 1
    saved = json.loads(zipfile.ZipFile(out / "model.keras").read("config.json"))
    momenta = re.findall(r'"momentum": ([0-9.]+)', json.dumps(saved))
    assert momenta and set(momenta) == {"0.9"}  # the plugin's adjust_backbone hook reached every BN layer
    evaluated = _tlzoo(["evaluate", str(out), "--json"], toy_site)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    again = json.loads(evaluated.stdout)
    assert again["accuracy"] == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)


def test_a_monitor_the_plugin_does_not_compute_is_refused_before_training(toy_site, scans_npz, tmp_path):
    run = _tlzoo(["adapt", "--plugin", "toy-shapes-auc", "--data", str(scans_npz), "--weights", "none", "--out",
                  str(tmp_path / "r")], toy_site)
    assert run.returncode == 2
    assert ("plugin 'toy-shapes-auc' keeps the epoch with the best val_auc, but its metrics are ['accuracy', "
            "'macro_f1']") in run.stderr
    assert "Epoch" not in run.stdout and not (tmp_path / "r").exists()


SCRIPT_PLUGIN = '''
from typing import ClassVar

from tlzoo import register_plugin
from tlzoo.plugin import DomainPlugin


@register_plugin
class ScriptScans(DomainPlugin):
    name: ClassVar[str] = "script-scans"
    default_backbone: ClassVar[str] = "small_cnn"
    default_input_size: ClassVar[int | None] = 32


if __name__ == "__main__":
    import sys

    from tlzoo.train.recipe import AdaptConfig, adapt

    adapt(AdaptConfig(plugin="script-scans", data=sys.argv[1], out=sys.argv[2], weights=None, verbose=0,
                      schedule={"kind": "feature_extraction", "epochs": 1}))
'''


def test_a_plugin_registered_in_a_script_exports_from_the_command_line(scans_npz, tmp_path):
    """A plugin registered with @register_plugin in the user's script: the run records the script, and
    `tlzoo --plugin-module SCRIPT export` finds the plugin (without it, the error names the script)."""
    script = tmp_path / "train_scans.py"
    script.write_text(SCRIPT_PLUGIN)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    made = subprocess.run([sys.executable, str(script), str(scans_npz), str(tmp_path / "run")], env=env,
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr[-3000:]
    bare = subprocess.run([sys.executable, "-m", "tlzoo.cli.main", "export", str(tmp_path / "run"), "--format",
                           "onnx"], env=env, capture_output=True, text=True)
    assert bare.returncode == 2
    assert f"the run was made with __main__.ScriptScans from {script.resolve()}" in bare.stderr
    assert f"tlzoo --plugin-module {script.resolve()}" in bare.stderr
    exported = subprocess.run([sys.executable, "-m", "tlzoo.cli.main", "--plugin-module", str(script), "export",
                               str(tmp_path / "run"), "--format", "onnx", "--out", str(tmp_path / "export")],
                              env=env, capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert (tmp_path / "export" / "model.onnx").is_file()
