"""Typed inputs of the tools (MCP and CLI alike). With the stage contracts in `auditor.schema` they make
up the JSON Schemas checked in under `tools_schema/`, so a change to a tool's surface is a visible diff.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from auditor.edits import HAND_BUILT_NOTE
from auditor.schema import (
    AuditReport,
    Comparison,
    DraftReading,
    Grounding,
    ModelInfo,
    ParseOutcome,
    Policy,
    StudyContext,
)
from auditor.study_select import StudyImages

MAX_DRAFT_CHARS: Final = 20_000
"""A draft impression is a paragraph; anything this long is a pasted document, refused by name."""

IMAGE_DESCRIPTION: Final = (
    "The chest X-ray: a local file path, an http(s) URL, a data: URI, or raw base64. "
    "PNG, JPEG or DICOM (single frame)."
)


HAND_BUILT: Final = ModelInfo(backend="hand", model_id="built by hand")
_VIEWS: Final = {"pa": "PA", "ap": "AP", "lateral": "lateral", "lat": "lateral"}


def _label_as_typed(label: object) -> object:
    """``Pneumothorax``, ``pleural effusion``, ``nodule-mass``: the label a person meant."""
    if not isinstance(label, str):
        return label
    return "_".join(label.strip().lower().replace("-", " ").split())


class EditableGrounding(Grounding):
    """A Grounding as a tool argument: exactly as ground_image returned it (or edited), or built by hand
    from its findings alone. A hand-built one gets outcome ``clean``, model ``hand``, and the note
    ``grounding_hand_built``, which the comparison carries on, so the flags say whose findings they
    judged. Labels may be typed as a person writes them (``Pneumothorax``, ``pleural effusion``)."""

    outcome: ParseOutcome = Field(
        default=ParseOutcome.CLEAN,
        description="clean, recovered (with notes), or failed (no usable output); clean when built by hand",
    )
    model: ModelInfo = Field(default=HAND_BUILT, description="the model that made it; 'hand' when omitted")

    @model_validator(mode="before")
    @classmethod
    def _as_typed(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("findings"), list):
            data["findings"] = [
                {**f, "label": _label_as_typed(f.get("label"))} if isinstance(f, dict) else f
                for f in data["findings"]
            ]
        if "outcome" not in data or "model" not in data:
            note = {
                "stage": "image",
                "code": HAND_BUILT_NOTE,
                "message": "This grounding was built by hand (no outcome or model given): its findings "
                "are a person's, not the image model's.",
            }
            data["notes"] = [*(data.get("notes") or []), note]
        return data


def _context_as_typed(value: Any) -> Any:
    """A view typed as a person would (``ap``, ``Lateral``) is the view they meant."""
    if isinstance(value, dict) and isinstance(value.get("view"), str):
        view = _VIEWS.get(value["view"].strip().lower())
        if view is not None:
            return {**value, "view": view}
    return value


def describe_invalid(exc: ValidationError) -> str:
    """Arguments that do not fit, one line per problem (where, and what is wrong), for a person or an
    assistant to fix: never the rejected value (it may be patient data) nor a documentation link."""
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"]) or "(the arguments)"
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "missing":
            message = "required, but missing"
        elif err["type"] == "extra_forbidden":
            message = "not a known field"
        lines.append(f"- {where}: {message}")
    count = f"{len(lines)} problem{'s' if len(lines) != 1 else ''}"
    return "\n".join([f"invalid arguments ({count}):", *lines])


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
ContextArg = Annotated[
    StudyContext | None,
    BeforeValidator(_context_as_typed),
    Field(description="optional patient age and view (PA, AP or lateral, any case)"),
]
GroundingArg = Annotated[
    EditableGrounding | None,
    Field(
        description='ground_image\'s result (as returned, or edited); or just {"findings": [...]} built '
        "by hand; null when the image stage failed"
    ),
]
OptionalImageArg = Annotated[
    str | None,
    Field(min_length=1, description=IMAGE_DESCRIPTION + " Give this or `study_uid`, not both."),
]
StudyUidArg = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=2048,
        description="Instead of `image`: a study in the configured DICOMweb archive (PACS), by its "
        "StudyInstanceUID (its frontal radiograph is read: PA before AP; a note names the instance), or "
        "one instance's full .../studies/{s}/series/{r}/instances/{i} reference under the archive's URL",
    ),
]
FindStudyUidArg = Annotated[
    str,
    Field(
        min_length=1,
        max_length=2048,
        description="a StudyInstanceUID in the configured DICOMweb archive, or a reference under its URL",
    ),
]
ReadingArg = Annotated[DraftReading | None, Field(description="parse_draft's result; null for image-only")]
PolicyArg = Annotated[Policy | None, Field(description="optional judge policy; the default when null")]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


def check_one_image(image: str | None, study_uid: str | None) -> None:
    """Exactly one of ``image`` and ``study_uid``: the tools, the worklist and the models agree."""
    if image is not None and study_uid is not None:
        raise ValueError("give either `image` or `study_uid`, not both: they would name two images")
    if image is None and study_uid is None:
        raise ValueError(
            "give `image` (a file path, http(s) URL, data: URI or base64) or `study_uid` (a study in the "
            "configured DICOMweb archive)"
        )


class _OneImage(_Input):
    image: OptionalImageArg = None
    study_uid: StudyUidArg = None

    @model_validator(mode="after")
    def _one_image(self) -> _OneImage:
        check_one_image(self.image, self.study_uid)
        return self


class GroundImageInput(_OneImage):
    """Arguments of ``ground_image``: ``image`` or ``study_uid``."""


class ParseDraftInput(_Input):
    """Arguments of ``parse_draft``."""

    draft: DraftArg


class CompareInput(_Input):
    """Arguments of ``compare``: the stage results exactly as the other tools returned them (or edited)."""

    grounding: GroundingArg
    reading: ReadingArg = None
    context: ContextArg = None
    policy: PolicyArg = None


class AuditInput(_OneImage):
    """Arguments of ``audit``: the three stages in one call, on ``image`` or ``study_uid``."""

    draft: AuditDraftArg = ""
    context: ContextArg = None


class FindStudyImagesInput(_Input):
    """Arguments of ``find_study_images``."""

    study_uid: FindStudyUidArg


TOOL_MODELS: Final[dict[str, tuple[type[BaseModel], type[BaseModel]]]] = {
    "ground_image": (GroundImageInput, Grounding),
    "parse_draft": (ParseDraftInput, DraftReading),
    "compare": (CompareInput, Comparison),
    "audit": (AuditInput, AuditReport),
    "find_study_images": (FindStudyImagesInput, StudyImages),
}
"""Tool name -> (input model, output model)."""


def tool_schemas() -> dict[str, dict[str, object]]:
    """File name -> JSON Schema, for every tool's input and output (what `cxr-auditor schema` writes)."""
    files: dict[str, dict[str, object]] = {}
    for name, (inp, out) in TOOL_MODELS.items():
        files[f"{name}.input.json"] = inp.model_json_schema()
        files[f"{name}.output.json"] = out.model_json_schema(mode="serialization")
    return files
