"""Image files as a lazy array: an index of paths whose pixels are decoded only in the stream.

``ImageFiles`` answers what numpy code asks of an image array (``len``, ``shape``, ``dtype``,
indexing with integers, slices and index arrays) while holding one path per sample, so a run's
memory grows with the index, not the pixels. Decoding, conversion and resizing happen in the
``tf.data`` stream (``tlzoo.data.stream``), by one rule for training, evaluation and ``predict``:

1. decode: JPEG and PNG through TensorFlow's decoders (fast, parallel); every other format (BMP, GIF,
   TIFF, WebP, CMYK or EXIF-rotated JPEG, 16-bit TIFF ...) through Pillow; DICOM through pydicom;
2. convert: EXIF orientation applied; 16-bit samples scaled to 8 bits (never clipped); alpha dropped;
   palette, CMYK and 1-bit images to RGB / gray; then to the source's channel count: 1 when every
   file of the source is gray, else 3 (gray files repeated into RGB);
3. resize: bilinear to the model's input size, the aspect ratio not kept (the rule of Keras'
   ``Resizing`` layer inside the model and of ``image_dataset_from_directory``), rounded to uint8.
"""
from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from tlzoo.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SYSTEM_FILES = {"thumbs.db", "desktop.ini", ".ds_store"}
GRAY_MODES = {"1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}
# decode routes, one per sample
TF_DECODE, PIL_DECODE, DICOM_DECODE = 0, 1, 2
MAX_IN_MEMORY = 4096  # more decoded images than this in one numpy array: stream them instead
_TAIL = 4096  # bytes read from a file's end to tell a truncated JPEG / PNG


@dataclass
class FileInfo:
    """What the header scan learnt of one file: how to decode it, or why it cannot be used."""

    route: int = TF_DECODE
    gray: bool = False
    error: str | None = None
    attributes: dict[str, str] | None = None  # DICOM header fields


def _tail_ok(path: Path, fmt: str) -> bool:
    """JPEG ends with the EOI marker, PNG with its IEND chunk: a file cut short lacks them."""
    marker = {"JPEG": b"\xff\xd9", "MPO": b"\xff\xd9", "PNG": b"IEND"}.get(fmt)
    if marker is None:
        return True
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - _TAIL))
        return marker in f.read()


def probe(path: str | os.PathLike[str], dicom_fields: Sequence[str] | None = None) -> FileInfo:
    """Open one file's header (no pixel decoding): its route and channel kind, or the reason it is bad."""
    from tlzoo.data import dicom_files

    path = Path(path)
    try:
        if dicom_files.is_dicom(path):
            gray, attrs = dicom_files.probe_dicom(path, dicom_fields or dicom_files.DEFAULT_FIELDS)
            return FileInfo(DICOM_DECODE, gray, attributes=attrs)
        from PIL import Image, UnidentifiedImageError

        with Image.open(path) as im:
            fmt, mode, (w, h) = im.format or "", im.mode, im.size
            orientation = im.getexif().get(0x0112, 1) if fmt in ("JPEG", "MPO", "WEBP", "TIFF", "PNG") else 1
    except dicom_files.DicomError as exc:
        return FileInfo(error=f"DICOM: {exc}")
    except UnidentifiedImageError:
        return FileInfo(error="not an image Pillow can identify (unsupported format or damaged header)")
    except FileNotFoundError:
        return FileInfo(error="file not found")
    except OSError as exc:
        cut = "truncated" in str(exc).lower()
        return FileInfo(error=f"truncated file (its header is cut short: {exc})" if cut else f"unreadable: {exc}")
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file, reported with the others
        return FileInfo(error=f"unreadable: {type(exc).__name__}: {exc}")
    if min(w, h) < 2:
        return FileInfo(error=f"image is {w}x{h} px; at least 2x2 is needed")
    if not _tail_ok(path, fmt):
        return FileInfo(error=f"truncated {fmt} (no end marker)")
    gray = mode in GRAY_MODES
    # TensorFlow's decoders read JPEG and PNG of any bit depth but neither EXIF orientation nor CMYK
    upright = orientation in (None, 1)
    simple = upright and (fmt == "PNG" or (fmt == "JPEG" and mode in ("L", "RGB")))
    return FileInfo(TF_DECODE if simple else PIL_DECODE, gray)


def scan(paths: Sequence[str | os.PathLike[str]], *, dicom_fields: Sequence[str] | None = None,
         verbose: bool = True, label: str = "files") -> list[FileInfo]:
    """``probe`` every file, in threads (the work is I/O); a progress line when it takes a while."""
    out: list[FileInfo] = []
    t0 = last = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 2) * 4)) as pool:
        for i, info in enumerate(pool.map(lambda p: probe(p, dicom_fields), paths, chunksize=64), start=1):
            out.append(info)
            now = time.perf_counter()
            if verbose and now - last > 2:
                print(f"  scanning {label}: {i:,}/{len(paths):,} ({i / (now - t0):,.0f}/s)", flush=True)
                last = now
    return out


