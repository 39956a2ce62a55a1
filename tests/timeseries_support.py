"""Generated event tables for the time-series tests (both tiers)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def event_table(path: Path, n: int = 600, f: int = 4, seed: int = 0, accounts: int = 0, **override) -> Path:
    """Events with a learnable fraud signal: frauds (10%) have shifted first two features."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(np.int64)
    x = rng.normal(size=(n, f))
    x[:, :2] += 2.5 * y[:, None]
    x[:, -1] = np.abs(x[:, -1]) * 100  # an "amount" on another scale
    arrays = {"features": x, "labels": y, "time": np.arange(n, dtype=float),
              "feature_names": np.array([f"v{i}" for i in range(f - 1)] + ["amount"])}
    if accounts:
        arrays["account"] = rng.integers(0, accounts, n)
    arrays.update(override)
    np.savez(path, **arrays)
    return path
