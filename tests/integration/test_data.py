"""Readers: npz (both layouts), class folders, TensorFlow Datasets; subsampling; bad input."""
import numpy as np
import pytest

from support import uint8_images
from tlzoo.data import (
    make_dataset,
    read_source,
    read_tfds,
)
from tlzoo.errors import DataError


def test_tfds_reader_on_a_locally_built_dataset(tmp_path, monkeypatch):
    """The real tfds.builder / as_dataset path, on a data set built here (no download)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    class TinyScans(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(8, 8, 1)),
                    "label": tfds.features.ClassLabel(names=["clear", "opacity"]),
                }),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(0, 40), "test": self._generate_examples(1, 10)}

        def _generate_examples(self, seed, n):
            imgs = uint8_images(n, seed=seed)
            for i in range(n):
                yield i, {"image": imgs[i], "label": i % 2}

    TinyScans(data_dir=str(tmp_path)).download_and_prepare()
    d = read_tfds("tiny_scans", data_dir=str(tmp_path), download=False)
    assert d.class_names == ["clear", "opacity"]
    assert len(d.test) == 10 and len(d.train) + len(d.val) == 40
    assert d.train.x.shape[1:] == (None, None, 1)  # streamed from the records, not copied into numpy
    d.set_input_size(8)
    x, y = np.concatenate([b for b, _ in make_dataset(d.train, batch_size=7, training=False)]), d.train.y
    assert x.shape == (len(d.train), 8, 8, 1) and x.dtype == np.uint8
    gen = uint8_images(40, seed=0)
    label_of = {gen[i].tobytes(): i % 2 for i in range(40)}  # TFDS stores records in its own order
    assert [label_of[img.tobytes()] for img in x] == y.tolist()  # every image streamed beside its own label
    assert len({img.tobytes() for img in x}) == len(d.train)
    sel = d.train.x[np.array([5, 0, 3])].load()  # a reordered selection comes back in the order asked
    np.testing.assert_array_equal(sel, x[[5, 0, 3]])
    shuffled = [b for b, _ in make_dataset(d.train, batch_size=64, training=True, seed=1)][0]
    assert sorted(map(bytes, shuffled.numpy().reshape(len(x), -1))) == sorted(map(bytes, x.reshape(len(x), -1)))
    assert len(d.fingerprint()) == 64
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    assert read_source("tfds:tiny_scans").source == "tfds:tiny_scans"
    from support import fast_config
    from tlzoo.train.recipe import adapt, evaluate

    head_only = {"stages": [{"name": "head", "epochs": 1, "trainable": 0, "learning_rate": 1e-3}]}  # plumbing only
    run = adapt(fast_config(data="tfds:tiny_scans", out=str(tmp_path / "run"), calibration="none", batch_size=8,
                            schedule=head_only))
    assert run.metrics["test"]["n"] == 10 and evaluate(run.run_dir)["n"] == 10
    with pytest.raises(DataError, match="unknown TensorFlow Datasets name"):
        read_tfds("no_such_dataset_xyz", data_dir=str(tmp_path), download=False)
