"""tlzoo.data.dicom_files: header probe, refusals with reasons, and the pixel mapping to uint8, checked by value."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, RLELossless

from dicom_support import write_dicom
from tlzoo.data import dicom_files
from tlzoo.data.dicom_files import (
    DEFAULT_FIELDS,
    DicomError,
    decode_dicom,
    is_dicom,
    probe_dicom,
)
from tlzoo.errors import DataError

# Every 12-bit stored value once, in order: pixel.flat[s] == s.
RAMP12 = np.arange(4096, dtype=np.uint16).reshape(64, 64)


def expected_window(stored: np.ndarray, slope: float, intercept: float, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR window on the rescaled values, as 0..255 floats."""
    x = stored * slope + intercept
    return 255 * np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0, 1)


def test_12bit_rescale_and_window_map_edges_to_0_and_255_linearly(tmp_path):
    path = write_dicom(tmp_path / "w.dcm", RAMP12, bits_stored=12, rescale=(2.0, -1000.0), window=(3000, 2001))
    out = decode_dicom(path)
    assert out.dtype == np.uint8 and out.shape == (64, 64)
    flat = out.ravel()
    # Rescaled x = 2s - 1000; the window spans x in (1999.5, 3999.5], i.e. stored 1500..2499.
    assert flat[[0, 1000, 1499]].tolist() == [0, 0, 0]  # at and below the low edge
    assert flat[[2500, 3000, 4095]].tolist() == [255, 255, 255]  # above the high edge
    assert flat[[1750, 2000, 2250, 2499]].tolist() == [64, 128, 191, 255]
    ramp = flat[1500:2500].astype(int)
    assert np.all(np.diff(ramp) >= 0) and np.abs(ramp - expected_window(np.arange(1500, 2500), 2, -1000, 3000, 2001)
                                                 ).max() <= 0.5
    # Multi-valued window: the first one is used.
    multi = write_dicom(tmp_path / "m.dcm", RAMP12, bits_stored=12, rescale=(2.0, -1000.0),
                        window=([3000, 100], [2001, 50]))
    np.testing.assert_array_equal(decode_dicom(multi), out)


def test_monochrome1_is_inverted(tmp_path):
    pixels = RAMP12[::4, ::4] + 7  # 7..3907
    out = decode_dicom(write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1", bits_stored=12))
    assert out.flat[np.argmin(pixels)] == 255 and out.flat[np.argmax(pixels)] == 0
    mono2 = decode_dicom(write_dicom(tmp_path / "m2.dcm", pixels, bits_stored=12))
    np.testing.assert_array_equal(out.astype(int), 255 - mono2.astype(int))
    windowed = decode_dicom(write_dicom(tmp_path / "w1.dcm", pixels, photometric="MONOCHROME1", bits_stored=12,
                                        window=(2048, 1025)))
    assert windowed.flat[np.argmin(pixels)] == 255 and windowed.flat[np.argmax(pixels)] == 0


def test_16bit_without_window_is_scaled_not_clipped(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 60000, (64, 64)).astype(np.uint16)
    out = decode_dicom(write_dicom(tmp_path / "16.dcm", pixels, bits_stored=16))
    assert (out == 255).mean() < 0.01 and out.min() == 0 and out.max() == 255
    assert len(np.unique(out)) > 200
    order = np.argsort(pixels, axis=None, kind="stable")
    assert np.all(np.diff(out.ravel()[order].astype(int)) >= 0)  # monotone: brighter stored -> not darker
    np.testing.assert_allclose(out.astype(float), 255 * (pixels - 0.0 - pixels.min()) / np.ptp(pixels), atol=0.5)
    # 12-bit content declared as 16 bits keeps full contrast (the image's own range, not the nominal one).
    narrow = decode_dicom(write_dicom(tmp_path / "n.dcm", (RAMP12 + 1000).astype(np.uint16), bits_stored=16))
    assert narrow.min() == 0 and narrow.max() == 255 and len(np.unique(narrow)) == 256


def test_8bit_rgb_round_trips_exactly(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (12, 17, 3)).astype(np.uint8)
    path = write_dicom(tmp_path / "rgb.dcm", pixels, Modality="XC")
    out = decode_dicom(path)
    assert out.dtype == np.uint8 and out.shape == (12, 17, 3)
    np.testing.assert_array_equal(out, pixels)
    assert probe_dicom(path)[0] is False


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless], ids=["rle", "j2k"])
def test_compressed_decodes_like_uncompressed(tmp_path, syntax):
    pixels = RAMP12[::2, ::2] + RAMP12[:32, :32] % 7
    kw = dict(bits_stored=12, rescale=(1.0, -24.0), window=(1500, 2000))
    plain = write_dicom(tmp_path / "plain.dcm", pixels, **kw)
    try:
        packed = write_dicom(tmp_path / "packed.dcm", pixels, transfer_syntax=syntax, **kw)
    except RuntimeError as exc:  # no encoder plugin on this machine
        pytest.skip(f"cannot encode {syntax.name}: {exc}")
    assert pydicom.dcmread(packed).file_meta.TransferSyntaxUID == syntax
    assert probe_dicom(packed)[0] is True
    np.testing.assert_array_equal(decode_dicom(packed), decode_dicom(plain))
    rgb = np.random.default_rng(2).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    if syntax == RLELossless:
        np.testing.assert_array_equal(decode_dicom(write_dicom(tmp_path / "c.dcm", rgb, transfer_syntax=syntax)), rgb)


