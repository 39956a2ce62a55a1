"""Small searches for the `tlzoo tune` tests (both tiers)."""
from __future__ import annotations

from pathlib import Path

from tlzoo.analysis.tune import TuneConfig

SMALL = {"backbone": ["small_cnn"], "epochs": 2, "learning_rate": {"min": 0.003, "max": 0.03, "sampling": "log"}}


def tune_config(data: Path, out: Path, **kw) -> TuneConfig:
    """Three trials of small_cnn at 32 px, head only, unless `kw` says otherwise."""
    base = dict(plugin="medical-imaging", data=str(data), out=str(out), max_trials=3, weights=None, input_size=32,
                space={**SMALL, "unfreeze_groups": [0]}, verbose=0)
    base.update(kw)
    return TuneConfig(**base)


def write_space(path: Path, **entries) -> Path:
    """A search-space YAML file holding `entries`."""
    import yaml

    path.write_text(yaml.safe_dump(entries))
    return path
