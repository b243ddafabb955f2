"""Which image of a study to audit: the frontal chest radiograph, chosen from what the archive lists.

Pure logic over the few QIDO attributes kept (modality, view, size, frames, SOP class): no I/O, no
patient data. A chest study usually holds a PA or AP film, often a lateral, sometimes reports (SR),
key-object notes (KO) or presentation states (PR). The judge reads sides from a frontal film, so the
choice is: a radiograph (CR, DX, or the retired DR / film RG), one frame, ViewPosition PA before AP;
a larger image and a for-presentation one before the rest. An image whose view is not stated is not
guessed to be frontal: when nothing qualifies the error names what the study holds, never a pick.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from auditor.schema import Note

RADIOGRAPH_MODALITIES: Final = frozenset({"CR", "DX", "DR", "RG"})
"""Computed and digital radiography, the retired DR, and digitised film (RG)."""
FRONTAL_VIEWS: Final = ("PA", "AP")
"""In order of preference: PA is the standard chest film; AP magnifies the heart."""
LATERAL_VIEWS: Final = frozenset({"LL", "RL", "LATERAL", "LAT"})
FOR_PROCESSING_CLASSES: Final = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image Storage - For Processing
        "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography - For Processing
        "1.2.840.10008.5.1.4.1.1.1.3.1",  # Digital Intra-Oral - For Processing
    }
)
"""Raw detector data meant for further processing, not for reading: chosen only after the rest."""
LISTED_SKIPS: Final = 8
"""How many skipped instances a note names one by one; the rest are counted."""
NO_VIEW: Final = "view not stated"

Status = Literal["chosen", "candidate", "skipped"]


class StudyInstance(BaseModel):
    """One instance of a study as the archive lists it: identifiers and picture facts, never a
    patient's. ``status`` and ``reason`` say what the selection made of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    series_uid: str = Field(description="SeriesInstanceUID")
    sop_instance_uid: str = Field(description="SOPInstanceUID: the instance itself")
    modality: str | None = Field(default=None, description="CR, DX, SR, ... (None when not stated)")
    view_position: str | None = Field(
        default=None, description="ViewPosition as the header states it (PA, AP, LL, ...); None when empty"
    )
    rows: int | None = None
    columns: int | None = None
    frames: int | None = Field(default=None, description="NumberOfFrames; None when not stated (one)")
    for_processing: bool = Field(default=False, description="a 'For Processing' SOP class (raw detector)")
    status: Status = "candidate"
    reason: str = ""

    @property
    def view_label(self) -> str:
        return self.view_position or NO_VIEW

    def describe(self) -> str:
        size = f" {self.columns}x{self.rows}" if self.rows and self.columns else ""
        return f"{self.modality or 'no modality'}, {self.view_label}{size}"


class StudyImages(BaseModel):
    """``find_study_images``'s answer: every instance with what the selection made of it."""

    model_config = ConfigDict(extra="forbid")

    study_uid: str
    chosen: str | None = Field(
        description="SOPInstanceUID of the image an audit of this study reads; None when none qualifies"
    )
    holdings: str = Field(description="what the study holds, counted by modality and view")
    instances: list[StudyInstance]
    notes: list[Note] = Field(default_factory=list)


class NoFrontalImage(ValueError):
    """The study has no frontal radiograph; the message names what it holds instead."""


def _skip_reason(inst: StudyInstance) -> str | None:
    """Why an instance cannot be the audited image, or None when it is a frontal radiograph."""
    if inst.modality not in RADIOGRAPH_MODALITIES:
        shown = inst.modality or "none stated"
        return f"not a radiograph (modality {shown})"
    if inst.frames is not None and inst.frames > 1:
        return f"multi-frame ({inst.frames} frames)"
    view = inst.view_position
    if view in LATERAL_VIEWS:
        return f"a lateral view ({view})"
    if view is None:
        return f"{NO_VIEW} (not taken to be frontal)"
    if view not in FRONTAL_VIEWS:
        return f"not a PA or AP view ({view})"
    return None


def _rank(inst: StudyInstance) -> tuple[int, bool, int, str, str]:
    pixels = (inst.rows or 0) * (inst.columns or 0)
    view = FRONTAL_VIEWS.index(inst.view_position) if inst.view_position in FRONTAL_VIEWS else 9
    return (view, inst.for_processing, -pixels, inst.series_uid, inst.sop_instance_uid)


