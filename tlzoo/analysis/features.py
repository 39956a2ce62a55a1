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

from tlzoo.data import SPLITS, DataSplits, predict_batches

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
                feats = np.asarray(predict_batches(extractor, x, batch_size), dtype=np.float32)
                np.save(tmp / f"{name}.npy", feats)
                n += len(x)
            seconds = time.perf_counter() - t0
            meta = {"key": key, "splits": list(splits), "shape": list(feats.shape[1:]), "images": n,
                    "seconds": round(seconds, 2), "images_per_s": round(n / max(seconds, 1e-9), 1),
                    **(describe or {})}
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


def build_extractor(
    plugin: Any, backbone_name: str, weights: str | None, input_size: int, raw_shape: tuple[int, ...], *, seed: int = 0,
    sha256: str | None = None,
) -> tuple[keras.Model, Any]:
    """Raw images -> frozen backbone features (the un-augmented path of :func:`tlzoo.model.assemble.backbone_features`),
    and where the backbone's weights came from (``None`` for a random initialisation).
    The tuner caches this model's outputs and ``tlzoo rank`` scores them: one path for both."""
    from tlzoo.model.assemble import backbone_features
    from tlzoo.zoo import build_backbone, get_backbone_spec

    spec = get_backbone_spec(backbone_name)
    keras.utils.set_random_seed(seed)  # a random-init backbone is the same in every trial / ranking
    backbone, spec, record = build_backbone(backbone_name, weights, (input_size, input_size, spec.channels),
                                            sha256=sha256)
    backbone.trainable = False  # BN layers in inference mode: features equal the cached ones
    inputs, features = backbone_features(plugin, spec, backbone, raw_shape, input_size)
    return keras.Model(inputs, features, name="features"), record


def extractor_key(
    plugin: Any, backbone_name: str, weights: str | None, record: Any, input_size: int, data: DataSplits, *,
    seed: int = 0,
) -> str:
    """The cache key of :func:`build_extractor`'s features on ``data``: the weights' sha256 (or the seed of a
    random initialisation), input size, data fingerprint and the un-augmented preprocessing."""
    from tlzoo.zoo import get_backbone_spec

    plugin_cls = type(plugin)
    return feature_key(
        backbone=backbone_name, weights=record.sha256 if record else f"{weights}-seed{seed}",
        input_size=input_size, data=data.fingerprint(), preprocess=get_backbone_spec(backbone_name).preprocess_name,
        adapter=f"{plugin_cls.__module__}.{plugin_cls.__qualname__}.input_adapter",
        channels=int(data.train.x.shape[-1]),
    )
