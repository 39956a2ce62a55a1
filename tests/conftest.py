"""Shared fixtures. Tests make their own small data; those needing ../shared skip without it."""
from __future__ import annotations

import gc
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TLZOO_OFFLINE", "1")  # never try a download from tests

import pytest

from support import SHARED  # noqa: E402


def shared_weights_dir() -> Path | None:
    for candidate in (os.environ.get("TLZOO_WEIGHTS_DIR"), SHARED / "weights" / "keras" / "models"):
        if candidate and (Path(candidate) / "mobilenet_2_5_224_tf_no_top.h5").is_file():
            return Path(candidate)
    return None


@pytest.fixture
def weights_dir(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shared ImageNet weights mirror, or skip."""
    d = shared_weights_dir()
    if d is None:
        pytest.skip("needs ../shared/weights (real ImageNet weights); absent on this machine")
    monkeypatch.setenv("TLZOO_WEIGHTS_DIR", str(d))
    return d


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No Keras cache, no TF Hub cache, no downloads: only what a test puts in place is found."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-home"))
    monkeypatch.setenv("TLZOO_OFFLINE", "1")
    monkeypatch.delenv("TFHUB_CACHE_DIR", raising=False)


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clean_env: None) -> Path:
    """An empty weights mirror (not created yet) as TLZOO_WEIGHTS_DIR, in a clean environment."""
    d = tmp_path / "mirror"
    monkeypatch.setenv("TLZOO_WEIGHTS_DIR", str(d))
    return d


@pytest.fixture
def made_v1(tmp_path: Path) -> Path:
    """A genuine (random) mobilenet_025 weights file, saved as Keras lays it out."""
    from tlzoo.zoo import build_backbone
    from tlzoo.zoo.weights import save_keras_h5

    model, _, _ = build_backbone("mobilenet_025", None, (224, 224, 3))
    return save_keras_h5(model, tmp_path / "v1.h5")


@pytest.fixture
def scans_npz(tmp_path: Path) -> Path:
    from tlzoo.data.synthetic import write_opacity_npz

    return write_opacity_npz(tmp_path / "scans.npz", n_train=96, n_val=48, n_test=64, size=32, contrast=60)


@pytest.fixture(scope="module", autouse=True)
def _quiet_heap():
    """Before each module: one full collection, then everything still alive (the imports: about 400,000
    objects; the session's shared runs; whatever earlier tests left) is moved out of the collector's way, so
    that later collections, Python's own and the explicit ones after large models, scan only what this
    module makes. (Without it a full collection cost about 4 s after the integration tier had run.)"""
    import keras  # noqa: F401  (and TensorFlow with it, if no test module has yet)

    gc.collect()
    gc.freeze()
    yield


@pytest.fixture(autouse=True)
def _fresh_keras():
    """Keras' global state (layer names, the default graph) reset after every test. Without the forced
    gc.collect() clear_session would add (0.3-4 s a test, growing with the heap): Python's own collector
    frees the models' reference cycles as it goes."""
    yield
    import keras

    keras.backend.clear_session(free_memory=False)


