"""The DICOMweb source's guards, settings and worklist fields, without Orthanc: references that try to
leave the configured base, redirects off it, oversized answers, credentials on the wire but never in a
message, patient attributes in QIDO answers dropped unread. A small local HTTP server plays the
misbehaving archive (the real one is exercised in test_dicomweb_orthanc.py)."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from auditor.batch import read_worklist
from auditor.cli import CliError
from auditor.config import ConfigError, Settings, load_settings
from auditor.dicomweb import (
    DICOMWEB_ERROR_CODES,
    DicomWebError,
    DicomWebSource,
    Reference,
    find_study_images,
    parse_reference,
)

pytest.importorskip("dicomweb_client")

BASE = "http://archive.example:8042/dicom-web"
STUDY, SERIES, SOP = "1.2.840.1", "1.2.840.1.2", "1.2.840.1.2.3"


# ---- references ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (STUDY, Reference(STUDY)),
        (f"  {STUDY} ", Reference(STUDY)),
        (f"studies/{STUDY}", Reference(STUDY)),
        (f"{BASE}/studies/{STUDY}", Reference(STUDY)),
        (f"{BASE}/studies/{STUDY}/series/{SERIES}/instances/{SOP}", Reference(STUDY, SERIES, SOP)),
        (f"HTTP://Archive.Example:8042/dicom-web/studies/{STUDY}", Reference(STUDY)),
    ],
)
def test_references_under_the_base(text: str, expected: Reference) -> None:
    assert parse_reference(text, BASE) == expected


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (f"http://archive.example:9999/dicom-web/studies/{STUDY}", "dicomweb_refused"),  # another port
        (f"https://archive.example:8042/dicom-web/studies/{STUDY}", "dicomweb_refused"),  # another scheme
        (f"http://169.254.169.254/dicom-web/studies/{STUDY}", "dicomweb_refused"),  # another host
        (f"http://user:pw@archive.example:8042/dicom-web/studies/{STUDY}", "dicomweb_refused"),
        (f"http://archive.example:8042/other/studies/{STUDY}", "dicomweb_invalid_reference"),
        (f"{BASE}/studies/{STUDY}?includefield=all", "dicomweb_invalid_reference"),
        (f"{BASE}/studies/{STUDY}/series/{SERIES}", "dicomweb_invalid_reference"),
        (f"{BASE}/studies/{STUDY}/../../../system", "dicomweb_invalid_reference"),
        (f"studies/{STUDY}%2F..%2Fsystem", "dicomweb_invalid_reference"),
        ("1.2.abc", "dicomweb_invalid_reference"),
        ("1." + "2" * 70, "dicomweb_invalid_reference"),
        ("Doe^Jane", "dicomweb_invalid_reference"),
    ],
)
def test_references_that_leave_the_base_are_refused(text: str, code: str) -> None:
    with pytest.raises(DicomWebError) as info:
        parse_reference(text, BASE)
    assert info.value.code == code and info.value.code in DICOMWEB_ERROR_CODES
    assert "Doe" not in info.value.message


# ---- settings -----------------------------------------------------------------------------------


def test_settings_from_the_environment_and_their_checks() -> None:
    env = {
        "CXR_AUDITOR_DICOMWEB_URL": BASE,
        "CXR_AUDITOR_DICOMWEB_TOKEN": "tok-secret-1",
        "CXR_AUDITOR_DICOMWEB_TIMEOUT_S": "7.5",
    }
    settings = load_settings(env=env)
    assert (settings.dicomweb_url, settings.dicomweb_token, settings.dicomweb_timeout_s) == (
        BASE,
        "tok-secret-1",
        7.5,
    )
    assert "tok-secret-1" not in repr(settings)
    bad = [
        ({"CXR_AUDITOR_DICOMWEB_URL": "http://u:p@host/dicom-web"}, "must not hold credentials"),
        ({"CXR_AUDITOR_DICOMWEB_URL": "ftp://host/dicom-web"}, "http(s) URL"),
        ({"CXR_AUDITOR_DICOMWEB_URL": "http://host/dicom-web?key=1"}, "without a query"),
        ({"CXR_AUDITOR_DICOMWEB_USERNAME": "reader"}, "go together"),
        (
            {
                "CXR_AUDITOR_DICOMWEB_TOKEN": "t",
                "CXR_AUDITOR_DICOMWEB_USERNAME": "u",
                "CXR_AUDITOR_DICOMWEB_PASSWORD": "p",
            },
            "not both",
        ),
        ({"CXR_AUDITOR_DICOMWEB_TIMEOUT_S": "0"}, "must be positive"),
    ]
    for values, message in bad:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_settings(
                env={"CXR_AUDITOR_GROUNDER": "http", "CXR_AUDITOR_GROUNDER_URL": "http://x", **values}
            )
    with pytest.raises(ConfigError) as info:
        load_settings(env={"CXR_AUDITOR_DICOMWEB_URL": "http://u:pw-secret@host/x"})
    assert "pw-secret" not in str(info.value)


def test_the_toml_file_and_the_flag_set_the_url(tmp_path: Path) -> None:
    from auditor.cli_flags import settings_from
    from mcp_server.cli import build_parser

    toml = tmp_path / "c.toml"
    toml.write_text(f'dicomweb_url = "{BASE}"\ndicomweb_timeout_s = 4\n', encoding="utf-8")
    assert load_settings(config_file=toml, env={}).dicomweb_timeout_s == 4.0
    args = build_parser().parse_args(["serve", "--dicomweb-url", "http://pacs:8042/dicom-web"])
    assert settings_from(args).dicomweb_url == "http://pacs:8042/dicom-web"


# ---- worklists ----------------------------------------------------------------------------------


def test_a_worklist_may_name_studies_instead_of_images(tmp_path: Path) -> None:
    csv = tmp_path / "w.csv"
    csv.write_text(f"id,study_uid,draft\na,{STUDY},No pneumothorax.\n", encoding="utf-8")
    [study] = read_worklist(csv)
    assert (study.study_uid, study.image, study.local_image, study.problem) == (STUDY, "", None, None)
    jsonl = tmp_path / "w.jsonl"
    rows = [
        {"id": "both", "image": "x.png", "study_uid": STUDY},
        {"id": "typed", "study_uid": 7},
        {"id": "file", "image": "x.png"},
    ]
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    both, typed, file = read_worklist(jsonl)
    assert both.problem is not None and both.problem.code == "image_and_study_uid"
    assert typed.problem is not None and typed.problem.code == "invalid_study_uid"
    assert file.study_uid is None and file.image.endswith("x.png")
    # a study's fingerprint covers its study UID; an image's is what it was before study_uid existed
    assert read_worklist(csv)[0].fingerprint != read_worklist(jsonl)[2].fingerprint
    bare = tmp_path / "bare.csv"
    bare.write_text("id,draft\na,x\n", encoding="utf-8")
    with pytest.raises(CliError, match="lacks 'image'"):
        read_worklist(bare)


# ---- a misbehaving archive ------------------------------------------------------------------------


def _qido(**extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "0020000E": {"vr": "UI", "Value": [SERIES]},
            "00080018": {"vr": "UI", "Value": [SOP]},
            "00080060": {"vr": "CS", "Value": ["DX"]},
            "00185101": {"vr": "CS", "Value": ["PA"]},
            "00280010": {"vr": "US", "Value": [2048]},
            "00280011": {"vr": "US", "Value": [2048]},
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
            "00100020": {"vr": "LO", "Value": ["MRN-SECRET"]},
            "00080050": {"vr": "SH", "Value": ["ACC-SECRET"]},
            **extra,
        }
    ]


Handler = Callable[[BaseHTTPRequestHandler], None]


@pytest.fixture()
def stub() -> Iterator[tuple[str, dict[str, Handler], list[dict[str, str]]]]:
    """A local server whose answers each test sets per path; it records every request's headers."""
    routes: dict[str, Handler] = {}
    seen: list[dict[str, str]] = []

    class Stub(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            route = routes.get(self.path.split("?")[0])
            if route is None:
                self.send_error(404)
            else:
                route(self)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", routes, seen
    server.shutdown()
    server.server_close()


def _json(body: Any) -> Handler:
    def answer(h: BaseHTTPRequestHandler) -> None:
        data = json.dumps(body).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/dicom+json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    return answer


def _bytes(body: bytes, content_type: str, *, declared: int | None = None) -> Handler:
    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body) if declared is None else declared))
        h.end_headers()
        h.wfile.write(body)

    return answer


