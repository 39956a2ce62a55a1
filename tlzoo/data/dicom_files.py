"""Single DICOM files: a fast header probe and a decoder to display-ready uint8 pixels.

Only pydicom and numpy are used; compressed files go through pydicom's own decoder plugins (Pillow, pylibjpeg,
gdcm, ...), so whatever pydicom can decode on this machine is accepted and everything else is refused up front,
by ``probe_dicom``, with the reason, so that a data-set scan can list unusable files before any training starts.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial
from pydicom.multival import MultiValue
from pydicom.pixels import (
    apply_modality_lut,
    apply_voi,
    apply_voi_lut,
    apply_windowing,
    get_decoder,
)
from pydicom.uid import UID

from tlzoo.errors import DataError

DICOM_SUFFIXES = (".dcm", ".dicom")
DEFAULT_FIELDS = ("PatientSex", "PatientAge", "Manufacturer", "ManufacturerModelName", "BodyPartExamined",
                  "ViewPosition", "Modality", "InstitutionName")
GRAY = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")  # pydicom returns these as RGB
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})  # Pixel Data, Double Float / Float Pixel Data

PathLike = str | os.PathLike


class DicomError(DataError):
    """One file that cannot be used; str(exc) is the reason (without the path)."""


def is_dicom(path: PathLike) -> bool:
    """True for a .dcm/.dicom suffix, or a file with the 'DICM' magic at byte 128.

    The magic test matters because PACS exports often name files by UID, without any suffix.
    """
    if Path(path).suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as fp:
            return fp.read(132)[128:] == b"DICM"
    except OSError:  # a directory, a broken link, no permission: not a usable DICOM file
        return False


def probe_dicom(path: PathLike, fields: Sequence[str] = DEFAULT_FIELDS) -> tuple[bool, dict[str, str]]:
    """Check a file without reading its pixels; return (is_gray, {field: clean string, '' when absent}).

    Raises DicomError for anything ``decode_dicom`` would refuse, so a scan of thousands of files stays cheap.
    """
    unknown = [f for f in fields if tag_for_keyword(f) is None]
    if unknown:  # a typo would otherwise silently give an all-'' column
        raise ValueError(f"not DICOM keywords: {', '.join(unknown)}")
    ds = _read(path, header_only=True)
    return ds.PhotometricInterpretation in GRAY, {f: _clean(ds.get(f)) for f in fields}


def decode_dicom(path: PathLike) -> np.ndarray:
    """Pixels as uint8, (H, W) for grayscale or (H, W, 3) RGB, mapped to 0..255 the way a viewer would show them.

    Grayscale: modality LUT (rescale slope/intercept), then the file's VOI (VOI LUT, else the first window) with
    its output range scaled to 0..255; without any VOI the image's own min..max is scaled to 0..255.
    MONOCHROME1 is inverted so that high values are bright.  Colour (RGB/YBR_*) comes back as RGB.
    """
    ds = _read(path, header_only=False)
    try:
        arr = ds.pixel_array
        if ds.PhotometricInterpretation in COLOUR:  # already display values; only the bit depth may differ
            bits = int(ds.get("BitsStored") or 8)
            return arr.astype(np.uint8) if bits <= 8 else _to_uint8(arr / (2.0 ** bits - 1))
        values = apply_modality_lut(arr, ds)
        unit = _voi_unit(values, ds)
    except DicomError:
        raise
    except Exception as exc:  # truncated data, a decoder failing on this file's stream, a bad LUT or window...
        raise DicomError(f"pixel data cannot be decoded ({type(exc).__name__}: {exc})") from exc
    if unit is None:
        unit = _min_max_unit(values)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        unit = 1.0 - unit
    return _to_uint8(unit)


def _read(path: PathLike, header_only: bool) -> Dataset:
    """Read and check a file; with header_only the pixel data is skipped (seeked over), never loaded."""
    pixel_lengths: list[int] = []

    def at_pixels(tag: int, vr: str | None, length: int) -> bool:
        # What dcmread(stop_before_pixels=True) does, but also noting that the tag was there (and its length).
        if tag in _PIXEL_TAGS:
            pixel_lengths.append(length)
            return True
        return False

    try:
        if header_only:
            with open(path, "rb") as fp:
                ds = read_partial(fp, stop_when=at_pixels)
        else:
            ds = pydicom.dcmread(path)
            pixel_lengths = [len(ds[t].value or b"") for t in _PIXEL_TAGS if t in ds]
    except InvalidDicomError:
        raise DicomError("not a DICOM file (no 'DICM' marker at byte 128)") from None
    except OSError as exc:
        raise DicomError(f"cannot read the file ({exc.strerror or exc})") from None
    except Exception as exc:  # pydicom raises a variety of errors for damaged files
        raise DicomError(f"not a readable DICOM file ({type(exc).__name__}: {exc})") from None
    _check(ds, has_pixels=any(pixel_lengths))
    return ds


def _check(ds: Dataset, has_pixels: bool) -> None:
    """Raise DicomError unless ds is one single-frame image whose pixels pydicom can decode here."""
    uid = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if uid is None:
        raise DicomError("no Transfer Syntax UID in the file meta information; cannot tell how pixels are encoded")
    uid = UID(uid)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        raise DicomError(f"transfer syntax '{uid.name}' ({uid}) has no pixel data decoder in pydicom; convert the "
                         "file to Explicit VR Little Endian first (e.g. `gdcmconv --raw in.dcm out.dcm`)") from None
    if not decoder.is_available:
        raise DicomError(f"transfer syntax '{uid.name}' ({uid}) is compressed and no installed decoder reads it; "
                         f"install one of: {'; '.join(decoder.missing_dependencies)} "
                         "(e.g. `pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle`)")
    if not has_pixels:
        raise DicomError("no pixel data (7FE0,0010): not an image (a report, presentation state or similar)")
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        raise DicomError(f"multi-frame image ({frames} frames); tlzoo reads single-frame images: "
                         "export one frame per file")
    photometric = ds.get("PhotometricInterpretation")
    if photometric not in GRAY + COLOUR:
        raise DicomError(f"unsupported Photometric Interpretation {photometric!r}; supported: "
                         f"{', '.join(GRAY + COLOUR)}")
    rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    if rows < 2 or cols < 2:
        raise DicomError(f"image is {cols}x{rows} px; needs at least 2x2")


def _voi_unit(values: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """The VOI transform (LUT preferred, as pydicom does) scaled so its output range is 0..1; None without VOI."""
    item = (ds.get("VOILUTSequence") or [None])[0]
    if item is not None and "LUTDescriptor" in item and "LUTData" in item:
        values = np.rint(values).astype(np.int64)  # a LUT is indexed by integers; rescaled values may be float
        n, first = item.LUTDescriptor[0] or 2 ** 16, item.LUTDescriptor[1]
        lut = apply_voi(np.arange(first, first + n), ds)
        low, high = float(lut.min()), float(lut.max())  # the LUT's real range: descriptors often overstate bits
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        # pydicom's window output range depends on BitsStored, sign and rescale; asking it for the values at
        # -inf/+inf gives exactly that range, and keeps "below the window" -> 0 even for a negative slope.
        with np.errstate(over="ignore"):
            low, high = (float(v) for v in apply_windowing(np.array([-np.inf, np.inf]), ds))
    else:
        return None
    out = np.asarray(apply_voi_lut(values, ds), dtype=np.float64)
    return (out - low) / (high - low) if high != low else np.zeros_like(out)


def _min_max_unit(values: np.ndarray) -> np.ndarray:
    """No VOI in the file: scale the image's own min..max to 0..1.

    Not the nominal BitsStored range: files often declare 16 bits for 10-14 bit data (and CT values sit in a small
    part of a signed 16-bit range), which would squeeze the image into a few grey levels after 8-bit quantisation.
    The image's own range is what viewers do without a window ("auto window") and never saturates; the price is
    that absolute intensities are not comparable between such files, which windowed files (the usual case for
    CR/DX/CT) do not suffer from.
    """
    values = np.asarray(values, dtype=np.float64)
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def _to_uint8(unit: np.ndarray) -> np.ndarray:
    # The clip only guards rounding and out-of-range LUT/colour values; data has already been scaled to 0..1.
    return np.clip(np.rint(np.nan_to_num(unit) * 255.0), 0, 255).astype(np.uint8)


def _clean(value: object) -> str:
    """A header value as one tidy line: '' when absent, multi-values joined by '\\', padding/NULs removed."""
    if value is None:
        return ""
    if isinstance(value, (MultiValue, list, tuple)):
        return "\\".join(_clean(v) for v in value)
    return " ".join(str(value).replace("\x00", " ").split())
