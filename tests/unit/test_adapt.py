"""The adapt recipe end to end on generated data, its run directory, and its bad-input errors."""

import numpy as np
import pytest

from support import fast_config
from tlzoo.errors import ConfigError, DataError
from tlzoo.train.recipe import adapt


@pytest.mark.parametrize("change, error, message", [
    (dict(input_size=16), ConfigError, "smaller than 'mobilenet_025'.s minimum of 32x32"),
    (dict(backbone="resnet5O"), Exception, "unknown backbone 'resnet5O'"),
    (dict(plugin="medical"), Exception, "unknown plugin 'medical'"),
    (dict(batch_size=0), ConfigError, "batch_size must be >= 1"),
    (dict(schedule={"kind": "feature_extraction", "epochs": 0}), ConfigError, "0 epochs"),
    (dict(plugin_options={"dropuot": 0.5}), ConfigError, r"no option\(s\) \['dropuot'\]"),
])
def test_bad_options_fail_before_training(scans_npz, tmp_path, change, error, message):
    out = tmp_path / "r"
    with pytest.raises(error, match=message):
        adapt(fast_config(data=str(scans_npz), out=str(out), **change))
    assert not out.exists() and not list(tmp_path.glob(".r.tmp-*"))


def _npz(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return str(path)


def _imgs(n, c=1):
    return np.random.default_rng(0).integers(0, 255, (n, 32, 32, c), dtype=np.uint8)


@pytest.mark.parametrize("arrays, message", [
    (lambda: dict(train_images=_imgs(10), train_labels=np.array([0, 1, 2] * 3 + [0]),
                  test_images=_imgs(6), test_labels=np.arange(6) % 2), r"label values \[2\] are outside"),
    (lambda: dict(train_images=_imgs(10), train_labels=np.zeros(10), val_images=_imgs(4),
                  val_labels=np.arange(4) % 2, test_images=_imgs(6), test_labels=np.arange(6) % 2),
     "the train split has only one class"),
    (lambda: dict(train_images=_imgs(10, 4), train_labels=np.arange(10) % 2, val_images=_imgs(4, 4),
                  val_labels=np.arange(4) % 2, test_images=_imgs(6, 4), test_labels=np.arange(6) % 2),
     "1 or 3 channels, got 4"),
    (lambda: dict(train_images=_imgs(10), train_labels=np.arange(10) % 2, val_images=_imgs(0),
                  val_labels=np.zeros(0), test_images=_imgs(6), test_labels=np.arange(6) % 2),
     "the val split of .* is empty"),
    (lambda: dict(train_images=np.full((10, 32, 32), np.nan), train_labels=np.arange(10) % 2,
                  val_images=_imgs(4)[..., 0], val_labels=np.arange(4) % 2,
                  test_images=_imgs(6)[..., 0], test_labels=np.arange(6) % 2), "NaN or infinite"),
])
def test_bad_data_fails_with_the_value(tmp_path, arrays, message):
    with pytest.raises(DataError, match=message):
        adapt(fast_config(data=_npz(tmp_path, **arrays()), out=str(tmp_path / "r")))
    assert not (tmp_path / "r").exists()


def test_existing_output_is_not_overwritten_silently(scans_npz, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty; pass --overwrite"):
        adapt(fast_config(data=str(scans_npz), out=str(out)))
    assert (out / "keep.txt").read_text() == "x"