def _unsized(body: bytes) -> Handler:
    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/dicom")
        h.end_headers()
        h.wfile.write(body)

    return answer


def _redirect(location: str) -> Handler:
    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return answer


INSTANCE = f"/dicom-web/studies/{STUDY}/series/{SERIES}/instances/{SOP}"


def test_qido_keeps_only_the_whitelisted_attributes_and_sends_the_token(stub: Any) -> None:
    url, routes, seen = stub
    routes[f"/dicom-web/studies/{STUDY}/instances"] = _json(
        _qido(**{"00185101": {"vr": "CS", "Value": ["Jane's view"]}})
    )
    settings = Settings(dicomweb_url=f"{url}/dicom-web", dicomweb_token="tok-on-the-wire")
    listing = find_study_images(settings, STUDY)
    dumped = listing.model_dump_json()
    for secret in ("Doe", "MRN-SECRET", "ACC-SECRET", "Jane"):
        assert secret not in dumped
    assert listing.instances[0].view_position == "unrecognised" and listing.chosen is None
    assert seen[0]["authorization"] == "Bearer tok-on-the-wire"
    assert "includefield" in seen[0]["path"]


def test_a_redirect_off_the_base_is_not_followed(stub: Any) -> None:
    url, routes, seen = stub
    routes[INSTANCE] = _redirect(f"{url}/elsewhere/file.dcm")
    routes["/elsewhere/file.dcm"] = _bytes(b"x", "application/dicom")
    source = DicomWebSource(f"{url}/dicom-web", token="tok")
    with pytest.raises(DicomWebError) as info:
        source.retrieve(Reference(STUDY, SERIES, SOP))
    assert info.value.code == "dicomweb_refused" and "redirected off" in info.value.message
    assert [s["path"] for s in seen] == [INSTANCE]  # the target was never asked
    # a redirect that stays under the base is followed
    routes[INSTANCE] = _redirect(f"{url}/dicom-web/moved")
    routes["/dicom-web/moved"] = _bytes(b"DICM-ish", "application/dicom")
    assert source.retrieve(Reference(STUDY, SERIES, SOP)) == b"DICM-ish"


