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


