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


def shapes_ts(folder: Path, n_train: int = 45, n_test: int = 60, seed: int = 0, lengths: tuple[int, int] = (40, 60),
              name: str = "Shapes") -> Path:
    """A UCR-style pair ``NAME_TRAIN.ts`` / ``NAME_TEST.ts``: three classes of noisy shapes (a bump, a dip, a
    step) at random places, in series of different lengths. Returns the TRAIN file."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for part, n in (("TRAIN", n_train), ("TEST", n_test)):
        rows = []
        for i in range(n):
            cls, length = i % 3, int(rng.integers(*lengths))
            t = np.arange(length)
            at = rng.integers(8, length - 8)
            shape = [np.exp(-0.5 * ((t - at) / 3) ** 2), -np.exp(-0.5 * ((t - at) / 3) ** 2),
                     (t >= at).astype(float)][cls]
            x = shape + 0.2 * rng.normal(size=length)
            rows.append(",".join(f"{v:.5f}" for v in x) + f":{'bump dip step'.split()[cls]}")
        (folder / f"{name}_{part}.ts").write_text(
            f"@problemName {name}\n@univariate true\n@equalLength false\n@classLabel true bump dip step\n@data\n"
            + "\n".join(rows) + "\n")
    return folder / f"{name}_TRAIN.ts"
