"""The weights-licence gate: refuses weights or data whose licence forbids the declared use,
before anything runs, and records every licence in the run's config and model card."""
from __future__ import annotations

import yaml

from tlzoo.deploy.card import _licence_lines


def test_allowed_run_records_its_licences(default_run) -> None:
    result = default_run  # fast_config(..., intended_use="commercial", data_licence="CC-BY-4.0")
    licences = yaml.safe_load((result.run_dir / "config.yaml").read_text())["licences"]
    assert licences["intended_use"] == "commercial"
    assert licences["weights"]["verdict"] == "allowed"  # random initialisation: nothing to license
    assert licences["data"] == {"what": "training data", "licence": "CC-BY-4.0",
                                "allowed_uses": ["commercial", "research"], "use": "commercial", "verdict": "allowed"}
    lines = _licence_lines(licences)
    assert lines[0].startswith("- licences (declared intended use: commercial")
    assert "  - data: CC-BY-4.0 (allowed)" in lines