def test_oversized_answers_are_refused(stub: Any) -> None:
    url, routes, _ = stub
    source = DicomWebSource(f"{url}/dicom-web", max_bytes=1000)
    routes[INSTANCE] = _bytes(b"x" * 10, "application/dicom", declared=5000)
    with pytest.raises(DicomWebError, match="announced 5,000 bytes") as info:
        source.retrieve(Reference(STUDY, SERIES, SOP))
    assert info.value.code == "dicomweb_too_large"
    routes[INSTANCE] = _unsized(b"x" * 5000)  # no Content-Length: counted while streaming
    with pytest.raises(DicomWebError, match="more than the limit") as info:
        source.retrieve(Reference(STUDY, SERIES, SOP))


def test_multipart_answers(stub: Any) -> None:
    url, routes, _ = stub
    source = DicomWebSource(f"{url}/dicom-web")
    part = b"\x00" * 128 + b"DICM" + b"payload\r\n--not-the-boundary"
    one = b"--B1\r\nContent-Type: application/dicom\r\n\r\n" + part + b"\r\n--B1--\r\n"
    routes[INSTANCE] = _bytes(one, 'multipart/related; type="application/dicom"; boundary=B1')
    assert source.retrieve(Reference(STUDY, SERIES, SOP)) == part
    two = b"--B1\r\n\r\nA\r\n--B1\r\n\r\nB\r\n--B1--\r\n"
    routes[INSTANCE] = _bytes(two, 'multipart/related; type="application/dicom"; boundary=B1')
    with pytest.raises(DicomWebError, match="several parts"):
        source.retrieve(Reference(STUDY, SERIES, SOP))
    routes[INSTANCE] = _bytes(b"<html>", "text/html")
    with pytest.raises(DicomWebError, match="not a DICOM instance"):
        source.retrieve(Reference(STUDY, SERIES, SOP))


def test_an_unreachable_archive_and_a_missing_client(monkeypatch: pytest.MonkeyPatch) -> None:
    from auditor.testing.orthanc import free_port

    source = DicomWebSource(f"http://127.0.0.1:{free_port()}/dicom-web", timeout_s=2)
    with pytest.raises(DicomWebError, match="cannot connect") as info:
        source.list_instances(STUDY)
    assert info.value.code == "dicomweb_unreachable"
    monkeypatch.setitem(sys.modules, "dicomweb_client", None)
    with pytest.raises(DicomWebError, match=r"pip install 'cxr-draft-auditor\[pacs\]'") as info:
        source.list_instances(STUDY)
    assert info.value.code == "dicomweb_unavailable"
