"""Weight resolution: explicit file, mirror, Keras cache, pins, and the error when all fail."""
from pathlib import Path

import numpy as np
import pytest

from tlzoo.errors import ConfigError, WeightsError
from tlzoo.zoo import build_backbone
from tlzoo.zoo.weights import save_keras_h5, sha256_of

KERAS_FILE = "mobilenet_2_5_224_tf_no_top.h5"  # the name Keras gives MobileNet 0.25 no-top weights


@pytest.fixture
def made_weights(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    """A genuine weights file for mobilenet_025, made here from a random model."""
    model, _, _ = build_backbone("mobilenet_025", None, (224, 224, 3))
    path = tmp_path / "made" / KERAS_FILE
    path.parent.mkdir()
    save_keras_h5(model, path)
    return path, model.get_weights()


@pytest.fixture
def no_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-home"))
    monkeypatch.setenv("TLZOO_OFFLINE", "1")
    monkeypatch.delenv("TLZOO_WEIGHTS_DIR", raising=False)


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_mirror_is_used_and_recorded(made_weights, no_sources, monkeypatch):
    path, expected = made_weights
    monkeypatch.setenv("TLZOO_WEIGHTS_DIR", str(path.parent))
    # Asked at 96 px: Keras would look for a 224 file for MobileNet, loaded and copied over.
    model, _, record = build_backbone("mobilenet_025", "imagenet", (96, 96, 3))
    assert record.source == "mirror" and record.file == KERAS_FILE
    assert record.sha256 == sha256_of(path)
    assert _same(model.get_weights(), expected)


def test_mirror_models_subfolder_and_keras_cache(made_weights, no_sources, monkeypatch, tmp_path):
    path, expected = made_weights
    cache = tmp_path / "keras-home" / "models"
    cache.mkdir(parents=True)
    (cache / KERAS_FILE).write_bytes(path.read_bytes())
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    model, _, record = build_backbone("mobilenet_025", "imagenet", (64, 64, 3))
    assert record.source == "keras-cache"
    assert _same(model.get_weights(), expected)

    mirror = tmp_path / "mirror"
    (mirror / "models").mkdir(parents=True)
    (mirror / "models" / KERAS_FILE).write_bytes(path.read_bytes())
    monkeypatch.setenv("TLZOO_WEIGHTS_DIR", str(mirror))
    _, _, record = build_backbone("mobilenet_025", "imagenet", (64, 64, 3))
    assert record.source == "mirror"  # the mirror comes before the cache


def test_pins_are_checked(made_weights, no_sources, monkeypatch):
    path, _ = made_weights
    monkeypatch.setenv("TLZOO_WEIGHTS_DIR", str(path.parent))
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        build_backbone("mobilenet_025", "imagenet", (64, 64, 3), sha256="0" * 64)
    (path.parent / "SHA256SUMS").write_text(f"{'1' * 64}  {KERAS_FILE}\n")
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        build_backbone("mobilenet_025", "imagenet", (64, 64, 3))
    (path.parent / "SHA256SUMS").write_text(f"{sha256_of(path)}  {KERAS_FILE}\n")
    assert build_backbone("mobilenet_025", "imagenet", (64, 64, 3))[2].source == "mirror"


def test_explicit_file(made_weights, no_sources):
    path, expected = made_weights
    model, _, record = build_backbone("mobilenet_025", str(path), (224, 224, 3))
    assert record.source == "explicit"
    assert _same(model.get_weights(), expected)
    with pytest.raises(WeightsError, match="does not exist"):
        build_backbone("mobilenet_025", str(path.parent / "missing.h5"), (224, 224, 3))


def test_missing_weights_name_the_file_and_never_fall_back(no_sources):
    with pytest.raises(WeightsError) as err:
        build_backbone("mobilenet_025", "imagenet", (64, 64, 3))
    message = str(err.value)
    assert KERAS_FILE in message and "TLZOO_WEIGHTS_DIR" in message
    assert "https://storage.googleapis.com/" in message  # where to get it


def test_unknown_weights_name_and_channels():
    with pytest.raises(ConfigError, match="no weights 'instagram'"):
        build_backbone("mobilenet_025", "instagram", (64, 64, 3))
    with pytest.raises(ConfigError, match="need 3 input channels, got 1"):
        build_backbone("mobilenet_025", "imagenet", (64, 64, 1))
