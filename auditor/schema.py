"""Pydantic contracts shared by every stage. They ARE the MCP tool schemas (see `tools_schema/`).

Invariants are enforced here, once: a Box is ordered and inside the unit square, a DraftMention's
span is exactly ``draft[start:end]`` of the DraftReading that holds it, and counts add up.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from auditor.labels import URGENT_LABELS, Label


class _Contract(BaseModel):
    """Base for every contract: unknown fields are errors, so a typo never silently vanishes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_M = TypeVar("_M", bound=BaseModel)

Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class Box(_Contract):
    """An axis-aligned box in normalised image coordinates: origin top-left, x right, y down."""

    x0: Unit
    y0: Unit
    x1: Unit
    y1: Unit

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not (self.x0 < self.x1 and self.y0 < self.y1):
            raise ValueError(f"box must satisfy x0 < x1 and y0 < y1, got {self.as_list()}")
        return self

    def as_list(self) -> list[float]:
        return [self.x0, self.y0, self.x1, self.y1]

    @property
    def area(self) -> float:
        return (self.x1 - self.x0) * (self.y1 - self.y0)


Stage = Literal["image", "draft", "compare", "context", "pipeline"]


class Note(_Contract):
    """A visible account of a repair, a drop, a fallback or a caution. Codes are stable API."""

    stage: Stage
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    message: str


class ParseOutcome(StrEnum):
    """What recovery made of one generation: every generation is exactly one of these."""

    CLEAN = "clean"
    RECOVERED = "recovered"
    FAILED = "failed"


class ModelInfo(_Contract):
    """Which backend and model produced a stage result."""

    backend: str = Field(description="e.g. 'hf', 'http', 'rules', 'replay', 'oracle'")
    model_id: str = Field(description="hub id, local path, or a rule-set version")
    revision: str | None = None
    prompt_version: str | None = None
    device: str | None = None


View = Literal["PA", "AP", "lateral"]
"""PA and AP are frontal films; on a lateral film image x says nothing about the patient's side."""


class ImageInfo(_Contract):
    """The image the grounding was made from: hash of the source bytes, pixel size, source format."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    source_format: str = Field(description="PNG, JPEG, DICOM, ...")
    view: View | None = Field(
        default=None, description="the view a DICOM header states (ViewPosition); None when not stated"
    )


class ImageFinding(_Contract):
    """One label the image model found, with its box when it gave a usable one."""

    label: Label
    box: Box | None = None

    @model_validator(mode="after")
    def _no_box_on_no_finding(self) -> Self:
        if self.label is Label.NO_FINDING and self.box is not None:
            raise ValueError("no_finding carries no box")
        return self


class Grounding(_Contract):
    """The image stage's result: findings plus everything needed to trust or distrust them."""

    findings: list[ImageFinding]
    outcome: ParseOutcome = Field(description="clean, recovered (with notes), or failed (no usable output)")
    model: ModelInfo
    image: ImageInfo | None = None
    raw_output: str | None = Field(default=None, description="the model's text, exactly as generated")
    notes: list[Note] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    tokens: dict[str, int] = Field(
        default_factory=dict, description="prompt and generated token counts, where a model generated"
    )

    @property
    def failed(self) -> bool:
        return self.outcome is ParseOutcome.FAILED

    def present_labels(self) -> frozenset[Label]:
        return frozenset(f.label for f in self.findings if f.label is not Label.NO_FINDING)


MentionStatus = Literal["present", "absent", "uncertain"]
Laterality = Literal["left", "right", "bilateral"]


class DraftMention(_Contract):
    """One label the draft speaks of: its status and the verbatim phrase, with character offsets."""

    label: Label
    status: MentionStatus
    span: str = Field(min_length=1)
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    laterality: Laterality | None = Field(default=None, description="only where the text states a side")
    cue: str | None = Field(
        default=None, description="the negation or hedge words that set the status, if any"
    )

    @model_validator(mode="after")
    def _offsets(self) -> Self:
        if self.end - self.start != len(self.span):
            raise ValueError(f"span length {len(self.span)} != end - start ({self.end} - {self.start})")
        return self


class _Reading(_Contract):
    """What any reader returns. Every mention's span is exactly ``draft[start:end]``."""

    draft: str
    mentions: list[DraftMention]
    outcome: ParseOutcome
    model: ModelInfo
    raw_output: str | None = None
    notes: list[Note] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    tokens: dict[str, int] = Field(
        default_factory=dict,
        description="prompt, reasoning and answer token counts, where a model generated",
    )

    @model_validator(mode="after")
    def _spans_verbatim(self) -> Self:
        for m in self.mentions:
            if self.draft[m.start : m.end] != m.span:
                raise ValueError(
                    f"mention {m.label} span {m.span!r} is not draft[{m.start}:{m.end}] "
                    f"({self.draft[m.start : m.end]!r})"
                )
        return self


