"""Studies read from a real PACS: Orthanc with its DICOMweb plugin, started here on 127.0.0.1 with its own
config and storage, holding chest studies written from the NIH radiographs (synthetic pictures when
../shared is absent), every one with fake patient identifiers. Audited through the MCP tools (an
in-memory `mcp.Client`) and `audit-batch`; then the faults: an unknown study, a missing instance, a
reference off the archive, wrong credentials, a slow archive, and the archive stopped mid-worklist,
each a clear error, the server serving on, the worklist resuming."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import ImageContent, TextContent

from auditor.backends.replay import ReplayGrounder
from auditor.batch import RESULTS, read_worklist, run_batch
from auditor.config import Settings
from auditor.images import LoadedImage
from auditor.pipeline import Auditor
from auditor.schema import Grounding
from auditor.testing.orthanc import FAKE_PHI, Archive, Instance, orthanc_missing, radiograph, text_report
from mcp_server.app import build_server
from tests.conftest import NIH_IMAGES, NORMAL_PNG, RECORDED_OUTPUTS, URGENT_PNG
from tests.test_batch import batch_cli, result_lines, run_main, write_jsonl
from tests.test_mcp_server import error_text, run

pytest.importorskip("pydicom")
pytest.importorskip("dicomweb_client")
pytestmark = pytest.mark.skipif(orthanc_missing() is not None, reason=orthanc_missing() or "")

URGENT_OUTPUT = RECORDED_OUTPUTS[URGENT_PNG]  # pneumothorax + cardiomegaly, scripted (not a model result)
NORMAL_OUTPUT = RECORDED_OUTPUTS[NORMAL_PNG]
MISSING_STUDY = "1.2.826.0.1.3680043.8.498.999999999999"


def _png(name: str) -> Path | None:
    return NIH_IMAGES / name if NIH_IMAGES.is_dir() else None


@dataclass(frozen=True)
class Studies:
    """What the archive holds, by purpose."""

    pa: Instance  # PA of a PA + lateral study (with an SR report beside them)
    lateral: Instance  # its lateral
    report: Instance  # its SR
    ap: Instance  # the one image of an AP-only study
    lateral_only: Instance  # the one image of a lateral-only study
    mono1: Instance  # 16-bit MONOCHROME1 PA (CR)
    rle: Instance  # RLE Lossless PA

    def all(self) -> list[Instance]:
        return [self.pa, self.lateral, self.report, self.ap, self.lateral_only, self.mono1, self.rle]

    def replay_lines(self) -> str:
        outputs = {
            self.pa: URGENT_OUTPUT,
            self.lateral: NORMAL_OUTPUT,
            self.ap: NORMAL_OUTPUT,
            self.lateral_only: NORMAL_OUTPUT,
            self.mono1: URGENT_OUTPUT,
            self.rle: URGENT_OUTPUT,
        }
        return "".join(
            json.dumps({"image_sha256": inst.sha256, "raw_output": raw, "model": "scripted-test-fixture"})
            + "\n"
            for inst, raw in outputs.items()
        )


def _uid(n: int) -> str:
    return f"1.2.826.0.1.3680043.8.498.7{n}{time.time_ns() % 10**12}"


@pytest.fixture(scope="module")
def studies() -> Studies:
    pa_lat = _uid(1)
    return Studies(
        pa=radiograph(pa_lat, "PA", png=_png(URGENT_PNG), seed=1),
        lateral=radiograph(pa_lat, "LL", png=_png(NORMAL_PNG), seed=2),
        report=text_report(pa_lat),
        ap=radiograph(_uid(2), "AP", png=_png(NORMAL_PNG), seed=3),
        lateral_only=radiograph(_uid(3), "LL", png=_png(NORMAL_PNG), seed=4),
        mono1=radiograph(
            _uid(4), "PA", png=_png(URGENT_PNG), seed=5, modality="CR", monochrome1=True, bits=16
        ),
        rle=radiograph(_uid(5), "PA", png=_png(URGENT_PNG), seed=6, rle=True),
    )


def _filled(folder: Path, studies: Studies, **kw: Any) -> Archive:
    archive = Archive(folder, **kw).start()
    for inst in studies.all():
        archive.upload(inst.data)
    return archive


@pytest.fixture(scope="module")
def archive(studies: Studies, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    archive = _filled(tmp_path_factory.mktemp("orthanc"), studies)
    yield archive
    archive.stop()


@pytest.fixture(scope="module")
def replay(studies: Studies, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("replay") / "archive.jsonl"
    path.write_text(studies.replay_lines(), encoding="utf-8")
    return path


def _settings(replay: Path, url: str | None, **kw: Any) -> Settings:
    return Settings(grounder="replay", replay=replay, reader="rules", dicomweb_url=url, **kw).validate()


def _server(replay: Path, url: str | None, **kw: Any) -> Any:
    return build_server(Auditor(_settings(replay, url, **kw)))


def _text(result: Any) -> str:
    """Everything a client sees of a result: structured content and text blocks."""
    parts = [json.dumps(result.structured_content)] if result.structured_content else []
    parts += [c.text for c in result.content if isinstance(c, TextContent)]
    return " ".join(parts)


def _no_phi(text: str) -> None:
    for value in FAKE_PHI.values():
        assert value not in text
    assert "Janet" not in text and "Quinn" not in text


# ---- the MCP tools ------------------------------------------------------------------------------


def test_find_study_images_lists_the_study_and_picks_the_pa(
    archive: Archive, studies: Studies, replay: Path
) -> None:
    async def body(client: Client) -> None:
        result = await client.call_tool("find_study_images", {"study_uid": studies.pa.study_uid})
        assert not result.is_error, _text(result)
        listing = result.structured_content
        assert listing is not None
        assert listing["chosen"] == studies.pa.sop_uid
        assert listing["holdings"] == "3 instances: DX 2 (LL 1, PA 1); SR 1 (view not stated 1)"
        by_uid = {i["sop_instance_uid"]: i for i in listing["instances"]}
        assert by_uid[studies.pa.sop_uid]["status"] == "chosen"
        assert (by_uid[studies.pa.sop_uid]["rows"], by_uid[studies.pa.sop_uid]["columns"]) == (512, 512)
        assert by_uid[studies.lateral.sop_uid]["status"] == "skipped"
        assert "lateral" in by_uid[studies.lateral.sop_uid]["reason"]
        assert "not a radiograph (modality SR)" in by_uid[studies.report.sop_uid]["reason"]
        _no_phi(_text(result))

    run(_server(replay, archive.dicomweb_url), body)


def test_ground_image_by_study_uid_reads_the_pa_as_stored(
    archive: Archive, studies: Studies, replay: Path
) -> None:
    async def body(client: Client) -> None:
        result = await client.call_tool("ground_image", {"study_uid": studies.pa.study_uid})
        assert not result.is_error, _text(result)
        grounding = Grounding.model_validate(result.structured_content)
        assert grounding.image is not None
        assert grounding.image.sha256 == studies.pa.sha256  # the Part-10 bytes as stored
        assert (grounding.image.source_format, grounding.image.view) == ("DICOM", "PA")
        assert {f.label.value for f in grounding.findings} == {"pneumothorax", "cardiomegaly"}
        chosen = next(n for n in grounding.notes if n.code == "study_instance_chosen")
        assert studies.pa.sop_uid in chosen.message and "a PA radiograph (DX)" in chosen.message
        assert f"{studies.lateral.sop_uid}: a lateral view (LL)" in chosen.message
        assert f"{studies.report.sop_uid}: not a radiograph" in chosen.message
        _no_phi(_text(result))

    run(_server(replay, archive.dicomweb_url), body)


def test_audit_and_render_an_ap_only_study(archive: Archive, studies: Studies, replay: Path) -> None:
    async def body(client: Client) -> None:
        uid = studies.ap.study_uid
        result = await client.call_tool("audit", {"study_uid": uid, "draft": "Large left pneumothorax."})
        assert not result.is_error, _text(result)
        report = result.structured_content
        assert report is not None
        assert report["grounding"]["image"]["view"] == "AP"
        notes = {n["code"]: n["message"] for n in report["grounding"]["notes"]}
        assert "the study has no PA film" in notes["study_instance_chosen"]
        assert [(f["kind"], f["label"]) for f in report["comparison"]["flags"]] == [
            ("UNSUPPORTED", "pneumothorax")
        ]
        picture = await client.call_tool("render_findings", {"study_uid": uid, "max_side": 256})
        assert not picture.is_error, _text(picture)
        assert any(isinstance(c, ImageContent) for c in picture.content)
        _no_phi(_text(result))

    run(_server(replay, archive.dicomweb_url), body)


def test_no_frontal_image_names_what_the_study_holds(
    archive: Archive, studies: Studies, replay: Path
) -> None:
    async def body(client: Client) -> None:
        uid = studies.lateral_only.study_uid
        message = error_text(await client.call_tool("audit", {"study_uid": uid, "draft": "Normal."}))
        assert "no_frontal_image" in message and "it holds 1 instance: DX 1 (LL 1)" in message
        assert "find_study_images" in message
        listing = (await client.call_tool("find_study_images", {"study_uid": uid})).structured_content
        assert listing is not None and listing["chosen"] is None
        # the way out it names: the instance's full reference, read as given
        ref = studies.lateral_only.reference(archive.dicomweb_url)
        result = await client.call_tool("ground_image", {"study_uid": ref})
        assert not result.is_error, _text(result)
        grounding = Grounding.model_validate(result.structured_content)
        assert grounding.image is not None and grounding.image.view == "lateral"
        assert grounding.notes[0].code == "study_instance_given"

    run(_server(replay, archive.dicomweb_url), body)


def test_sixteen_bit_monochrome1_and_a_compressed_transfer_syntax(
    archive: Archive, studies: Studies, replay: Path
) -> None:
    async def body(client: Client) -> None:
        mono1 = await client.call_tool("ground_image", {"study_uid": studies.mono1.study_uid})
        grounding = Grounding.model_validate(mono1.structured_content)
        assert grounding.image is not None and grounding.image.sha256 == studies.mono1.sha256
        assert "dicom_inverted" in {n.code for n in grounding.notes}
        rle = await client.call_tool("ground_image", {"study_uid": studies.rle.study_uid})
        grounding = Grounding.model_validate(rle.structured_content)
        # as stored: the RLE-compressed bytes (Orthanc would transcode without transfer-syntax=*)
        assert grounding.image is not None and grounding.image.sha256 == studies.rle.sha256
        assert len(studies.rle.data) < 512 * 512 * 2

    run(_server(replay, archive.dicomweb_url), body)


def test_references_stay_under_the_base_url(archive: Archive, studies: Studies, replay: Path) -> None:
    ref = studies.pa.reference(archive.dicomweb_url)
    same_server_other_name = ref.replace("127.0.0.1", "localhost")

    async def body(client: Client) -> None:
        for other in (same_server_other_name, ref.replace(archive.url, "http://127.0.0.1:9"), ref + "?x=1"):
            message = error_text(await client.call_tool("ground_image", {"study_uid": other}))
            assert "dicomweb_refused" in message or "dicomweb_invalid_reference" in message, message
        # the archive's own URL as a plain image: the base is the only private address contacted
        message = error_text(await client.call_tool("ground_image", {"image": ref}))
        assert "url_refused" in message and "loopback" in message
        assert not (await client.call_tool("ground_image", {"study_uid": ref})).is_error

    run(_server(replay, archive.dicomweb_url), body)


def test_unknown_study_missing_instance_and_bad_arguments(
    archive: Archive, studies: Studies, replay: Path
) -> None:
    missing = studies.pa.reference(archive.dicomweb_url).replace(studies.pa.sop_uid, "1.2.3.4.5")

    async def body(client: Client) -> None:
        message = error_text(await client.call_tool("audit", {"study_uid": MISSING_STUDY}))
        assert "dicomweb_not_found" in message and "no study with this UID" in message
        message = error_text(await client.call_tool("ground_image", {"study_uid": missing}))
        assert "dicomweb_not_found" in message and "HTTP 404" in message
        both = {"image": "/tmp/x.png", "study_uid": studies.pa.study_uid}
        assert "not both" in error_text(await client.call_tool("ground_image", both))
        assert "give `image`" in error_text(await client.call_tool("audit", {"draft": "Normal."}))
        message = error_text(await client.call_tool("ground_image", {"study_uid": "not a uid"}))
        assert "dicomweb_invalid_reference" in message
        # and the server is still serving
        assert not (await client.call_tool("ground_image", {"study_uid": studies.pa.study_uid})).is_error

    run(_server(replay, archive.dicomweb_url), body)


def test_without_an_archive_the_tools_say_how_to_configure_one(replay: Path, studies: Studies) -> None:
    async def body(client: Client) -> None:
        message = error_text(await client.call_tool("find_study_images", {"study_uid": studies.pa.study_uid}))
        assert "dicomweb_not_configured" in message and "CXR_AUDITOR_DICOMWEB_URL" in message

    run(_server(replay, None), body)


# ---- credentials, a slow archive, an archive stopped mid-run ------------------------------------


def test_wrong_credentials_are_a_clear_error_that_never_shows_them(
    studies: Studies, replay: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    archive = _filled(tmp_path, studies, users={"reader": "right-horse-battery"})
    wrong_password = "wrong-horse-battery-7781"
    token = "tok-5a1f9c0e-never-shown"
    try:

        async def refused(client: Client) -> None:
            message = error_text(await client.call_tool("ground_image", {"study_uid": studies.pa.study_uid}))
            assert "dicomweb_unauthorized" in message and "HTTP 401" in message
            assert wrong_password not in message and token not in message
            models = await client.read_resource("cxr://models")
            assert token not in str(models) and wrong_password not in str(models)

        url = archive.dicomweb_url
        run(_server(replay, url, dicomweb_username="reader", dicomweb_password=wrong_password), refused)
        run(_server(replay, url, dicomweb_token=token), refused)
        assert token not in repr(_settings(replay, url, dicomweb_token=token))

        async def allowed(client: Client) -> None:
            result = await client.call_tool("ground_image", {"study_uid": studies.pa.study_uid})
            assert not result.is_error, _text(result)

        run(
            _server(replay, url, dicomweb_username="reader", dicomweb_password="right-horse-battery"), allowed
        )
    finally:
        archive.stop()
    for secret in (wrong_password, token, "right-horse-battery"):
        assert secret not in caplog.text


def test_a_slow_archive_times_out_and_the_server_recovers(
    studies: Studies, replay: Path, tmp_path: Path
) -> None:
    archive = _filled(tmp_path, studies)
    try:

        async def body(client: Client) -> None:
            archive.pause()
            t0 = time.monotonic()
            message = error_text(await client.call_tool("ground_image", {"study_uid": studies.pa.study_uid}))
            assert "dicomweb_timeout" in message and "within 1 s" in message
            assert time.monotonic() - t0 < 8
            archive.resume()
            result = await client.call_tool("ground_image", {"study_uid": studies.pa.study_uid})
            assert not result.is_error, _text(result)

        run(_server(replay, archive.dicomweb_url, dicomweb_timeout_s=1.0), body)
    finally:
        archive.stop()


class StopsTheArchive:
    """The replay grounder; the archive is stopped right after study number ``after`` is grounded."""

    def __init__(self, replay: Path, archive: Archive, after: int) -> None:
        self.inner, self.archive, self.after, self.calls = ReplayGrounder(replay), archive, after, 0

    def ground(self, image: LoadedImage) -> Grounding:
        self.calls += 1
        grounding = self.inner.ground(image)
        if self.calls == self.after:
            self.archive.stop()
        return grounding

    def state(self) -> Any:
        return self.inner.state()

    def load(self) -> None:
        return None


def test_a_worklist_of_study_uids_resumes_after_the_archive_stopped_mid_run(
    studies: Studies,
    replay: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    archive = _filled(tmp_path / "orthanc", studies)
    rows = [
        {"id": "pa-lat", "study_uid": studies.pa.study_uid, "draft": "No pneumothorax. Heart size normal."},
        {"id": "ap", "study_uid": studies.ap.study_uid, "draft": "No acute disease."},
        {"id": "mono1", "study_uid": studies.mono1.study_uid, "draft": "Pneumothorax."},
        {"id": "rle", "study_uid": studies.rle.study_uid, "draft": ""},
        {"id": "lateral-only", "study_uid": studies.lateral_only.study_uid, "draft": "Normal."},
    ]
    worklist = write_jsonl(tmp_path / "worklist.jsonl", rows)
    out = tmp_path / "out"
    try:
        settings = _settings(replay, archive.dicomweb_url)
        first = run_batch(
            read_worklist(worklist), out, settings, grounder=StopsTheArchive(replay, archive, 2)
        )
        assert (first["audited"], first["failed"]) == (2, 3)
        assert first["failures"] == {"dicomweb_unreachable": 3}
        lines = {line["id"]: line for line in result_lines(out)}
        assert lines["pa-lat"]["instance"] == {
            "series_uid": studies.pa.series_uid,
            "sop_instance_uid": studies.pa.sop_uid,
            "sha256": studies.pa.sha256,
        }
        assert "is it running?" in lines["mono1"]["error"]["message"]

        archive.start()  # the same storage, the same port
        monkeypatch.setenv("CXR_AUDITOR_DICOMWEB_URL", archive.dicomweb_url)
        code, stdout, _ = run_main(batch_cli(worklist, out, replay), capsys)
        summary = json.loads(stdout)
        assert code == 1  # one study cannot be audited: it has no frontal image
        assert (summary["resumed"], summary["audited"], summary["failed"]) == (2, 4, 1)
        assert summary["failures"] == {"no_frontal_image": 1}
        lines = {line["id"]: line for line in result_lines(out)}
        assert [f["kind"] for f in lines["pa-lat"]["report"]["comparison"]["flags"]].count("URGENT") == 1
        assert lines["rle"]["instance"]["sha256"] == studies.rle.sha256
        assert "DX 1 (LL 1)" in lines["lateral-only"]["error"]["message"]
        for name in (RESULTS, "summary.json", "report.html"):
            _no_phi((out / name).read_text(encoding="utf-8"))
    finally:
        archive.stop()
    _no_phi(caplog.text)
