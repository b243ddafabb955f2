"""The MCP server through a real `mcp.Client` in memory: all five tools, the resources, the prompt,
and bad input answered with tool errors that name the problem while the server keeps serving."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import ImageContent, TextContent

from auditor.config import Settings
from auditor.pipeline import Auditor
from auditor.schema import AuditReport, Comparison, DraftReading, Grounding
from auditor.tool_io import TOOL_MODELS
from mcp_server.app import build_server
from tests.conftest import GARBLED_PNG, NORMAL_PNG, UNRECORDED_PNG, URGENT_PNG

TOOLS = {
    "ground_image",
    "parse_draft",
    "compare",
    "audit",
    "render_findings",
    "find_study_images",
    "preview_image",
}
"""Every tool the server lists; preview_image is the audit viewer's own (MCP Apps visibility "app")."""


@pytest.fixture()
def server(replay_file: Path) -> Any:
    return build_server(Auditor(Settings(grounder="replay", replay=replay_file)))


def run(server: Any, body: Callable[[Client], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Client(server) as client:
            await body(client)

    anyio.run(main)


def error_text(result: Any) -> str:
    assert result.is_error, result
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def test_tools_are_typed_annotated_and_disclaimed(server: Any) -> None:
    async def body(client: Client) -> None:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == TOOLS
        for name, tool in tools.items():
            assert tool.annotations is not None
            assert tool.annotations.read_only_hint is True
            assert tool.annotations.idempotent_hint is True
            assert tool.annotations.destructive_hint is False
            assert "not a diagnosis" in (tool.description or "")
            if name in ("render_findings", "preview_image"):
                assert tool.output_schema is None  # an image only: no structured content
            else:
                assert tool.output_schema is not None
        assert tools["parse_draft"].annotations.open_world_hint is False  # type: ignore[union-attr]
        assert tools["ground_image"].annotations.open_world_hint is True  # type: ignore[union-attr]
        # the wire schemas agree with the checked-in contracts (tools_schema/)
        for name, (inp, _) in TOOL_MODELS.items():
            wire = tools[name].input_schema
            assert set(wire["properties"]) == set(inp.model_json_schema()["properties"]), name
            assert set(wire.get("required", [])) == set(inp.model_json_schema().get("required", [])), name
            for prop, expected in inp.model_json_schema()[
                "properties"
            ].items():  # bounds and descriptions too
                untitled = {k: v for k, v in expected.items() if k != "title"}
                assert {k: v for k, v in wire["properties"][prop].items() if k != "title"} == untitled, (
                    name,
                    prop,
                )

    run(server, body)


def test_three_stages_then_compare(server: Any, nih_images: Path) -> None:
    async def body(client: Client) -> None:
        image = str(nih_images / URGENT_PNG)
        g = await client.call_tool("ground_image", {"image": image})
        assert not g.is_error, g
        grounding = Grounding.model_validate(g.structured_content)
        assert {f.label for f in grounding.findings} == {"pneumothorax", "cardiomegaly"}
        assert grounding.image is not None and grounding.image.width == 1024
        assert grounding.model.backend == "replay"

        r = await client.call_tool("parse_draft", {"draft": "Cardiomegaly is present. No pneumothorax."})
        reading = DraftReading.model_validate(r.structured_content)
        assert {(m.label, m.status) for m in reading.mentions} == {
            ("cardiomegaly", "present"),
            ("pneumothorax", "absent"),
        }

        c = await client.call_tool(
            "compare",
            {"grounding": g.structured_content, "reading": r.structured_content, "context": {"age_years": 9}},
        )
        comparison = Comparison.model_validate(c.structured_content)
        assert [(f.kind, f.label) for f in comparison.flags] == [
            ("URGENT", "pneumothorax"),
            ("MISSING", "pneumothorax"),
        ]
        assert "pediatric_caution" in [n.code for n in comparison.notes]

        # an agent may edit a stage before judging: drop the pneumothorax the user rejected
        edited = dict(g.structured_content or {})
        edited["findings"] = [f for f in edited["findings"] if f["label"] != "pneumothorax"]
        c2 = await client.call_tool("compare", {"grounding": edited, "reading": r.structured_content})
        assert Comparison.model_validate(c2.structured_content).flags == []

    run(server, body)


def test_audit_full_image_only_and_failed_grounding(server: Any, nih_images: Path) -> None:
    async def body(client: Client) -> None:
        a = await client.call_tool(
            "audit", {"image": str(nih_images / NORMAL_PNG), "draft": "Small right pleural effusion."}
        )
        report = AuditReport.model_validate(a.structured_content)
        assert [(f.kind, f.label) for f in report.comparison.flags] == [("UNSUPPORTED", "pleural_effusion")]
        assert "not a diagnosis" in report.disclaimer.lower() or "not a medical device" in report.disclaimer

        only = await client.call_tool("audit", {"image": str(nih_images / URGENT_PNG)})
        report = AuditReport.model_validate(only.structured_content)
        assert report.comparison.mode == "image_only"
        assert [f.kind for f in report.comparison.flags] == ["URGENT"]
        assert "no_draft_image_only" in [n.code for n in report.comparison.notes]

        garbled = await client.call_tool(
            "audit", {"image": str(nih_images / GARBLED_PNG), "draft": "Normal."}
        )
        report = AuditReport.model_validate(garbled.structured_content)
        assert report.grounding is not None and report.grounding.outcome == "failed"
        assert report.comparison.mode == "no_image" and report.comparison.flags == []
        assert "image_stage_failed" in [n.code for n in report.comparison.notes]

    run(server, body)


def test_render_findings_returns_only_a_small_image(server: Any, nih_images: Path) -> None:
    async def body(client: Client) -> None:
        result = await client.call_tool(
            "render_findings",
            {"image": str(nih_images / URGENT_PNG), "draft": "No pneumothorax.", "max_side": 512},
        )
        assert not result.is_error, result
        assert result.structured_content is None
        assert len(result.content) == 1 and isinstance(result.content[0], ImageContent)
        data = base64.b64decode(result.content[0].data)
        assert len(data) < 400_000
        assert result.content[0].mime_type in {"image/png", "image/jpeg"}

    run(server, body)


def test_render_refuses_a_grounding_of_another_image(server: Any, nih_images: Path) -> None:
    async def body(client: Client) -> None:
        g = await client.call_tool("ground_image", {"image": str(nih_images / URGENT_PNG)})
        other = await client.call_tool(
            "render_findings", {"image": str(nih_images / NORMAL_PNG), "grounding": g.structured_content}
        )
        assert "another image" in error_text(other)

    run(server, body)


def test_image_as_data_uri_and_base64(server: Any, nih_images: Path) -> None:
    raw = (nih_images / URGENT_PNG).read_bytes()
    b64 = base64.b64encode(raw).decode()

    async def body(client: Client) -> None:
        for image in (f"data:image/png;base64,{b64}", b64):
            g = await client.call_tool("ground_image", {"image": image})
            assert not g.is_error, g
            assert Grounding.model_validate(g.structured_content).findings

    run(server, body)


def test_resources_and_prompt(server: Any) -> None:
    async def body(client: Client) -> None:
        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert {"cxr://vocabulary", "cxr://policy", "cxr://models", "cxr://schemas"} <= uris
        vocab = json.loads((await client.read_resource("cxr://vocabulary")).contents[0].text)  # type: ignore[union-attr]
        assert vocab["urgent"] == ["nodule_mass", "pneumothorax"]
        assert vocab["synonyms"]["free_text"]["atelectasis"] is None
        models = json.loads((await client.read_resource("cxr://models")).contents[0].text)  # type: ignore[union-attr]
        assert {m["role"] for m in models} == {"grounder", "reader"}
        schemas = json.loads((await client.read_resource("cxr://schemas")).contents[0].text)  # type: ignore[union-attr]
        assert "compare.input.json" in schemas
        policy = json.loads((await client.read_resource("cxr://policy")).contents[0].text)  # type: ignore[union-attr]
        assert policy["policy"]["uncertain_satisfies_image"] is True
        assert policy["policy"]["check_laterality"] is True
        opposite = {  # rows keyed by the column names (policy["columns"])
            "image": "present, every box clearly on the other side",
            "flag": "LATERALITY",
            "rule_id": "LATERALITY.opposite_side",
        }
        assert any(opposite.items() <= row.items() for row in policy["table"])

        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert "audit_draft" in prompts
        got = await client.get_prompt("audit_draft", {"image": "/x/cxr.png", "draft": "No effusion."})
        body_text = got.messages[0].content.text  # type: ignore[union-attr]
        for step in ("ground_image", "parse_draft", "compare", "render_findings", "URGENT", "LATERALITY"):
            assert step in body_text
        assert "image's left half is the patient's right" in body_text
        assert "diagnos" in body_text  # "You do not diagnose"

    run(server, body)


def test_bad_input_is_a_named_tool_error_and_the_server_keeps_serving(
    server: Any, nih_images: Path, tmp_path: Path
) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")

    async def body(client: Client) -> None:
        assert "no such file" in error_text(
            await client.call_tool("ground_image", {"image": str(tmp_path / "x.png")})
        )
        assert "image" in error_text(await client.call_tool("ground_image", {"image": str(text_file)}))
        unrecorded = error_text(
            await client.call_tool("ground_image", {"image": str(nih_images / UNRECORDED_PNG)})
        )
        assert "no recorded output" in unrecorded
        assert "draft" in error_text(await client.call_tool("parse_draft", {"draft": "x" * 20_001}))
        assert error_text(await client.call_tool("parse_draft", {"draft": 42}))
        assert error_text(await client.call_tool("parse_draft", {}))
        bad_grounding = {"findings": [{"label": "banana"}], "outcome": "clean", "model": {}}
        assert "grounding" in error_text(await client.call_tool("compare", {"grounding": bad_grounding}))
        assert error_text(await client.call_tool("no_such_tool", {}))
        # and the next call is served normally
        ok = await client.call_tool("parse_draft", {"draft": "No pneumothorax."})
        assert not ok.is_error

    run(server, body)


def test_progress_notifications_while_grounding(server: Any, nih_images: Path) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async def body(client: Client) -> None:
        result = await client.call_tool(
            "audit",
            {"image": str(nih_images / URGENT_PNG), "draft": "No pneumothorax."},
            progress_callback=on_progress,
        )
        assert not result.is_error

    run(server, body)
    assert [m for _, _, m in seen][:2] == ["loading the image", "grounding the image"]
    assert all(total == 4 for _, total, _ in seen)


def test_dicom_through_the_tools_without_phi(tmp_path: Path, nih_images: Path) -> None:
    """A DICOM written from a real radiograph (12-bit MONOCHROME1 with a window, and one without pixel
    data): grounded through the tools, and no header identifier in any output or error."""
    import hashlib

    import numpy as np
    from PIL import Image as PILImage

    from tests.test_images_dicom import PHI, make_dicom

    with PILImage.open(nih_images / URGENT_PNG) as im:
        pixels = np.asarray(im.convert("L").resize((256, 256)), dtype=np.uint16) * 16
    inverted = (4095 - pixels).astype(np.uint16)
    dcm = make_dicom(
        tmp_path, inverted, bits_stored=12, photometric="MONOCHROME1", WindowCenter=2048, WindowWidth=4096
    )
    replay = tmp_path / "replay.jsonl"
    sha = hashlib.sha256(dcm.read_bytes()).hexdigest()
    replay.write_text(
        json.dumps(
            {"image_sha256": sha, "raw_output": '[{"label": "nodule_mass", "box_2d": [0.2, 0.2, 0.4, 0.4]}]'}
        )
    )
    no_pixels = tmp_path / "nopixels.dcm"
    import pydicom

    ds = pydicom.dcmread(dcm)
    del ds.PixelData
    ds.save_as(no_pixels)
    server = build_server(Auditor(Settings(grounder="replay", replay=replay)))
    outputs: list[str] = []

    async def body(client: Client) -> None:
        g = await client.call_tool("ground_image", {"image": str(dcm)})
        assert not g.is_error, g
        grounding = Grounding.model_validate(g.structured_content)
        assert grounding.image is not None and grounding.image.source_format == "DICOM"
        assert (grounding.image.width, grounding.image.height) == (256, 256)
        a = await client.call_tool("audit", {"image": str(dcm), "draft": "No nodule."})
        r = await client.call_tool("render_findings", {"image": str(dcm)})
        bad = await client.call_tool("ground_image", {"image": str(no_pixels)})
        assert "dicom_no_pixels" in error_text(bad)
        for result in (g, a, r, bad):
            outputs.append(result.model_dump_json())

    run(server, body)
    for value in PHI.values():
        for out in outputs:
            assert value not in out and value.replace("^", " ") not in out
