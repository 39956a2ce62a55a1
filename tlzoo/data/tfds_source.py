"""TensorFlow Datasets as a source (``tfds:NAME``), with the data set's own splits where it has them.

Image features are streamed: the labels are read in one pass with the images left encoded, and the
pixels are decoded from the records in the stream (``TfdsImages``), like files. Other features are
read into arrays."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from tlzoo.data.arrays import as_images, as_labels
from tlzoo.data.records import RecordImages, scan_records
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
            def records() -> Any:
                return builder.as_dataset(split=split, decoders={keys[0]: tfds.decode.SkipDecoding()},
                                          shuffle_files=False)

            ys, digests = scan_records(records(), lambda ex: ex[keys[0]], lambda ex: ex[keys[1]])
            images = RecordImages(records, lambda ex: ex[keys[0]], True, np.arange(len(ys)),
                                  image_feature.shape[-1] or 3, digests, f"tfds:{info.full_name}:{split}")
            return Split(images, as_labels(ys, f"tfds:{name}"))
        xs, ys = zip(*tfds.as_numpy(builder.as_dataset(split=split, as_supervised=True)))  # non-image tensors
        return Split(as_images(np.stack(xs), f"tfds:{name}"), as_labels(np.asarray(ys), f"tfds:{name}"))

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

