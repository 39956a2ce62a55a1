"""Readers: npz (both layouts), class folders, TensorFlow Datasets; subsampling; bad input."""
import numpy as np
import pytest

from support import uint8_images
from tlzoo.data import (
    make_dataset,
    read_folder,
    read_npz,
    read_source,
    subsample_labels,
)
from tlzoo.errors import DataError


def test_medmnist_layout_keeps_official_splits(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, train_images=uint8_images(20)[..., 0], train_labels=(np.arange(20) % 2)[:, None],
             val_images=uint8_images(6)[..., 0], val_labels=(np.arange(6) % 2)[:, None],
             test_images=uint8_images(8)[..., 0], test_labels=(np.arange(8) % 2)[:, None])
    d = read_npz(path)
    assert (len(d.train), len(d.val), len(d.test)) == (20, 6, 8)
    assert d.train.x.shape == (20, 8, 8, 1) and d.train.y.shape == (20,)
    assert d.notes == ["official train/val/test splits"]


def test_images_labels_layout_is_split_stratified_and_seeded(tmp_path):
    path = tmp_path / "il.npz"
    y = np.array([0] * 80 + [1] * 20)
    np.savez(path, images=uint8_images(100), labels=y, class_names=np.array(["ok", "bad"]))
    a, b, c = read_npz(path, seed=1), read_npz(path, seed=1), read_npz(path, seed=2)
    assert (len(a.train), len(a.val), len(a.test)) == (70, 10, 20)
    assert np.bincount(a.test.y).tolist() == [16, 4]  # the 80/20 ratio in every split
    assert np.bincount(a.val.y).tolist() == [8, 2]
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert a.class_names == ["ok", "bad"]


def test_subsample_labels_stratified_and_seeded():
    from tlzoo.data import Split

    s = Split(uint8_images(200), np.array([0] * 150 + [1] * 50))
    sub = subsample_labels(s, fraction=0.1, seed=3)
    assert np.bincount(sub.y).tolist() == [15, 5]
    assert np.array_equal(sub.x, subsample_labels(s, fraction=0.1, seed=3).x)
    assert np.bincount(subsample_labels(s, per_class=7).y).tolist() == [7, 7]
    with pytest.raises(DataError, match="label fraction must be in"):
        subsample_labels(s, fraction=1.5)
    with pytest.raises(DataError, match="not both"):
        subsample_labels(s, fraction=0.5, per_class=3)


def test_class_folders(tmp_path):
    from PIL import Image

    for cls, n in (("normal", 12), ("pneumonia", 8)):
        (tmp_path / "scans" / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(uint8_images(1, 16, seed=i)[0, ..., 0]).save(tmp_path / "scans" / cls / f"{i}.png")
    d = read_folder(tmp_path / "scans", val_fraction=0.25, test_fraction=0.25)
    assert d.class_names == ["normal", "pneumonia"]
    assert len(d.train) + len(d.val) + len(d.test) == 20
    assert d.train.x.shape[1:] == (None, None, 1) and d.train.x.dtype == np.uint8  # streamed: any size
    assert d.set_input_size(16).train.x.load().shape[1:] == (16, 16, 1)
    assert read_source(str(tmp_path / "scans")).class_names == ["normal", "pneumonia"]


def test_unreadable_image_is_named(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        read_folder(tmp_path)


def test_bad_sources(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_source(str(tmp_path / "nothing.npz"))
    (tmp_path / "x.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read"):
        read_source(str(tmp_path / "x.npz"))
    np.savez(tmp_path / "k.npz", pictures=uint8_images(4))
    with pytest.raises(DataError, match="expected keys"):
        read_npz(tmp_path / "k.npz")
    np.savez(tmp_path / "rank.npz", images=np.zeros((4, 2, 2, 2, 2)), labels=np.zeros(4))
    with pytest.raises(DataError, match=r"must have shape \(N, H, W\)"):
        read_npz(tmp_path / "rank.npz")


def test_pipeline_augments_only_training_batches():
    from tlzoo.data import Split

    s = Split(uint8_images(8).astype(np.float32), np.arange(8) % 2)
    marker = lambda x: x * 0 - 1.0  # noqa: E731
    train = next(iter(make_dataset(s, batch_size=8, training=True, augment=marker)))[0].numpy()
    evals = next(iter(make_dataset(s, batch_size=8, training=False, augment=marker)))[0].numpy()
    assert (train == -1).all()
    np.testing.assert_array_equal(evals, s.x)
