"""The weights-licence gate: which uses a licence allows, checked before any training.

A run declares its ``intended_use`` (``research`` or ``commercial``). The pretrained weights'
licence comes from the registry (``WeightsInfo.licence``); the data's licence is whatever the user
declares (``data_licence``), since data files do not carry one. A licence whose terms forbid the
use stops the run, naming the licence; an unknown licence is refused for commercial use (nobody
can say it is allowed) and recorded as unknown for research.
"""
from __future__ import annotations

from typing import Any

from tlzoo.errors import ConfigError

USES = ("research", "commercial")
_ANY = frozenset(USES)
_RESEARCH = frozenset({"research"})

# SPDX-style identifiers (case-insensitive) -> the uses their terms allow.
TERMS: dict[str, frozenset[str]] = {
    "apache-2.0": _ANY, "mit": _ANY, "bsd-2-clause": _ANY, "bsd-3-clause": _ANY, "cc0-1.0": _ANY,
    "cc-by-4.0": _ANY, "cc-by-sa-4.0": _ANY, "dbcl-1.0": _ANY, "odbl-1.0": _ANY,
    "cc-by-nc-4.0": _RESEARCH, "cc-by-nc-sa-4.0": _RESEARCH, "cc-by-nc-nd-4.0": _RESEARCH,
    "research-only": _RESEARCH, "research use": _RESEARCH,
}
RANDOM_INIT = "not applicable (random initialisation)"


def allowed_uses(licence: str | None) -> frozenset[str] | None:
    """The uses ``licence`` allows, or None when tlzoo does not know its terms."""
    if not licence:
        return None
    key = licence.strip().lower()
    if key == RANDOM_INIT:
        return _ANY
    if key in TERMS:
        return TERMS[key]
    if key.startswith(("research use", "research-only", "research only")):
        return _RESEARCH
    return None


def check_use(what: str, licence: str | None, use: str) -> dict[str, Any]:
    """A record ``{what, licence, allowed_uses, use, verdict}``; raises when ``use`` is not allowed."""
    if use not in USES:
        raise ConfigError(f"intended use must be one of {USES}, got {use!r}")
    uses = allowed_uses(licence)
    record = {"what": what, "licence": licence or "unknown", "allowed_uses": sorted(uses) if uses else None,
              "use": use}
    if uses is None:
        if use == "commercial":
            raise ConfigError(
                f"the licence of the {what} is unknown ({licence or 'not recorded'!s}); commercial use cannot be "
                f"cleared. Use weights with a known licence, or declare it (e.g. --data-licence CC-BY-4.0 for data)"
            )
        return record | {"verdict": "allowed for research; licence terms unknown"}
    if use not in uses:
        raise ConfigError(
            f"the {what} are licensed {licence!r}, which allows {', '.join(sorted(uses))} use only, not {use} use; "
            f"choose other weights / data, or declare --intended-use {'/'.join(sorted(uses))}"
        )
    return record | {"verdict": "allowed"}


def licence_gate(intended_use: str, weights_licence: str | None, data_licence: str | None) -> dict[str, Any]:
    """Check the pretrained weights and the data against ``intended_use``; the run's record of it."""
    return {
        "intended_use": intended_use,
        "weights": check_use("pretrained weights", weights_licence, intended_use),
        "data": check_use("training data", data_licence, intended_use),
    }


# ---------------------------------------------------------------- extension

from tlzoo.extensions.base import Extension, Run  # noqa: E402


class LicenceGate(Extension):
    """Records the licences in the run's lineage; with ``intended_use``, refuses what the licences forbid,
    before anything is read. Always on (the record is part of every run); every recipe passes it."""

    name = "licences"
    custom_recipe = True

    @classmethod
    def is_active(cls, cfg: Any) -> bool:
        return True

    def check(self, run: Run) -> None:
        spec = run.spec
        weights = spec.weights_name(self.cfg.weights)
        if weights is None:
            weights_licence: str | None = RANDOM_INIT
        else:
            info = spec.weights_info(str(weights))
            weights_licence = info.licence if info else None
        if self.cfg.intended_use is None:
            self.licences = {"intended_use": None, "weights": {"licence": weights_licence or "unknown"},
                             "data": {"licence": self.cfg.data_licence or "unknown"}}
        else:
            self.licences = licence_gate(self.cfg.intended_use, weights_licence, self.cfg.data_licence)

    def record(self, run: Run) -> dict[str, Any]:
        return {"licences": self.licences}
