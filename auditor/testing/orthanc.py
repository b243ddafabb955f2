"""A real Orthanc with its DICOMweb plugin, for the tests and the benchmark: started on a free 127.0.0.1
port with its own config and storage folder (Debian packages ``orthanc`` and ``orthanc-dicomweb``),
stopped, paused (a slow archive) and restarted on the same storage; and chest radiographs written as
DICOM from a PNG (the NIH radiographs in ../shared; a synthetic picture without one), each carrying
fake patient identifiers that must never come out the other end. numpy and pydicom are imported by
the writers only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
FAKE_PHI: dict[str, str] = {
    "PatientName": "Doe^Janet^Quinn",
    "PatientID": "MRN-0042-PHI",
    "PatientBirthDate": "19450317",
    "AccessionNumber": "ACC-77-PHI",
    "InstitutionName": "Hospital of Fake Identifiers",
    "ReferringPhysicianName": "Smith^Referring",
}
"""Identifiers every test instance carries; none of these strings may appear in any output."""
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def orthanc_missing() -> str | None:
    """Why the Orthanc tests cannot run here, or None."""
    if not ORTHANC.is_file():
        return f"the orthanc binary is absent ({ORTHANC}): apt-get install orthanc orthanc-dicomweb"
    if not DICOMWEB_PLUGIN.is_file():
        return f"Orthanc's DICOMweb plugin is absent ({DICOMWEB_PLUGIN}): apt-get install orthanc-dicomweb"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Archive:
    """One Orthanc process over one storage folder. ``users`` turns HTTP basic authentication on."""

    folder: Path
    users: dict[str, str] = field(default_factory=dict)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def start(self) -> Archive:
        config = {
            "Name": "cxr-auditor-tests",
            "HttpPort": self.http_port,
            "DicomPort": free_port(),
            "HttpBindAddress": "127.0.0.1",
            "StorageDirectory": str(self.folder / "db"),
            "IndexDirectory": str(self.folder / "db"),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": self.users,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        log = open(self.folder / "orthanc.log", "ab")  # noqa: SIM115 (Orthanc holds it while it runs)
        self.process = subprocess.Popen([str(ORTHANC), str(path)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited at start; see {self.folder / 'orthanc.log'}")
            try:
                self._get("/system")
                return self
            except urllib.error.HTTPError:
                return self  # up, asking for credentials
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("Orthanc did not answer within 20 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def pause(self) -> None:
        """A slow archive: the port still accepts connections, nothing answers."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def _request(self, path: str, data: bytes | None = None) -> Any:
        headers = {"Content-Type": "application/dicom"} if data is not None else {}
        req = urllib.request.Request(self.url + path, data=data, headers=headers)
        if self.users:
            import base64

            user, password = next(iter(self.users.items()))
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def _get(self, path: str) -> Any:
        return self._request(path)

    def upload(self, data: bytes) -> None:
        answer = self._request("/instances", data)
        assert answer["Status"] in ("Success", "AlreadyStored"), answer


# ---- studies ------------------------------------------------------------------------------------


def _pixels(png: Path | None, seed: int, side: int) -> np.ndarray[Any, np.dtype[np.uint16]]:
    """12-bit pixels: a NIH radiograph scaled up from 8 bits, or a synthetic chest-like picture."""
    if png is not None and png.is_file():
        from PIL import Image

        with Image.open(png) as im:
            gray = im.convert("L")
            if gray.size != (side, side):
                gray = gray.resize((side, side))
            return np.asarray(gray).astype(np.uint16) * 16
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    lungs = np.exp(-(((x - 0.3) / 0.12) ** 2 + ((y - 0.5) / 0.3) ** 2))
    lungs += np.exp(-(((x - 0.7) / 0.12) ** 2 + ((y - 0.5) / 0.3) ** 2))
    picture = 3000 - 2200 * lungs + rng.normal(0, 40, (side, side))
    out: np.ndarray[Any, np.dtype[np.uint16]] = np.clip(picture, 0, 4095).astype(np.uint16)
    return out


@dataclass(frozen=True)
class Instance:
    """One written instance: its UIDs, what it is, and its Part-10 bytes."""

    study_uid: str
    series_uid: str
    sop_uid: str
    modality: str
    view: str | None
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def reference(self, base_url: str) -> str:
        return f"{base_url}/studies/{self.study_uid}/series/{self.series_uid}/instances/{self.sop_uid}"


def _dataset(study_uid: str, sop_class: str, modality: str) -> Any:
    """A new instance in a new series of the study, with the fake identifiers."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    for keyword, value in FAKE_PHI.items():
        setattr(ds, keyword, value)
    ds.Modality = modality
    return ds


def _written(ds: Any, view: str | None) -> Instance:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return Instance(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.Modality, view, buffer.getvalue()
    )


def radiograph(
    study_uid: str,
    view: str | None,
    *,
    png: Path | None = None,
    seed: int = 0,
    modality: str = "DX",
    monochrome1: bool = False,
    rle: bool = False,
    side: int = 512,
    bits: int = 12,
) -> Instance:
    """A single-frame chest radiograph with fake identifiers, as a Part-10 file."""
    from pydicom.uid import RLELossless

    px = _pixels(png, seed, side)
    if bits == 16:
        px = (px.astype(np.uint32) * 16).clip(0, 65535).astype(np.uint16)
    if monochrome1:
        px = (2**bits - 1 - px).astype(np.uint16)
    ds = _dataset(study_uid, DX_FOR_PRESENTATION, modality)
    if view is not None:
        ds.ViewPosition = view
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.Rows, ds.Columns = px.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored = 1, 16, bits
    ds.HighBit, ds.PixelRepresentation = bits - 1, 0
    ds.PixelData = px.tobytes()
    if rle:
        ds.compress(RLELossless)
    return _written(ds, view)


def text_report(study_uid: str) -> Instance:
    """A structured report (SR) in the study: a non-image series that must be skipped."""
    ds = _dataset(study_uid, BASIC_TEXT_SR, "SR")
    ds.ValueType = "CONTAINER"
    return _written(ds, None)
