"""What each tool tells the model that calls it. Written for an assistant: what to pass, what comes
back, and that every result is a second-look aid, never a diagnosis."""

from __future__ import annotations

from typing import Final

DISCLAIMER: Final = (
    "Research and educational QA only: not a medical device and not a diagnosis. Flags ask a qualified "
    "reader to look again; the reader decides."
)

INSTRUCTIONS: Final = (
    "CXR Draft Auditor compares a chest X-ray with a radiologist's draft impression and flags where they "
    "seem to disagree. Call ground_image (image -> findings with boxes), parse_draft (draft -> labels with "
    "verbatim spans), then compare (the two results -> flags); or audit for all three at once, and "
    "render_findings for a picture with the boxes. Present flags as requests for a second look, URGENT "
    "first, quoting the box and the draft phrase for each; never as a diagnosis. " + DISCLAIMER
)

GROUND_IMAGE: Final = (
    "Find up to six labels on a chest X-ray (pleural_effusion, pneumothorax, lung_opacity_consolidation, "
    "nodule_mass, cardiomegaly, or no_finding alone), each with a box in normalised [0, 1] image "
    "coordinates (x0, y0, x1, y1; origin top-left). Pass `image` as a local file path, an http(s) URL, a "
    "data: URI or raw base64 (PNG, JPEG or single-frame DICOM). Returns a Grounding: the findings, the "
    "outcome of parsing the model's text (clean / recovered / failed), notes on every repair or drop, the "
    "model that made it, the raw model output, the image's sha256 and size. A failed outcome means the "
    "image was NOT read: do not treat it as 'nothing found'. " + DISCLAIMER
)

PARSE_DRAFT: Final = (
    "Read a radiologist's draft impression into the same labels: each mention has a status (present, "
    "absent = denied, uncertain = hedged), the verbatim span with character offsets (draft[start:end] == "
    "span), the side (left/right/bilateral) where stated, and the cue words that set the status. Pass the "
    "draft text exactly as written. Returns a DraftReading with the reader that made it and notes (terms "
    "outside the six labels, fallbacks). " + DISCLAIMER
)

COMPARE: Final = (
    "Judge a Grounding (from ground_image) against a DraftReading (from parse_draft), with no model: "
    "MISSING = on the image but denied or not mentioned in the draft; UNSUPPORTED = asserted in the draft "
    "but not marked on the image; URGENT = pneumothorax or nodule/mass on the image. Pass the objects as "
    "the tools returned them; you may edit them first (for example remove a finding the user rejected). "
    "`reading` null gives an image-only pass (URGENT only). Optional `context` (age_years, view PA/AP/"
    "lateral) adds cautions for children and AP films. Each flag carries its rule id, the boxes and the "
    "draft spans that produced it, and a message asking for a second look. " + DISCLAIMER
)

AUDIT: Final = (
    "Run ground_image, parse_draft and compare in one call. Pass `image` (path, URL, data: URI or base64) "
    "and the `draft` text; an empty draft gives an image-only pass with URGENT flags only. Optional "
    "`context` (age_years, view). Returns an AuditReport with all three stage results, so every flag can be "
    "traced to a box and a phrase. If the draft reader fails, the rule reader reads it instead and a note "
    "says so. " + DISCLAIMER
)

RENDER_FINDINGS: Final = (
    "Draw the findings and flags on the image and return ONLY a picture (PNG or JPEG, longest side capped, "
    "a few hundred KB at most): URGENT boxes red, MISSING orange, agreed findings green, UNSUPPORTED listed "
    "in the legend. Pass `image`, and the `grounding` and `comparison` you already have (or a `draft` to "
    "audit now, or neither to draw the findings alone). Show it to the user so a person looks again. "
    + DISCLAIMER
)

AUDIT_PROMPT: Final = """You are helping a radiologist take a second look at a chest X-ray and their draft
impression. You do not diagnose. {disclaimer}

Image: {image}
Draft impression:
\"\"\"
{draft}
\"\"\"

Work through the tools in order:
1. Call `ground_image` with the image. If its outcome is "failed", say that the image could not be read
   and stop: a failed read is not a normal image.
2. Call `parse_draft` with the draft text, exactly as written.
3. Show both results briefly. If the user disagrees with a finding or a reading, edit that object.
4. Call `compare` with the two results (and `context` if the age or view is known).
5. Call `render_findings` with the image, grounding and comparison, and show the picture.

Present the flags URGENT first, then MISSING, then UNSUPPORTED. For each: the label, the box, the draft
phrase (quote the span) and the flag's own message. Say plainly that these are requests to look again,
that the models are often wrong, and that the radiologist decides. Mention every note about recovered or
failed output, fallbacks and cautions (children, AP films). If there are no flags, say that the tool found
no disagreement, not that the study is normal.
"""
