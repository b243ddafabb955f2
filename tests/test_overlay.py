"""The overlay: what a person sees. Colours mean what the judge decided, the size stays capped, and the
same inputs give the same bytes. Synthetic images, so the tests always run; one real NIH radiograph."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from PIL import Image

from auditor.compare import compare
from auditor.draft_rules import read_draft
from auditor.labels import Label
from auditor.overlay import COLOURS, DISCLAIMER, RenderedImage, legend_text, render_findings
from auditor.schema import Box, Comparison, Grounding, ImageFinding, ModelInfo, ParseOutcome

L = Label
MODEL = ModelInfo(backend="test", model_id="test-model")
GREY = 128
NIH_IMAGES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nih" / "images"

# Three tall boxes side by side, low enough that every tag sits above its own box.
BOX_URGENT = Box(x0=0.05, y0=0.3, x1=0.3, y1=0.7)
BOX_MISSING = Box(x0=0.4, y0=0.3, x1=0.6, y1=0.7)
BOX_AGREED = Box(x0=0.7, y0=0.3, x1=0.9, y1=0.7)


def grounding(*findings: ImageFinding, outcome: ParseOutcome = ParseOutcome.CLEAN) -> Grounding:
    return Grounding(findings=list(findings), outcome=outcome, model=MODEL)


def flat(size: int = 512, mode: str = "L") -> Image.Image:
    return Image.new(mode, (size, size), GREY if mode == "L" else (GREY, GREY, GREY))


def noisy(size: int) -> Image.Image:
    return Image.frombytes("L", (size, size), random.Random(0).randbytes(size * size))


def decode(out: RenderedImage) -> Image.Image:
    img = Image.open(io.BytesIO(out.data))
    img.load()
    assert (img.width, img.height) == (out.width, out.height)
    assert img.format == {"image/png": "PNG", "image/jpeg": "JPEG"}[out.mime_type]
    return img


def render_png(image: Image.Image, g: Grounding | None, c: Comparison | None = None) -> Image.Image:
    """Lossless, so sampled pixels are exactly what was drawn."""
    img = decode(render_findings(image, g, c, image_format="PNG", max_bytes=10_000_000))
    return img.convert("RGB")


def colour_at(img: Image.Image, x: int, y: int) -> str:
    r, g, b = img.getpixel((x, y))  # type: ignore[misc]
    if r > 200 and g < 80 and b < 80:
        return "red"
    if r > 200 and 100 < g < 180 and b < 60:
        return "orange"
    if g > 150 and r < 80 and b < 100:
        return "green"
    if b > 200 and r < 80 and g < 160:
        return "blue"
    return f"other{(r, g, b)}"


def left_edge(img: Image.Image, box: Box, side: int) -> str:
    """The colour of the box's left edge at mid-height (image part is side x side)."""
    return colour_at(img, round(box.x0 * side), round((box.y0 + box.y1) / 2 * side))


def image_part_is_flat(img: Image.Image, side: int) -> bool:
    return img.crop((0, 0, side, side)).getcolors() == [(side * side, (GREY, GREY, GREY))]


def three_way() -> tuple[Grounding, Comparison]:
    """Pneumothorax denied (URGENT + MISSING), effusion unmentioned (MISSING), cardiomegaly agreed."""
    g = grounding(
        ImageFinding(label=L.PNEUMOTHORAX, box=BOX_URGENT),
        ImageFinding(label=L.PLEURAL_EFFUSION, box=BOX_MISSING),
        ImageFinding(label=L.CARDIOMEGALY, box=BOX_AGREED),
    )
    return g, compare(g, read_draft("Cardiomegaly. No pneumothorax."))


# --- colours --------------------------------------------------------------------------------------


