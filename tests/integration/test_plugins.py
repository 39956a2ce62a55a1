"""Plugin contract, registration by decorator and by entry point (first and third party)."""
import json
import os
import subprocess
import sys
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
