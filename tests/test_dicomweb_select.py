"""Choosing the frontal radiograph of a study (pure logic; properties with Hypothesis)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditor.study_select import (
    NoFrontalImage,
    StudyInstance,
    holdings,
    select_frontal,
    selection_note,
    study_images,
)


def inst(
    n: int,
    modality: str | None = "DX",
    view: str | None = "PA",
    *,
    side: int = 512,
    frames: int | None = None,
    processing: bool = False,
) -> StudyInstance:
    return StudyInstance(
        series_uid=f"1.2.3.{n}",
        sop_instance_uid=f"1.2.3.{n}.1",
        modality=modality,
        view_position=view,
        rows=side,
        columns=side,
        frames=frames,
        for_processing=processing,
    )


def test_pa_before_ap_and_laterals_and_reports_skipped() -> None:
    ranked = select_frontal(
        [inst(1, view="LL"), inst(2, "SR", None), inst(3, view="AP"), inst(4, "CR", "PA")]
    )
    assert [(i.sop_instance_uid, i.status) for i in ranked] == [
        ("1.2.3.4.1", "chosen"),
        ("1.2.3.3.1", "candidate"),
        ("1.2.3.1.1", "skipped"),
        ("1.2.3.2.1", "skipped"),
    ]
    assert ranked[0].reason == "a PA radiograph (CR); PA is preferred over AP"
    assert ranked[1].reason == "also frontal (AP), but PA is preferred"
    assert ranked[2].reason == "a lateral view (LL)"
    assert ranked[3].reason == "not a radiograph (modality SR)"
    note = selection_note(ranked)
    assert note.code == "study_instance_chosen" and "Read instance 1.2.3.4.1 (series 1.2.3.4)" in note.message
    assert "1.2.3.1.1: a lateral view (LL)" in note.message


def test_for_presentation_and_larger_images_come_first() -> None:
    ranked = select_frontal([inst(1, processing=True, side=3000), inst(2, side=1024), inst(3, side=2048)])
    assert [i.sop_instance_uid for i in ranked] == ["1.2.3.3.1", "1.2.3.2.1", "1.2.3.1.1"]
    assert "For Processing" in ranked[2].reason


def test_an_unstated_view_is_never_guessed_frontal() -> None:
    with pytest.raises(NoFrontalImage) as info:
        select_frontal(
            [inst(1, view=None), inst(2, view="LL"), inst(3, view="PA", frames=3), inst(4, "KO", None)]
        )
    message = str(info.value)
    assert "no frontal (PA or AP) radiograph" in message
    assert "4 instances: DX 3 (LL 1, PA 1, view not stated 1); KO 1 (view not stated 1)" in message
    listing = study_images("1.2.3", [inst(1, view=None)])
    assert listing.chosen is None and listing.instances[0].reason.startswith("view not stated")
    assert listing.notes[0].code == "no_frontal_image"


MODALITIES = st.sampled_from(["DX", "CR", "DR", "RG", "SR", "KO", "PR", "CT", None])
VIEWS = st.sampled_from(["PA", "AP", "LL", "RL", "LATERAL", "OBL", "LLD", None])


@st.composite
def studies(draw: st.DrawFn) -> list[StudyInstance]:
    count = draw(st.integers(1, 12))
    return [
        inst(
            n,
            draw(MODALITIES),
            draw(VIEWS),
            side=draw(st.integers(64, 4096)),
            frames=draw(st.sampled_from([None, 1, 2])),
            processing=draw(st.booleans()),
        )
        for n in range(count)
    ]


@given(studies())
def test_selection_properties(instances: list[StudyInstance]) -> None:
    frontal = [
        i
        for i in instances
        if i.modality in {"DX", "CR", "DR", "RG"} and i.view_position in {"PA", "AP"} and (i.frames or 1) == 1
    ]
    try:
        ranked = select_frontal(instances)
    except NoFrontalImage as exc:
        assert not frontal
        assert holdings(instances) in str(exc)
        return
    assert frontal, "something was chosen, so something was frontal"
    chosen = ranked[0]
    assert chosen.status == "chosen" and chosen.sop_instance_uid in {i.sop_instance_uid for i in frontal}
    if any(i.view_position == "PA" for i in frontal):
        assert chosen.view_position == "PA"
    # every instance exactly once, each with a reason; candidates are exactly the other frontal films
    assert Counter(i.sop_instance_uid for i in ranked) == Counter(i.sop_instance_uid for i in instances)
    assert all(i.reason for i in ranked)
    assert sum(i.status == "candidate" for i in ranked) == len(frontal) - 1


@given(studies())
def test_holdings_count_every_instance(instances: list[StudyInstance]) -> None:
    text = holdings(instances)
    assert text.startswith(f"{len(instances)} instance")
