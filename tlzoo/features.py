"""On-disk cache of frozen-backbone features, so a search computes them once and trains heads on them.

An entry is keyed by everything that decides the features: backbone, weights (their sha256, or the
seed of a random initialisation), input size, data fingerprint and the un-augmented preprocessing
(the plugin's input adapter and the backbone's ``preprocess_input``). Entries are written to a
temporary sibling and renamed into place, so concurrent workers never read a half-written entry.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tlzoo.data import SPLITS, DataSplits

META_FILE = "meta.json"


def feature_key(**parts: Any) -> str:
    """sha256 (first 16 hex digits) of the sorted ``parts``: the cache entry's name."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class FeatureCache:
    """Feature arrays per split under ``root/<key>/``: ``train.npy``, ``val.npy``, ``test.npy``, ``meta.json``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key

    def has(self, key: str) -> bool:
        return (self.path(key) / META_FILE).is_file()

    def load(self, key: str) -> dict[str, np.ndarray]:
        # Memory-mapped: several trials (and processes) share one copy in the page cache.
        return {name: np.load(self.path(key) / f"{name}.npy", mmap_mode="r") for name in self.meta(key)["splits"]}

    def meta(self, key: str) -> dict[str, Any]:
        return json.loads((self.path(key) / META_FILE).read_text())

    def get_or_compute(
        self, key: str, extractor: keras.Model, data: DataSplits, *, splits: tuple[str, ...] = SPLITS,
        batch_size: int = 128, describe: dict[str, Any] | None = None, verbose: int = 1,
    ) -> tuple[dict[str, np.ndarray], bool]:
        """The features of ``splits`` (the tuner needs train and val only), and whether they came from the cache."""
        if self.has(key):
            return self.load(key), True
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=self.root))
        try:
            t0 = time.perf_counter()
            n = 0
            for name in splits:
                x = data.split(name).x
                feats = np.asarray(extractor.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)
                np.save(tmp / f"{name}.npy", feats)
                n += len(x)
            seconds = time.perf_counter() - t0
            meta = {"key": key, "splits": list(splits), "shape": list(feats.shape[1:]), "images": n, "seconds": round(seconds, 2),
                    "images_per_s": round(n / max(seconds, 1e-9), 1), **(describe or {})}
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
            if verbose:
                print(f"feature cache {key}: {n} images -> {tuple(feats.shape[1:])} in {seconds:.1f}s "
                      f"({meta['images_per_s']} images/s)", flush=True)
            try:
                os.rename(tmp, self.path(key))
            except OSError:  # another process wrote the same entry first: theirs is identical
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.load(key), False
