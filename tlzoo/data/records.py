"""Images inside a stream of records (TFDS record files, a user's ``tf.data.Dataset``), by position.

The labels (and a sha256 of each image's bytes, for the fingerprint) are read in one pass; the pixels
are decoded again from the records in the stream. Records come in their stored order, so a training
stream shuffles with a buffer, and every worker of a multi-worker run reads the stream and keeps its
share (``shardable = False``).
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable

import numpy as np

from tlzoo.data.images import MAX_IN_MEMORY, LazyImages, resize_op
from tlzoo.errors import DataError


def to_image(img: Any, channels: int, encoded: bool) -> Any:
    """An encoded image (bytes) or an image tensor -> uint8 [H, W, channels]."""
    import tensorflow as tf

    if encoded:
        img = tf.io.decode_image(img, channels=channels, expand_animations=False)
    else:
        img = tf.cast(tf.clip_by_value(tf.cast(img, tf.float32), 0, 255), tf.uint8)
        img = img[..., None] if img.shape.rank == 2 else img
        if channels == 3:
            img = tf.cond(tf.shape(img)[-1] == 1, lambda: tf.tile(img, [1, 1, 3]), lambda: img[..., :3])
        elif img.shape[-1] != 1:
            img = tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(img[..., :3], tf.float32))), tf.uint8)
    return tf.ensure_shape(img, [None, None, channels])


def scan_records(ds: Any, image_of: Callable[[Any], Any], label_of: Callable[[Any], Any]
                 ) -> tuple[np.ndarray, list[str]]:
    """(labels, sha256 of each record's image bytes) in one pass over the records."""
    labels, digests = [], []
    for ex in ds.as_numpy_iterator():
        img = np.asarray(image_of(ex))
        digests.append(hashlib.sha256(img.tobytes() if img.dtype != object else bytes(img.item())).hexdigest())
        labels.append(np.asarray(label_of(ex)))
    if not labels:
        raise DataError("the data set has no records")
    return np.stack(labels), digests


class RecordImages(LazyImages):
    """The images of a record stream: ``records()`` makes the stream, ``image_of(element)`` picks the
    image (encoded bytes when ``encoded``, else a tensor)."""

    shardable = False
    SHUFFLE_BUFFER = 2048

    def __init__(self, records: Callable[[], Any], image_of: Callable[[Any], Any], encoded: bool,
                 positions: np.ndarray, channels: int, digests: list[str] | np.ndarray, name: str,
                 size: tuple[int, int] | None = None) -> None:
        self.records, self.image_of, self.encoded, self.name = records, image_of, encoded, name
        self.positions = np.asarray(positions, np.int64)
        self.digests = np.asarray(digests, dtype=str)  # per record of the whole stream
        self.channels, self.size = int(channels), size

    def __len__(self) -> int:
        return int(len(self.positions))

    def _copy(self, positions: np.ndarray, size: tuple[int, int] | None) -> "RecordImages":
        return RecordImages(self.records, self.image_of, self.encoded, positions, self.channels, self.digests,
                            self.name, size)

    def subset(self, key: Any) -> "RecordImages":
        return self._copy(self.positions[key], self.size)

    def with_size(self, size: int | tuple[int, int] | None) -> "RecordImages":
        return self._copy(self.positions, (size, size) if isinstance(size, (int, np.integer)) else size)

    def elements(self, order: np.ndarray, *, training: bool = False, seed: int = 0) -> Any:
        import tensorflow as tf

        order = np.asarray(order, np.int64)
        records = self.positions[order]
        table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(records, order), default_value=-1)
        channels, size, encoded = self.channels, self.size, self.encoded

        def decode(record: Any, ex: Any) -> Any:
            img = to_image(self.image_of(ex), channels, encoded)
            return table.lookup(record), (img if size is None else resize_op(img, size))

        ds = self.records().enumerate().filter(lambda r, ex: table.lookup(r) >= 0)
        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.apply(tf.data.experimental.assert_cardinality(len(order)))  # a filter hides the length from fit
        if training:
            return ds.shuffle(min(len(order), self.SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
        if np.all(np.diff(records) > 0):
            return ds  # record order is the order asked for
        if size is None or len(order) > MAX_IN_MEMORY:
            raise DataError("records are streamed in their stored order; a reordered selection needs a size and at "
                            f"most {MAX_IN_MEMORY} images")
        got = {int(i): img for i, img in ds.as_numpy_iterator()}  # a small selection, put in the order asked
        return tf.data.Dataset.from_tensor_slices((order, np.stack([got[int(i)] for i in order])))

    def digest(self, digest: Any) -> None:
        """The sha256 of each record's image bytes (encoded bytes for TFDS), in position order."""
        digest.update(self.name.encode())
        for p in self.positions:
            digest.update(self.digests[p].encode())
