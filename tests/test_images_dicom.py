"""DICOM input, written with pydicom from a real NIH radiograph: bit depths, windowing, VOI LUT,
modality rescale, MONOCHROME1, refusals, and that no header value (PHI) ever leaks out."""

from __future__ import annotations

import base64
import hashlib
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

pytest.importorskip("pydicom")

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from auditor.images import (
    DICOM_NEEDS_PYDICOM,
    IMAGE_ERROR_CODES,
    ImageError,
    ImageLimits,
    LoadedImage,
    load_image,
    load_image_bytes,
)

NIH = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nih" / "images"
SOURCE = NIH / "00000002_000.png"
pytestmark = pytest.mark.skipif(not SOURCE.is_file(), reason=f"NIH sample images not found in {NIH}")

PHI = {
    "PatientName": "Doe^Jane",
    "PatientID": "MRN-123456",
    "PatientBirthDate": "19510704",
    "StudyDate": "20240229",
    "InstitutionName": "St Elsewhere Hospital",
    "AccessionNumber": "ACC-998877",
    "ReferringPhysicianName": "House^Gregory",
}


@pytest.fixture(scope="module")
def source() -> np.ndarray:
    """The radiograph as 8-bit values, downsampled to 512 px to keep the suite fast."""
    with Image.open(SOURCE) as im:
        return np.asarray(im.convert("L").resize((512, 512), Image.Resampling.BILINEAR))


def make_dicom(
    tmp_path: Path,
    stored: np.ndarray,
    *,
    bits_stored: int,
    photometric: str = "MONOCHROME2",
    name: str = "image.dcm",
    syntax: Any = ExplicitVRLittleEndian,
    pixel_data: bytes | None = None,
    seed: str | None = None,
    **attrs: Any,
) -> Path:
    """Write a DX DICOM with PHI in the header. ``stored`` are the raw stored values (rows, cols[, 3])."""

    def uid(kind: str) -> Any:
        return generate_uid(entropy_srcs=[seed, kind]) if seed else generate_uid()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = uid("sop")
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid("study"), uid("series")
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)
    ds.Modality, ds.ViewPosition = "DX", "PA"
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = stored.shape[:2]
    ds.SamplesPerPixel = 3 if stored.ndim == 3 else 1
    if stored.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if stored.dtype.itemsize == 1 else 16
    ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
    ds.PixelRepresentation = 1 if stored.dtype.kind == "i" else 0
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    ds.PixelData = stored.tobytes() if pixel_data is None else pixel_data
    if pixel_data is not None and syntax.is_compressed:
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return path


def corr(a: Any, b: Any) -> float:
    return float(np.corrcoef(np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel())[0, 1])


def codes(loaded: LoadedImage) -> list[str]:
    return [n.code for n in loaded.notes]


def check_display(loaded: LoadedImage, src: np.ndarray, *, min_corr: float = 0.95) -> np.ndarray:
    arr = np.asarray(loaded.image)
    assert loaded.image.mode == "L" and arr.dtype == np.uint8
    assert loaded.image.size == (src.shape[1], src.shape[0])
    assert (loaded.info.width, loaded.info.height) == loaded.image.size
    assert loaded.info.source_format == "DICOM"
    assert corr(arr, src) > min_corr
    return arr


def raises(code: str, fn: Any, *args: Any) -> ImageError:
    with pytest.raises(ImageError) as info:
        fn(*args)
    assert info.value.code == code, f"{info.value.code}: {info.value}"
    assert info.value.code in IMAGE_ERROR_CODES
    return info.value


# ---------------------------------------------------------------------------------- pixel pipeline


@pytest.mark.parametrize(
    ("position", "view"),
    [
        ("PA", "PA"),
        ("AP", "AP"),
        ("LL", "lateral"),
        ("RL", "lateral"),
        ("LATERAL", "lateral"),
        ("LLD", None),
        ("", None),
    ],
)
def test_view_position_reaches_the_image_info(
    tmp_path: Path, source: np.ndarray, position: str, view: str | None
) -> None:
    """Only the mapped view travels (the judge reads sides only on frontal films); never the raw value."""
    loaded = load_image(make_dicom(tmp_path, source, bits_stored=8, ViewPosition=position))
    assert loaded.info.view == view


