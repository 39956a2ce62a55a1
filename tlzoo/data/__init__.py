"""Data: sources -> an index (one row per sample: pixels or file, label(s), split, attributes) ->
the tf.data stream.

- ``splits``: ``Split`` / ``DataSplits``, stratified splitting, label subsampling, fingerprints
- ``arrays``: ``.npz`` files and arrays; ``tfds_source``: TensorFlow Datasets
- ``images``: ``ImageFiles`` (files as a lazy array), the header scan, the decoding rule
- ``folders``, ``tables``, ``dicom_files``: readers for data as people keep it; ``index`` joins them
- ``stream``: the tf.data pipeline (decode, resize, then augment) and the on-disk cache
- ``sources``: ``read_source``, which picks the reader
"""
from __future__ import annotations

from tlzoo.data.arrays import array_fingerprint, as_images, as_labels, read_npz
from tlzoo.data.folders import read_folder
from tlzoo.data.images import IMAGE_SUFFIXES, ImageFiles, decode_file, is_lazy, load_image
from tlzoo.data.index import DataOptions
from tlzoo.data.sources import read_source, resolve_path
from tlzoo.data.splits import SPLITS, DataSplits, Split, stratified_split, subsample_labels
from tlzoo.data.stream import image_batches, make_dataset, predict_batches
from tlzoo.data.tables import read_table
from tlzoo.data.tfds_source import read_tfds

__all__ = ["IMAGE_SUFFIXES", "SPLITS", "DataOptions", "DataSplits", "ImageFiles", "Split", "array_fingerprint",
           "as_images", "as_labels", "decode_file", "image_batches", "is_lazy", "load_image", "make_dataset",
           "predict_batches", "read_folder", "read_npz", "read_source", "read_table", "read_tfds", "resolve_path",
           "stratified_split", "subsample_labels"]