def bad_files_error(bad: list[tuple[str, str]], where: str, hint: str = "") -> DataError:
    """One error that lists every bad file, so they can all be fixed at once."""
    shown = "\n".join(f"  {p}: {why}" for p, why in bad[:50])
    more = f"\n  ... and {len(bad) - 50} more" if len(bad) > 50 else ""
    return DataError(f"{where}: {len(bad)} file(s) cannot be read:\n{shown}{more}\n{hint}".rstrip())


# ---------------------------------------------------------------- decoding (one rule)


def _to_uint8(im: Any) -> Any:
    """A Pillow image of any mode -> mode L or RGB, 16-bit and float data scaled, alpha dropped."""
    from PIL import Image

    mode = im.mode
    if mode.startswith("I") or mode == "F":
        a = np.asarray(im, dtype=np.float64)
        if mode == "F":
            lo, hi = float(a.min()), float(a.max())
            a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        else:  # 16-bit (also 16-bit data Pillow holds as 32-bit "I"): the full 16-bit range -> 8 bits
            a = a * (255.0 / 65535.0) if a.max() > 255 or mode.startswith("I;16") else a
        return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "L")
    if mode in ("L", "RGB"):
        return im
    if mode in ("1", "LA", "La"):
        return im.convert("L")
    return im.convert("RGBA").convert("RGB") if "A" in mode or mode == "P" else im.convert("RGB")


def _pixels(path: str, route: int) -> np.ndarray:
    """One file's pixels by Pillow or pydicom, converted to 8-bit gray or RGB at its stored size."""
    if route == DICOM_DECODE:
        from tlzoo.data.dicom_files import decode_dicom

        return decode_dicom(path)
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im.seek(0)  # the first frame of an animated GIF / multi-page TIFF
        return np.asarray(_to_uint8(ImageOps.exif_transpose(im)))


def decode_file(path: str, route: int, channels: int) -> np.ndarray:
    """Decode one file outside TensorFlow's decoders: uint8 (H, W, channels)."""
    try:
        a = _pixels(path, route)
    except Exception as exc:  # the header scan passed, the pixels do not: name the file
        raise DataError(f"cannot decode {path}: {type(exc).__name__}: {exc}") from exc
    if a.ndim == 2:
        a = a[..., None]
    if channels == 3 and a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    elif channels == 1 and a.shape[-1] == 3:  # ITU-R 601-2 luma, as Pillow's "L" and libjpeg's gray
        a = np.round(a @ np.array([0.299, 0.587, 0.114])).clip(0, 255).astype(np.uint8)[..., None]
    return np.ascontiguousarray(a, dtype=np.uint8)


def decode_op(path: Any, route: Any, channels: int, size: tuple[int, int] | None) -> Any:
    """The tf.data op: one path -> uint8 [H, W, channels] at ``size`` (or as stored when None)."""
    import tensorflow as tf

    def with_tf() -> Any:
        return tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)

    def with_python() -> Any:
        return tf.numpy_function(lambda p, r: decode_file(p.decode(), int(r), channels), [path, route], tf.uint8,
                                 stateful=False)

    img = tf.cond(tf.equal(route, TF_DECODE), with_tf, with_python)
    img = tf.ensure_shape(tf.reshape(img, tf.concat([tf.shape(img)[:2], [channels]], 0)), [None, None, channels])
    return img if size is None else resize_op(img, size)


def resize_op(img: Any, size: tuple[int, int]) -> Any:
    """Bilinear resize (Keras ``Resizing``'s rule), back to uint8."""
    import tensorflow as tf

    out = tf.image.resize(tf.cast(img, tf.float32), size, method="bilinear")
    return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)


# ---------------------------------------------------------------- the lazy array


class LazyImages:
    """(N, H, W, C) uint8 images whose pixels live elsewhere (files, TFDS records) and are decoded
    in the stream. ``H, W`` is the size they are streamed at (``with_size``), ``C`` the source's
    channel rule. Indexing with an array or slice gives another lazy array; an integer, or
    ``load``, decodes. Subclasses say how to subset themselves and how to stream."""

    ndim = 4
    dtype = np.dtype(np.uint8)
    channels: int
    size: tuple[int, int] | None
    cache_dir: str | None = None
    shardable = True  # each worker can stream its own part (tlzoo.train.distribution)

    def __len__(self) -> int:
        raise NotImplementedError

    def subset(self, key: Any) -> "LazyImages":
        raise NotImplementedError

    def with_size(self, size: int | tuple[int, int] | None) -> "LazyImages":
        raise NotImplementedError

    def elements(self, order: np.ndarray, *, training: bool = False, seed: int = 0) -> Any:
        """tf.data.Dataset of (position in this array, uint8 image at ``size``) for the positions in
        ``order``: in that order, or shuffled when ``training``."""
        raise NotImplementedError

    def digest(self, digest: Any) -> None:
        raise NotImplementedError

    @property
    def shape(self) -> tuple[Any, ...]:
        h, w = self.size or (None, None)
        return (len(self), h, w, self.channels)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, np.integer)):
            return self.load([int(key)])[0]
        return self.subset(key)

    def load(self, idx: Iterable[int] | None = None) -> np.ndarray:
        """Decode (some of) the images into one array, in order, through the stream's rule."""
        sub = self if idx is None else self.subset(np.asarray(list(idx), dtype=int))
        if len(sub) > MAX_IN_MEMORY:
            raise DataError(f"refusing to decode {len(sub):,} images into memory at once (the limit is "
                            f"{MAX_IN_MEMORY:,}); stream them with tlzoo.data.stream instead")
        if sub.size is None:
            raise DataError("images of different sizes need a size to be stacked: call with_size(...) first")
        out = np.zeros((len(sub), *sub.size, sub.channels), np.uint8)
        for i, img in sub.elements(np.arange(len(sub))).as_numpy_iterator():
            out[i] = img
        return out

    def astype(self, dtype: Any) -> np.ndarray:
        return self.load().astype(dtype)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        x = self.load()
        return x if dtype is None else x.astype(dtype)