def test_monochrome2_12bit_with_window(tmp_path: Path, source: np.ndarray) -> None:
    stored = source.astype(np.uint16) * 16  # 0..4080 in 12 bits
    path = make_dicom(tmp_path, stored, bits_stored=12, WindowCenter=2048, WindowWidth=4096)
    loaded = load_image(str(path))
    arr = check_display(loaded, source, min_corr=0.999)
    assert np.abs(arr.astype(int) - source.astype(int)).max() <= 1  # full-range window: identity
    assert codes(loaded) == ["dicom_window"]
    assert loaded.info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_narrow_window_clips_as_the_file_says(tmp_path: Path, source: np.ndarray) -> None:
    """A window is applied as written (not re-stretched to the image's own min/max)."""
    stored = source.astype(np.uint16) * 16
    path = make_dicom(tmp_path, stored, bits_stored=12, WindowCenter=1024, WindowWidth=1024)
    arr = check_display(load_image(str(path)), source, min_corr=0.3)
    assert (arr[stored >= 1536] == 255).all() and (arr[stored <= 512] == 0).all()
    expected = np.clip(((stored - 1023.5) / 1023 + 0.5) * 255, 0, 255)  # PS3.3 C.11.2.1.2.1, LINEAR
    assert np.abs(arr - expected).max() <= 1


@pytest.mark.parametrize("function", ["LINEAR_EXACT", "SIGMOID"])
def test_other_voi_functions(tmp_path: Path, source: np.ndarray, function: str) -> None:
    stored = source.astype(np.uint16) * 16
    path = make_dicom(
        tmp_path, stored, bits_stored=12, WindowCenter=2048, WindowWidth=4096, VOILUTFunction=function
    )
    loaded = load_image(str(path))
    arr = check_display(loaded, source, min_corr=0.97)
    assert codes(loaded) == ["dicom_window"]  # and no overflow warnings from probing the range
    assert int(arr.max()) - int(arr.min()) > 150


def test_monochrome2_16bit_without_window_uses_min_max(tmp_path: Path, source: np.ndarray) -> None:
    stored = source.astype(np.uint16) * 200 + 3000
    path = make_dicom(tmp_path, stored, bits_stored=16)
    loaded = load_image(str(path))
    arr = check_display(loaded, source, min_corr=0.999)
    assert arr.min() == 0 and arr.max() == 255
    assert codes(loaded) == ["dicom_minmax"]


def test_monochrome1_is_inverted(tmp_path: Path, source: np.ndarray) -> None:
    """Same stored values, MONOCHROME1: what was bright in the source is dark on display."""
    stored = source.astype(np.uint16) * 16
    path = make_dicom(tmp_path, stored, bits_stored=12, photometric="MONOCHROME1")
    loaded = load_image(str(path))
    arr = np.asarray(loaded.image)
    bright = source >= np.percentile(source, 95)
    assert arr[bright].mean() < 30 and arr[~bright].mean() > arr[bright].mean() + 60
    assert corr(arr, source) < -0.99
    assert codes(loaded) == ["dicom_minmax", "dicom_inverted"]
    # a MONOCHROME1 file written the way a detector stores it displays like the source
    flipped = make_dicom(tmp_path, 4095 - stored, bits_stored=12, photometric="MONOCHROME1", name="m1.dcm")
    check_display(load_image(str(flipped)), source, min_corr=0.999)


def test_monochrome1_with_voi_lut_sequence(tmp_path: Path, source: np.ndarray) -> None:
    stored = 4095 - source.astype(np.uint16) * 16
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [4096, 0, 12])
    item.add_new("LUTData", "US", [int(4095 * (v / 4095) ** 0.8) for v in range(4096)])  # mild gamma
    item.LUTExplanation = "gamma"
    path = make_dicom(
        tmp_path,
        stored,
        bits_stored=12,
        photometric="MONOCHROME1",
        VOILUTSequence=Sequence([item]),
        WindowCenter=100,  # a misleading window: the LUT must win
        WindowWidth=10,
    )
    loaded = load_image(str(path))
    check_display(loaded, source, min_corr=0.97)
    assert codes(loaded) == ["dicom_voi_lut", "dicom_inverted"]


def test_modality_rescale(tmp_path: Path, source: np.ndarray) -> None:
    stored = source.astype(np.uint16) * 16
    path = make_dicom(
        tmp_path,
        stored,
        bits_stored=12,
        RescaleSlope=2,
        RescaleIntercept=-1024,
        RescaleType="US",
        WindowCenter=3072,  # in rescaled units: covers -1024 .. 7166
        WindowWidth=8192,
    )
    loaded = load_image(str(path))
    check_display(loaded, source, min_corr=0.999)
    assert codes(loaded) == ["dicom_modality_lut", "dicom_window"]


def test_identity_rescale_is_not_reported(tmp_path: Path, source: np.ndarray) -> None:
    stored = source.astype(np.uint16) * 16
    path = make_dicom(tmp_path, stored, bits_stored=12, RescaleSlope=1, RescaleIntercept=0)
    assert codes(load_image(str(path))) == ["dicom_minmax"]


