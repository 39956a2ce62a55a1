"""Write small, valid DICOM files for tests (importable as `dicom_support`; see setup.cfg pythonpath)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    generate_uid,
)

CR_IMAGE = UID("1.2.840.10008.5.1.4.1.1.1")  # Computed Radiography Image Storage
SECONDARY_CAPTURE = UID("1.2.840.10008.5.1.4.1.1.7")


def write_dicom(path: str | os.PathLike, pixels: np.ndarray, *, photometric: str = "MONOCHROME2",
                bits_stored: int | None = None, rescale: tuple[float, float] | None = (1.0, 0.0),
                window: tuple[float, float] | None = None, frames: int = 1,
                transfer_syntax: str = ExplicitVRLittleEndian, no_pixels: bool = False, **header) -> Path:
    """Write `pixels` ((H, W) or (H, W, 3) RGB, uint8 or uint16) as a single DICOM file and return its path.

    photometric MONOCHROME2 (the default) means RGB for 3-channel pixels; rescale is (slope, intercept) or None
    for no Modality LUT; window is (center, width); frames > 1 repeats the image as a multi-frame file; a compressed
    transfer_syntax (RLE Lossless, JPEG 2000 Lossless) is encoded with ``Dataset.compress``; no_pixels keeps the
    image attributes but drops Pixel Data; header sets keywords (PatientSex="F", Manufacturer="Acme", ...).
    """
    pixels = np.asarray(pixels)
    if pixels.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"pixels must be uint8 or uint16, not {pixels.dtype}")
    colour = pixels.ndim == 3
    sop_class = SECONDARY_CAPTURE if colour else CR_IMAGE
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian  # compress() below switches it
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "OT" if colour else "CR"
    ds.PatientID = "TEST"
    data = np.stack([pixels] * frames) if frames > 1 else pixels
    bits = bits_stored or pixels.dtype.itemsize * 8
    ds.set_pixel_data(data, "RGB" if colour and photometric == "MONOCHROME2" else photometric, bits,
                      generate_instance_uid=False)
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    for keyword, value in header.items():
        setattr(ds, keyword, value)
    if UID(transfer_syntax) != ExplicitVRLittleEndian:
        if UID(transfer_syntax).is_compressed:
            ds.compress(transfer_syntax, generate_instance_uid=False)
        else:  # e.g. Implicit VR Little Endian: the writer encodes to match the file meta
            ds.file_meta.TransferSyntaxUID = transfer_syntax
    if no_pixels:
        del ds.PixelData
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path
