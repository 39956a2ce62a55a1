"""The weights-licence gate: refuses weights or data whose licence forbids the declared use,
before anything runs, and records every licence in the run's config and model card."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from support import fast_config
from tlzoo.cli.main import main
from tlzoo.errors import ConfigError
from tlzoo.extensions.licences import allowed_uses, licence_gate
from tlzoo.train.recipe import adapt
from tlzoo.zoo import BACKBONES, WeightsInfo, get_backbone_spec, register_backbone


@pytest.fixture
def noncommercial_backbone():
    """mobilenet_025 whose ImageNet weights carry a non-commercial licence."""
    spec = dataclasses.replace(
        get_backbone_spec("mobilenet_025"), name="nc_mobilenet_025",
        weights=(WeightsInfo("imagenet", "ImageNet-1k", "CC-BY-NC-4.0", "a non-commercial release"),))
    register_backbone(spec, replace=True)
    yield spec.name
    BACKBONES.unregister(spec.name)


def test_known_licence_terms() -> None:
    assert allowed_uses("Apache-2.0") == {"research", "commercial"}
    assert allowed_uses("mit") == {"research", "commercial"}
    assert allowed_uses("CC-BY-NC-4.0") == {"research"}
    assert allowed_uses("research use; no explicit licence") == {"research"}
    assert allowed_uses("some custom EULA") is None and allowed_uses(None) is None


def test_every_registered_weights_licence_is_known() -> None:
    from tlzoo.zoo import list_backbones

    # Entries made by `tlzoo pretrain` carry their source data's licence, which only the user knows.
    specs = [get_backbone_spec(n) for n in list_backbones()]
    unknown = {(s.name, w.licence) for s in specs if s.family != "pretrained-local" for w in s.weights
               if allowed_uses(w.licence) is None}
    assert not unknown, f"registry licences the gate cannot judge: {sorted(unknown)}"


def test_gate_refuses_noncommercial_weights_for_commercial_use(noncommercial_backbone: str, scans_npz: Path,
                                                             tmp_path: Path) -> None:
    cfg = fast_config(data=str(scans_npz), out=str(tmp_path / "run"), backbone=noncommercial_backbone,
                      weights="imagenet", intended_use="commercial", data_licence="CC-BY-4.0")
    with pytest.raises(ConfigError, match=r"licensed 'CC-BY-NC-4.0', which allows research use only, not commercial"):
        adapt(cfg)
    assert not (tmp_path / "run").exists()
    code = main(["adapt", "--plugin", "medical-imaging", "--data", str(scans_npz), "--backbone", noncommercial_backbone,
                 "--intended-use", "commercial", "--data-licence", "CC-BY-4.0", "--out", str(tmp_path / "cli")])
    assert code == 2 and not (tmp_path / "cli").exists()


def test_gate_on_data_licence(scans_npz: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="licence of the training data is unknown"):
        adapt(fast_config(data=str(scans_npz), out=str(tmp_path / "a"), intended_use="commercial"))
    with pytest.raises(ConfigError, match="'CC-BY-NC-SA-4.0', which allows research use only"):
        adapt(fast_config(data=str(scans_npz), out=str(tmp_path / "b"), intended_use="commercial",
                          data_licence="CC-BY-NC-SA-4.0"))
    with pytest.raises(ConfigError, match=r"intended_use must be one of \['research', 'commercial'\], got 'personal'"):
        adapt(fast_config(data=str(scans_npz), out=str(tmp_path / "c"), intended_use="personal"))
    assert not any(tmp_path.glob("[abc]"))


def test_research_use_of_noncommercial_weights_passes_the_gate() -> None:
    record = licence_gate("research", "CC-BY-NC-4.0", None)
    assert record["weights"]["verdict"] == "allowed"
    assert record["data"]["verdict"] == "allowed for research; licence terms unknown"