def test_box_colours_follow_the_most_severe_flag() -> None:
    g, c = three_way()
    assert [(f.kind, f.label) for f in c.flags] == [
        ("URGENT", L.PNEUMOTHORAX),
        ("MISSING", L.PLEURAL_EFFUSION),
        ("MISSING", L.PNEUMOTHORAX),
    ]
    img = render_png(flat(), g, c)
    assert left_edge(img, BOX_URGENT, 512) == "red"
    assert left_edge(img, BOX_MISSING, 512) == "orange"
    assert left_edge(img, BOX_AGREED, 512) == "green"
    assert colour_at(img, 256, 100) == "other(128, 128, 128)"  # away from every box: untouched


def test_a_wrong_side_is_drawn_in_its_own_colour_with_a_legend_entry() -> None:
    """The issue's case: an effusion boxed on the image's right (the patient's left), the draft says
    right. It used to be drawn green, "agreed"."""
    g = grounding(
        ImageFinding(label=L.PLEURAL_EFFUSION, box=BOX_AGREED),
        ImageFinding(label=L.CARDIOMEGALY, box=BOX_MISSING),
    )
    c = compare(g, read_draft("Small right pleural effusion. Cardiomegaly."))
    assert [f.kind for f in c.flags] == ["LATERALITY"]
    img = render_png(flat(), g, c)
    x, y = round(BOX_AGREED.x0 * 512), round((BOX_AGREED.y0 + BOX_AGREED.y1) / 2 * 512)
    assert img.getpixel((x, y)) == COLOURS["LATERALITY"]
    assert len(set(COLOURS.values())) == len(COLOURS), "every style has its own colour"
    legend = legend_text(g, c)
    assert "LATERALITY: side in draft vs boxes" in legend
    line = "LATERALITY: pleural effusion - draft says right, boxes on the other side"
    assert f"{line} (image left = patient right)" in legend


def test_rgb_input_gives_the_same_picture_as_grey() -> None:
    g, c = three_way()
    assert render_findings(flat(), g, c) == render_findings(flat(mode="RGB"), g, c)


def test_without_a_comparison_boxes_are_blue_and_say_so() -> None:
    g, _ = three_way()
    img = render_png(flat(), g, None)
    for box in (BOX_URGENT, BOX_MISSING, BOX_AGREED):
        assert left_edge(img, box, 512) == "blue"
    assert "findings only, not compared" in legend_text(g, None)


def test_image_only_pass_marks_urgent_red_and_does_not_claim_agreement() -> None:
    g, _ = three_way()
    c = compare(g, None)
    assert c.mode == "image_only"
    img = render_png(flat(), g, c)
    assert left_edge(img, BOX_URGENT, 512) == "red"
    assert left_edge(img, BOX_AGREED, 512) == "blue"  # not compared, so never green
    assert any(line.startswith("image-only pass: no draft given") for line in legend_text(g, c))
    assert any(
        line.startswith("image-only pass: no draft given")
        for line in legend_text(g, compare(g, read_draft("")))
    )
    failed = read_draft("a draft the reader could not use").model_copy(
        update={"outcome": ParseOutcome.FAILED}
    )
    unread = compare(g, failed)
    assert any(line.startswith("image-only pass: draft not read") for line in legend_text(g, unread))


def test_unsupported_is_legend_only() -> None:
    g = grounding()
    c = compare(g, read_draft("Mild cardiomegaly."))
    assert [f.kind for f in c.flags] == ["UNSUPPORTED"]
    img = render_png(flat(), g, c)
    assert image_part_is_flat(img, 512)  # nothing drawn on the image
    legend = img.crop((0, 512, img.width, img.height))
    assert any(colour == COLOURS["UNSUPPORTED"] for _, colour in legend.getcolors(1_000_000) or [])
    assert "UNSUPPORTED: draft says cardiomegaly - not marked on image" in legend_text(g, c)


def test_line_width_scales_with_output_size() -> None:
    box = Box(x0=0.25, y0=0.3, x1=0.75, y1=0.7)
    g = grounding(ImageFinding(label=L.CARDIOMEGALY, box=box))

    def edge_width(side: int) -> int:
        img = render_png(flat(side), g, None)
        y = round(0.5 * side)
        return sum(colour_at(img, x, y) == "blue" for x in range(round(0.2 * side), round(0.3 * side)))

    assert edge_width(512) >= 2
    assert edge_width(1024) >= 2 * edge_width(512)


