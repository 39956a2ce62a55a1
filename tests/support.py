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


def uint8_images(n: int, size: int = 8, c: int = 1, seed: int = 0) -> np.ndarray:
    """Random uint8 images (n, size, size, c)."""
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, c), dtype=np.uint8)


def cli_json(capsys: pytest.CaptureFixture, argv: list[str]) -> tuple[int, object]:
    """Run `tlzoo <argv>` in process; its exit code and its standard output read as JSON."""
    import json

    from tlzoo.cli.main import main

    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def two_task_npz(path: Path, n: int = 200, size: int = 32) -> Path:
    """Opacity scans: task `finding` (all images) and `exposure` (dark / bright), whose label only
    the images with a finding have (-1 elsewhere)."""
    from tlzoo.data.synthetic import opacity_scans

    x, y = opacity_scans(n, size, seed=3, contrast=70)
    bright = np.random.default_rng(1).random(n) < 0.5
    x = np.where(bright[:, None, None, None], np.clip(x.astype(int) + 90, 0, 255), x // 2).astype(np.uint8)
    exposure = np.where(y == 1, bright.astype(int), -1)
    np.savez(path, images=x, labels=y, class_names=np.array(["clear", "opacity"]), exposure=exposure)
    return path


def shifted_npz(path: Path, n: int = 64, size: int = 32, channels: int = 1, seed: int = 5) -> Path:
    """Unlabelled "other device" images: the same kind of scans, darker and lower in contrast."""
    from tlzoo.data.synthetic import opacity_scans

    x, y = opacity_scans(n, size, seed, contrast=60)
    x = np.clip(0.6 * x.astype(np.float32) + 30, 0, 255).astype(np.uint8)
    if channels == 3:
        x = np.repeat(x, 3, axis=-1)
    np.savez_compressed(path, images=x, labels=y)  # labels present, and ignored
    return path
