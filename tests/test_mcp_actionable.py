"""Errors an assistant can act on, stage results checked against the image they claim, edits traced
in the comparison, and the prompt: through a real in-memory MCP client, with the replay grounder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from auditor.config import Settings
from auditor.pipeline import Auditor
from mcp_server.app import build_server
from tests.conftest import NORMAL_PNG, UNRECORDED_PNG, URGENT_PNG, sha256_of
from tests.test_mcp_server import error_text, run

PNEUMOTHORAX_BOX = {"x0": 0.55, "y0": 0.10, "x1": 0.90, "y1": 0.45}


@pytest.fixture()
def server(replay_file: Path) -> Any:
    return build_server(Auditor(Settings(grounder="replay", replay=replay_file, reader="rules")))


def note_codes(comparison: dict[str, Any]) -> set[str]:
    return {n["code"] for n in comparison["notes"]}


# --- argument errors ---------------------------------------------------------------------------------


def test_argument_errors_are_one_line_per_problem(server: Any) -> None:
    bad = {"findings": [{"label": "pneumothorax", "box": {"x0": 2}}], "outcome": "clean", "model": {}}

    async def body(client: Client) -> None:
        text = error_text(await client.call_tool("compare", {"grounding": bad, "policy": {"x": 1}}))
        lines = text.splitlines()
        assert lines[0] == "Error executing tool compare: invalid arguments (7 problems):"
        assert "- grounding.findings.0.box.x0: Input should be less than or equal to 1" in lines
        assert "- grounding.model.backend: required, but missing" in lines
        assert "- policy.x: not a known field" in lines
        assert len(lines) == 8 and all(line.startswith("- ") for line in lines[1:])
        assert "pydantic.dev" not in text and "input_value" not in text
        one = error_text(await client.call_tool("parse_draft", {"draft": 42})).splitlines()
        assert one == [
            "Error executing tool parse_draft: invalid arguments (1 problem):",
            "- draft: Input should be a valid string",
        ]

    run(server, body)


def test_the_missing_replay_record_names_the_whole_sha256(server: Any, nih_images: Path) -> None:
    async def body(client: Client) -> None:
        image = nih_images / UNRECORDED_PNG
        text = error_text(await client.call_tool("ground_image", {"image": str(image)}))
        assert sha256_of(image) in text

    run(server, body)


# --- hand-built and edited stage results ---------------------------------------------------------


def test_a_hand_built_grounding_needs_only_its_findings(server: Any) -> None:
    grounding = {"findings": [{"label": "Pneumothorax", "box": PNEUMOTHORAX_BOX}]}

    async def body(client: Client) -> None:
        r = await client.call_tool("compare", {"grounding": grounding, "context": {"view": "ap"}})
        assert not r.is_error, r
        comparison = r.structured_content
        assert [(f["kind"], f["label"]) for f in comparison["flags"]] == [("URGENT", "pneumothorax")]
        assert {"grounding_edited", "ap_view_heart_size"} <= note_codes(comparison)
        edited = next(n for n in comparison["notes"] if n["code"] == "grounding_edited")
        assert "built by hand" in edited["message"]

    run(server, body)


def test_edits_to_a_grounding_or_a_reading_leave_a_trace(server: Any, nih_images: Path) -> None:
    draft = "Cardiomegaly. No pneumothorax."

    async def body(client: Client) -> None:
        grounding = (
            await client.call_tool("ground_image", {"image": str(nih_images / URGENT_PNG)})
        ).structured_content
        reading = (await client.call_tool("parse_draft", {"draft": draft})).structured_content
        as_made = (
            await client.call_tool("compare", {"grounding": grounding, "reading": reading})
        ).structured_content
        assert not {"grounding_edited", "reading_edited"} & note_codes(as_made)

        fewer = {**grounding, "findings": [f for f in grounding["findings"] if f["label"] != "pneumothorax"]}
        no_denial = {**reading, "mentions": [m for m in reading["mentions"] if m["label"] != "pneumothorax"]}
        edited = await client.call_tool("compare", {"grounding": fewer, "reading": no_denial})
        assert {"grounding_edited", "reading_edited"} <= note_codes(edited.structured_content)

    run(server, body)


# --- render_findings: what is passed back in must belong to the image ---------------------------------


def test_render_refuses_results_from_another_image(server: Any, nih_images: Path) -> None:
    urgent, normal = str(nih_images / URGENT_PNG), str(nih_images / NORMAL_PNG)

    async def body(client: Client) -> None:
        report = (await client.call_tool("audit", {"image": urgent, "draft": "Normal."})).structured_content
        grounding, comparison = report["grounding"], report["comparison"]
        other = (await client.call_tool("ground_image", {"image": normal})).structured_content

        alone = error_text(
            await client.call_tool("render_findings", {"image": normal, "comparison": comparison})
        )
        assert "pass the grounding it was made from" in alone
        mixed = {"image": normal, "grounding": other, "comparison": comparison}
        assert "does not belong to this grounding" in error_text(
            await client.call_tool("render_findings", mixed)
        )
        both = {"image": urgent, "grounding": grounding, "comparison": comparison, "draft": "x"}
        assert "either a comparison or a draft" in error_text(await client.call_tool("render_findings", both))
        wrong_image = {"image": normal, "grounding": grounding, "comparison": comparison}
        assert "another image" in error_text(await client.call_tool("render_findings", wrong_image))
        ok = await client.call_tool(
            "render_findings", {"image": urgent, "grounding": grounding, "comparison": comparison}
        )
        assert not ok.is_error, ok

    run(server, body)


# --- the prompt and the policy table -----------------------------------------------------------------


def test_the_prompt_without_arguments_is_a_clear_error(server: Any) -> None:
    async def body(client: Client) -> None:
        with pytest.raises(MCPError) as err:
            await client.get_prompt("audit_draft", {})
        assert "image" in str(err.value) and "Internal" not in str(err.value)
        image_only = await client.get_prompt("audit_draft", {"image": "/data/cxr.png"})
        text = image_only.messages[0].content.text  # type: ignore[union-attr]
        assert "image-only pass" in text
        assert "Never look at or read the X-ray" in text and "never as raw box numbers" in text

    run(server, body)


def test_the_policy_table_has_column_names(server: Any) -> None:
    """The resource serves the judge's own table (hedged rules and LATERALITY included), by column."""
    from auditor.compare import DECISION_COLUMNS, decision_table

    async def body(client: Client) -> None:
        policy = json.loads((await client.read_resource("cxr://policy")).contents[0].text)  # type: ignore[union-attr]
        assert policy["columns"] == list(DECISION_COLUMNS)
        assert policy["table"] == decision_table()
        rules = {row["rule_id"] for row in policy["table"]}
        assert {"MISSING.hedged", "UNSUPPORTED.hedged", "LATERALITY.opposite_side"} <= rules

    run(server, body)
