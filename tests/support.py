"""Helpers shared by the tests (importable as `support`; see setup.cfg pythonpath)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(os.environ.get("TLZOO_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))


def shared_data_path(name: str) -> Path:
    """A real data set from ../shared/data (or $TLZOO_DATA_DIR), or skip the test."""
    for base in (os.environ.get("TLZOO_DATA_DIR"), SHARED / "data"):
        if base and (Path(base) / name).is_file():
            return Path(base) / name
    pytest.skip(f"needs ../shared/data/{name} (real data set); absent on this machine")


def fast_config(**kw):
    """An AdaptConfig that trains a tiny backbone for a couple of epochs."""
    from tlzoo.train.recipe import AdaptConfig

    base = dict(plugin="medical-imaging", backbone="mobilenet_025", weights=None, input_size=32,
                batch_size=32, verbose=0,
                schedule={"stages": [{"name": "head", "epochs": 1, "trainable": 0, "learning_rate": 1e-3},
                                     {"name": "all", "epochs": 1, "trainable": "all", "learning_rate": 1e-3,
                                      "lr_decay": 0.8}]})
    base.update(kw)
    return AdaptConfig(**base)


def rng_images(n: int, size: int = 32, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels)).astype(np.float32)