class ReaderAttempt(_Reading):
    """A model reader's own reading that was not used (its output was unusable), kept whole so that
    nothing the model produced vanishes: raw output, notes, timings and model."""


class DraftReading(_Reading):
    """The draft stage's result. Every mention's span is exactly ``draft[start:end]``."""

    fallback_from: ReaderAttempt | None = Field(
        default=None,
        description="the configured reader's own reading, kept whole (raw output, notes, timings, model) "
        "when its output was unusable and the rule reader read the draft instead",
    )

    @property
    def failed(self) -> bool:
        return self.outcome is ParseOutcome.FAILED


class Policy(_Contract):
    """The judge's explicit policy, echoed in every Comparison."""

    urgent_labels: list[Label] = Field(default_factory=lambda: sorted(URGENT_LABELS))
    uncertain_satisfies_image: bool = Field(
        default=True, description="an image finding the draft hedges on is not MISSING"
    )
    uncertain_is_assertion: bool = Field(
        default=False, description="a hedged draft finding the image lacks is not UNSUPPORTED"
    )
    check_laterality: bool = Field(
        default=True,
        description="a side the draft states is checked against the side of the image's boxes (LATERALITY)",
    )

    @model_validator(mode="after")
    def _urgent_are_findings(self) -> Self:
        if Label.NO_FINDING in self.urgent_labels:
            raise ValueError("no_finding cannot be urgent")
        return self


class StudyContext(_Contract):
    """Optional facts about the study that change how much to trust the models."""

    age_years: float | None = Field(default=None, ge=0, le=130)
    view: View | None = None


FlagKind = Literal["URGENT", "LATERALITY", "MISSING", "UNSUPPORTED"]
DraftStatus = Literal["denied", "denied_by_normal", "not_mentioned", "present", "uncertain", "absent"]


class Flag(_Contract):
    """One disagreement (or urgent finding) and the evidence on both sides that produced it."""

    kind: FlagKind
    label: Label
    rule_id: str
    draft_status: DraftStatus
    message: str = Field(description="a request for a second look; never a diagnosis")
    image_evidence: list[ImageFinding] = Field(default_factory=list)
    draft_evidence: list[DraftMention] = Field(default_factory=list)


class Comparison(_Contract):
    """The judge's output: ordered flags, notes on degradations and cautions, and the policy used."""

    flags: list[Flag]
    mode: Literal["full", "image_only", "no_image"]
    policy: Policy
    notes: list[Note] = Field(default_factory=list)


class AuditReport(_Contract):
    """All three stages in one result, so each flag can be traced to a box and a phrase."""

    grounding: Grounding | None
    reading: DraftReading | None
    comparison: Comparison
    context: StudyContext | None = None
    notes: list[Note] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    disclaimer: str = Field(
        default="Research and educational QA only. Not a medical device and not a diagnosis; "
        "flags ask a qualified reader to look again."
    )


class Integrity(_Contract):
    """How many generations parsed clean, were recovered, or failed. The three always add up."""

    total: int = Field(ge=0)
    clean: int = Field(ge=0)
    recovered: int = Field(ge=0)
    failed: int = Field(ge=0)

    @model_validator(mode="after")
    def _adds_up(self) -> Self:
        if self.clean + self.recovered + self.failed != self.total:
            raise ValueError(f"clean + recovered + failed != total ({self})")
        return self


_FIELD_NAMES: dict[type[BaseModel], frozenset[str]] = {}
_new = object.__new__
_setattr = object.__setattr__


def construct_trusted(cls: type[_M], **fields: object) -> _M:
    """Build a contract from parts that are already valid, skipping validation (the hot paths).

    Only for code that assembles a result from validated contracts and values it computed itself
    (the judge, the rule reader). Every field must be given; a test checks that the result equals
    the validated construction. Equivalent to ``model_construct`` without its per-field default
    and alias handling, which costs more than the whole judgement.
    """
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = frozenset(cls.__pydantic_fields__)
    if fields.keys() != names:
        missing, unexpected = sorted(names - fields.keys()), sorted(fields.keys() - names)
        raise TypeError(f"{cls.__name__}: missing {missing}, unexpected {unexpected}")
    obj = _new(cls)
    _setattr(obj, "__dict__", fields)
    _setattr(obj, "__pydantic_fields_set__", set(names))
    _setattr(obj, "__pydantic_extra__", None)
    _setattr(obj, "__pydantic_private__", None)
    return obj