def holdings(instances: Iterable[StudyInstance]) -> str:
    """``3 instances: DX 2 (PA 1, LL 1); SR 1 (view not stated 1)``: modality, then view, counted."""
    items = list(instances)
    if not items:
        return "no instances"
    by_modality = Counter(i.modality or "no modality" for i in items)
    parts = []
    for modality in sorted(by_modality):
        views = Counter(i.view_label for i in items if (i.modality or "no modality") == modality)
        shown = ", ".join(f"{v} {n}" for v, n in sorted(views.items()))
        parts.append(f"{modality} {by_modality[modality]} ({shown})")
    noun = "instance" if len(items) == 1 else "instances"
    return f"{len(items)} {noun}: " + "; ".join(parts)


def select_frontal(instances: Sequence[StudyInstance]) -> list[StudyInstance]:
    """Every instance with its status: one ``chosen`` (the first element), other frontal radiographs
    ``candidate``, the rest ``skipped``, each with its reason. Raises NoFrontalImage when none fits."""
    eligible = sorted((i for i in instances if _skip_reason(i) is None), key=_rank)
    if not eligible:
        raise NoFrontalImage(
            f"no frontal (PA or AP) radiograph in this study; it holds {holdings(instances)}. "
            "To audit one of them anyway, pass its full reference (.../studies/{s}/series/{r}/"
            "instances/{i}) as study_uid; find_study_images lists them."
        )
    best = eligible[0]
    out = [best.model_copy(update={"status": "chosen", "reason": _why_chosen(best, eligible)})]
    for inst in eligible[1:]:
        out.append(inst.model_copy(update={"status": "candidate", "reason": _why_not(inst, best)}))
    for inst in instances:
        reason = _skip_reason(inst)
        if reason is not None:
            out.append(inst.model_copy(update={"status": "skipped", "reason": reason}))
    return out


def _why_chosen(best: StudyInstance, eligible: Sequence[StudyInstance]) -> str:
    why = f"a {best.view_position} radiograph ({best.modality})"
    if best.view_position == "AP":
        return why + "; the study has no PA film"
    if any(i.view_position == "AP" for i in eligible):
        return why + "; PA is preferred over AP"
    return why


def _why_not(inst: StudyInstance, best: StudyInstance) -> str:
    if inst.view_position != best.view_position:
        return f"also frontal ({inst.view_position}), but {best.view_position} is preferred"
    if inst.for_processing and not best.for_processing:
        return "also frontal, but 'For Processing' (raw detector data); the for-presentation one was chosen"
    return "also frontal; the larger image (or the first by UID) was chosen"


def selection_note(ranked: Sequence[StudyInstance]) -> Note:
    """The note an audit of a study carries: which instance was read and why, and what was not."""
    chosen, rest = ranked[0], ranked[1:]
    message = (
        f"Read instance {chosen.sop_instance_uid} (series {chosen.series_uid}) of the study's "
        f"{len(ranked)}: {chosen.describe()}, {chosen.reason}."
    )
    if rest:
        listed = "; ".join(f"{i.sop_instance_uid}: {i.reason}" for i in rest[:LISTED_SKIPS])
        more = f"; and {len(rest) - LISTED_SKIPS} more" if len(rest) > LISTED_SKIPS else ""
        message += f" Not read: {listed}{more}."
    return Note(stage="image", code="study_instance_chosen", message=message)


def given_note(sop_instance_uid: str) -> Note:
    """The note for an instance named in full: read as given, nothing chosen."""
    return Note(
        stage="image",
        code="study_instance_given",
        message=f"Read instance {sop_instance_uid} as referenced; no selection was made in its study.",
    )


def study_images(study_uid: str, instances: Sequence[StudyInstance]) -> StudyImages:
    """The listing for ``find_study_images``: chosen first, then the other candidates, then skips."""
    summary = holdings(instances)
    try:
        ranked = select_frontal(instances)
    except NoFrontalImage as exc:
        skipped = [
            i.model_copy(update={"status": "skipped", "reason": _skip_reason(i) or ""}) for i in instances
        ]
        note = Note(stage="image", code="no_frontal_image", message=str(exc))
        return StudyImages(
            study_uid=study_uid, chosen=None, holdings=summary, instances=skipped, notes=[note]
        )
    return StudyImages(
        study_uid=study_uid, chosen=ranked[0].sop_instance_uid, holdings=summary, instances=ranked
    )
