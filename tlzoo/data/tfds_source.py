"""TensorFlow Datasets as a source (``tfds:NAME``), with the data set's own splits where it has them.

Image features are streamed: the labels are read in one pass with the images left encoded, and the
pixels are decoded from the records in the stream (``TfdsImages``), like files. Other features are
read into arrays."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from tlzoo.data.arrays import _as_images, _as_labels
from tlzoo.data.images import MAX_IN_MEMORY, LazyImages, resize_op
from tlzoo.data.splits import DataSplits, Split, split_three
from tlzoo.errors import DataError


def read_tfds(
    name: str, *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2,
    data_dir: str | None = None, download: bool | None = None,
) -> DataSplits:
    """A TensorFlow Datasets name (``"tfds:beans"``), via ``tfds.load``. Uses the data set's
    own train / validation / test splits where it has them. ``$TFDS_DATA_DIR`` is honoured."""
    import tensorflow_datasets as tfds

    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as exc:
        raise DataError(f"unknown TensorFlow Datasets name {name!r}: {exc}") from None
    if download is None:
        download = not os.environ.get("TLZOO_OFFLINE")
    if download:
        builder.download_and_prepare()
    elif not builder.is_prepared():  # type: ignore[attr-defined]
        raise DataError(f"TFDS data set {name!r} is not prepared in {builder.data_dir} and downloads are off")
    info = builder.info
    keys = info.supervised_keys
    if not keys or len(keys) != 2:
        raise DataError(f"TFDS data set {name!r} has no (image, label) supervised keys")
    available = set(info.splits.keys())

    image_feature = info.features[keys[0]]
    streamed = isinstance(image_feature, tfds.features.Image)

    def load(split: str) -> Split:
        if not info.splits[split].num_examples:
            raise DataError(f"TFDS data set {name!r} split {split!r} is empty")
        if streamed:  # labels now (one pass, images not decoded); pixels in the stream
            ds = builder.as_dataset(split=split, decoders={keys[0]: tfds.decode.SkipDecoding()}, shuffle_files=False)
            ys = np.fromiter((int(ex[keys[1]]) for ex in tfds.as_numpy(ds)), dtype=np.int64)
            channels = image_feature.shape[-1] or 3
            images = TfdsImages(builder, split, keys[0], np.arange(len(ys)), int(channels))
            return Split(images, _as_labels(ys, f"tfds:{name}"))
        xs, ys = zip(*tfds.as_numpy(builder.as_dataset(split=split, as_supervised=True)))  # non-image tensors
        return Split(_as_images(np.stack(xs), f"tfds:{name}"), _as_labels(np.asarray(ys), f"tfds:{name}"))

    label_feature = info.features[keys[1]]
    names = list(getattr(label_feature, "names", []) or [])
    notes = []
    if "train" not in available:
        raise DataError(f"TFDS data set {name!r} has no train split (splits: {sorted(available)})")
    full = load("train")
    val_name = next((s for s in ("validation", "val") if s in available), None)
    if "test" in available:
        test = load("test")
        if val_name:
            train, val = full, load(val_name)
            notes.append("TFDS train/validation/test splits")
        else:
            train, val, _ = split_three(full, seed, val_fraction, 0.0)
            notes.append(f"TFDS train/test; val {val_fraction:.0%} of train, stratified, seed {seed}")
    else:
        train, val, test = split_three(full, seed, val_fraction, test_fraction)
        notes.append(f"TFDS train split divided, stratified, seed {seed}")
    return DataSplits(train, val, test, names, f"tfds:{name}", notes)


class TfdsImages(LazyImages):
    """The images of one TFDS split, by record position; decoded from the records in the stream.
    A record file is read in order, so a training stream shuffles with a buffer, and every worker of
    a multi-worker run reads it and keeps its share (``shardable = False``)."""

    shardable = False
    SHUFFLE_BUFFER = 2048

    def __init__(self, builder: Any, split: str, image_key: str, positions: np.ndarray, channels: int,
                 size: tuple[int, int] | None = None) -> None:
        self.builder, self.split, self.image_key = builder, split, image_key
        self.positions = np.asarray(positions, np.int64)
        self.channels, self.size = channels, size

    def __len__(self) -> int:
        return int(len(self.positions))

    def subset(self, key: Any) -> "TfdsImages":
        return TfdsImages(self.builder, self.split, self.image_key, self.positions[key], self.channels, self.size)

    def with_size(self, size: int | tuple[int, int] | None) -> "TfdsImages":
        size = (size, size) if isinstance(size, (int, np.integer)) else size
        return TfdsImages(self.builder, self.split, self.image_key, self.positions, self.channels, size)

    def elements(self, order: np.ndarray, *, training: bool = False, seed: int = 0) -> Any:
        import tensorflow as tf
        import tensorflow_datasets as tfds

        order = np.asarray(order, np.int64)
        records = self.positions[order]
        table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(records, order), default_value=-1)
        channels, size = self.channels, self.size

        def decode(record: Any, ex: Any) -> Any:
            img = tf.io.decode_image(ex[self.image_key], channels=channels, expand_animations=False)
            img = tf.ensure_shape(img, [None, None, channels])
            return table.lookup(record), (img if size is None else resize_op(img, size))

        ds = self.builder.as_dataset(split=self.split, decoders={self.image_key: tfds.decode.SkipDecoding()},
                                     shuffle_files=False).enumerate()
        ds = ds.filter(lambda r, ex: table.lookup(r) >= 0).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        if training:
            return ds.shuffle(min(len(order), self.SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
        if np.all(np.diff(records) > 0):
            return ds  # record order is the order asked for
        if size is None or len(order) > MAX_IN_MEMORY:
            raise DataError("TFDS images are streamed in record order; a reordered selection needs a size and at "
                            f"most {MAX_IN_MEMORY} images")
        got = {int(i): img for i, img in ds.as_numpy_iterator()}  # a small selection, put in the order asked
        return tf.data.Dataset.from_tensor_slices((order, np.stack([got[int(i)] for i in order])))

    def digest(self, digest: Any) -> None:
        """The data set's name, version and split, and the record positions (TFDS records are fixed per version)."""
        digest.update(f"tfds:{self.builder.info.full_name}:{self.split}".encode())
        digest.update(self.positions.tobytes())