def test_signed_pixels(tmp_path: Path, source: np.ndarray) -> None:
    stored = source.astype(np.int16) * 16 - 2048
    path = make_dicom(tmp_path, stored, bits_stored=12)
    check_display(load_image(str(path)), source, min_corr=0.999)


def test_invalid_window_falls_back_to_min_max(tmp_path: Path, source: np.ndarray) -> None:
    stored = source.astype(np.uint16) * 16
    path = make_dicom(tmp_path, stored, bits_stored=12, WindowCenter=2048, WindowWidth=0)
    loaded = load_image(str(path))
    check_display(loaded, source, min_corr=0.999)
    assert codes(loaded) == ["dicom_minmax"]
    assert "could not be applied" in loaded.notes[0].message


def test_rgb_dicom(tmp_path: Path, source: np.ndarray) -> None:
    colour = np.stack([source, source // 2, 255 - source], axis=-1).astype(np.uint8)
    loaded = load_image(str(make_dicom(tmp_path, colour, bits_stored=8, photometric="RGB")))
    assert loaded.image.mode == "RGB" and loaded.image.size == (512, 512)
    assert np.array_equal(np.asarray(loaded.image), colour)
    gray = np.repeat(source[..., None], 3, axis=-1)
    path = make_dicom(tmp_path, gray, bits_stored=8, photometric="RGB", name="gray.dcm")
    assert load_image(str(path)).image.mode == "L"


def test_dicom_from_bytes_and_base64(tmp_path: Path, source: np.ndarray) -> None:
    stored = source.astype(np.uint16) * 16
    raw = make_dicom(tmp_path, stored, bits_stored=12).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    assert load_image_bytes(raw).info.sha256 == digest
    assert load_image(base64.b64encode(raw).decode()).info.sha256 == digest
    assert load_image("data:application/dicom;base64," + base64.b64encode(raw).decode()).info.sha256 == digest


# ----------------------------------------------------------------------------------------- refusals


def test_multiframe_refused(tmp_path: Path, source: np.ndarray) -> None:
    stored = source.astype(np.uint16) * 16
    frames = np.stack([stored, stored])
    path = make_dicom(tmp_path, stored, bits_stored=12, NumberOfFrames=2, pixel_data=frames.tobytes())
    err = raises("dicom_multiframe", load_image, str(path))
    assert str(err) == "multi-frame DICOM (2 frames) is not supported; export one frame"


def test_no_pixel_data_refused(tmp_path: Path, source: np.ndarray) -> None:
    path = make_dicom(tmp_path, source.astype(np.uint16), bits_stored=12)
    from pydicom import dcmread

    ds = dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    raises("dicom_no_pixels", load_image, str(path))


def test_dimensions_checked_before_pixels_are_decoded(tmp_path: Path, source: np.ndarray) -> None:
    stored = source.astype(np.uint16) * 16
    # PixelData far too short: decoding first would fail differently
    path = make_dicom(tmp_path, stored, bits_stored=12, pixel_data=b"\x00\x00" * 16)
    raises("too_large", load_image, str(path), ImageLimits(max_pixels=1000))
    raises("too_large", load_image, str(path), ImageLimits(max_side=256))
    raises("dicom_decode_failed", load_image, str(path))


def test_compressed_without_a_plugin_names_the_syntax(tmp_path: Path, source: np.ndarray) -> None:
    """JPEG-LS claimed over bytes that are not JPEG-LS: a codec error or a decode error, never a crash."""
    stored = source.astype(np.uint16) * 16
    fake = encapsulate([stored.tobytes()])
    path = make_dicom(tmp_path, stored, bits_stored=12, syntax=JPEGLSLossless, pixel_data=fake)
    err = raises_any(load_image, str(path))
    assert err.code in ("dicom_codec_missing", "dicom_decode_failed")
    if err.code == "dicom_codec_missing":
        assert "JPEG-LS" in str(err) and "1.2.840.10008.1.2.4.80" in str(err)
        assert "pylibjpeg" in str(err) or "gdcm" in str(err)


def test_bogus_rle_data_is_a_decode_error(tmp_path: Path, source: np.ndarray) -> None:
    stored = source.astype(np.uint16) * 16
    fake = encapsulate([b"\x07" * 512])
    path = make_dicom(tmp_path, stored, bits_stored=12, syntax=RLELossless, pixel_data=fake)
    err = raises_any(load_image, str(path))
    assert err.code in ("dicom_decode_failed", "dicom_codec_missing")


def test_truncated_dicom_file(tmp_path: Path, source: np.ndarray) -> None:
    raw = make_dicom(tmp_path, source.astype(np.uint16) * 16, bits_stored=12).read_bytes()
    for cut in (140, 400, len(raw) // 2):
        err = raises_any(load_image_bytes, raw[:cut])
        assert err.code in ("not_an_image", "dicom_decode_failed", "dicom_no_pixels", "dicom_invalid")


def test_missing_pydicom_gives_the_install_hint(
    tmp_path: Path, source: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = make_dicom(tmp_path, source.astype(np.uint16), bits_stored=12).read_bytes()
    monkeypatch.setitem(sys.modules, "pydicom", None)
    err = raises("dicom_unavailable", load_image_bytes, raw)
    assert str(err) == DICOM_NEEDS_PYDICOM
    assert str(err) == "DICOM support needs pydicom: pip install 'cxr-draft-auditor[dicom]'"


def raises_any(fn: Any, *args: Any) -> ImageError:
    with pytest.raises(ImageError) as info:
        fn(*args)
    assert info.value.code in IMAGE_ERROR_CODES
    return info.value


# ------------------------------------------------------------------------------------------ privacy


def test_no_phi_in_info_notes_errors_or_logs(
    tmp_path: Path, source: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stored = source.astype(np.uint16) * 16
    seen: list[str] = []
    secrets = [*PHI.values(), "Doe", "MRN-123456", "123456"]

    def record_success(path: Path) -> None:
        loaded = load_image(str(path))
        seen.extend([repr(loaded.info), repr(loaded.notes), *(n.message for n in loaded.notes)])

    def record_error(path: Path, limits: ImageLimits | None = None) -> None:
        with pytest.raises(ImageError) as info:
            load_image(str(path), limits or ImageLimits())
        seen.extend([str(info.value), repr(info.value), info.value.as_note().model_dump_json()])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plain = make_dicom(tmp_path, stored, bits_stored=12, WindowCenter=2048, WindowWidth=4096)
        uids = []
        from pydicom import dcmread

        ds = dcmread(plain)
        uids = [str(ds.StudyInstanceUID), str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID)]
        record_success(plain)
        record_success(
            make_dicom(tmp_path, stored, bits_stored=12, WindowWidth=0, WindowCenter=1, name="w.dcm")
        )
        record_success(make_dicom(tmp_path, stored, bits_stored=12, photometric="MONOCHROME1", name="m1.dcm"))
        del ds.PixelData
        ds.save_as(tmp_path / "nopix.dcm")
        record_error(tmp_path / "nopix.dcm")
        frames = np.stack([stored, stored]).tobytes()
        record_error(
            make_dicom(tmp_path, stored, bits_stored=12, NumberOfFrames=2, pixel_data=frames, name="mf.dcm")
        )
        record_error(plain, ImageLimits(max_pixels=100))
        fake = encapsulate([stored.tobytes()])
        record_error(
            make_dicom(
                tmp_path, stored, bits_stored=12, syntax=JPEGLSLossless, pixel_data=fake, name="ls.dcm"
            )
        )
        record_error(make_dicom(tmp_path, stored, bits_stored=12, pixel_data=b"\x01" * 10, name="short.dcm"))
        record_error(
            make_dicom(tmp_path, stored, bits_stored=12, photometric="PALETTE COLOR", name="pal.dcm")
        )

    everything = "\n".join(seen + [caplog.text] + [str(w.message) for w in caught])
    assert len(seen) > 10
    for secret in secrets + uids:
        assert secret not in everything, f"header value {secret!r} leaked"


@pytest.fixture(scope="module")
def small_dicom(source: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A fixed (same bytes every run) 64x64 DICOM for fuzzing."""
    folder = tmp_path_factory.mktemp("fuzz")
    return make_dicom(
        folder, source[:64, :64].astype(np.uint16) * 16, bits_stored=12, seed="fuzz"
    ).read_bytes()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_dicom_raises_only_image_errors(
    data: st.DataObject, small_dicom: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Flip bytes in the header and cut the file anywhere: an image or an ImageError, never a crash,
    and never a header value in what comes back or in a log line (pydicom logs invalid values)."""
    caplog.set_level(logging.DEBUG)
    raw = bytearray(small_dicom)
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(132, 900))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(132, len(raw)))
    try:
        loaded = load_image_bytes(bytes(raw[:cut]))
    except ImageError as err:
        assert err.code in IMAGE_ERROR_CODES
        said = str(err)
    else:
        assert loaded.image.mode in ("L", "RGB")
        said = repr(loaded.info) + repr(loaded.notes)
    assert "Doe" not in said and "MRN-123456" not in said
    assert [r.getMessage() for r in caplog.records if r.name.startswith("pydicom")] == []


def test_pydicom_logs_from_other_code_are_not_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    """The withholding filter is scoped to our own decoding; pydicom's logs elsewhere still flow."""
    logging.getLogger("pydicom").warning("outside the decoder")
    assert "outside the decoder" in caplog.text