class ImageFiles(LazyImages):
    """Images kept as files (any format the scan accepted), one path and decode route per sample."""

    def __init__(self, paths: Sequence[str] | np.ndarray, routes: Sequence[int] | np.ndarray, channels: int,
                 size: tuple[int, int] | None = None, root: str | None = None, cache_dir: str | None = None) -> None:
        self.paths = np.asarray(paths, dtype=str)
        self.routes = np.asarray(routes, dtype=np.int32)
        self.channels = int(channels)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.root = root  # the source's folder: paths in fingerprints and reports are relative to it
        self.cache_dir = cache_dir  # the on-disk cache of decoded samples (tlzoo.data.stream), if any

    def __len__(self) -> int:
        return int(len(self.paths))

    def subset(self, key: Any) -> "ImageFiles":
        return ImageFiles(self.paths[key], self.routes[key], self.channels, self.size, self.root, self.cache_dir)

    def with_size(self, size: int | tuple[int, int] | None) -> "ImageFiles":
        size = (size, size) if isinstance(size, (int, np.integer)) else size
        return ImageFiles(self.paths, self.routes, self.channels, size, self.root, self.cache_dir)

    def elements(self, order: np.ndarray, *, training: bool = False, seed: int = 0) -> Any:
        import tensorflow as tf

        from tlzoo.data.stream import pixels_fn

        pixels = pixels_fn(self)
        ds = tf.data.Dataset.from_tensor_slices(np.asarray(order, np.int64))
        if training:  # a shuffle of indices: no buffer of pixels
            ds = ds.shuffle(len(order), seed=seed, reshuffle_each_iteration=True)
        return ds.map(lambda i: (i, pixels(i)), num_parallel_calls=tf.data.AUTOTUNE)

    def relative_paths(self) -> list[str]:
        root = self.root
        return [os.path.relpath(p, root) if root else p for p in self.paths]

    def __repr__(self) -> str:
        return f"ImageFiles({len(self)} files, shape={self.shape}, root={self.root!r})"

    def digest(self, digest: Any) -> None:
        """Feed the fingerprint: each sample's path (relative to the root) and its file's sha256."""
        for rel, path in zip(self.relative_paths(), self.paths):
            digest.update(rel.replace(os.sep, "/").encode() + b"\0" + file_sha256(path).encode())


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """One file decoded by the stream's conversion rule, at its stored size: uint8 (H, W, 1 or 3)."""
    info = probe(path)
    if info.error:
        raise DataError(f"cannot read image {str(path)!r}: {info.error}")
    return decode_file(str(path), info.route if info.route == DICOM_DECODE else PIL_DECODE, 1 if info.gray else 3)


def is_lazy(x: Any) -> bool:
    return isinstance(x, LazyImages)


def index_files(paths: Sequence[str], *, where: str, skip_bad: bool, verbose: bool,
                channels: int | None = None, dicom_fields: Sequence[str] | None = None
                ) -> tuple[np.ndarray, list[FileInfo], list[tuple[str, str]], int]:
    """Scan ``paths``; return the indices of the good ones, their infos, the bad (path, reason)
    pairs, and the channel count (``channels``, else 1 if every good file is gray, else 3). Bad files
    stop the read (all listed) unless ``skip_bad``."""
    infos = scan(paths, dicom_fields=dicom_fields, verbose=verbose)
    bad = [(str(p), i.error) for p, i in zip(paths, infos) if i.error]
    if bad and not skip_bad:
        raise bad_files_error(bad, where, "fix or remove them, or pass --skip-bad-files (skip_bad_files=True) to "
                                          "leave them out (they are recorded in the run's config.yaml)")
    good = np.array([k for k, i in enumerate(infos) if not i.error], dtype=int)
    kept = [infos[k] for k in good]
    if channels is None:
        channels = 1 if kept and all(i.gray for i in kept) else 3
    return good, kept, bad, channels
