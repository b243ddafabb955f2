"""A study from a local PACS versus the same file from disk: milliseconds to a decoded image (median).

Starts a real Orthanc with its DICOMweb plugin (Debian packages orthanc, orthanc-dicomweb) on a free
127.0.0.1 port with a temporary storage, stores one 2048x2048 16-bit DX instance (an upscaled NIH
radiograph, or a synthetic picture without ../shared) in a study, then times:
- archive: study lookup (QIDO-RS) + retrieval as stored (WADO-RS) + DICOM decode, as `audit` does it;
- its parts: the lookup alone, the retrieval alone;
- disk: the same Part-10 bytes read from a file and decoded by the same path.
Run: python bench/dicomweb_load.py [--repeat 15] [--png ../shared/data/nih/images/00000002_000.png]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from image_load import median_ms  # bench/ is this script's folder on sys.path

from auditor.config import Settings
from auditor.dicomweb import Reference, load_study_image, source_for
from auditor.images import ImageLimits, load_image
from auditor.testing.orthanc import Archive, orthanc_missing, radiograph

DEFAULT_PNG = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nih" / "images" / "00000002_000.png"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--png", type=Path, default=DEFAULT_PNG)
    args = parser.parse_args()
    missing = orthanc_missing()
    if missing:
        raise SystemExit(missing)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        study = "1.2.826.0.1.3680043.8.498.424242"
        png = args.png if args.png.is_file() else None
        inst = radiograph(study, "PA", png=png, side=2048, bits=16)
        on_disk = folder / "instance.dcm"
        on_disk.write_bytes(inst.data)
        archive = Archive(folder / "orthanc").start()
        try:
            archive.upload(inst.data)
            settings = Settings(dicomweb_url=archive.dicomweb_url)
            source = source_for(settings)
            limits = ImageLimits()
            ref = Reference(study, inst.series_uid, inst.sop_uid)
            results = {
                "archive: lookup + retrieval + decode": median_ms(
                    lambda: load_study_image(settings, study, limits), args.repeat
                ),
                "archive: lookup (QIDO-RS) only": median_ms(
                    lambda: source.list_instances(study), args.repeat
                ),
                "archive: retrieval (WADO-RS) only": median_ms(lambda: source.retrieve(ref), args.repeat),
                "disk: read + decode": median_ms(lambda: load_image(on_disk, limits), args.repeat),
            }
        finally:
            archive.stop()
    picture = f"NIH {args.png.name}" if png else "synthetic"
    print(f"2048x2048 16-bit DX ({picture}), {len(inst.data):,} bytes; median of {args.repeat}")
    for what, ms in results.items():
        print(f"  {what:40s} {ms:8.1f} ms")


if __name__ == "__main__":
    main()
