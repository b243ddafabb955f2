"""Image input latency: milliseconds from a source to ``LoadedImage.rgb()`` (median of repeated runs).

Two cases: a 1024x1024 NIH PNG from disk (target < 60 ms), and a 16-bit 2048x2048 DICOM written to a
temporary folder from an upscaled NIH image (target < 150 ms), both with a window (WindowCenter/Width)
and without one (min/max). Targets are reported, never asserted.
Run: python bench/image_load.py [--png ../shared/data/nih/images/00000002_000.png] [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from auditor.images import load_image

DEFAULT_PNG = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nih" / "images" / "00000002_000.png"
)


def write_dicom(png: Path, out: Path, *, side: int = 2048, window: bool = True) -> Path:
    """A DX DICOM (MONOCHROME2, 16 bits stored) whose pixels are the radiograph upscaled to ``side``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

    with Image.open(png) as im:
        big = im.convert("F").resize((side, side), Image.Resampling.BICUBIC)
    px = np.clip(np.asarray(big) * 257.0, 0, 65535).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.Modality = "Bench^Phantom", "0001", "DX"
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = px.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 16, 15, 0
    if window:
        ds.WindowCenter, ds.WindowWidth = 32768, 60000
    ds.PixelData = px.tobytes()
    ds.save_as(out, enforce_file_format=True)
    return out


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm caches and lazy imports
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--png", default=str(DEFAULT_PNG))
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    png = Path(args.png)
    ms = median_ms(lambda: load_image(str(png)).rgb(), args.repeat)
    print(f"PNG 1024x1024 -> rgb(): median {ms:.1f} ms over {args.repeat} runs (target < 60 ms)")
    with tempfile.TemporaryDirectory() as tmp:
        for window in (True, False):
            dcm = write_dicom(png, Path(tmp) / f"cxr_{window}.dcm", window=window)
            ms = median_ms(lambda dcm=dcm: load_image(str(dcm)).rgb(), args.repeat)  # type: ignore[misc]
            how = "WindowCenter/Width" if window else "no window, min/max"
            print(
                f"DICOM 16-bit 2048x2048 ({how}) -> rgb(): median {ms:.1f} ms over {args.repeat} runs "
                "(target < 150 ms)"
            )


if __name__ == "__main__":
    main()