# --- legend ---------------------------------------------------------------------------------------


def test_legend_lists_flags_unboxed_findings_and_the_disclaimer() -> None:
    g = grounding(
        ImageFinding(label=L.PNEUMOTHORAX, box=None), ImageFinding(label=L.NODULE_MASS, box=BOX_URGENT)
    )
    c = compare(g, read_draft("No pneumothorax. Small nodule. Cardiomegaly."))
    lines = legend_text(g, c)
    assert "URGENT: pneumothorax (draft: denied)" in lines
    assert "URGENT: nodule / mass (draft: reported)" in lines
    assert "MISSING: pneumothorax (draft: denied)" in lines
    assert "pneumothorax · URGENT · MISSING (no box)" in lines
    assert "UNSUPPORTED: draft says cardiomegaly - not marked on image" in lines
    assert lines[-1] == DISCLAIMER == "Research only - not a diagnosis. Look again; the reader decides."
    assert lines[0].startswith("URGENT:")  # the colour key comes first, for the kinds present


def test_the_legend_can_keep_only_the_colour_key() -> None:
    """The worklist report lists the flags beside the picture: the picture keeps only its colour key."""
    g, c = three_way()
    full = decode(render_findings(flat(), g, c, image_format="PNG"))
    key_only = decode(render_findings(flat(), g, c, image_format="PNG", flag_lines=False))
    assert key_only.width == full.width and 512 < key_only.height < full.height
    assert key_only.crop((0, 0, 512, 512)).tobytes() == full.crop((0, 0, 512, 512)).tobytes()


def test_agreement_and_normal_studies_are_said_not_implied() -> None:
    g, _ = three_way()
    c = compare(g, read_draft("Cardiomegaly. Pneumothorax. Pleural effusion."))
    assert "no flags raised" not in legend_text(g, c)  # pneumothorax is still URGENT
    agreed = grounding(ImageFinding(label=L.CARDIOMEGALY, box=BOX_AGREED))
    assert "no flags raised" in legend_text(agreed, compare(agreed, read_draft("Cardiomegaly.")))
    normal = grounding(ImageFinding(label=L.NO_FINDING))
    assert "image model: no finding" in legend_text(normal, compare(normal, read_draft("Normal study.")))
    assert "image model marked nothing" in legend_text(grounding(), None)


@pytest.mark.parametrize("failed", [None, grounding(outcome=ParseOutcome.FAILED)])
def test_failed_image_stage_still_gives_the_image_and_says_why(failed: Grounding | None) -> None:
    c = compare(failed, read_draft("Cardiomegaly."))
    img = render_png(flat(), failed, c)
    assert img.height > 512
    assert image_part_is_flat(img, 512)
    assert legend_text(failed, c)[0].startswith("Image stage failed: no usable findings, nothing was drawn.")


# --- geometry -------------------------------------------------------------------------------------


def test_boxes_touching_every_edge_do_not_crash() -> None:
    whole = Box(x0=0.0, y0=0.0, x1=1.0, y1=1.0)
    corner = Box(x0=0.9, y0=0.95, x1=1.0, y1=1.0)
    g = grounding(
        ImageFinding(label=L.CARDIOMEGALY, box=whole), ImageFinding(label=L.NODULE_MASS, box=corner)
    )
    img = render_png(flat(300), g, None)
    assert colour_at(img, 299, 150) == "blue"  # x1 = 1.0 is the last column, drawn
    assert colour_at(img, 0, 150) == "blue"


def test_findings_are_drawn_in_canonical_order_whatever_the_input_order() -> None:
    g, c = three_way()
    shuffled = g.model_copy(update={"findings": list(reversed(g.findings))})
    assert render_findings(flat(), shuffled, c) == render_findings(flat(), g, c)


