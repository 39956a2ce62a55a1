"""The tf.data stream, one for arrays and for files: sample index -> pixels (gathered from an array,
or decoded from a file, or read from the on-disk cache) -> the model's input size -> shuffled
batches -> augmentation -> prefetch.

Resizing comes before augmentation, so augmenting costs the same whatever size the images are
stored at. Files are decoded in parallel and never held in memory as a whole; the shuffle is over
sample indices, so it needs no buffer of pixels.

The optional on-disk cache (``cache_dir``, ``--data-cache``, ``$TLZOO_DATA_CACHE``) keeps each
decoded, converted and resized sample as one small file named after the source file's path, size
and modification time, the input size, the channel rule and the decoder version. Later epochs,
runs, tuner trials and curve points read it instead of decoding; a changed file misses the cache.
Samples are written to a temporary name and renamed, so a killed run leaves no half sample.
"""
from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from tlzoo.data.images import ImageFiles, decode_op, is_lazy, resize_op

CACHE_VERSION = "1"  # bump when the decoding rule changes: old entries then miss


def cache_keys(files: ImageFiles, cache_dir: str | os.PathLike[str]) -> np.ndarray:
    """One cache file path per sample."""
    h, w = files.size or (0, 0)
    folder = Path(cache_dir) / f"v{CACHE_VERSION}-{h}x{w}x{files.channels}"
    keys = []
    for p in files.paths:
        st = os.stat(p)
        digest = hashlib.sha1(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()
        keys.append(str(folder / digest[:2] / f"{digest}.u8"))
    return np.asarray(keys, dtype=str)


def _read_cached(key: bytes, n: np.int64) -> np.ndarray:
    try:
        a = np.fromfile(key.decode(), dtype=np.uint8)
    except OSError:
        return np.zeros(0, np.uint8)
    return a if a.size == n else np.zeros(0, np.uint8)


def _write_cached(key: bytes, img: np.ndarray) -> np.ndarray:
    path = key.decode()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    img.tofile(tmp)
    os.replace(tmp, path)
    return img


def pixels_fn(files: ImageFiles) -> Callable[[Any], Any]:
    """index -> uint8 [H, W, C] at ``files.size``: decoded, or from ``files.cache_dir`` when it has one."""
    import tensorflow as tf

    if files.size is None:
        raise ValueError("ImageFiles need a size to be streamed (with_size)")
    paths, routes = tf.constant(files.paths), tf.constant(files.routes)
    shape = [*files.size, files.channels]

    def decode(i: Any) -> Any:
        return decode_op(tf.gather(paths, i), tf.gather(routes, i), files.channels, files.size)

    if files.cache_dir is None:
        return decode
    keys = tf.constant(cache_keys(files, files.cache_dir))
    n = int(np.prod(shape))

    def cached(i: Any) -> Any:
        key = tf.gather(keys, i)
        hit = tf.numpy_function(_read_cached, [key, tf.constant(n, tf.int64)], tf.uint8, stateful=True)
        img = tf.cond(tf.size(hit) > 0, lambda: tf.reshape(hit, shape),
                      lambda: tf.numpy_function(_write_cached, [key, decode(i)], tf.uint8, stateful=True))
        return tf.ensure_shape(tf.reshape(img, shape), shape)

    return cached


def _labels(parts: tuple[Any, ...]) -> Callable[[Any], tuple[Any, ...]]:
    import tensorflow as tf

    consts = tf.nest.map_structure(tf.constant, parts)
    return lambda i: tuple(tf.nest.map_structure(lambda c: tf.gather(c, i), consts))


def _resize_batch(size: tuple[int, int], integral: bool) -> Callable[[Any], Any]:
    """Arrays to the input size: uint8 images by the files' rule (rounded back to uint8, so an array
    and the same images as files train on identical pixels), float arrays in float."""
    import tensorflow as tf

    if integral:
        return lambda x: resize_op(x, size)
    return lambda x: tf.image.resize(tf.cast(x, tf.float32), size, method="bilinear")


def make_dataset(
    split: Any,
    *,
    batch_size: int,
    training: bool,
    seed: int = 0,
    augment: Callable[[Any], Any] | None = None,
    label_fn: Callable[[np.ndarray], Any] | None = None,
    sample_weight: np.ndarray | None = None,
    image_size: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    shard: tuple[int, int] | None = None,
) -> Any:
    """Batches of (images, labels[, weights]); shuffled and augmented only when ``training``.
    ``image_size``: the model's input size, which images are brought to before augmentation.
    ``shard``: (number of shards, this one) for file sources read by several workers: this pipeline
    decodes only its shard of the samples; shards are padded to one length (repeating at most
    ``shards - 1`` samples) so every worker runs the same number of steps."""
    import tensorflow as tf

    y = label_fn(split.y) if label_fn else split.y
    rest: tuple[Any, ...] = (y,) if sample_weight is None else (y, sample_weight)
    resize: Callable[[Any], Any] | None = None
    if is_lazy(split.x):
        images = copy.copy(split.x.with_size(image_size) if image_size else split.x)
        if cache_dir is not None:
            images.cache_dir = str(cache_dir)
        order = np.arange(len(images))
        if shard is not None:
            n_shards, index = shard
            order = np.concatenate([order, order[:(-len(order)) % n_shards]])[index::n_shards]
        labels = _labels(rest)
        ds = images.elements(order, training=training, seed=seed).map(lambda i, img: (img, *labels(i)))
    else:
        if shard is not None:
            raise ValueError("shard applies to file sources; arrays are sharded by the distribution strategy")
        ds = tf.data.Dataset.from_tensor_slices((split.x, *rest)).cache()
        if training:
            ds = ds.shuffle(min(len(split), 10_000), seed=seed, reshuffle_each_iteration=True)
        x = split.x
        if image_size and x.ndim == 4 and tuple(x.shape[1:3]) != (image_size, image_size):
            resize = _resize_batch((image_size, image_size), x.dtype == np.uint8)
    ds = ds.batch(batch_size)
    if resize is not None or (training and augment is not None):
        def _prepare(x: Any, *rest_: Any) -> Any:
            x = resize(x) if resize is not None else x
            return ((augment(tf.cast(x, tf.float32)) if training and augment is not None else x), *rest_)

        ds = ds.map(_prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def shuffled_samples(x: Any, y: np.ndarray | None = None, *, seed: int = 0) -> Any:
    """Unbatched float32 images (with their labels when ``y`` is given), reshuffled and repeated without
    end: arrays from memory, files decoded in the stream (domain adaptation's target, hybrid batches)."""
    import tensorflow as tf

    if is_lazy(x):
        labels = None if y is None else tf.constant(y)
        ds = x.elements(np.arange(len(x)), training=True, seed=seed).repeat()
        return ds.map(lambda i, img: tf.cast(img, tf.float32) if labels is None
                      else (tf.cast(img, tf.float32), tf.gather(labels, i)))
    ds = tf.data.Dataset.from_tensor_slices(x if y is None else (x, y)).cache()
    ds = ds.shuffle(min(len(x), 10_000), seed=seed, reshuffle_each_iteration=True).repeat()
    return ds.map(lambda *a: tf.cast(a[0], tf.float32) if y is None else (tf.cast(a[0], tf.float32), a[1]))


def image_batches(x: Any, batch_size: int = 64) -> Iterator[np.ndarray]:
    """Numpy batches of a split's images in index order: decoded in parallel for files, sliced for arrays."""
    if not is_lazy(x):
        for i in range(0, len(x), batch_size):
            yield np.asarray(x[i:i + batch_size])
        return
    yield from _image_stream(x).batch(batch_size).prefetch(2).as_numpy_iterator()


def _image_stream(x: Any) -> Any:
    return x.elements(np.arange(len(x))).map(lambda i, img: img)


def predict_batches(model: Any, x: Any, batch_size: int) -> Any:
    """``model.predict`` over a split's images, streamed when they are files."""
    if not is_lazy(x):
        return model.predict(x, batch_size=batch_size, verbose=0)
    import tensorflow as tf

    return model.predict(_image_stream(x).batch(batch_size).prefetch(tf.data.AUTOTUNE), verbose=0)
