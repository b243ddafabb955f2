"""Typed inputs of the tools (MCP and CLI alike). With the stage contracts in `auditor.schema` they make
up the JSON Schemas checked in under `tools_schema/`, so a change to a tool's surface is a visible diff.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field

from auditor.schema import AuditReport, Comparison, DraftReading, Grounding, Policy, StudyContext

MAX_DRAFT_CHARS: Final = 20_000
"""A draft impression is a paragraph; anything this long is a pasted document, refused by name."""

IMAGE_DESCRIPTION: Final = (
    "The chest X-ray: a local file path, an http(s) URL, a data: URI, or raw base64. "
    "PNG, JPEG or DICOM (single frame)."
)


# Each argument's type, bounds and description, once: the input models below and the MCP tool
# signatures (mcp_server/app.py) both use these, so the checked-in schemas and the wire cannot drift.
ImageArg = Annotated[str, Field(min_length=1, description=IMAGE_DESCRIPTION)]
DraftArg = Annotated[
    str,
    Field(
        max_length=MAX_DRAFT_CHARS, description="The radiologist's draft impression or report text, verbatim."
    ),
]
AuditDraftArg = Annotated[
    str,
    Field(
        max_length=MAX_DRAFT_CHARS,
        description="The draft impression; empty for an image-only pass (URGENT flags only).",
    ),
]
ContextArg = Annotated[StudyContext | None, Field(description="optional patient age and view")]
GroundingArg = Annotated[
    Grounding | None, Field(description="ground_image's result; null when the image stage failed")
]
ReadingArg = Annotated[DraftReading | None, Field(description="parse_draft's result; null for image-only")]
PolicyArg = Annotated[Policy | None, Field(description="optional judge policy; the default when null")]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GroundImageInput(_Input):
    """Arguments of ``ground_image``."""

    image: ImageArg


class ParseDraftInput(_Input):
    """Arguments of ``parse_draft``."""

    draft: DraftArg


class CompareInput(_Input):
    """Arguments of ``compare``: the stage results exactly as the other tools returned them (or edited)."""

    grounding: GroundingArg
    reading: ReadingArg = None
    context: ContextArg = None
    policy: PolicyArg = None


class AuditInput(_Input):
    """Arguments of ``audit``: the three stages in one call."""

    image: ImageArg
    draft: AuditDraftArg = ""
    context: ContextArg = None


TOOL_MODELS: Final[dict[str, tuple[type[BaseModel], type[BaseModel]]]] = {
    "ground_image": (GroundImageInput, Grounding),
    "parse_draft": (ParseDraftInput, DraftReading),
    "compare": (CompareInput, Comparison),
    "audit": (AuditInput, AuditReport),
}
"""Tool name -> (input model, output model)."""


def tool_schemas() -> dict[str, dict[str, object]]:
    """File name -> JSON Schema, for every tool's input and output (what `cxr-auditor schema` writes)."""
    files: dict[str, dict[str, object]] = {}
    for name, (inp, out) in TOOL_MODELS.items():
        files[f"{name}.input.json"] = inp.model_json_schema()
        files[f"{name}.output.json"] = out.model_json_schema(mode="serialization")
    return files