def test_tiny_render_wraps_the_legend_instead_of_failing() -> None:
    g, c = three_way()
    out = decode(render_findings(flat(64), g, c, max_side=64))
    assert out.width == 64 and out.height > 4 * 64  # long lines wrapped (and cut mid-word) into rows


# --- size and format ------------------------------------------------------------------------------


def test_image_part_is_capped_and_never_upscaled() -> None:
    g, c = three_way()
    big = decode(render_findings(Image.new("L", (1600, 1200), GREY), g, c, max_side=800))
    assert big.width == 800 and big.height > 600  # 800 x 600 image, legend below
    small = decode(render_findings(flat(300), g, c))
    assert small.width == 300 and small.height > 300


def test_flat_image_auto_is_png_and_deterministic() -> None:
    g, c = three_way()
    first = render_findings(flat(), g, c)
    assert first.mime_type == "image/png"
    assert decode(first).mode == "RGB"
    assert render_findings(flat(), g, c) == first


def test_noisy_image_over_budget_goes_jpeg_then_smaller() -> None:
    g, c = three_way()
    out = render_findings(noisy(2048), g, c, max_bytes=60_000)
    assert len(out.data) <= 60_000
    assert out.mime_type == "image/jpeg"
    assert decode(out).width < 1024  # quality alone could not make it fit
    assert render_findings(noisy(2048), g, c, max_bytes=60_000) == out


def test_forced_formats_hold_and_still_respect_the_budget() -> None:
    g, c = three_way()
    jpeg = render_findings(flat(), g, c, image_format="JPEG")
    assert jpeg.mime_type == "image/jpeg"
    decode(jpeg)
    png = render_findings(noisy(600), g, c, image_format="PNG", max_bytes=150_000)
    assert png.mime_type == "image/png" and len(png.data) <= 150_000
    assert decode(png).width < 600


# --- validation -----------------------------------------------------------------------------------


def test_empty_image_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"empty image \(0x0 pixels\)"):
        render_findings(Image.new("L", (0, 0)), None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_side": 10}, "max_side"),
        ({"max_bytes": 0}, "max_bytes"),
        ({"image_format": "GIF"}, "image_format"),
        ({"max_bytes": 200}, "cannot fit"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_findings(flat(128), None, **kwargs)  # type: ignore[arg-type]


def test_other_modes_are_converted() -> None:
    for mode in ("RGBA", "LA", "P", "1", "CMYK"):
        out = decode(render_findings(flat(128).convert(mode), None))
        assert out.mode == "RGB"


def test_sixteen_bit_grey_is_stretched_not_clipped_to_white() -> None:
    ramp = Image.new("I;16", (256, 256))
    ramp.putdata([x * 200 + 1000 for _ in range(256) for x in range(256)])  # 1000 .. 52000
    img = render_png(ramp, None)
    assert img.getpixel((0, 10)) == (0, 0, 0)
    assert img.getpixel((255, 10)) == (255, 255, 255)
    assert img.getpixel((128, 10)) not in {(0, 0, 0), (255, 255, 255)}


# --- a real radiograph ----------------------------------------------------------------------------


def test_real_nih_radiograph_renders() -> None:
    path = NIH_IMAGES / "00015649_000.png"
    if not path.is_file():
        pytest.skip(f"NIH sample images not present at {NIH_IMAGES}")
    with Image.open(path) as src:
        image = src.copy()
    mass = Box(x0=641 / 1024, y0=299 / 1024, x1=726 / 1024, y1=374 / 1024)  # NIH's own "Mass" box
    g = grounding(ImageFinding(label=L.NODULE_MASS, box=mass))
    c = compare(g, read_draft("No focal nodule or mass. Cardiomegaly."))
    assert {f.kind for f in c.flags} == {"URGENT", "MISSING", "UNSUPPORTED"}
    out = render_findings(image, g, c)
    assert len(out.data) <= 400_000
    img = decode(out)
    assert img.width == 1024 and img.height > 1024
    assert render_findings(image, g, c) == out