def test_probe_returns_attributes_and_gray(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", RAMP12, bits_stored=12, PatientSex="F", PatientAge="045Y",
                       Manufacturer="Acme ", ViewPosition="PA", BodyPartExamined="CHEST")
    gray, attrs = probe_dicom(path)
    assert gray is True
    assert list(attrs) == list(DEFAULT_FIELDS)
    assert attrs == {"PatientSex": "F", "PatientAge": "045Y", "Manufacturer": "Acme", "ManufacturerModelName": "",
                     "BodyPartExamined": "CHEST", "ViewPosition": "PA", "Modality": "CR", "InstitutionName": ""}
    assert probe_dicom(path, ("Rows", "InstitutionName")) == (True, {"Rows": "64", "InstitutionName": ""})
    with pytest.raises(ValueError, match="PatientSexx"):
        probe_dicom(path, ("PatientSexx",))


def test_is_dicom_by_suffix_or_magic(tmp_path):
    no_suffix = write_dicom(tmp_path / "1.2.840.99999.1", RAMP12, bits_stored=12)
    assert is_dicom(no_suffix) and probe_dicom(no_suffix)[0]
    assert is_dicom(tmp_path / "absent.DCM") and is_dicom(tmp_path / "x.dicom")
    (tmp_path / "notes.txt").write_text("not a DICOM file " * 20)
    assert not is_dicom(tmp_path / "notes.txt") and not is_dicom(tmp_path) and not is_dicom(tmp_path / "absent")


def refusal(path) -> str:
    """The reason both probe and decode give; they must agree."""
    with pytest.raises(DicomError) as probed:
        probe_dicom(path)
    with pytest.raises(DicomError) as decoded:
        decode_dicom(path)
    assert str(probed.value) == str(decoded.value) and isinstance(probed.value, DataError)
    assert str(path) not in str(probed.value)
    return str(probed.value)


def test_refuses_multi_frame(tmp_path):
    reason = refusal(write_dicom(tmp_path / "mf.dcm", RAMP12, bits_stored=12, frames=3))
    assert "multi-frame" in reason and "3 frames" in reason and "single-frame" in reason


def test_refuses_file_without_pixel_data(tmp_path):
    assert "no pixel data" in refusal(write_dicom(tmp_path / "np.dcm", RAMP12, bits_stored=12, no_pixels=True))


def test_refuses_non_dicom_and_missing_files(tmp_path):
    (tmp_path / "fake.dcm").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300))
    assert "not a DICOM file" in refusal(tmp_path / "fake.dcm")
    assert "cannot read" in refusal(tmp_path / "missing.dcm")


def test_refuses_syntax_without_decoder(tmp_path):
    path = write_dicom(tmp_path / "jpip.dcm", RAMP12, bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.94"  # JPIP Referenced: pydicom has no decoder for it
    ds.PixelData = encapsulate([ds.PixelData])
    ds.save_as(path)
    reason = refusal(path)
    assert "JPIP Referenced" in reason and "1.2.840.10008.1.2.4.94" in reason and "no pixel data decoder" in reason


def test_refuses_syntax_whose_decoder_is_not_installed(tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "rle.dcm", RAMP12, bits_stored=12, transfer_syntax=RLELossless)
    missing = SimpleNamespace(is_available=False, missing_dependencies=["pylibjpeg - requires pylibjpeg-rle>=2.0"])
    monkeypatch.setattr(dicom_files, "get_decoder", lambda uid: missing)
    reason = refusal(path)
    assert "RLE Lossless" in reason and "1.2.840.10008.1.2.5" in reason
    assert "install" in reason and "pylibjpeg-rle" in reason


def test_refuses_unsupported_photometric_and_tiny_images(tmp_path):
    palette = write_dicom(tmp_path / "pal.dcm", (RAMP12 % 256).astype(np.uint8), photometric="PALETTE COLOR")
    assert "Photometric Interpretation 'PALETTE COLOR'" in refusal(palette)
    assert "needs at least 2x2" in refusal(write_dicom(tmp_path / "line.dcm", RAMP12[:1], bits_stored=12))


def test_truncated_pixel_data_is_a_decode_error(tmp_path):
    path = write_dicom(tmp_path / "t.dcm", RAMP12, bits_stored=12)
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(DicomError):  # the header alone may look fine; decoding must still fail cleanly
        decode_dicom(path)
